"""Property tests of tokenization (classification and doc-stride QA features, the MiniLM WordPiece tokenizer) and QA
post-processing (random logits, odd offsets): valid features / spans, or a ``ValueError``/``TypeError``.

Examples are derandomized (the same ones every run); the number that ran is printed and stored in pytest's cache
(``.pytest_cache/v/qla/hypothesis/<module>``).
"""

import collections
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qla_sdk.data import (
    ClassificationData,
    QAExample,
    QAFeatures,
    best_spans,
    classification_features,
    load_tokenizer,
    nbest_spans,
    qa_features,
)
from qla_sdk.data.qa_postprocess import NO_ANSWER
from qla_sdk.data.squad import _clip_questions, encode_windows

PROFILE = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RAN: collections.Counter = collections.Counter()

any_char = st.characters(codec=None, exclude_categories=())
odd_whitespace = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\xa0\u2000\u2028\u3000\u200b", max_size=10)
texts = st.one_of(
    st.text(any_char, max_size=30),
    st.text(max_size=150),
    odd_whitespace,
    st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=5), st.integers(50, 800)),
)
logit = st.floats(width=32) | st.floats(-30, 30, width=32)


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request):
    yield
    if getattr(request.config, "cache", None) is not None:
        request.config.cache.set(f"qla/hypothesis/{__name__}", dict(RAN))
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\n{__name__}: {sum(RAN.values())} generated examples {dict(RAN)}")


@functools.cache
def tokenizer():
    from qla_sdk.pretrained import minilm_path

    return load_tokenizer(minilm_path())


def _has_surrogate(*values: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for v in values for c in v)


# ---------------------------------------------------------------------------------------------- tokenization


@PROFILE
@given(
    rows=st.lists(st.tuples(texts) | st.tuples(texts, texts), min_size=1, max_size=4),
    max_length=st.integers(1, 48),
)
def test_classification_features(rows, max_length):
    RAN["classification features"] += 1
    tok = tokenizer()
    try:
        features = classification_features(ClassificationData(rows, [], ["a", "b"]), tok, max_length)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert not _has_surrogate(*(t for row in rows for t in row))  # those cannot be tokenized
    assert len(features) == len(rows)
    for ids in features.input_ids:
        assert ids and len(ids) <= max_length and all(0 <= i < tok.vocab_size for i in ids)
        if len(ids) >= 2:
            assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


WINDOWS = {  # (question, context) pairs and the windows to cut them into
    "pairs": st.lists(st.tuples(texts, texts), min_size=1, max_size=3),
    "max_length": st.integers(8, 64),
    "doc_stride": st.integers(0, 40),
}


@PROFILE
@given(**WINDOWS)
def test_qa_features(pairs, max_length, doc_stride):
    RAN["qa features"] += 1
    examples = [QAExample(str(i), "", q, c) for i, (q, c) in enumerate(pairs)]
    try:
        features = qa_features(examples, tokenizer(), max_length, doc_stride)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert set(features.example_index) == set(range(len(examples)))  # every example has a window
    for ids, offsets, e in zip(features.input_ids, features.offset_mapping, features.example_index, strict=True):
        assert len(ids) == len(offsets) <= max_length
        context = examples[e].context
        assert all(0 <= a <= b <= len(context) for a, b in (o for o in offsets if o is not None))


