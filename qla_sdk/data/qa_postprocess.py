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
    ranked = _ranked(examples, features, start_logits, end_logits, n_best, max_answer_length)
    return {example.id: spans[0] if spans else NO_ANSWER for example, spans in zip(examples, ranked, strict=True)}


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
    ranked = _ranked(examples, features, start_logits, end_logits, n_best, max_answer_length)
    return {example.id: list(spans) for example, spans in zip(examples, ranked, strict=True)}


class _Spans:
    """An example's ranked spans as arrays; an ``AnswerSpan`` is built only for the ones asked for."""

    def __init__(self, context: str, starts: np.ndarray, ends: np.ndarray, logits: np.ndarray) -> None:
        self.context, self.starts, self.ends, self.logits = context, starts, ends, logits
        probs = np.exp(logits - logits.max(initial=-np.inf))  # softmax over the example's n-best logits
        self.scores = probs / probs.sum() if len(probs) else probs

    def __len__(self) -> int:
        return len(self.logits)

    def __getitem__(self, i: int) -> AnswerSpan:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        s, t = int(self.starts[i]), int(self.ends[i])
        return AnswerSpan(self.context[s:t], s, t, float(self.scores[i]), float(self.logits[i]))


def _ranked(examples, features, start_logits, end_logits, n_best: int, max_answer_length: int) -> list[_Spans]:
    if n_best < 1 or max_answer_length < 1:
        raise ConfigError(f"n_best {n_best} / max_answer_length {max_answer_length}: both must be >= 1")
    starts, ends = _rows(start_logits, len(features), "start_logits"), _rows(end_logits, len(features), "end_logits")
    windows: list[list[int]] = [[] for _ in examples]
    for f, e in enumerate(features.example_index):
        if not 0 <= e < len(examples):
            raise ConfigError(f"feature {f} belongs to example {e}, but only {len(examples)} examples were given")
        windows[e].append(f)

    out = []
    for e, example in enumerate(examples):
        candidates = []  # per window: (start char, end char, logit) of its valid pairs
        for f in windows[e]:
            offsets = features.offset_mapping[f]
            start_row, end_row = starts[f], ends[f]
            if len(start_row) < len(offsets) or len(end_row) < len(offsets):
                raise ConfigError(
                    f"logits of feature {f} have {min(len(start_row), len(end_row))} positions, fewer than its "
                    f"{len(offsets)} tokens: pass one row per feature in the order of `features`"
                )
            start_row, end_row = start_row[: len(offsets)], end_row[: len(offsets)]
            if not (np.isfinite(start_row).all() and np.isfinite(end_row).all()):
                raise ConfigError(
                    f"logits of feature {f} hold nan or inf: the model's output overflowed (e.g. fp16/bf16), so no "
                    "span can be ranked; check the model in fp32"
                )
            top_starts = np.argsort(start_row)[::-1][:n_best]
            top_ends = np.argsort(end_row)[::-1][:n_best]
            candidates.append(
                _window_candidates(
                    offsets, start_row, end_row, top_starts, top_ends, max_answer_length, len(example.context)
                )
            )
        out.append(_Spans(example.context, *_best_of(candidates, n_best)))
    return out


def _window_candidates(offsets, start_row, end_row, top_starts, top_ends, max_answer_length: int, context_chars: int):
    """The valid pairs of one window's top starts and ends as (start char, end char, logit) arrays, start-major:
    start and end in the context, ``start <= end``, at most ``max_answer_length`` tokens, offsets that are a span of
    the context. All n_best x n_best pairs are checked at once; ``tests/data/test_squad.py`` holds the result equal
    to run_qa's double loop over them."""
    # A token outside the context (offset None) gets the character offsets (-1, -1), which fail the span checks.
    span_start = np.array([(offsets[s] or (-1, -1))[0] for s in top_starts], dtype=np.int64)
    span_end = np.array([(offsets[t] or (-1, -1))[1] for t in top_ends], dtype=np.int64)
    tokens = top_ends[None, :].astype(np.int64) - top_starts[:, None]
    valid = (
        (tokens >= 0)
        & (tokens < max_answer_length)
        & (span_start[:, None] >= 0)
        & (span_start[:, None] <= span_end[None, :])
        & (span_end[None, :] <= context_chars)
    )
    # Sum in float64: two finite float32 logits near their maximum overflow when added.
    logits = start_row[top_starts].astype(np.float64)[:, None] + end_row[top_ends].astype(np.float64)[None, :]
    rows, cols = np.nonzero(valid)  # row-major: the order the loop tries the pairs in
    return span_start[rows], span_end[cols], logits[rows, cols]


def _best_of(candidates: list[tuple[np.ndarray, ...]], n_best: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n_best distinct spans by logit: overlapping windows see the same span twice, and it counts once, with its
    best logit; equal logits keep the order the spans were first found in (as a dict and a stable sort would)."""
    if not candidates:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    starts, ends, logits = (np.concatenate(parts) for parts in zip(*candidates, strict=True))
    spans, first, which = np.unique(
        starts * (int(ends.max(initial=0)) + 1) + ends, return_index=True, return_inverse=True
    )
    best = np.full(len(spans), -np.inf)
    np.maximum.at(best, which, logits)
    order = np.lexsort((first, -best))[:n_best]
    return starts[first[order]], ends[first[order]], best[order]


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
