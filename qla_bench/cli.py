"""`qla-bench`: the speed/size/memory comparison against BERT-base FP32 eager and the peers, on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 384,128") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seq-lens", type=_ints, default=None, help="sequence lengths (default 384,128)")
    p.add_argument("--batch-sizes", type=_ints, default=None, help="batch sizes; 1 gives latency (default 1,32)")
    p.add_argument("--runs", type=int, default=None, help="timed runs at batch 1 (default 100, at least 50)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs before timing (default 10)")
    p.add_argument("--throughput-runs", type=int, default=None, help="timed runs at larger batches (default 10)")
    p.add_argument("--throughput-max-s", type=float, default=None, help="time cap per larger batch (default 60)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds the runs are split into (default 3)")
    p.add_argument("--calibration-samples", type=int, default=None, help="int8 calibration samples (default 16)")
    p.add_argument(
        "--backends",
        type=_names,
        default=None,
        dest="int8_backends",
        help="our int8 backends to compare: inductor,openvino,ipex (default inductor,openvino)",
    )
    p.add_argument(
        "--length-config",
        default=None,
        help="QuaLA rows' length config (default: the --quala-model's own, else 269,253,252,202,104,34)",
    )
    p.add_argument(
        "--length-config-seq-len",
        type=int,
        default=None,
        help="sequence length the token counts were searched at (default 384; others scale)",
    )
    p.add_argument("--task", default=None, choices=["question-answering", "text-classification"])
    p.add_argument("--rows", type=_names, default=None, help="only these rows (see --list-rows)")
    p.add_argument("--list-rows", action="store_true", help="print the rows of a run and exit")
    p.add_argument("--bert-base", default=None, help="BERT-base checkpoint folder (default: BertConfig(), random)")
    p.add_argument("--minilm", default=None, help="MiniLM checkpoint folder (default: the pretrained MiniLM)")
    p.add_argument("--quala-model", default=None, help="trained length-adaptive MiniLM folder (default: MiniLM)")
    p.add_argument("--cores", default=None, help="physical cores to use: a count or a list like 0-3 (default all)")
    p.add_argument("--instances", type=int, default=None, help="processes per row, cores split evenly (default 1)")
    p.add_argument("--accuracy-from", type=Path, default=None, help="results JSON with accuracy per row name")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/bench.json)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep builds and logs here (default: a temp dir)")
    p.add_argument("--row-timeout", type=float, default=None, dest="row_timeout_s", help="seconds per row step")
    p.add_argument(
        "--no-kernels",
        action="store_false",
        dest="kernels",
        default=None,
        help="skip the extra run that records which oneDNN/OpenVINO kernels ran",
    )
    p.add_argument("--quick", action="store_true", help="tiny models and few runs: a smoke run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qla-bench", description="benchmark our int8 models against BERT-base FP32 and the peers"
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from qla_sdk.errors import QlaError

    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (QlaError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"qla-bench: error: {exc}", file=sys.stderr)
        return 2


def settings_from_args(args: argparse.Namespace):
    from qla_bench.suite import BenchSettings, quick_settings

    fields = (
        "seq_lens batch_sizes runs warmup throughput_runs throughput_max_s rounds calibration_samples int8_backends "
        "length_config length_config_seq_len task rows cores instances accuracy_from out work_dir row_timeout_s "
        "kernels"
    ).split()
    chosen = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
    models = {"bert-base": args.bert_base, "minilm": args.minilm, "quala-minilm": args.quala_model}
    chosen["models"] = {k: v for k, v in models.items() if v}
    return quick_settings(**chosen) if args.quick else BenchSettings(**chosen)


def run(args: argparse.Namespace) -> int:
    from qla_bench.suite import plan_rows, run_suite

    settings = settings_from_args(args)
    if args.list_rows:
        for spec in plan_rows(settings):
            lc = f"  length config {spec.length_config} @ {spec.length_config_seq_len}" if spec.length_config else ""
            print(f"{spec.name:<28} {spec.role:<9} {spec.backend:<14} {spec.precision}  {spec.model}{lc}")
        return 0
    record = run_suite(settings)
    failed = sorted({r["name"] for r in record["rows"] if r["error"]})
    if failed:
        print(f"{len(failed)} row(s) failed (see their 'error' in {settings.out}): {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
