"""`qla eval`: a dev set is read as training read it (the columns the artifact records, else --text-columns /
--label-column, the training commands' flags, with a warning where they differ from the record; a note on stderr when
detection picked among several text columns, where it used to score another column than training silently); a bad
example is named by its place in the data, not in one predict call; a label the model does not predict is a message
about the data, not the artifact."""

import json
import shutil

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk.commands.eval as eval_command
from qla_sdk.cli import main
from qla_sdk.deploy.predictor import Predictor

# The columns a classifier trained on "title" labelled by "verdict" records (qla finetune writes them to qla.json).
RECORDED = {"text_columns": ["title"], "label_column": "verdict"}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Artifacts by task, and "recorded": the classifier exported with the columns its training read."""
    tokenizer, folder = minilm_tokenizer(), tmp_path_factory.mktemp("eval")
    out = {
        task: export_fp32(tiny_model(task, tokenizer, folder / task), tokenizer, folder / f"{task}-art")
        for task in ("text-classification", "question-answering")
    }
    classifier = tiny_model("text-classification", tokenizer, folder / "recorded")
    out["recorded"] = export_fp32(classifier, tokenizer, folder / "recorded-art", extra=RECORDED)
    return out


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
    def refuse(self, items, **kw):
        raise ValueError("text #1 has no tokens the model reads")

    monkeypatch.setattr(eval_command, "CHUNK", 2)
    monkeypatch.setattr(Predictor, "predict", refuse)
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data)]) == 2
    assert f"{data}, in the call from example 1 on (#0 there): text #1 has no tokens" in capsys.readouterr().err


@pytest.fixture
def title_model(monkeypatch):
    """A model that is right on the title column only: it calls "good ..." positive."""

    def predict(self, items, **kw):
        return [{"label": "positive" if item.startswith("good") else "negative"} for item in items]

    monkeypatch.setattr(Predictor, "predict", predict)


def _reviews(path):
    rows = [("good film", "dull and long", "positive"), ("bad film", "good grief", "negative")]
    path.write_text("title\tcontent\tverdict\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def _accuracy(out: str) -> float:
    return json.loads(out)["accuracy"]


def test_text_and_label_columns_are_the_training_flags(artifacts, tmp_path, capsys, title_model):
    argv = ["eval", str(artifacts["text-classification"]), "--data", str(_reviews(tmp_path / "reviews.tsv"))]
    assert main([*argv, "--text-columns", "title", "--label-column", "verdict"]) == 0
    out, err = capsys.readouterr()
    assert _accuracy(out) == 1.0 and "reading text" not in err


def test_detection_among_several_text_columns_says_what_it_read(artifacts, tmp_path, capsys, title_model):
    argv = ["eval", str(artifacts["text-classification"]), "--data", str(_reviews(tmp_path / "reviews.tsv"))]
    assert main([*argv, "--label-column", "verdict"]) == 0
    out, err = capsys.readouterr()
    assert _accuracy(out) == 0.0  # "content" detected by its name
    assert "reading text from 'content' (detected by name); 'title' hold(s) text too" in err
    assert "--text-columns" in err


def test_the_recorded_columns_are_read_where_detection_would_pick_others(artifacts, tmp_path, capsys, title_model):
    """Detection picks "content" (by name) and the label column "label", which the file lacks: without flags the
    artifact's record decides, as training read the data."""
    assert main(["eval", str(artifacts["recorded"]), "--data", str(_reviews(tmp_path / "reviews.tsv"))]) == 0
    out, err = capsys.readouterr()
    assert _accuracy(out) == 1.0 and err == ""


