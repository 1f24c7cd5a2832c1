"""Start/end logits of doc-stride windows -> the best answer span of each example (transformers' run_qa rule).

Candidates are the ``n_best`` top start and end positions of every window, kept when both lie in the context,
``start <= end`` and the span is at most ``max_answer_length`` tokens; an example's answer is its best candidate
over all its windows by ``start_logit + end_logit``.

With ``align_to_words`` a candidate's start and end move out to the edges of the tokenizer's words that hold them,
as transformers 4's question-answering pipeline did: a span the model ends inside "Eiffel" (on its piece "E") is
answered "... Eiffel", not "... E"; a word's end also takes in the marks the tokenizer's normalisation drops and
its offsets leave out (a decomposed accent, an emoji's variation selector or skin tone), so "José" is not answered
"Jose". Candidates that become the same span count once, with their best logit. The default is run_qa's rule
(spans as the tokens give them), which published SQuAD figures use.
"""

from __future__ import annotations

import unicodedata
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
    score: float  # softmax of the logit over the example's best spans (see nbest_spans; 0 when there is no span)
    logit: float  # start_logit + end_logit


NO_ANSWER = AnswerSpan(text="", start=0, end=0, score=0.0, logit=0.0)
N_BEST = 20  # run_qa's defaults
DEFAULT_MAX_ANSWER_LENGTH = 30


def postprocess_qa(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits,
    end_logits,
    n_best: int = N_BEST,
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
    *,
    align_to_words: bool = False,
) -> dict[str, str]:
    """``{example id: answer text}``; an example without any valid span gets ``""``."""
    spans = best_spans(
        examples, features, start_logits, end_logits, n_best, max_answer_length, align_to_words=align_to_words
    )
    return {example_id: span.text for example_id, span in spans.items()}


def best_spans(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits,
    end_logits,
    n_best: int = N_BEST,
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
    *,
    align_to_words: bool = False,
) -> dict[str, AnswerSpan]:
    """``{example id: AnswerSpan}`` with the text, character offsets and score of each example's best span."""
    out = {}
    ranking = _ranked(examples, features, start_logits, end_logits, n_best, max_answer_length, align_to_words)
    for example, ranked in ranking:
        if not ranked:
            out[example.id] = NO_ANSWER
            continue
        (s, t), logit = ranked[0]
        out[example.id] = AnswerSpan(example.context[s:t], s, t, float(_softmax(ranked)[0]), logit)
    return out


def nbest_spans(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits,
    end_logits,
    n_best: int = N_BEST,
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
    *,
    align_to_words: bool = False,
    score_over: int | None = None,
) -> dict[str, list[AnswerSpan]]:
    """``{example id: up to n_best AnswerSpans, best first}``.

    ``start_logits``/``end_logits``: one row per feature, as a (features, length) tensor/array padded to any
    length, or a list of 1-D rows of varying length (outputs of dynamically padded batches, row by row).
    ``score_over``: the scores are a softmax over the best ``score_over`` spans (default: all ``n_best``), so that a
    caller who widens ``n_best`` to list more answers keeps the scores a narrower list gives.
    """
    if score_over is not None:
        _check_counts(score_over=score_over)
    out = {}
    ranking = _ranked(examples, features, start_logits, end_logits, n_best, max_answer_length, align_to_words)
    for example, ranked in ranking:
        probs = _softmax(ranked, score_over) if ranked else []
        out[example.id] = [
            AnswerSpan(text=example.context[s:t], start=s, end=t, score=float(p), logit=logit)
            for ((s, t), logit), p in zip(ranked, probs, strict=True)
        ]
    return out


def _ranked(examples, features, start_logits, end_logits, n_best: int, max_answer_length: int, align: bool):
    """Per example, ``(example, [((start_char, end_char), logit), ...])``: its n-best spans over all its windows,
    best first (ties in the order the windows and top positions were visited)."""
    _check_counts(n_best=n_best, max_answer_length=max_answer_length)
    if align and features.word_ids is None:
        raise ConfigError(
            "align_to_words needs the tokenizer's words of each window: build the features with "
            "qa_features(..., word_ids=True)"
        )
    starts, ends = _rows(start_logits, len(features), "start_logits"), _rows(end_logits, len(features), "end_logits")
    windows: list[list[int]] = [[] for _ in examples]
    for f, e in enumerate(features.example_index):
        if not 0 <= e < len(examples):
            raise ConfigError(f"feature {f} belongs to example {e}, but only {len(examples)} examples were given")
        windows[e].append(f)

    for e, example in enumerate(examples):
        candidates: dict[tuple[int, int], float] = {}  # (start_char, end_char) -> best logit over windows
        # A word cut by a window's edge is whole in the next window: with several windows, words are read over all
        # of them (token word ids count the whole context's words, in every window).
        whole = _whole_words(features, windows[e]) if align and len(windows[e]) > 1 else None
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
            word_span = None
            if whole is not None:
                word_span = _through_marks(_word_span_in(whole, offsets, features.word_ids[f]), example.context)
            elif align:
                word_span = _through_marks(_word_span_in_window(offsets, features.word_ids[f]), example.context)
            _window_candidates(
                candidates, offsets, start_row, end_row, n_best, max_answer_length, len(example.context), word_span
            )
        # Overlapping windows see the same span twice: it counts once, with its best logit.
        yield example, sorted(candidates.items(), key=lambda item: item[1], reverse=True)[:n_best]


