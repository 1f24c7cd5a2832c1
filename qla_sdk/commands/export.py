"""`qla export MODEL --out DIR [--backend ...]`: write a self-contained deployable folder (model files, tokenizer,
qla.json with sha256 of every file). int8 backends calibrate on `--data`; `qla quantize` adds accuracy checks."""

from __future__ import annotations

import argparse
import json

from qla_sdk.quantize.config import BACKENDS, INFERENCE_PRECISIONS


def add_arguments(p: argparse.ArgumentParser, default_backend: str) -> None:
    p.add_argument("model", help="checkpoint folder (config.json + model.safetensors [+ qla.json])")
    p.add_argument("--out", required=True, help="artifact folder to write (replaced atomically)")
    p.add_argument("--backend", default=default_backend, choices=BACKENDS)
    p.add_argument("--task", default=None, choices=["question-answering", "text-classification"])
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or vocab.txt (default: the model folder)")
    p.add_argument(
        "--length-config",
        default="model",
        help="'model' (qla.json of the checkpoint), 'none' (full length), or e.g. 269,253,... / 0.7,0.6",
    )
    p.add_argument("--max-length", type=int, default=None, help="default 384 for QA, 128 for classification")
    p.add_argument(
        "--doc-stride",
        type=int,
        default=None,
        help="QA: overlap of context windows (default 128, at most half of --max-length)",
    )
    p.add_argument("--seq-lens", default=None, help="graph lengths, e.g. 128,384 (default: see docs)")
    p.add_argument("--data", default=None, help="calibration data (SQuAD json / TSV / CSV / datasets name)")
    p.add_argument("--split", default="train", help="split of --data used for calibration")
    p.add_argument("--calibration-samples", type=int, default=128)
    p.add_argument("--act-algo", default="minmax", choices=["minmax", "kl"])
    p.add_argument(
        "--keep",
        default="first",
        choices=["first", "best"],
        help="with an accuracy check (qla quantize, openvino): keep the first tuning config within --tolerance, "
        "or score them all and keep the most accurate",
    )
    p.add_argument(
        "--inference-precision",
        default="f32",
        choices=list(INFERENCE_PRECISIONS),
        help="openvino: what the operations that stay floating point run in (bf16: OpenVINO's own default on CPUs "
        "with AMX or AVX512-BF16; f32 elsewhere)",
    )
    p.add_argument("--no-int8-embeddings", action="store_true", help="keep the word embedding fp32")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a deployable artifact folder (fp32/bf16 or int8 backends)")
    add_arguments(p, "fp32")
    p.set_defaults(func=run)


def run(
    args: argparse.Namespace,
    tolerance: float | None = None,
    eval_data: str | None = None,
    reference_model: str | None = None,
) -> int:
    from qla_sdk.data import load_tokenizer
    from qla_sdk.deploy import export_model
    from qla_sdk.deploy.artifact import qa_doc_stride
    from qla_sdk.deploy.evaluation import evaluator, task_rows
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.quantize import QuantConfig

    config = QuantConfig(
        backend=args.backend,
        calibration_samples=args.calibration_samples,
        tolerance=0.01 if tolerance is None else tolerance,
        tolerance_from="reference" if reference_model else "fp32",
        act_algo=args.act_algo,
        seq_lens=_seq_lens(args.seq_lens) if args.seq_lens else None,
        quantize_embeddings=not args.no_int8_embeddings,
        keep=args.keep,
        inference_precision=args.inference_precision,
    )
    model = from_pretrained(args.model, task=args.task).eval()
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    max_length = args.max_length if args.max_length is not None else 384 if model.task == "question-answering" else 128
    doc_stride = qa_doc_stride(max_length, tokenizer, args.doc_stride) if model.task == "question-answering" else 0
    length_config = None if args.length_config == "none" else args.length_config
    calibration, evaluate = [], None
    if config.is_int8:
        if not args.data:
            raise ValueError(f"--backend {args.backend} quantizes to int8: pass --data with calibration examples")
        calibration = task_rows(
            model.task, args.data, args.split, tokenizer, max_length, doc_stride, args.calibration_samples
        )[0]
    if eval_data:
        evaluate = evaluator(model, eval_data, tokenizer, max_length, doc_stride)
    path = export_model(
        model,
        args.out,
        tokenizer,
        config=config,
        length_config=length_config,
        max_length=max_length,
        doc_stride=doc_stride,
        calibration=calibration,
        evaluate=evaluate,
        reference_model=from_pretrained(reference_model, task=model.task).eval() if reference_model else None,
    )
    manifest = json.loads((path / "qla.json").read_text())
    print(
        json.dumps({k: manifest[k] for k in ("backend", "precision", "length_config", "max_length", "build")}, indent=2)
    )
    print(f"wrote {path}")
    return 0


def _seq_lens(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--seq-lens {text!r}: give integers separated by commas, e.g. 128,384") from None
