"""A task's training and evaluation features in one call: what fine-tuning, distillation, length-adaptive training
and the recipe all load (``qla finetune/distill/lat-train`` and ``qla run`` share it)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qla_sdk.data.squad import qa_table_columns
from qla_sdk.errors import ConfigError

DEFAULT_MAX_LENGTH = {"question-answering": 384, "text-classification": 128}


@dataclass
class TaskData:
    train_features: object
    eval_features: object
    eval_examples: list | None  # QA examples, for span decoding and SQuAD scores
    max_length: int
    label_names: list[str] | None  # classification labels in id order (None for QA)
    # Classification: the columns the training data was read from (given, or detected by name), and the other
    # columns that hold text too, which detection passed over; empty / None for QA.
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    other_text_columns: tuple[str, ...] = ()

    def metadata(self) -> dict:
        """What a model trained on this data records in its qla.json: the input length, and for classification
        the columns training read, so that ``qla eval`` reads a dev set's same columns (not others it detects)."""
        if self.label_column is None:
            return {"max_length": self.max_length}
        return {
            "max_length": self.max_length,
            "text_columns": list(self.text_columns),
            "label_column": self.label_column,
        }

    def detection_note(self, fix: str) -> str | None:
        """Which text columns detection picked, where the training data holds other text too (None otherwise): a
        model trained on another column than meant gives no error, only wrong answers. ``fix``: how to name them."""
        if not self.other_text_columns:
            return None
        picked, others = (", ".join(map(repr, c)) for c in (self.text_columns, self.other_text_columns))
        return f"training on text from {picked} (detected by name); {others} hold(s) text too: {fix}"

    def sizes(self) -> dict:
        """What a training command reports about its data (metrics.json)."""
        return {
            "train_features": len(self.train_features),
            "eval_features": len(self.eval_features),
            "max_length": self.max_length,
        }


def load_task_data(
    train: str,
    eval: str,
    tokenizer,
    task: str,
    label_names: Sequence[str] | None = None,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str = "label",
    max_length: int | None = None,
    doc_stride: int = 128,
) -> TaskData:
    """Features of ``train`` (with labels) and ``eval`` (a file, folder or ``datasets`` name each).

    Classification label ids follow ``label_names`` when given (a model's labels, so ids mean what its outputs
    mean), else the training data's own labels."""
    from qla_sdk.data import classification_features, load_classification, load_squad, qa_features

    if task not in DEFAULT_MAX_LENGTH:
        raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(DEFAULT_MAX_LENGTH)}")
    max_length = max_length or DEFAULT_MAX_LENGTH[task]
    if max_length < 8:
        raise ConfigError(f"max_length {max_length}: must be >= 8")
    if task == "question-answering":
        with naming_the_task(task, eval):
            eval_examples = load_squad(eval, split="validation")
        with naming_the_task(task, train):
            train_examples = load_squad(train, split="train")
        train_features = qa_features(train_examples, tokenizer, max_length, doc_stride, True)
        eval_features = qa_features(eval_examples, tokenizer, max_length, doc_stride)
        return TaskData(train_features, eval_features, eval_examples, max_length, None)
    columns = list(text_columns) if text_columns else None
    labels = list(label_names) if label_names else None
    with naming_the_task(task, train):
        train_data = load_classification(train, "train", columns, label_column, label_names=labels)
    # The evaluation data is read through the training data's text columns: detected on their own, a dev file with
    # other text columns (a pair where training found one sentence) would score the model on inputs it never saw.
    with naming_the_task(task, eval), _named_after_training(eval, train, columns, train_data.text_columns):
        eval_data = load_classification(
            eval, "validation", train_data.text_columns, label_column, label_names=train_data.label_names
        )
    return TaskData(
        classification_features(train_data, tokenizer, max_length),
        classification_features(eval_data, tokenizer, max_length),
        None,
        max_length,
        list(train_data.label_names),
        train_data.text_columns,
        label_column,
        train_data.other_text_columns,
    )


@contextlib.contextmanager
def _named_after_training(eval: str, train: str, given: Sequence[str] | None, used: Sequence[str]) -> Iterator[None]:
    """A text column the evaluation data lacks is named as the one found in the training data, with the flag that
    reads others: a bare "text_columns [...]" error would name an option the user never passed."""
    from qla_sdk.data.classification import MissingColumnsError

    try:
        yield
    except MissingColumnsError as exc:
        if given or not set(exc.missing) <= set(used):
            raise
        raise ConfigError(
            f"{eval} has no column {', '.join(map(repr, exc.missing))}, the text column(s) found in the training "
            f"data {train} ({', '.join(map(repr, used))}); its columns are {exc.columns}: the model is evaluated on "
            "the text it trains on, so give the evaluation file's text column(s) the same name(s); or, where the "
            "training data holds other columns of the evaluation file's names, read those in both with --text-columns "
            "<name> [<name>] (data.text_columns in a recipe)"
        ) from None


@contextlib.contextmanager
def naming_the_task(task: str, data: str | Path) -> Iterator[None]:
    """A refused dataset that is the other task's data is named so: a TSV given to a question-answering model reads
    as "not valid JSON", and a SQuAD file given to a classifier as "no text columns", neither saying why."""
    try:
        yield
    except ConfigError as exc:
        other = _other_task_data(task, Path(data))
        if other is None:
            raise
        raise ConfigError(
            f"{data} looks like {other} data, and the model is a {task} model: give it "
            f"{'SQuAD-form data (question, context, answers)' if task == 'question-answering' else 'texts and labels'}"
            f", or use a {other} model ({exc})"
        ) from None


def _other_task_data(task: str, path: Path) -> str | None:
    if not path.is_file():
        return None
    if task == "question-answering":  # by content: a SQuAD file saved as .txt, or one with a JSON error, is not
        try:
            with open(path, encoding="utf-8-sig") as f:
                head = f.read(4096)
        except (OSError, UnicodeDecodeError):
            return None
        first = head.lstrip()[:1]
        tabular = path.suffix.lower() in (".tsv", ".csv", ".txt") and ("\t" in head or "," in head)
        if qa_table_columns(path):
            return None  # QA fields in a table: load_squad's own error says which forms it reads
        return "text-classification" if first not in ("{", "[", "") and tabular else None
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    articles = data.get("data") if isinstance(data, dict) else None
    squad = isinstance(articles, list) and bool(articles) and isinstance(articles[0], dict)
    return "question-answering" if squad and "paragraphs" in articles[0] else None
