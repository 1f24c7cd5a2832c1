"""What `qla predict` / `qla export` / `export_model` do with their inputs: files of any size line by line, and
options or arguments they cannot use refused by name instead of ignored."""

import json
import re

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.cli import main
from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, save_pretrained
from qla_sdk.quantize import QuantConfig


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def classifier(tokenizer, tmp_path_factory):
    return tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"), LengthConfig.parse("0.7,0.4"))


@pytest.fixture(scope="module")
def cls_artifact(classifier, tokenizer, tmp_path_factory):
    return export_fp32(classifier, tokenizer, tmp_path_factory.mktemp("cls") / "art")


@pytest.fixture(scope="module")
def qa_artifact(tokenizer, tmp_path_factory):
    model = tiny_model("question-answering", tokenizer, tmp_path_factory.mktemp("qa"))
    return export_fp32(model, tokenizer, tmp_path_factory.mktemp("qa") / "art", doc_stride=16)


@pytest.fixture(scope="module")
def checkpoints(classifier, tokenizer, tmp_path_factory):
    """Checkpoint folders (weights and tokenizer) of a classifier and a QA model, for `qla export`."""
    root = tmp_path_factory.mktemp("ckpt")
    save_pretrained(classifier, root / "text-classification", tokenizer=tokenizer)
    tiny_model("question-answering", tokenizer, root / "question-answering")
    tokenizer.save_pretrained(str(root / "question-answering"))
    return root


