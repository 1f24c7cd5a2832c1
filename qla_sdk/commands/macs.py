"""`qla macs --model DIR --seq-len N [--length-config ...]`"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("macs", help="count the matmul MACs of a model for a sequence length and length config")
    p.add_argument("--model", required=True, help="checkpoint folder (config.json) or hub id")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--length-config", default=None, help="e.g. 269,253,252,202,104,34 or 0.7,0.66,...")
    p.add_argument(
        "--task",
        default=None,
        choices=["question-answering", "text-classification"],
        help="the head counted (default: the checkpoint's task, question-answering for a base model)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.modeling import count_macs, load_config
    from qla_sdk.modeling.heads import max_input_length

    if args.seq_len < 1:
        raise ValueError(f"--seq-len {args.seq_len}: must be >= 1")
    config = load_config(args.model)
    if args.seq_len > max_input_length(config):
        raise ValueError(f"--seq-len {args.seq_len}: the model takes at most {max_input_length(config)} tokens")
    task = args.task or _task(args.model, config)
    macs = count_macs(config, args.seq_len, args.length_config, task)
    full = count_macs(config, args.seq_len, None, task)
    print(f"{macs:,} MACs ({macs / full:.1%} of full length {full:,}){_read_as(args.length_config)}")
    return 0


def _read_as(length_config: str | None) -> str:
    """How the length config was read: "1,1" are token counts, "1,0.5" ratios; the figure means nothing if the user
    meant the other."""
    from qla_sdk.modeling import LengthConfig

    if length_config is None or length_config == "none":
        return ""
    parsed = LengthConfig.parse(length_config)
    if parsed.is_ratio:
        return f"; read as ratios of the input's real length: {', '.join(f'{v:g}' for v in parsed.lengths)}"
    at = f" chosen at {parsed.reference_length}" if parsed.reference_length else ""
    hint = " (for ratios, write 1 as 1.0)" if 1 in parsed.lengths else ""  # "1,1": counts, though ratios look alike
    return f"; read as token counts{at}: {', '.join(str(v) for v in parsed.lengths)}{hint}"


def _task(model: str, config) -> str:
    """The checkpoint's own task (its qla.json, else its architecture), question-answering for a base model."""
    from pathlib import Path

    from qla_sdk.errors import ConfigError
    from qla_sdk.modeling.checkpoint import _task_from_architectures, read_qla_metadata

    meta = read_qla_metadata(model) if Path(model).is_dir() else {}
    try:
        return meta.get("task") or _task_from_architectures(config)
    except ConfigError:  # a base model: no head of its own
        return "question-answering"
