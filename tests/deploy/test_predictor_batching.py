"""``max_batch_size`` batches rows of different lengths on backends that run any length (fp32, bf16): they used to
run one call per distinct length, so the option had no effect there."""

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.modeling import LengthConfig

TEXTS = [
    "bad",
    "a gorgeous, witty, seductive movie.",
    "the acting is fine",
    "it is a long and winding film that never quite finds its footing, but the score is lovely",
    "no",
    "an utterly charming comedy",
]


@pytest.mark.parametrize("length_config", [None, "0.7,0.4"])  # a ratio config drops tokens of each row's own length
@pytest.mark.parametrize("task", ["text-classification", "question-answering"])
def test_rows_of_different_lengths_share_a_batch_and_answer_as_alone(tmp_path, task, length_config, monkeypatch):
    tokenizer = minilm_tokenizer()
    model = tiny_model(task, tokenizer, tmp_path / "m", LengthConfig.parse(length_config))
    art = export_fp32(model, tokenizer, tmp_path / "art")
    batched, alone = qla_sdk.load(art, max_batch_size=4), qla_sdk.load(art, max_batch_size=1)
    calls = []
    run = batched.runner.run
    monkeypatch.setattr(batched.runner, "run", lambda *a: calls.append(a[0].shape) or run(*a))
    if task == "text-classification":
        got, want = batched.predict(TEXTS), alone.predict(TEXTS)
        for g, w in zip(got, want, strict=True):
            assert g["label"] == w["label"] and g["score"] == pytest.approx(w["score"], abs=1e-5)
    else:
        questions = ["what is it?"] * len(TEXTS)
        got = batched.predict(question=questions, context=TEXTS)
        want = alone.predict(question=questions, context=TEXTS)
        assert [g["answer"] for g in got] == [w["answer"] for w in want]
    assert len(calls) == 2 and [shape[0] for shape in calls] == [4, 2]
