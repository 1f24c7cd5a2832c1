"""`qla quantize MODEL --out DIR --data TRAIN [--eval-data DEV]`: static int8 (zero-point activations) of the
length-adaptive model, written as a deployable artifact. With `--eval-data` int8 is checked against fp32 on the
dev set and tuned until the relative drop is within `--tolerance`, or it stops with what was tried."""

from __future__ import annotations

import argparse

from qla_sdk.commands import export


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="int8 post-training quantization (INC / NNCF) into a deployable artifact")
    export.add_arguments(p, "inductor")
    p.add_argument("--eval-data", default=None, help="dev set for the accuracy check (default: no check)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest relative metric drop in the accuracy check (default 0.01 = 1%%); needs --eval-data",
    )
    p.add_argument(
        "--reference-model",
        default=None,
        help="count --tolerance from this model's dev metric at full length (e.g. the fine-tuned model you "
        "compress) instead of the quantized model's fp32 metric; needs --eval-data",
    )
    # --keep's None is "not given" (export.run reads it as first), so that run can refuse it without --eval-data.
    p.set_defaults(func=run, keep=None)


def run(args: argparse.Namespace) -> int:
    if args.backend not in ("inductor", "openvino", "ipex"):
        raise ValueError(f"qla quantize makes int8 models: --backend inductor, openvino or ipex, not {args.backend}")
    if args.reference_model and not args.eval_data:
        raise ValueError("--reference-model sets where the accuracy check counts from: give --eval-data too")
    if args.tolerance is not None and not args.eval_data:
        raise ValueError("--tolerance bounds the metric drop of the accuracy check: give --eval-data too")
    if args.keep is not None and not args.eval_data:
        raise ValueError("--keep chooses among tuning configs by their dev metric: give --eval-data too")
    return export.run(args, tolerance=args.tolerance, eval_data=args.eval_data, reference_model=args.reference_model)
