"""`qla export MODEL --out DIR [--backend ...]`: write a self-contained deployable folder (model files, tokenizer,
qla.json with sha256 of every file). int8 backends calibrate on `--data`; `qla quantize` adds accuracy checks.

An option the chosen build would not read (`--data` with `--backend fp32`, `--doc-stride` for a classifier, `--keep`
without a dev set, ...) is refused rather than ignored, so what was asked for is what was built."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from qla_sdk.commands.eval import add_column_arguments
from qla_sdk.data.columns import DevColumns
from qla_sdk.errors import ConfigError
from qla_sdk.quantize.config import BACKENDS, INFERENCE_PRECISIONS, INT8_BACKENDS

# Options only some builds read, and which: for any other build they would change nothing, so they are refused
# (their defaults are None, so that "given" can be told from "left out"): (flag, attribute, why it does nothing
# elsewhere, the backends whose build reads it).
INT8_OPTIONS = (
    ("--data", "data", "it is int8 calibration data", INT8_BACKENDS),
    ("--split", "split", "it picks the split of --data for int8 calibration", INT8_BACKENDS),
    ("--calibration-samples", "calibration_samples", "it sizes int8 calibration", INT8_BACKENDS),
    ("--seq-lens", "seq_lens", "it sets int8 graph lengths; fp32 and bf16 run any length", INT8_BACKENDS),
    ("--act-algo", "act_algo", "only inductor's INC calibration reads it", ("inductor",)),
    ("--no-int8-embeddings", "no_int8_embeddings", "its word embedding is not int8 anyway", ("inductor", "openvino")),
    ("--text-columns", "text_columns", "it picks the text columns of int8 calibration data", INT8_BACKENDS),
    ("--label-column", "label_column", "it picks the label column of int8 calibration data", INT8_BACKENDS),
)


def add_arguments(p: argparse.ArgumentParser, default_backend: str) -> None:
    p.add_argument("model", help="checkpoint folder (config.json + model.safetensors [+ qla.json])")
    # --output too: the training commands, qla run and qla search name their folder so.
    p.add_argument(
        "--out", "--output", dest="out", required=True, help="artifact folder to write (replaced atomically)"
    )
    p.add_argument("--backend", default=default_backend, choices=BACKENDS)
    p.add_argument("--task", default=None, choices=["question-answering", "text-classification"])
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or vocab.txt (default: the model folder)")
    p.add_argument(
        "--length-config",
        default="model",
        help="'model' (qla.json of the checkpoint), 'none' (full length), or e.g. 269,253,... / 0.7,0.6",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="default: the max_length the checkpoint's qla.json records (what it was trained at), else 384 for QA "
        "and 128 for classification, at most the model's position embeddings",
    )
    p.add_argument(
        "--doc-stride",
        type=int,
        default=None,
        help="QA: overlap of context windows (default 128, at most half of --max-length)",
    )
    p.add_argument(
        "--seq-lens",
        default=None,
        help="int8 graph lengths, e.g. 128,384 (default: --max-length; with a ratio length config every 64 tokens "
        "up to it, so that short inputs run short graphs)",
    )
    p.add_argument("--data", default=None, help="int8 calibration data (SQuAD json / TSV / CSV / datasets name)")
    p.add_argument("--split", default=None, help="split of --data used for calibration (default train)")
    p.add_argument("--calibration-samples", type=int, default=None, help="rows of --data to calibrate on (128)")
    p.add_argument(
        "--act-algo", default=None, choices=["minmax", "kl"], help="inductor: INC's calibration (default minmax)"
    )
    p.add_argument(
        "--keep",
        default=None,
        choices=["first", "best"],
        help="with an accuracy check (qla quantize --eval-data): keep the first tuning config within --tolerance "
        "(the default), or, with --backend openvino, score them all and keep the most accurate (on a tie, one "
        "without smooth quant)",
    )
    p.add_argument(
        "--inference-precision",
        default="f32",
        choices=list(INFERENCE_PRECISIONS),
        help="openvino: what the operations that stay floating point run in (bf16: OpenVINO's own default on CPUs "
        "with AMX or AVX512-BF16; f32 elsewhere)",
    )
    p.add_argument("--no-int8-embeddings", action="store_true", help="keep the word embedding fp32")
    # A classifier calibrated (and tuned) on another column than it was trained on builds without any error, with
    # int8 scales (and a tolerance check) of other text.
    add_column_arguments(p, "the checkpoint's qla.json")


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
    from qla_sdk.data import load_tokenizer, qa_doc_stride
    from qla_sdk.deploy import export_model
    from qla_sdk.deploy.evaluation import evaluator, task_rows
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.modeling.checkpoint import recorded_task, training_columns
    from qla_sdk.quantize import QuantConfig

    seq_lens = _seq_lens(args.seq_lens) if args.seq_lens is not None else None
    _refuse_unread_options(args, eval_data)
    config = QuantConfig(
        backend=args.backend,
        calibration_samples=128 if args.calibration_samples is None else args.calibration_samples,
        tolerance=0.01 if tolerance is None else tolerance,
        tolerance_from="reference" if reference_model else "fp32",
        act_algo=args.act_algo or "minmax",
        seq_lens=seq_lens,
        quantize_embeddings=not args.no_int8_embeddings,
        keep=args.keep or "first",
        inference_precision=args.inference_precision,
    )
    # A model trained for one task exported for another would serve a random head: refused (a bare pretrained
    # encoder, with no task recorded, still exports with a random head and a warning).
    model = from_pretrained(args.model, task=args.task, trained_head=recorded_task(args.model) is not None).eval()
    recorded = training_columns(args.model)
    columns = DevColumns.of(args.text_columns, args.label_column, recorded)
    columns.refuse_for_qa(model.task, args.model)
    if args.doc_stride is not None and model.task != "question-answering":
        raise ValueError(
            f"--doc-stride {args.doc_stride}: {args.model} is a {model.task} model, and the stride only splits "
            "question-answering contexts into windows: drop --doc-stride (--max-length sets the input length)"
        )
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    _check_tokenizer(tokenizer, args.tokenizer, args.model, model.config.vocab_size)
    if args.max_length is not None:
        max_length = args.max_length
    else:
        max_length = _default_max_length(args.model, model, searched=args.length_config == "model")
    doc_stride = qa_doc_stride(max_length, tokenizer, args.doc_stride) if model.task == "question-answering" else 0
    length_config = None if args.length_config == "none" else args.length_config
    calibration, evaluate = [], None
    # Calibration and the dev set are read in the columns training read: given, else recorded, else detected.
    read = {}
    if model.task != "question-answering":
        read = {"text_columns": columns.text_columns, "label_column": columns.label_column}
        meaning = "int8 calibration" + (" and the accuracy check fit" if eval_data else " fits") + " the model"
        columns.warn_unlike_training(getattr(args, "command", "export"), args.model, meaning)
    if config.is_int8:
        if not args.data:
            raise ValueError(f"--backend {args.backend} quantizes to int8: pass --data with calibration examples")
        split = "train" if args.split is None else args.split
        with columns.naming_the_record(args.data, args.model):
            calibration = task_rows(
                model.task, args.data, split, tokenizer, max_length, doc_stride, config.calibration_samples, **read
            )[0]
        if args.calibration_samples is not None and len(calibration) < args.calibration_samples:
            rows = "feature rows (context windows)" if model.task == "question-answering" else "rows"
            warnings.warn(
                f"--calibration-samples {args.calibration_samples}, and {split} of --data has {len(calibration)} "
                f"{rows}: int8 is calibrated on those {len(calibration)} (recorded as calibration_rows in qla.json)",
                UserWarning,
                stacklevel=2,
            )
    if eval_data:
        with columns.naming_the_record(eval_data, args.model):
            evaluate = evaluator(model, eval_data, tokenizer, max_length, doc_stride, **read)
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
        extra=recorded,  # so that qla eval reads a dev set's columns as training did
    )
    manifest = json.loads((path / "qla.json").read_text())
    print(
        json.dumps({k: manifest[k] for k in ("backend", "precision", "length_config", "max_length", "build")}, indent=2)
    )
    print(f"wrote {path}")
    return 0


def _refuse_unread_options(args: argparse.Namespace, eval_data: str | None) -> None:
    """A ``ValueError`` naming the first given option that this build would not read, and what to do instead."""
    for flag, name, why, readers in INT8_OPTIONS:
        if getattr(args, name) not in (None, False) and args.backend not in readers:
            raise ValueError(
                f"{flag} has no effect with --backend {args.backend} ({why}): drop it, or use --backend "
                f"{' / '.join(readers)}"
            )
    if args.keep is not None and eval_data is None:  # qla quantize refuses it without --eval-data itself
        raise ValueError(
            f"--keep {args.keep} chooses among int8 configs scored on a dev set, and qla export scores none: drop "
            "--keep, or run qla quantize --eval-data DEV"
        )


def _default_max_length(path: str, model, searched: bool) -> int:
    """With ``searched`` (the model's own length config is exported) and token counts, the length they were chosen
    for (the search's ``--seq-len``: at another length they resolve to other counts than the search scored); else
    the max_length the checkpoint was trained at (qla.json: qla finetune / distill / lat-train and the recipe's
    stages record it); else the task's default cut to the model's position embeddings."""
    from qla_sdk.data.task_data import DEFAULT_MAX_LENGTH
    from qla_sdk.modeling.checkpoint import read_qla_metadata
    from qla_sdk.modeling.heads import max_input_length

    recorded = read_qla_metadata(path).get("max_length") if Path(path).is_dir() else None
    if recorded is not None and (isinstance(recorded, bool) or not isinstance(recorded, int)):
        raise ConfigError(f"{path}/qla.json records max_length {recorded!r}, not a token count: pass --max-length")
    lc = model.length_config if searched else None
    if lc is not None and lc.reference_length is not None:
        if recorded is not None and recorded != lc.reference_length:
            warnings.warn(
                f"{path}: its length config {lc} was searched at {lc.reference_length} tokens and the model trained "
                f"at {recorded}: exporting at {lc.reference_length}, where the counts mean what the search scored "
                "(pass --max-length to choose)",
                stacklevel=3,
            )
        return lc.reference_length
    if recorded is None:
        return min(DEFAULT_MAX_LENGTH[model.task], max_input_length(model.config))
    return recorded


def _check_tokenizer(tokenizer, given: str | None, model_path: str, vocab_size: int) -> None:
    """Refuse token ids past the model's embedding table (they would fail only at predict); warn when --tokenizer
    differs from the checkpoint's own, whose ids the model was trained on (it would predict wrongly, silently)."""
    from qla_sdk.data import load_tokenizer

    source = given or model_path
    vocab = tokenizer.get_vocab()
    ids = max(vocab.values()) + 1
    if ids > vocab_size:
        raise ConfigError(
            f"tokenizer {source} has {ids} token ids, and the model {model_path} embeds {vocab_size}: ids from "
            f"{vocab_size} on have no embedding. Use the tokenizer the model was trained with (default: the "
            "checkpoint folder's own)"
        )
    if given is None or not Path(model_path).is_dir():
        return
    try:
        own = load_tokenizer(model_path).get_vocab()
    except ConfigError:  # the checkpoint holds no tokenizer: nothing to compare with
        return
    if own != vocab:
        differ = [t for t in own.keys() | vocab.keys() if own.get(t) != vocab.get(t)]
        example = min(differ, key=lambda t: (t not in vocab, vocab.get(t, 0), t))  # the given one's lowest id
        warnings.warn(
            f"--tokenizer {given} has a different vocabulary than the checkpoint's own tokenizer in {model_path} "
            f"({len(vocab)} vs {len(own)} tokens; {len(differ)} tokens differ, e.g. {example!r}: id "
            f"{vocab.get(example)} vs {own.get(example)}): the model reads ids as its own tokenizer writes them, so "
            "its predictions would be wrong. Drop --tokenizer to export with the checkpoint's own",
            stacklevel=3,
        )


def _seq_lens(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--seq-lens {text!r}: give integers separated by commas, e.g. 128,384") from None
