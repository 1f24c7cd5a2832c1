"""`qla eval`: a bad example in a dev set is named by its place in the data, not by its place in one predict call."""

import json

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk.commands.eval as eval_command
from qla_sdk.cli import main


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    tokenizer, folder = minilm_tokenizer(), tmp_path_factory.mktemp("eval")
    return {
        task: export_fp32(tiny_model(task, tokenizer, folder / task), tokenizer, folder / f"{task}-art")
        for task in ("text-classification", "question-answering")
    }


def _squad(path, questions):
    paragraph = {
        "context": "The span head scores every position.",
        "qas": [
            {"id": f"q{i}", "question": q, "answers": [{"text": "every", "answer_start": 21}]}
            for i, q in enumerate(questions)
        ],
    }
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [paragraph]}]}))
    return path


@pytest.mark.parametrize("chunk", [256, 2])
def test_an_empty_text_is_named_by_its_example(artifacts, tmp_path, capsys, monkeypatch, chunk):
    monkeypatch.setattr(eval_command, "CHUNK", chunk)  # the message used to count within the chunk
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "a fine film\t1\n" * 4 + " \t0\na dull film\t0\n")
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data)]) == 2
    assert f"{data} example 5 is empty or only whitespace" in capsys.readouterr().err
    squad = _squad(tmp_path / "dev.json", ["Who scores?", "What?", "  "])
    assert main(["eval", str(artifacts["question-answering"]), "--data", str(squad)]) == 2
    assert f"{squad} example 3 (id q2): its question is empty" in capsys.readouterr().err


def test_what_a_predict_call_refuses_is_placed_in_the_data(artifacts, tmp_path, capsys, monkeypatch):
    from qla_sdk.deploy.predictor import Predictor

    def refuse(self, items, **kw):
        raise ValueError("text #1 has no tokens the model reads")

    monkeypatch.setattr(eval_command, "CHUNK", 2)
    monkeypatch.setattr(Predictor, "predict", refuse)
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data)]) == 2
    assert f"{data}, in the call from example 1 on (#0 there): text #1 has no tokens" in capsys.readouterr().err