@PROFILE
@given(**WINDOWS)
def test_windows_from_the_backend_are_transformers_windows(pairs, max_length, doc_stride):
    questions, contexts = [q for q, _ in pairs], [c for _, c in pairs]
    try:
        want = encode_windows(tokenizer(), questions, contexts, max_length, doc_stride, backend=False, word_ids=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a question too long for the windows, or a stride the Rust tokenizer panics on
        RAN["windows refused by both paths"] += 1
        with pytest.raises(type(exc)):
            encode_windows(tokenizer(), questions, contexts, max_length, doc_stride)
        return
    RAN["windows, backend vs transformers"] += 1
    assert encode_windows(tokenizer(), questions, contexts, max_length, doc_stride, word_ids=True) == want


@PROFILE
@given(questions=st.lists(texts, min_size=1, max_size=3), max_tokens=st.integers(1, 40))
def test_questions_clipped_through_the_backend_as_through_transformers(questions, max_tokens):
    try:
        want = _clip_questions(questions, tokenizer(), max_tokens, backend=False)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # text the tokenizer refuses (lone surrogates)
        RAN["questions refused by both paths"] += 1
        with pytest.raises(type(exc)):
            _clip_questions(questions, tokenizer(), max_tokens)
        return
    RAN["questions clipped, backend vs transformers"] += 1
    assert _clip_questions(questions, tokenizer(), max_tokens) == want


# ---------------------------------------------------------------------------------------------- post-processing


def _valid(spans: dict, examples: list[QAExample]) -> None:
    assert set(spans) == {ex.id for ex in examples}
    for ex in examples:
        span = spans[ex.id]
        assert 0 <= span.start <= span.end <= len(ex.context) and ex.context[span.start : span.end] == span.text
        assert 0.0 <= span.score <= 1.0


@PROFILE
@given(
    pairs=st.lists(st.tuples(st.text(min_size=1, max_size=20), texts), min_size=1, max_size=3),
    choice=st.data(),
    n_best=st.integers(-1, 25),
    max_answer_length=st.integers(-1, 40),
)
def test_spans_from_random_logits(pairs, choice, n_best, max_answer_length):
    RAN["post-processing, random logits"] += 1
    examples = [QAExample(str(i), "", q, c) for i, (q, c) in enumerate(pairs)]
    try:
        features = qa_features(examples, tokenizer(), 32, 8)
    except (ValueError, TypeError):
        return

    def rows():  # one row per window, at least as long as it (padded rows are longer)
        lists = (st.lists(logit, min_size=len(ids), max_size=len(ids) + 3) for ids in features.input_ids)
        return [np.array(choice.draw(values), dtype=np.float32) for values in lists]

    starts, ends = rows(), rows()
    try:
        spans = best_spans(examples, features, starts, ends, n_best, max_answer_length)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert all(np.isfinite(s[: len(o)]).all() for s, o in zip(starts, features.offset_mapping, strict=True))
    _valid(spans, examples)


offset = st.none() | st.tuples(st.integers(-5, 60), st.integers(-5, 60))


@PROFILE
@given(
    contexts=st.lists(texts, min_size=1, max_size=3),
    windows=st.lists(
        st.tuples(st.integers(0, 3), st.lists(offset, min_size=1, max_size=12), st.integers(0, 2**32 - 1)),
        max_size=5,
    ),
    n_best=st.integers(1, 5),
)
def test_spans_from_odd_offsets(contexts, windows, n_best):
    RAN["post-processing, odd offsets"] += 1
    examples = [QAExample(str(i), "", "q", c) for i, c in enumerate(contexts)]
    features = QAFeatures(
        input_ids=[[1] * len(offsets) for _, offsets, _ in windows],
        token_type_ids=None,
        example_index=[e for e, _, _ in windows],
        offset_mapping=[offsets for _, offsets, _ in windows],
    )
    generators = [np.random.default_rng(seed) for _, _, seed in windows]
    starts = [g.normal(size=len(o)).astype(np.float32) for g, (_, o, _) in zip(generators, windows, strict=True)]
    ends = [g.normal(size=len(o)).astype(np.float32) for g, (_, o, _) in zip(generators, windows, strict=True)]
    try:
        ranked = nbest_spans(examples, features, starts, ends, n_best=n_best, max_answer_length=8)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        assert any(e >= len(examples) for e, _, _ in windows)  # the only bad input here: a window of no example
        return
    assert set(ranked) == {ex.id for ex in examples}
    for ex in examples:
        assert len(ranked[ex.id]) <= n_best
        scores = [s.score for s in ranked[ex.id]]
        assert scores == sorted(scores, reverse=True) and (not scores or abs(sum(scores) - 1.0) < 1e-6)
    _valid({ex.id: ranked[ex.id][0] if ranked[ex.id] else NO_ANSWER for ex in examples}, examples)