def _predict(argv, capsys):
    assert main(["predict", *map(str, argv)]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------------ qla predict


def test_a_file_longer_than_one_call_takes_is_classified(cls_artifact, tmp_path, capsys):
    """10,001 lines: one more than a predict call takes."""
    texts = [f"film {i} was {'good' if i % 2 else 'dull'}" for i in range(10_001)]
    (tmp_path / "big.txt").write_text("\n".join(texts) + "\n")
    records = _predict([cls_artifact, "--file", tmp_path / "big.txt"], capsys)
    assert [r["line"] for r in records] == list(range(1, 10_002))
    assert [{"label": r["label"], "score": r["score"]} for r in records[-3:]] == qla_sdk.load(cls_artifact).predict(
        texts[-3:]
    )


def test_chunks_give_the_results_of_one_call(cls_artifact, tmp_path, capsys, monkeypatch):
    import qla_sdk.commands.predict as predict_command

    (tmp_path / "in.txt").write_text("".join(f"a {'very ' * i}good film\n" for i in range(7)))
    argv = [cls_artifact, "--text", "bad", "--file", tmp_path / "in.txt"]
    whole = _predict(argv, capsys)
    monkeypatch.setattr(predict_command, "CHUNK", 2)
    assert _predict(argv, capsys) == whole
    assert len(whole) == 8 and "line" not in whole[0] and whole[1]["line"] == 1


def test_each_record_names_its_line_and_empty_lines_keep_their_place(cls_artifact, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a good film\n\n   \r\na dull film\r\nlast\fpage\n")
    records = _predict([cls_artifact, "--file", tmp_path / "in.txt"], capsys)
    want = qla_sdk.load(cls_artifact).predict(["a good film", "a dull film", "last\fpage"])
    skipped = {"label": None, "score": None, "skipped": "empty line"}
    assert records == [
        {"line": 1, **want[0]},
        {"line": 2, **skipped},
        {"line": 3, **skipped},
        {"line": 4, **want[1]},
        {"line": 5, **want[2]},  # a form feed does not end a line
    ]


def test_a_bad_line_is_named_by_its_number(cls_artifact, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("fine\n" * 300 + "word " * 250_000 + "\n")
    assert main(["predict", str(cls_artifact), "--file", str(tmp_path / "in.txt")]) == 2
    assert f"--file {tmp_path / 'in.txt'} line 301 has 1,250,000 characters" in capsys.readouterr().err


def test_a_truncation_warning_names_the_line(cls_artifact, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("fine\n" * 300 + "word " * 100 + "\n")
    with pytest.warns(UserWarning, match=r"1 input\(s\) \(e\.g\. --file .*in\.txt line 301, 102 tokens\) exceed"):
        assert len(_predict([cls_artifact, "--file", tmp_path / "in.txt"], capsys)) == 301


QA_ONLY = "is a question-answering artifact: it takes --question and --context, not"
CLS_ONLY = "is a text-classification artifact: it takes --text (repeatable) or --file, not"


@pytest.mark.parametrize(
    "which, argv, message",
    [
        ("qa", ["--text", "hi", "--question", "Who?", "--context", "Ann."], f"{QA_ONLY} --text"),
        ("qa", ["--file", "{file}", "--question", "Who?", "--context", "Ann."], f"{QA_ONLY} --file"),
        ("cls", ["--text", "hi", "--question", "Who?"], f"{CLS_ONLY} --question"),
        ("cls", ["--file", "{file}", "--context", "Ann."], f"{CLS_ONLY} --context"),
    ],
)
def test_options_of_the_other_task_are_refused(cls_artifact, qa_artifact, tmp_path, capsys, which, argv, message):
    (tmp_path / "in.txt").write_text("a text\n")
    artifact = cls_artifact if which == "cls" else qa_artifact
    assert main(["predict", str(artifact), *(a.replace("{file}", str(tmp_path / "in.txt")) for a in argv)]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- qla export


@pytest.mark.parametrize(
    "task, argv, message",
    [
        ("text-classification", ["--data", "train.tsv"], "--data has no effect with --backend fp32 (it is int8"),
        ("text-classification", ["--split", "dev"], "--split has no effect with --backend fp32"),
        ("text-classification", ["--calibration-samples", "8"], "--calibration-samples has no effect"),
        ("question-answering", ["--seq-lens", "32"], "--seq-lens has no effect with --backend fp32"),
        ("text-classification", ["--backend", "bf16", "--no-int8-embeddings"], "--no-int8-embeddings has no effect"),
        (
            "text-classification",
            ["--backend", "openvino", "--data", "x", "--act-algo", "kl"],
            "--act-algo has no effect with --backend openvino (only inductor's INC calibration reads it): drop it",
        ),
        (
            "text-classification",
            ["--backend", "openvino", "--data", "x", "--keep", "best"],
            "--keep best chooses among int8 configs scored on a dev set, and qla export scores none: drop --keep, "
            "or run qla quantize --eval-data DEV",
        ),
        ("text-classification", ["--doc-stride", "16"], "--doc-stride 16: {ckpt} is a text-classification model"),
    ],
)
def test_export_refuses_options_it_would_ignore(checkpoints, tmp_path, capsys, task, argv, message):
    checkpoint = checkpoints / task
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "art"), *argv]) == 2
    err = capsys.readouterr().err
    assert message.replace("{ckpt}", str(checkpoint)) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "art").exists()


def test_export_takes_the_options_its_build_reads(checkpoints, tmp_path, capsys):
    argv = ["--out", str(tmp_path / "qa"), "--max-length", "64", "--doc-stride", "16"]
    assert main(["export", str(checkpoints / "question-answering"), *argv]) == 0, capsys.readouterr().err
    assert qla_sdk.load(tmp_path / "qa").doc_stride == 16


# ---------------------------------------------------------------------------------------------- export_model


@pytest.mark.parametrize("as_path", [str, lambda p: p])
def test_export_model_takes_a_tokenizer_path(classifier, tokenizer, minilm_dir, tmp_path, as_path):
    artifact = export_fp32(classifier, as_path(minilm_dir), tmp_path / "art")
    texts = ["a good film", "a dull one"]
    reference = export_fp32(classifier, tokenizer, tmp_path / "reference")
    assert qla_sdk.load(artifact).predict(texts) == qla_sdk.load(reference).predict(texts)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"tokenizer": None}, TypeError, "tokenizer is a NoneType: pass a Hugging Face tokenizer or the path"),
        (
            {"calibration": ["a good movie"]},
            ConfigError,
            "calibration row #0 is a str ('a good movie'): rows must be dicts of token ids with input_ids",
        ),
        ({"calibration": [{"input_ids": [101, 102]}, {"text": "hi"}]}, ConfigError, "calibration row #1 is a dict"),
        ({"calibration": [{"input_ids": "101 102"}]}, ConfigError, "calibration row #0 is a dict"),
        ({"calibration": "a good movie"}, ConfigError, "calibration is a str ('a good movie'): pass a list of"),
        ({}, ConfigError, "needs calibration rows: pass calibration= (a few hundred "),
        ({}, ConfigError, "with qla export / qla quantize, --data)"),
    ],
)
def test_export_model_names_bad_arguments(classifier, tokenizer, tmp_path, kwargs, error, message):
    from qla_sdk.deploy import export_model

    kwargs = {"tokenizer": tokenizer, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        export_model(classifier, tmp_path / "art", config=QuantConfig(backend="inductor"), max_length=32, **kwargs)
    assert not (tmp_path / "art").exists()
