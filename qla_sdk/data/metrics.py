"""Scores: the official SQuAD v1.1 EM/F1 (0-100) and classification accuracy/F1 (0-1, as scikit-learn)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from qla_sdk.errors import ConfigError

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation, in the official order: lower, drop punctuation, drop a/an/the, squash spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], examples: Sequence) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in 0-100: per question the max over its gold answers; a missing id scores 0."""
    if not examples:
        raise ConfigError("squad_scores got no examples: pass the examples the predictions were made for")
    em = f1 = 0.0
    for example in examples:
        golds = [answer["text"] for answer in example.answers]
        if not golds:
            raise ConfigError(
                f"question {example.id!r} has no gold answer: SQuAD v1.1 scoring needs at least one per question"
            )
        if example.id not in predictions:
            continue
        prediction = predictions[example.id]
        em += max(exact_match(prediction, gold) for gold in golds)
        f1 += max(token_f1(prediction, gold) for gold in golds)
    return {"exact_match": 100.0 * em / len(examples), "f1": 100.0 * f1 / len(examples)}


def _as_arrays(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    def array(values) -> np.ndarray:
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        return np.asarray(values).reshape(-1)

    preds, labels = array(preds), array(labels)
    if len(preds) != len(labels):
        raise ConfigError(f"{len(preds)} predictions for {len(labels)} labels: pass one prediction per label")
    if len(labels) == 0:
        raise ConfigError("no predictions to score: the evaluation set is empty")
    return preds, labels


def accuracy(preds, labels) -> float:
    """Fraction of predictions equal to the label (0-1)."""
    preds, labels = _as_arrays(preds, labels)
    return float((preds == labels).mean())


def f1(preds, labels, average: str = "binary", positive_label: int = 1) -> float:
    """F1 (0-1): ``"binary"`` on ``positive_label`` (GLUE MRPC/QQP), or ``"macro"``: the mean over classes seen."""
    preds, labels = _as_arrays(preds, labels)
    if average == "binary":
        return _class_f1(preds, labels, positive_label)
    if average == "macro":
        classes = np.union1d(preds, labels)
        return float(np.mean([_class_f1(preds, labels, c) for c in classes]))
    raise ConfigError(f"average {average!r} is not supported: use 'binary' or 'macro'")


def _class_f1(preds: np.ndarray, labels: np.ndarray, positive) -> float:
    true_positive = int(((preds == positive) & (labels == positive)).sum())
    predicted, actual = int((preds == positive).sum()), int((labels == positive).sum())
    if true_positive == 0:
        return 0.0
    return 2 * true_positive / (predicted + actual)
