"""A task's training and evaluation features in one call: what fine-tuning, distillation, length-adaptive training
and the recipe all load (``qla finetune/distill/lat-train`` and ``qla run`` share it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        eval_examples = load_squad(eval, split="validation")
        train_features = qa_features(load_squad(train, split="train"), tokenizer, max_length, doc_stride, True)
        eval_features = qa_features(eval_examples, tokenizer, max_length, doc_stride)
        return TaskData(train_features, eval_features, eval_examples, max_length, None)
    columns = list(text_columns) if text_columns else None
    labels = list(label_names) if label_names else None
    train_data = load_classification(train, "train", columns, label_column, label_names=labels)
    eval_data = load_classification(eval, "validation", columns, label_column, label_names=train_data.label_names)
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
