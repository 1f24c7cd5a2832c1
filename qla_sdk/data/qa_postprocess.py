"""Start/end logits of doc-stride windows -> the best answer span of each example (transformers' run_qa rule).

Candidates are the ``n_best`` top start and end positions of every window, kept when both lie in the context,
``start <= end`` and the span is at most ``max_answer_length`` tokens; an example's answer is its best candidate
over all its windows by ``start_logit + end_logit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qla_sdk.data.squad import QAExample, QAFeatures
from qla_sdk.errors import ConfigError


@dataclass(frozen=True)
class AnswerSpan:
    text: str
    start: int  # character offset of the answer in the context
    end: int  # exclusive: context[start:end] == text
    score: float  # softmax of the logit over the example's n-best spans (0 when there is no span)
    logit: float  # start_logit + end_logit


NO_ANSWER = AnswerSpan(text="", start=0, end=0, score=0.0, logit=0.0)


def postprocess_qa(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits,
    end_logits,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """``{example id: answer text}``; an example without any valid span gets ``""``."""
    spans = best_spans(examples, features, start_logits, end_logits, n_best, max_answer_length)
    return {example_id: span.text for example_id, span in spans.items()}


def best_spans(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits,
    end_logits,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, AnswerSpan]:
    """``{example id: AnswerSpan}`` with the text, character offsets and score of each example's best span."""
    ranked = nbest_spans(examples, features, start_logits, end_logits, n_best, max_answer_length)
    return {example_id: spans[0] if spans else NO_ANSWER for example_id, spans in ranked.items()}


def nbest_spans(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits,
    end_logits,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, list[AnswerSpan]]:
    """``{example id: up to n_best AnswerSpans, best first}``.

    ``start_logits``/``end_logits``: one row per feature, as a (features, length) tensor/array padded to any
    length, or a list of 1-D rows of varying length (outputs of dynamically padded batches, row by row).
    """
    if n_best < 1 or max_answer_length < 1:
        raise ConfigError(f"n_best {n_best} / max_answer_length {max_answer_length}: both must be >= 1")
    starts, ends = _rows(start_logits, len(features), "start_logits"), _rows(end_logits, len(features), "end_logits")
    windows: list[list[int]] = [[] for _ in examples]
    for f, e in enumerate(features.example_index):
        if not 0 <= e < len(examples):
            raise ConfigError(f"feature {f} belongs to example {e}, but only {len(examples)} examples were given")
        windows[e].append(f)

    out = {}
    for e, example in enumerate(examples):
        found = [
            _window_spans(f, features.offset_mapping[f], starts[f], ends[f], n_best, max_answer_length, example)
            for f in windows[e]
        ]
        span_start, span_end, span_logit = (np.concatenate([w[i] for w in found] or [[]]) for i in range(3))
        if not len(span_logit):
            out[example.id] = []
            continue
        # Overlapping windows see the same span twice: it counts once, with its best logit. Spans are ranked by that
        # logit, equal logits in the order the spans were first met (window, then start, then end rank).
        key = span_start * (len(example.context) + 1) + span_end
        met = np.arange(len(key))
        by_span = np.lexsort((met, key))
        first = np.flatnonzero(np.r_[True, key[by_span][1:] != key[by_span][:-1]])
        best, first_met = np.maximum.reduceat(span_logit[by_span], first), by_span[first]
        order = np.lexsort((first_met, -best))[:n_best]
        ranked, logits = first_met[order], best[order]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        out[example.id] = [
            AnswerSpan(
                text=example.context[int(span_start[i]) : int(span_end[i])],
                start=int(span_start[i]),
                end=int(span_end[i]),
                score=float(p),
                logit=float(logit),
            )
            for i, logit, p in zip(ranked, logits, probs, strict=True)
        ]
    return out


def _window_spans(f: int, offsets, start_row, end_row, n_best: int, max_answer_length: int, example: QAExample):
    """One window's candidate spans as arrays (start char, end char, start_logit + end_logit), start-major over its
    ``n_best`` top starts and ends, as nested loops over them would meet them."""
    if len(start_row) < len(offsets) or len(end_row) < len(offsets):
        raise ConfigError(
            f"logits of feature {f} have {min(len(start_row), len(end_row))} positions, fewer than its "
            f"{len(offsets)} tokens: pass one row per feature in the order of `features`"
        )
    start_row, end_row = np.asarray(start_row[: len(offsets)]), np.asarray(end_row[: len(offsets)])
    if not (np.isfinite(start_row).all() and np.isfinite(end_row).all()):
        raise ConfigError(
            f"logits of feature {f} hold nan or inf: the model's output overflowed (e.g. fp16/bf16), so no "
            "span can be ranked; check the model in fp32"
        )
    top_starts = np.argsort(start_row)[::-1][:n_best]
    top_ends = np.argsort(end_row)[::-1][:n_best]
    start_ok = np.array([offsets[s] is not None for s in top_starts], dtype=bool)
    end_ok = np.array([offsets[t] is not None for t in top_ends], dtype=bool)
    start_char = np.array([offsets[s][0] if offsets[s] is not None else -1 for s in top_starts], dtype=np.int64)
    end_char = np.array([offsets[t][1] if offsets[t] is not None else -1 for t in top_ends], dtype=np.int64)
    tokens = top_ends[None, :] - top_starts[:, None] + 1
    valid = (
        start_ok[:, None]
        & end_ok[None, :]
        & (tokens >= 1)
        & (tokens <= max_answer_length)
        # offsets that are not a context span
        & (start_char[:, None] >= 0)
        & (start_char[:, None] <= end_char[None, :])
        & (end_char[None, :] <= len(example.context))
    )
    # Sum in float64: two finite float32 logits near their maximum overflow when added.
    logits = start_row[top_starts].astype(np.float64)[:, None] + end_row[top_ends].astype(np.float64)[None, :]
    rows, cols = np.nonzero(valid)  # row-major: start-major
    return start_char[rows], end_char[cols], logits[rows, cols]


def _rows(logits, n_features: int, name: str) -> list[np.ndarray]:
    if hasattr(logits, "detach"):  # torch tensor
        logits = logits.detach().float().cpu().numpy()
    if isinstance(logits, np.ndarray):
        if logits.ndim != 2:
            raise ConfigError(f"{name} has shape {logits.shape}: expected (features, length)")
        rows = list(logits)
    else:
        rows = [np.asarray(r.detach().float().cpu() if hasattr(r, "detach") else r, dtype=np.float32) for r in logits]
    if len(rows) != n_features:
        raise ConfigError(f"{name} has {len(rows)} rows for {n_features} features: pass one row per feature")
    return rows
