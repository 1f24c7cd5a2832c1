"""Task data for int8 calibration and accuracy-aware tuning: feature rows of a dataset, and dev-set evaluators that
score a raw ``run(input_ids, attention_mask, token_type_ids)`` (a compiled graph, a quantizer's candidate or the
fp32 model) at a graph's padded length, or at an artifact's graph lengths as it serves them (each row padded to the
smallest graph that holds it). ``qla export``/``qla quantize`` and the recipe's quantize stage use them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from qla_sdk.data.columns import DEFAULT_LABEL_COLUMN
from qla_sdk.data.task_data import naming_the_task
from qla_sdk.errors import ConfigError


def task_rows(
    task: str,
    data: str,
    split: str,
    tokenizer,
    max_length: int,
    doc_stride: int,
    limit: int | None,
    label_names: list[str] | None = None,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str = DEFAULT_LABEL_COLUMN,
) -> tuple[list[dict], object]:
    """(feature rows, labels or (examples, features)) of a dataset, for calibration or evaluation. Scoring needs
    ``label_names``, the model's labels in id order, so that label ids mean what its outputs mean.

    Classification reads ``text_columns`` (default: detected by name) and ``label_column``: pass the ones the model
    was trained on (``modeling.checkpoint.training_columns``), since rows of another column calibrate and score it
    without any error, only wrongly."""
    if task == "question-answering":
        if text_columns is not None or label_column != DEFAULT_LABEL_COLUMN:
            # refused, not ignored: SQuAD data has no columns to pick
            raise ConfigError(
                f"text_columns={text_columns!r} / label_column={label_column!r} pick classification columns; "
                "question-answering data is SQuAD form: drop them"
            )
        from qla_sdk.data import load_squad, qa_features

        with naming_the_task(task, data):
            examples = load_squad(data, split)[:limit]
        features = qa_features(examples, tokenizer, max_length, doc_stride)
        return [features.row(i) for i in range(len(features))][:limit], (examples, features)
    from qla_sdk.data import classification_features, load_classification

    with naming_the_task(task, data):
        loaded = load_classification(data, split, text_columns, label_column, label_names=label_names)
    loaded.texts, loaded.labels = loaded.texts[:limit], loaded.labels[:limit]
    features = classification_features(loaded, tokenizer, max_length)
    return [features.row(i) for i in range(len(features))], loaded.labels


def evaluator(
    model,
    data: str,
    tokenizer,
    max_length: int,
    doc_stride: int,
    limit: int | None = None,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str = DEFAULT_LABEL_COLUMN,
) -> Callable[[Callable, int], float]:
    """``evaluate(run, seq_len)`` on ``data``'s validation split: accuracy, or SQuAD F1 / 100. A classifier's dev
    set is read in ``text_columns`` (default: detected by name) and ``label_column``, as ``task_rows``."""
    pad = tokenizer.pad_token_id or 0
    columns = {"text_columns": text_columns, "label_column": label_column}
    if model.task == "question-answering":
        _, (examples, features) = task_rows(
            model.task, data, "validation", tokenizer, max_length, doc_stride, limit, **columns
        )
        return qa_evaluator(examples, features, pad)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    rows, labels = task_rows(model.task, data, "validation", tokenizer, max_length, doc_stride, limit, names, **columns)
    for row in rows:
        row.pop("labels", None)
    return classification_evaluator(rows, labels, pad)


def classification_evaluator(
    task_rows: list[dict], labels: list[int], pad_token_id: int, batch_size: int = 32
) -> Callable:
    """``evaluate(run, seq_len) -> accuracy`` over feature rows (padded to the graph's ``seq_len``, or with several
    lengths each to the smallest that holds it)."""

    def evaluate(run, seq_len: int | Sequence[int]) -> float:
        predictions = np.zeros(len(task_rows), dtype=np.int64)
        for index, (ids, mask, types) in served_batches(task_rows, seq_len, pad_token_id, batch_size):
            logits = run(ids, mask, types)
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            predictions[index] = np.asarray(logits.float() if hasattr(logits, "float") else logits).argmax(-1)
        return float(np.mean(predictions == np.asarray(labels)))

    return evaluate


def qa_evaluator(examples, features, pad_token_id: int, batch_size: int = 32) -> Callable:
    """``evaluate(run, seq_len) -> SQuAD F1 / 100`` over doc-stride windows (padded as ``classification_evaluator``
    pads rows)."""
    from qla_sdk.data import postprocess_qa, squad_scores

    rows = [features.row(i) for i in range(len(features))]

    def evaluate(run, seq_len: int | Sequence[int]) -> float:
        starts, ends = [None] * len(rows), [None] * len(rows)
        for index, (ids, mask, types) in served_batches(rows, seq_len, pad_token_id, batch_size):
            start, end = run(ids, mask, types)
            start, end = np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)
            for i, s, e in zip(index, start, end, strict=True):
                starts[i], ends[i] = s, e
        predictions = postprocess_qa(examples, features, starts, ends)
        return squad_scores(predictions, examples)["f1"] / 100.0

    return evaluate


def served_batches(rows: Sequence[dict], seq_len: int | Sequence[int], pad_token_id: int, batch_size: int):
    """``(row indices, padded batch)`` pairs covering ``rows``: every row padded (or cut) to ``seq_len``; with several
    lengths (an artifact's graphs) each row padded to the smallest that holds it, as ``Predictor`` serves it, so
    that a metric taken this way is the served one."""
    from qla_sdk.backends import pad_rows

    lengths = sorted({int(seq_len)} if isinstance(seq_len, (int, np.integer)) else {int(n) for n in seq_len})
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        groups.setdefault(next((g for g in lengths if g >= n), lengths[-1]), []).append(i)
    for length, index in sorted(groups.items()):
        batches = pad_rows([rows[i] for i in index], length, pad_token_id, batch_size)
        for start, batch in zip(range(0, len(index), batch_size), batches, strict=True):
            yield index[start : start + batch_size], batch
