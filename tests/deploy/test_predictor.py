"""load(path) -> Predictor on tiny exported models: answers, batching, unpadded ratios, bad inputs, threads."""

import json
import threading
import warnings

import pytest
import torch
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.cli import main
from qla_sdk.modeling import LengthConfig


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def classifier(tokenizer, tmp_path_factory):
    return tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"), LengthConfig.parse("0.7,0.4"))


@pytest.fixture(scope="module")
def qa_model(tokenizer, tmp_path_factory):
    return tiny_model("question-answering", tokenizer, tmp_path_factory.mktemp("qa"), LengthConfig.parse("0.7,0.4"))


@pytest.fixture(scope="module")
def cls_artifact(classifier, tokenizer, tmp_path_factory):
    return export_fp32(classifier, tokenizer, tmp_path_factory.mktemp("cls") / "art")


@pytest.fixture(scope="module")
def qa_artifact(qa_model, tokenizer, tmp_path_factory):
    return export_fp32(qa_model, tokenizer, tmp_path_factory.mktemp("qa") / "art", doc_stride=16)


CONTEXT = (
    "The length-adaptive transformer drops tokens layer by layer. Dropped tokens keep their last state. "
    "The span head scores every position after the restore step, so answers can come from any token. "
) * 3


def test_classification_matches_the_model_unpadded(cls_artifact, classifier, tokenizer):
    predictor = qla_sdk.load(cls_artifact, max_batch_size=2)
    texts = ["a fine film", "a long and rather tedious film that never ends", "ok"]
    results = predictor.predict(texts)
    assert [set(r) for r in results] == [{"label", "score"}] * 3
    for text, result in zip(texts, results, strict=True):
        ids = torch.tensor([tokenizer(text)["input_ids"]])  # alone and unpadded: ratios of its own length
        with torch.no_grad():
            probs = classifier(ids, torch.ones_like(ids), length_config="0.7,0.4").softmax(-1)[0]
        assert result["label"] == ["negative", "positive"][int(probs.argmax())]
        assert result["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert predictor.predict("a fine film") == results[0]  # a single text gives a single result


def test_pairs_and_truncation_warning(cls_artifact):
    predictor = qla_sdk.load(cls_artifact)
    assert set(predictor.predict(("premise", "hypothesis"))) == {"label", "score"}
    with pytest.warns(UserWarning, match="1 input"):
        long, short = predictor.predict(["word " * 200, "a fine film"])
    # The long text runs as its first 62 words (64 tokens with [CLS] and [SEP]); the short one as it is.
    assert long == predictor.predict("word " * 62) and short == predictor.predict("a fine film")


def test_qa_answers_are_spans_of_the_context(qa_artifact):
    predictor = qla_sdk.load(qa_artifact)
    result = predictor.predict(question="What do dropped tokens keep?", context=CONTEXT)
    assert set(result) == {"answer", "score", "start", "end"}
    assert CONTEXT[result["start"] : result["end"]] == result["answer"] and 0.0 <= result["score"] <= 1.0
    # The context is longer than max_length 64: it ran as several doc-stride windows.
    assert len(predictor.tokenizer(CONTEXT)["input_ids"]) > 64
    batch = predictor.predict(question=["What do dropped tokens keep?", "Who scores?"], context=[CONTEXT, "Heads."])
    assert batch[0] == result and len(batch) == 2


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p: p.predict(None), TypeError, "None"),
        (lambda p: p.predict(""), ValueError, "empty"),
        (lambda p: p.predict("   \n"), ValueError, "whitespace"),
        (lambda p: p.predict(["ok", 3]), TypeError, "int, not a string"),
        (lambda p: p.predict(["ok", None]), TypeError, "text #1 is None"),
        (lambda p: p.predict([]), ValueError, "empty"),
        (lambda p: p.predict(b"bytes"), TypeError, "bytes"),
        (lambda p: p.predict(["a", ("b", "c")]), ValueError, "mix"),
        (lambda p: p.predict(question="q?", context="c"), TypeError, "not question="),
    ],
)
def test_bad_classification_inputs(cls_artifact, call, error, message):
    with pytest.raises(error, match=message):
        call(qla_sdk.load(cls_artifact))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"question": "Who?"}, ValueError, "context is missing"),
        ({"context": "Text."}, ValueError, "question is missing"),
        ({"question": "", "context": "Text."}, ValueError, "question #0 is empty"),
        ({"question": "Who?", "context": 5}, TypeError, "context must be"),
        ({"question": ["a?", "b?"], "context": ["x"]}, ValueError, "2 questions for 1 contexts"),
    ],
)
def test_bad_qa_inputs(qa_artifact, kwargs, error, message):
    with pytest.raises(error, match=message):
        qla_sdk.load(qa_artifact).predict(**kwargs)


def test_predictor_options_are_checked(cls_artifact):
    with pytest.raises(ValueError, match="max_batch_size 0"):
        qla_sdk.load(cls_artifact, max_batch_size=0)
    with pytest.raises(ValueError, match="max_length 4096"):
        qla_sdk.load(cls_artifact, max_length=4096)
    with pytest.raises(ValueError, match="threads 0"):
        qla_sdk.load(cls_artifact, threads=0)


def test_eight_threads_agree_with_one(qa_artifact):
    predictor = qla_sdk.load(qa_artifact)
    questions = [f"Question number {i} about tokens?" for i in range(8)]
    expected = [predictor.predict(question=q, context=CONTEXT) for q in questions]
    results, errors = [None] * 8, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = predictor.predict(question=questions[i], context=CONTEXT)
        except Exception as exc:  # surfaced below with the thread's index
            errors.append((i, exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == expected


def test_openvino_artifact_served_one_row_at_a_time(qa_model, tokenizer, tmp_path):
    """``load(max_batch_size=1)`` gives an ``openvino`` artifact's runner no dynamic-batch copies, and the same
    answers, windows and all."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    calibration = [{"input_ids": [101, *range(2000, 2000 + n), 102]} for n in (10, 20, 30)]
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=(32, 64))
    export_model(qa_model, tmp_path / "art", tokenizer, config=config, calibration=calibration, max_length=64)
    batched, one = qla_sdk.load(tmp_path / "art"), qla_sdk.load(tmp_path / "art", max_batch_size=1)
    assert (batched.runner.dynamic_batch, one.runner.dynamic_batch) == (True, False)
    assert len(one.runner._compiled) * 2 == len(batched.runner._compiled)
    questions = ["Which tokens leave?", "What does the span head score?"]
    mine, want = (p.predict(question=questions, context=[CONTEXT] * 2) for p in (one, batched))
    assert [{**a, "score": None} for a in mine] == [{**a, "score": None} for a in want]
    assert [a["score"] for a in mine] == pytest.approx([a["score"] for a in want], rel=1e-5)  # other kernels


def test_cli_predict_and_eval(cls_artifact, qa_artifact, tmp_path, capsys):
    assert main(["predict", str(cls_artifact), "--text", "good", "--text", "bad"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["predict", str(qa_artifact), "--question", "Who scores?", "--context", CONTEXT]) == 0
    assert json.loads(capsys.readouterr().out)["answer"]
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    assert main(["eval", str(cls_artifact), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 2 and 0.0 <= metrics["accuracy"] <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", str(qa_artifact), "--question", "Who?"]) == 2  # a clear error, not a traceback
    assert "pass --question and --context" in capsys.readouterr().err
