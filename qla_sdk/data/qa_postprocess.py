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
        candidates: dict[tuple[int, int], float] = {}  # (start_char, end_char) -> best logit over windows
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
            for s in top_starts:
                if offsets[s] is None:
                    continue
                for t in top_ends:
                    if offsets[t] is None or t < s or t - s + 1 > max_answer_length:
                        continue
                    span = (offsets[s][0], offsets[t][1])
                    if not 0 <= span[0] <= span[1] <= len(example.context):  # offsets that are not a context span
                        continue
                    # Sum in float64: two finite float32 logits near their maximum overflow when added.
                    logit = float(start_row[s]) + float(end_row[t])
                    if logit > candidates.get(span, -np.inf):
                        candidates[span] = logit
        # Overlapping windows see the same span twice: it counts once, with its best logit.
        ranked = sorted(candidates.items(), key=lambda item: item[1], reverse=True)[:n_best]
        if not ranked:
            out[example.id] = []
            continue
        logits = np.array([logit for _, logit in ranked], dtype=np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        out[example.id] = [
            AnswerSpan(text=example.context[s:t], start=s, end=t, score=float(p), logit=logit)
            for ((s, t), logit), p in zip(ranked, probs, strict=True)
        ]
    return out


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