@pytest.mark.parametrize(
    ("header", "missing", "flag"),
    [
        ("content\tverdict", "'title'", "--text-columns <name> [<name>]"),
        ("title\tstars", "'verdict'", "--label-column"),
    ],
)
def test_a_recorded_column_the_data_lacks_is_named_with_the_fix(artifacts, tmp_path, capsys, header, missing, flag):
    data = tmp_path / "dev.tsv"
    data.write_text(header + "\ngood film\tpositive\n")
    assert main(["eval", str(artifacts["recorded"]), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data} has no column {missing}" in err and f"{artifacts['recorded']} was trained on" in err
    assert f"its columns are {header.split(chr(9))}" in err and flag in err


def test_given_columns_unlike_the_recorded_ones_are_read_with_a_warning(artifacts, tmp_path, capsys, title_model):
    argv = ["eval", str(artifacts["recorded"]), "--data", str(_reviews(tmp_path / "reviews.tsv"))]
    assert main([*argv, "--text-columns", "content"]) == 0
    out, err = capsys.readouterr()
    assert _accuracy(out) == 0.0  # what the flag says is read
    assert f"warning: --text-columns 'content': {artifacts['recorded']} was trained on 'title'" in err
    assert "--label-column" not in err  # the recorded label column, "verdict", was read
    data = tmp_path / "dev.tsv"
    data.write_text("title\tlabel\ngood film\tpositive\n")
    assert main(["eval", str(artifacts["recorded"]), "--data", str(data), "--label-column", "label"]) == 0
    assert "warning: --label-column 'label'" in capsys.readouterr().err
    assert main([*argv, "--text-columns", "title", "--label-column", "verdict"]) == 0  # the recorded ones: quiet
    assert capsys.readouterr().err == ""


def test_an_artifact_without_the_record_is_read_as_before(artifacts, tmp_path, capsys, title_model):
    """Artifacts exported before the columns were recorded (or with them removed) detect them, with the note."""
    old = shutil.copytree(artifacts["recorded"], tmp_path / "old")
    manifest = json.loads((old / "qla.json").read_text())
    (old / "qla.json").write_text(json.dumps({k: v for k, v in manifest.items() if k not in RECORDED}))
    for artifact, accuracy in ((artifacts["recorded"], 1.0), (old, 0.0)):
        argv = ["eval", str(artifact), "--data", str(_reviews(tmp_path / "reviews.tsv")), "--label-column", "verdict"]
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert _accuracy(out) == accuracy  # old: "content" detected by its name
        assert ("reading text from 'content' (detected by name)" in err) is (artifact == old)


def test_one_text_column_is_read_without_a_note(artifacts, tmp_path, capsys, title_model):
    data = tmp_path / "dev.tsv"
    data.write_text("idx\tsentence\tlabel\n0\tgood film\tpositive\n1\tbad film\tnegative\n")
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data)]) == 0
    out, err = capsys.readouterr()
    assert _accuracy(out) == 1.0 and err == ""  # idx holds numbers, not text


def test_a_missing_column_names_the_eval_flag(artifacts, tmp_path, capsys):
    data = _reviews(tmp_path / "reviews.tsv")
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data), "--text-columns", "title"]) == 2
    assert "no label column 'label'" in (err := capsys.readouterr().err) and "eval: --label-column" in err


def test_column_flags_are_refused_for_a_qa_model(artifacts, tmp_path, capsys):
    argv = ["eval", str(artifacts["question-answering"]), "--data", str(tmp_path / "dev.json")]
    for flags in (["--text-columns", "title"], ["--label-column", "verdict"]):
        assert main([*argv, *flags]) == 2
        err = capsys.readouterr().err
        assert "--text-columns / --label-column pick classification columns" in err
        assert "question-answering model" in err


def test_labels_the_model_does_not_predict_are_named_with_the_fix_to_the_data(artifacts, tmp_path, capsys):
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\tpos\na dull film\tnegative\n")
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data} holds labels ['pos'] that the model does not predict" in err
    assert "its labels are ['negative', 'positive']" in err and "Fix the dev set" in err
    assert "qla.json" not in err and "label_names" not in err  # the artifact is not what to change


def test_qa_scores_run_qa_spans_unless_asked_for_the_served_answers(artifacts, tmp_path, capsys):
    import qla_sdk
    from qla_sdk.data import load_squad, squad_scores

    data = _squad(tmp_path / "dev.json", ["Who quuxified the snarfwidget?", "What scores?", "Where is Vlorpington?"])
    predictor = qla_sdk.load(artifacts["question-answering"])
    examples = load_squad(data)
    for flags, align, rule in (([], False, "token spans (run_qa)"), (["--align-to-words"], True, "aligned to words")):
        assert main(["eval", str(artifacts["question-answering"]), "--data", str(data), *flags]) == 0
        metrics = json.loads(capsys.readouterr().out)
        answers = predictor.predict(
            question=[e.question for e in examples], context=[e.context for e in examples], align_to_words=align
        )
        expected = squad_scores({e.id: a["answer"] for e, a in zip(examples, answers, strict=True)}, examples)
        assert metrics["answers"] == rule and metrics["f1"] == pytest.approx(expected["f1"])
    assert main(["eval", str(artifacts["text-classification"]), "--data", str(data), "--align-to-words"]) == 2
    assert "--align-to-words is a question-answering option" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("task", "data", "named"),
    [
        ("question-answering", "dev.tsv", "looks like text-classification data, and the model is a question-answering"),
        (
            "text-classification",
            "dev.json",
            "looks like question-answering data, and the model is a text-classification",
        ),
    ],
)
def test_the_other_tasks_data_is_named_before_the_model_loads(
    artifacts, tmp_path, capsys, monkeypatch, task, data, named
):
    """A TSV given to a QA artifact said only "not valid JSON"; and the data is read before the load, which may
    compile graphs for seconds."""
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    _squad(tmp_path / "dev.json", ["Who scores?"])

    def no_load(*args, **kwargs):
        raise AssertionError("the artifact was loaded before its data was read")

    monkeypatch.setattr("qla_sdk.deploy.load", no_load)
    assert main(["eval", str(artifacts[task]), "--data", str(tmp_path / data)]) == 2
    assert named in capsys.readouterr().err
