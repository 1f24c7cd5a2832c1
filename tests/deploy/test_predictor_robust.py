"""One Predictor shared by 8 threads answers as it does alone; one request cannot exhaust memory."""

import functools
import threading

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.deploy.predictor import MAX_CHARS, MAX_ITEMS, MAX_TOTAL_CHARS
from qla_sdk.modeling import LengthConfig

THREADS, CALLS = 8, 4
CONTEXT = (
    "Dropped tokens keep their last state. The span head scores every position after the restore step, so "
    "answers can come from any token of the context, even one the last layers never saw. "
) * 2


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"), LengthConfig.parse("0.7,0.4"))
    return qla_sdk.load(export_fp32(model, tokenizer, tmp_path_factory.mktemp("cls") / "art"), max_batch_size=3)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    tokenizer = minilm_tokenizer()
    model = tiny_model("question-answering", tokenizer, tmp_path_factory.mktemp("qa"), LengthConfig.parse("0.7,0.4"))
    artifact = export_fp32(model, tokenizer, tmp_path_factory.mktemp("qa") / "art", doc_stride=16)
    return qla_sdk.load(artifact, max_batch_size=3)


def _in_threads(call, inputs):
    """``inputs[t][c]`` is call ``c`` of thread ``t``; all threads start together. Returns answers the same way."""
    results = [[None] * CALLS for _ in range(THREADS)]
    errors, start = [], threading.Barrier(THREADS)

    def work(t):
        start.wait()
        try:
            for c in range(CALLS):
                results[t][c] = call(inputs[t][c])
        except Exception as exc:  # reported with its thread below
            errors.append((t, repr(exc)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)  # a guard against a deadlock, not a speed check
    assert not [t for t in threads if t.is_alive()], "a predict() call never returned (deadlock?)"
    assert not errors, errors
    return results


def test_classification_from_eight_threads_matches_one(classifier):
    # Different lengths and batch sizes per call, so threads interleave batches of different shapes.
    inputs = [
        [[f"film {t} part {c} was " + "quite good and " * (t + c)] * (1 + (t + c) % 4) for c in range(CALLS)]
        for t in range(THREADS)
    ]
    inputs[0][0] = ("a premise", "a hypothesis")  # a single pair among the lists
    expected = [[classifier.predict(x) for x in row] for row in inputs]
    assert _in_threads(classifier.predict, inputs) == expected


def test_question_answering_from_eight_threads_matches_one(reader):
    inputs = [
        [
            (f"Question {t}.{c}: what do dropped tokens keep?", CONTEXT[: 80 + 40 * ((t * CALLS + c) % 6)])
            for c in range(CALLS)
        ]
        for t in range(THREADS)
    ]
    inputs[1][2] = (["Who scores?", "What is kept?"], [CONTEXT, CONTEXT[:90]])  # a batch of two

    def ask(pair):
        return reader.predict(question=pair[0], context=pair[1])

    expected = [[ask(x) for x in row] for row in inputs]
    assert _in_threads(ask, inputs) == expected


# ---------------------------------------------------------------------------------------------- resource bounds


class _NoTokenizing:
    """Stands in for a predictor's tokenizer: a bound must refuse the call before any text is tokenized or run."""

    def __getattr__(self, name):
        raise AssertionError(f"the tokenizer was used ({name}) before the input was refused")

    def __call__(self, *args, **kwargs):
        raise AssertionError("the tokenizer ran before the input was refused")


def _refused_before_tokenizing(predictor, call, message, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(predictor, "tokenizer", _NoTokenizing())
        patch.setattr(predictor.runner, "run", _NoTokenizing())
        with pytest.raises(ValueError, match=message):
            call()


def test_ten_megabyte_text_is_refused(classifier, reader, monkeypatch):
    huge = "word " * 2_000_000  # 10 MB
    refused = functools.partial(_refused_before_tokenizing, monkeypatch=monkeypatch)
    refused(classifier, lambda: classifier.predict(huge), f"10,000,000 characters; the limit is {MAX_CHARS:,}")
    refused(classifier, lambda: classifier.predict([("ok", huge)]), "text #0 has 10,000,000 characters")
    refused(reader, lambda: reader.predict(question="Who?", context=huge), "context #0 has 10,000,000")
    refused(reader, lambda: reader.predict(question=huge, context="Text."), "question #0 has 10,000,000")


def test_hundred_thousand_items_are_refused(classifier, reader, monkeypatch):
    many = ["a fine film"] * 100_000
    refused = functools.partial(_refused_before_tokenizing, monkeypatch=monkeypatch)
    refused(classifier, lambda: classifier.predict(many), f"100,000 texts; the limit per call is {MAX_ITEMS:,}")
    refused(reader, lambda: reader.predict(question=many, context=many), "100,000 question/context pairs")


def test_total_characters_of_a_call_are_bounded(classifier, monkeypatch):
    chunk = "x" * (MAX_CHARS - 1)  # each text is allowed, all of them together are not
    count = MAX_TOTAL_CHARS // len(chunk) + 1
    refused = functools.partial(_refused_before_tokenizing, monkeypatch=monkeypatch)
    refused(classifier, lambda: classifier.predict([chunk] * count), "characters in all; the limit per call")


def test_bounds_are_adjustable_and_checked(classifier, tmp_path_factory):
    artifact = classifier.manifest.folder
    small = qla_sdk.load(artifact, max_chars=10, max_items=2, max_total_chars=15)
    assert small.predict(["short", "texts"])
    with pytest.raises(ValueError, match="the limit is 10"):
        small.predict("a text of more than ten characters")
    with pytest.raises(ValueError, match="3 texts; the limit per call is 2"):
        small.predict(["a", "b", "c"])
    with pytest.raises(ValueError, match="16 characters in all"):
        small.predict(["eight ch", "eight ch"])
    with pytest.raises(ValueError, match="max_items 0"):
        qla_sdk.load(artifact, max_items=0)


def test_surrogates_are_a_clear_value_error(classifier, reader):
    with pytest.raises(ValueError, match="text #0 is not valid Unicode"):
        classifier.predict("bad \ud800 bytes")
    with pytest.raises(ValueError, match="context #0 is not valid Unicode"):
        reader.predict(question="Who?", context="\udcff")
