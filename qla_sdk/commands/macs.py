"""`qla macs --model DIR --seq-len N [--length-config ...]`"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("macs", help="count the matmul MACs of a model for a sequence length and length config")
    p.add_argument("--model", required=True, help="checkpoint folder (config.json) or hub id")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--length-config", default=None, help="e.g. 269,253,252,202,104,34 or 0.7,0.66,...")
    p.add_argument("--task", default="question-answering", choices=["question-answering", "text-classification"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.modeling import count_macs, load_config

    if args.seq_len < 1:
        raise ValueError(f"--seq-len {args.seq_len}: must be >= 1")
    config = load_config(args.model)
    macs = count_macs(config, args.seq_len, args.length_config, args.task)
    full = count_macs(config, args.seq_len, None, args.task)
    print(f"{macs:,} MACs ({macs / full:.1%} of full length {full:,})")
    return 0