def _check_counts(**values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} {value!r}: must be an integer >= 1")


def _window_candidates(
    candidates: dict, offsets, start_row, end_row, n_best: int, max_len: int, n_chars: int, word_span=None
) -> None:
    """Adds one window's spans to ``candidates``: every pair of its ``n_best`` top start and end tokens that lie in the
    context, with ``start <= end``, at most ``max_len`` tokens, on a character span of the context. The pairs are
    tested as arrays (a Python loop over n_best^2 pairs per question is most of the span extraction's time) and
    visited start-major, best first, as the loop did. With ``word_span`` (a token's word's characters) a span's
    characters run from its start token's word's first character to its end token's word's last one."""
    top_starts = np.argsort(start_row)[::-1][:n_best]
    top_ends = np.argsort(end_row)[::-1][:n_best]
    span = offsets.__getitem__ if word_span is None else word_span
    start_spans = [span(s) for s in top_starts.tolist()]
    end_spans = [span(t) for t in top_ends.tolist()]
    start_in = np.array([o is not None for o in start_spans], dtype=bool)
    end_in = np.array([o is not None for o in end_spans], dtype=bool)
    # The offsets' own values make the spans (as the loop took them); the arrays are only for the comparisons.
    start_values = [o[0] if o is not None else 0 for o in start_spans]
    end_values = [o[1] if o is not None else 0 for o in end_spans]
    start_char, end_char = np.array(start_values), np.array(end_values)
    length = top_ends[None, :] - top_starts[:, None] + 1
    keep = start_in[:, None] & end_in[None, :] & (length >= 1) & (length <= max_len)
    # Offsets that are not a context span (a tokenizer's odd offsets) are skipped.
    keep &= (start_char[:, None] >= 0) & (start_char[:, None] <= end_char[None, :]) & (end_char[None, :] <= n_chars)
    rows, cols = np.nonzero(keep)
    if not len(rows):
        return
    # Sum in float64: two finite float32 logits near their maximum overflow when added.
    logits = start_row[top_starts[rows]].astype(np.float64) + end_row[top_ends[cols]].astype(np.float64)
    for i, j, logit in zip(rows.tolist(), cols.tolist(), logits.tolist(), strict=True):
        span = (start_values[i], end_values[j])
        if logit > candidates.get(span, -np.inf):
            candidates[span] = logit


def _word_span_in_window(offsets, words):
    """``token -> `` the characters of its word (its own offsets for a token without a word, None outside the
    context), from the window's own tokens: a word's pieces are neighbours."""

    def span(token: int) -> tuple[int, int] | None:
        if offsets[token] is None or words[token] is None:
            return offsets[token]
        word, first, last = words[token], token, token
        while first > 0 and offsets[first - 1] is not None and words[first - 1] == word:
            first -= 1
        while last + 1 < len(offsets) and offsets[last + 1] is not None and words[last + 1] == word:
            last += 1
        return offsets[first][0], offsets[last][1]

    return span


def _whole_words(features, windows: list[int]) -> dict[int, tuple[int, int]]:
    """``{word id: its characters}`` over all the windows of one example."""
    spans: dict[int, tuple[int, int]] = {}
    for f in windows:
        for offset, word in zip(features.offset_mapping[f], features.word_ids[f], strict=True):
            if offset is not None and word is not None:
                seen = spans.get(word)
                spans[word] = offset if seen is None else (min(seen[0], offset[0]), max(seen[1], offset[1]))
    return spans


def _word_span_in(whole: dict[int, tuple[int, int]], offsets, words):
    def span(token: int) -> tuple[int, int] | None:
        if offsets[token] is None or words[token] is None:
            return offsets[token]
        return whole[words[token]]

    return span


def _through_marks(span, context: str):
    """``span`` with each word's end moved past the marks that follow it in ``context``: the tokenizer's normalisation
    drops them (accents, when it strips them; emoji modifiers), so its offsets end before them."""

    def extended(token: int) -> tuple[int, int] | None:
        chars = span(token)
        if chars is None:
            return None
        first, end = chars
        while end < len(context) and _extends_the_character_before(context[end]):
            end += 1
        return first, end

    return extended


def _extends_the_character_before(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me")  # combining and enclosing marks (a decomposed accent, a keycap)
        or 0xFE00 <= code <= 0xFE0F  # variation selectors (emoji or text presentation)
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
    )


def _softmax(ranked: list, over: int | None = None) -> np.ndarray:
    """Softmax of the ranked spans' logits, normalised over the first ``over`` of them (all by default)."""
    logits = np.array([logit for _, logit in ranked], dtype=np.float64)
    probs = np.exp(logits - logits.max())  # the first is the largest: ranked best first
    return probs / probs[:over].sum()


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
