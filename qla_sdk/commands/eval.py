"""`qla eval ARTIFACT --data PATH`: the task metric of an exported model (accuracy / F1, or SQuAD EM / F1)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from qla_sdk.data.columns import DevColumns
from qla_sdk.data.task_data import naming_the_task
from qla_sdk.errors import ConfigError
from qla_sdk.options import add_options, option_names
from qla_sdk.recipe.config import DataSection

if TYPE_CHECKING:
    from qla_sdk.data import ClassificationData
    from qla_sdk.deploy import Manifest, Predictor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate an exported artifact on a labelled dataset")
    p.add_argument("artifact", help="folder written by `qla export` / `qla quantize`")
    p.add_argument("--data", required=True, help="SQuAD json, a TSV/CSV/JSON file, a GLUE folder or a datasets name")
    p.add_argument("--split", default="validation")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--align-to-words",
        action="store_true",
        help="question answering: score answers aligned to whole words, as predict serves them (default: run_qa's "
        "token spans, the rule of published SQuAD F1 and of the training commands' evaluation)",
    )
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow loading an ipex (TorchScript) artifact: TorchScript can run code, so only for files you built",
    )
    add_column_arguments(p, "the artifact")
    p.set_defaults(func=run)


def add_column_arguments(p: argparse.ArgumentParser, recorder: str) -> None:
    """The training commands' column flags, for a command that reads a dev (or calibration) set for a trained
    classifier (qla eval, search, export, quantize): it must read the columns training read, which ``recorder`` (the
    artifact, the checkpoint) records; ``qla_sdk.data.columns.DevColumns`` resolves them."""
    g = p.add_argument_group(
        "classification columns (as given to qla finetune / distill / lat-train)",
        f"default: the columns training read, where {recorder} records them; else detected by name",
    )
    add_options(g, DataSection, exclude=option_names(DataSection) - {"text_columns"})
    # Not DataSection's default "label": left out, the recorded label column is read, so no flag must differ from a
    # given --label-column label.
    g.add_argument("--label-column", default=None, help="classification label column (default: recorded, else label)")


# Examples per predict call: a dev set of any size stays under the Predictor's bounds of one call.
CHUNK = 256


def run(args: argparse.Namespace) -> int:
    from qla_sdk.deploy import load
    from qla_sdk.deploy.accuracy_check import AccuracyCheckedElsewhereWarning
    from qla_sdk.deploy.artifact import read_manifest
    from qla_sdk.deploy.predictor import check_text

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit}: must be >= 1 (the first N examples are evaluated)")
    # Refused, and the data read, before the load, which may compile graphs for seconds.
    manifest = read_manifest(args.artifact, verify=False)
    task = manifest.task
    if args.align_to_words and task != "question-answering":
        raise ConfigError(f"--align-to-words is a question-answering option, and {args.artifact} is a {task} model")
    DevColumns.of(args.text_columns, args.label_column, {}).refuse_for_qa(task, args.artifact)
    with naming_the_task(task, args.data):  # a TSV given to a QA model is "not valid JSON" otherwise
        if task == "question-answering":
            from qla_sdk.data import load_squad

            examples = load_squad(args.data, args.split)[: args.limit]
        else:
            data = _classification_data(args, manifest)
    with warnings.catch_warnings():  # what it says (checked on other kernels), the output says beside the score
        warnings.simplefilter("ignore", AccuracyCheckedElsewhereWarning)
        predictor = load(
            args.artifact,
            threads=args.threads,
            max_batch_size=args.batch_size,
            trust_torchscript=args.trust_torchscript,
        )
    start = time.perf_counter()
    if task == "question-answering":
        from qla_sdk.data import squad_scores

        if not examples:
            raise ValueError(f"{args.data} has no questions to evaluate")
        for number, e in enumerate(examples, start=1):  # all named before the first call, by example and id
            check_text(e.question, f"{args.data} example {number} (id {e.id}): its question", predictor.max_chars)
            check_text(e.context, f"{args.data} example {number} (id {e.id}): its context", predictor.max_chars)
        answers = []
        for i in range(0, len(examples), CHUNK):
            part = examples[i : i + CHUNK]
            with _naming_examples(args.data, i):
                answers += predictor.predict(
                    question=[e.question for e in part],
                    context=[e.context for e in part],
                    align_to_words=args.align_to_words,
                )
        metrics = squad_scores({e.id: a["answer"] for e, a in zip(examples, answers, strict=True)}, examples)
        metrics["answers"] = "aligned to words" if args.align_to_words else "token spans (run_qa)"
        count = len(examples)
    else:
        from qla_sdk.data import accuracy

        texts, labels = data.texts[: args.limit], data.labels[: args.limit]
        if not texts:
            raise ValueError(f"{args.data} has no texts to evaluate")
        for number, text in enumerate(texts, start=1):
            for part in text:
                check_text(part, f"{args.data} example {number}", predictor.max_chars)
        inputs = [t if len(t) == 2 else t[0] for t in texts]
        predicted = []
        for i in range(0, len(inputs), CHUNK):
            with _naming_examples(args.data, i):
                predicted += predictor.predict(inputs[i : i + CHUNK])
        index = {name: i for i, name in enumerate(predictor.labels or [])}
        metrics = {"accuracy": accuracy([index.get(p["label"], -1) for p in predicted], labels)}
        count = len(texts)
    seconds = time.perf_counter() - start
    print(json.dumps({**metrics, "examples": count, "seconds": round(seconds, 2), **_build_check(predictor)}, indent=2))
    return 0


def _build_check(predictor: Predictor) -> dict:
    """The score the build recorded for its dev set, on its scale, and the kernel classes it was checked on beside
    this CPU's (``qla_sdk.deploy.accuracy_check``): on the same dev set, an int8 artifact scores what it recorded on
    CPUs of its classes, and may score otherwise on others."""
    from qla_sdk import machine
    from qla_sdk.deploy.accuracy_check import checked_on, classes_that_matter, kernels_unlike_check

    build = predictor.manifest.data.get("build") or {}
    record = checked_on(predictor.manifest)
    if record is None or "int8_metric" not in build:
        return {}
    here = machine.kernel_classes()
    return {
        "build_check": {"metric": build.get("metric"), "score": build["int8_metric"], "checked_on": record},
        "kernels_here": classes_that_matter(here, predictor.manifest),
        "same_kernels_as_build_check": not kernels_unlike_check(predictor.manifest, here),
    }


def _classification_data(args: argparse.Namespace, manifest: Manifest) -> ClassificationData:
    """The dev set as the flags say, else in the columns training read (where the artifact records them: a model
    scored on another column than it was trained on gives no error, only a wrong accuracy); which text columns were
    picked, when detection had a choice, and given columns unlike the recorded ones (stderr)."""
    from qla_sdk.data import load_classification
    from qla_sdk.data.classification import UnknownLabelsError

    columns = DevColumns.of(
        args.text_columns,
        args.label_column,
        {"text_columns": manifest.text_columns, "label_column": manifest.label_column},
    )
    columns.warn_unlike_training("eval", args.artifact, "the accuracy means something")
    try:
        with columns.naming_the_record(args.data, args.artifact):
            data = load_classification(
                args.data, args.split, columns.text_columns, columns.label_column, label_names=manifest.labels
            )
    except UnknownLabelsError as exc:
        raise ConfigError(
            f"{args.data} holds labels {exc.unknown[:10]} that the model does not predict: its labels are "
            f"{exc.label_names} (or their ids 0..{len(exc.label_names) - 1}). Fix the dev set: write each label as "
            "one of the model's, or drop the rows of other labels (or name the right column with --label-column)"
        ) from None
    if data.other_text_columns:
        picked, others = (", ".join(map(repr, c)) for c in (data.text_columns, data.other_text_columns))
        print(
            f"qla eval: reading text from {picked} (detected by name); {others} hold(s) text too: if the model was "
            "trained on other columns, pass them with --text-columns",
            file=sys.stderr,
        )
    return data


@contextlib.contextmanager
def _naming_examples(data: str, first: int) -> Iterator[None]:
    """A refused input's message counts within its call ("text #3"): say where that call starts in the data."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"{data}, in the call from example {first + 1} on (#0 there): {exc}") from None
