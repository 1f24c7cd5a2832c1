"""Property tests of ``Predictor.predict``: random unicode, empty and whitespace-only strings, very long texts,
mixed batches and wrong types. Every call returns a valid answer or raises ``ValueError``/``TypeError``.

Examples are derandomized (the same ones every run); the number that ran is printed and stored in pytest's cache
(``.pytest_cache/v/qla/hypothesis/<module>``).
"""

import collections
import math
import warnings

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qla_sdk
from qla_sdk.modeling import LengthConfig

PROFILE = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
RAN: collections.Counter = collections.Counter()
LABELS = ("negative", "positive")


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request):
    yield
    if getattr(request.config, "cache", None) is not None:
        request.config.cache.set(f"qla/hypothesis/{__name__}", dict(RAN))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{__name__}: {sum(RAN.values())} generated examples {dict(RAN)}")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"), LengthConfig.parse("0.7,0.4"))
    return qla_sdk.load(export_fp32(model, tokenizer, tmp_path_factory.mktemp("cls") / "art"), max_batch_size=4)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    tokenizer = minilm_tokenizer()
    model = tiny_model("question-answering", tokenizer, tmp_path_factory.mktemp("qa"), LengthConfig.parse("0.7,0.4"))
    artifact = export_fp32(model, tokenizer, tmp_path_factory.mktemp("qa") / "art", doc_stride=16)
    return qla_sdk.load(artifact, max_batch_size=4)


# ------------------------------------------------------------------------------------------------- strategies

# Every code point, surrogates and control characters included.
any_char = st.characters(codec=None, exclude_categories=())
odd_whitespace = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u3000", max_size=20)
long_text = st.builds(lambda piece, n: piece * n, st.text(any_char, min_size=1, max_size=6), st.integers(200, 3000))
texts = st.one_of(
    st.text(any_char, max_size=40),
    st.text(max_size=200),  # printable-ish unicode: words, accents, emoji
    odd_whitespace,
    st.builds(lambda a, w, b: a + w + b, st.text(max_size=10), odd_whitespace, st.text(max_size=10)),
    long_text,
)
not_text = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=10),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sets(st.integers(), max_size=2),
)
item = st.one_of(
    texts,
    texts,
    st.tuples(texts, texts),
    st.tuples(texts),
    st.tuples(texts, texts, texts),
    st.tuples(texts, not_text),
    not_text,
)
classification_input = st.one_of(item, st.lists(item, max_size=6), st.lists(texts, min_size=1, max_size=6))
qa_value = st.one_of(texts, texts, not_text, st.lists(st.one_of(texts, not_text), max_size=4))


def _quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation warnings are expected for long texts
        return call()


def _has_tokens(text: str) -> bool:
    tokenizer = minilm_tokenizer()
    return len(tokenizer(text)["input_ids"]) > tokenizer.num_special_tokens_to_add(pair=False)


def _valid_label(result: dict) -> bool:
    return set(result) == {"label", "score"} and result["label"] in LABELS and 0.0 <= result["score"] <= 1.0


def _valid_span(result: dict, context: str) -> bool:
    return (
        set(result) == {"answer", "score", "start", "end"}
        and 0 <= result["start"] <= result["end"] <= len(context)
        and context[result["start"] : result["end"]] == result["answer"]
        and math.isfinite(result["score"])
        and 0.0 <= result["score"] <= 1.0
    )


# ------------------------------------------------------------------------------------------------- properties


@PROFILE
@given(texts=classification_input)
def test_classification_answers_or_refuses_clearly(classifier, texts):
    RAN["classification"] += 1
    try:
        result = _quiet(lambda: classifier.predict(texts))
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, not a bare exception
        return
    if isinstance(texts, (str, tuple)):
        assert _valid_label(result)
    else:
        assert isinstance(result, list) and len(result) == len(texts) and all(_valid_label(r) for r in result)


@settings(PROFILE, max_examples=40)
@given(batch=st.lists(st.one_of(st.text(min_size=1, max_size=60), long_text), min_size=2, max_size=6))
def test_a_batch_answers_as_its_items_alone(classifier, batch):
    RAN["classification batch"] += 1
    # Refused alone and in a batch: texts of whitespace, with lone surrogates, or of no token (zero-width characters).
    batch = [t for t in batch if t.strip() and not any("\ud800" <= c <= "\udfff" for c in t) and _has_tokens(t)]
    if not batch:
        return
    together = _quiet(lambda: classifier.predict(batch))
    alone = [_quiet(lambda t=t: classifier.predict(t)) for t in batch]
    for got, want in zip(together, alone, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got["label"] == want["label"] or abs(want["score"] - 0.5) < 1e-4


@PROFILE
@given(question=qa_value, context=qa_value)
def test_qa_answers_or_refuses_clearly(reader, question, context):
    RAN["question answering"] += 1
    try:
        result = _quiet(lambda: reader.predict(question=question, context=context))
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    if isinstance(question, str) and isinstance(context, str):
        assert _valid_span(result, context)
    else:
        contexts = [context] if isinstance(context, str) else context
        assert len(result) == len(contexts)
        assert all(_valid_span(r, c) for r, c in zip(result, contexts, strict=True))


@settings(PROFILE, max_examples=30)
@given(texts=st.one_of(texts, st.lists(texts, max_size=3)), question=texts, context=texts)
def test_wrong_call_shape_is_a_type_error(classifier, reader, texts, question, context):
    RAN["wrong call shape"] += 1
    with pytest.raises(TypeError):
        classifier.predict(texts, question=question, context=context)
    with pytest.raises(TypeError):
        reader.predict(texts, question=question, context=context)
