"""`qla export CKPT` builds with what the checkpoint was trained with: its recorded max_length (the old default, 128,
failed on a model of 64 positions), and a --tokenizer whose ids the model reads: one past its embedding table is
refused (it failed only at predict), one that differs from the checkpoint's own is named (it scored 0 silently); and
int8 calibration and qla quantize's accuracy check read the data's columns that training read (they read detection's
pick)."""

import json
import warnings

import pytest
import torch
from conftest import tiny_hf_model

from qla_sdk.cli import main

WORDS = [f"word{i}" for i in range(115)]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab(path, tokens):
    path.write_text("\n".join(tokens) + "\n")
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny classifiers (120 ids, 64 positions) with their own tokenizer: one records max_length 32 in its
    qla.json (as qla finetune / lat-train write it), one records none."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.modeling import from_pretrained, save_pretrained

    folder = tmp_path_factory.mktemp("export-ckpt")
    tiny_hf_model("bert", "text-classification").save_pretrained(folder / "hf")
    tokenizer = load_tokenizer(_vocab(folder / "vocab.txt", SPECIALS + WORDS))
    model = from_pretrained(folder / "hf", task="text-classification")
    save_pretrained(model, folder / "trained", tokenizer=tokenizer, extra={"max_length": 32})
    save_pretrained(model, folder / "plain", tokenizer=tokenizer)
    return folder


def _export(checkpoint, out, *extra):
    return main(["export", str(checkpoint), "--out", str(out), "--backend", "fp32", *extra])


def test_max_length_defaults_to_the_recorded_one(checkpoints, tmp_path, capsys):
    assert _export(checkpoints / "trained", tmp_path / "a") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "qla.json").read_text())["max_length"] == 32


def test_without_a_record_max_length_fits_the_position_embeddings(checkpoints, tmp_path, capsys):
    assert _export(checkpoints / "plain", tmp_path / "a") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "qla.json").read_text())["max_length"] == 64  # not 128


def test_searched_token_counts_export_at_the_length_they_were_chosen_for(checkpoints, tmp_path, capsys):
    """A search at --seq-len 48 of a model trained at 32 (qla search --write-to keeps the trained max_length): at
    32 the counts would resolve to other ones than the search scored."""
    from qla_sdk.modeling import LengthConfig, from_pretrained, save_pretrained

    model = from_pretrained(checkpoints / "trained")
    model.length_config = LengthConfig.parse("40,20@48")
    save_pretrained(model, tmp_path / "searched", extra={"max_length": 32})
    with pytest.warns(UserWarning, match="searched at 48 tokens and the model trained at 32: exporting at 48"):
        assert _export(tmp_path / "searched", tmp_path / "a", "--tokenizer", str(checkpoints / "trained")) == 0
    assert json.loads((tmp_path / "a" / "qla.json").read_text())["max_length"] == 48
    tokenizer = ("--tokenizer", str(checkpoints / "trained"))
    assert _export(tmp_path / "searched", tmp_path / "b", "--length-config", "none", *tokenizer) == 0  # not exported
    assert json.loads((tmp_path / "b" / "qla.json").read_text())["max_length"] == 32


def test_the_columns_training_read_are_carried_into_the_manifest(checkpoints, tmp_path, capsys):
    """qla eval reads a dev set's columns as the artifact records them (it used to detect them again)."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.modeling import from_pretrained, save_pretrained

    columns = {"text_columns": ["title", "content"], "label_column": "verdict"}
    tokenizer = load_tokenizer(checkpoints / "trained")
    save_pretrained(from_pretrained(checkpoints / "trained"), tmp_path / "tuned", tokenizer=tokenizer, extra=columns)
    assert _export(tmp_path / "tuned", tmp_path / "a") == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "a" / "qla.json").read_text())
    assert {k: manifest[k] for k in columns} == columns
    assert _export(checkpoints / "plain", tmp_path / "b") == 0  # nothing recorded: nothing carried
    assert not {*columns} & set(json.loads((tmp_path / "b" / "qla.json").read_text()))


def test_a_given_max_length_wins(checkpoints, tmp_path, capsys):
    assert _export(checkpoints / "trained", tmp_path / "a", "--max-length", "48") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "qla.json").read_text())["max_length"] == 48


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(checkpoints, tmp_path, capsys):
    big = _vocab(tmp_path / "big.txt", SPECIALS + WORDS + [f"extra{i}" for i in range(200)])
    assert _export(checkpoints / "trained", tmp_path / "a", "--tokenizer", str(big)) == 2
    err = capsys.readouterr().err
    assert "has 320 token ids, and the model" in err and "embeds 120" in err
    assert not (tmp_path / "a").exists()


def test_a_tokenizer_unlike_the_checkpoints_own_is_named(checkpoints, tmp_path, capsys):
    shuffled = _vocab(tmp_path / "shuffled.txt", SPECIALS + WORDS[::-1])
    with pytest.warns(UserWarning, match="different vocabulary than the checkpoint's own") as caught:
        assert _export(checkpoints / "trained", tmp_path / "a", "--tokenizer", str(shuffled)) == 0
    message = str(caught[0].message)
    assert str(shuffled) in message and str(checkpoints / "trained") in message
    assert "'word114': id 5 vs 119" in message  # the given tokenizer's first id that means another token


def test_the_same_vocabulary_given_again_is_quiet(checkpoints, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert _export(checkpoints / "trained", tmp_path / "a", "--tokenizer", str(checkpoints / "vocab.txt")) == 0


# ------------------------------------------------------------- int8 calibration and the accuracy check: columns


class Built(Exception):
    """Raised by the stand-in for ``export_model``: what it was handed is all these tests need, not a build."""


@pytest.fixture
def handed(monkeypatch) -> dict:
    """What ``qla export`` / ``qla quantize`` hand ``export_model`` (calibration rows, the dev-set evaluator)."""
    import qla_sdk.deploy

    seen: dict = {}

    def export_model(model, out, tokenizer, **kwargs):
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr(qla_sdk.deploy, "export_model", export_model)
    return seen


@pytest.fixture(scope="module")
def reviews(checkpoints):
    """A data file whose detected text column ("sentence", by name) holds one word a row and whose "review" column
    holds 3 to 9 words; and a checkpoint recording that its training read "review" (as qla finetune writes it)."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.modeling import from_pretrained, save_pretrained

    rows = [("word1", " ".join(WORDS[10 : 13 + i]), i % 2) for i in range(7)]
    data = checkpoints / "reviews.tsv"
    data.write_text("sentence\treview\tlabel\n" + "".join(f"{s}\t{r}\t{y}\n" for s, r, y in rows))
    record = {"max_length": 32, "text_columns": ["review"], "label_column": "label"}
    model = from_pretrained(checkpoints / "trained")
    save_pretrained(model, checkpoints / "recorded", tokenizer=load_tokenizer(checkpoints / "trained"), extra=record)
    # the token counts of each column's rows: [CLS] words [SEP]
    lengths = {"sentence": [3] * len(rows), "review": [2 + len(r.split()) for _, r, _ in rows]}
    return {"data": data, "recorded": checkpoints / "recorded", **lengths}


def _int8(command, checkpoint, reviews, *extra):
    data, out = str(reviews["data"]), str(reviews["data"].parent / "unbuilt")
    argv = [command, str(checkpoint), "--out", out, "--backend", "openvino", "--data", data]
    with pytest.raises(Built):
        main([*argv, *(["--eval-data", data] if command == "quantize" else []), *extra])


def _lengths(handed) -> tuple[list[int], list[int] | None]:
    """Token counts of the calibration rows, and of the rows the accuracy check scores (None without one)."""
    calibration = [len(row["input_ids"]) for row in handed["calibration"]]
    if handed["evaluate"] is None:
        return calibration, None
    scored = []

    def run(ids, mask, types):
        scored.extend(mask.sum(-1).tolist())
        return torch.zeros(len(ids), 2)

    handed["evaluate"](run, 32)
    return calibration, scored


def test_calibration_and_the_accuracy_check_read_the_columns_training_read(reviews, handed, capsys):
    """Detection picks "sentence" by name; the checkpoint records "review": int8 was calibrated and checked on the
    one-word column, silently."""
    _int8("quantize", reviews["recorded"], reviews)
    assert _lengths(handed) == (reviews["review"], reviews["review"])
    assert "warning" not in capsys.readouterr().err


def test_given_columns_win_with_a_warning_where_unlike_the_record(checkpoints, reviews, handed, capsys):
    _int8("quantize", reviews["recorded"], reviews, "--text-columns", "sentence")
    assert _lengths(handed) == (reviews["sentence"], reviews["sentence"])
    err = capsys.readouterr().err
    assert f"qla quantize: warning: --text-columns 'sentence': {reviews['recorded']} was trained on 'review'" in err
    assert "int8 calibration and the accuracy check fit the model only if 'sentence'" in err
    _int8("export", checkpoints / "trained", reviews, "--text-columns", "review")  # nothing recorded: no warning
    assert _lengths(handed) == (reviews["review"], None)
    assert "warning" not in capsys.readouterr().err


def test_a_recorded_column_the_calibration_data_lacks_is_named(checkpoints, reviews, tmp_path, capsys):
    data = tmp_path / "other.tsv"
    data.write_text("sentence\tlabel\nword1\t0\n")
    argv = ["export", str(reviews["recorded"]), "--out", str(tmp_path / "a"), "--backend", "openvino"]
    assert main([*argv, "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data} has no column 'review', which {reviews['recorded']} was trained on" in err
    assert "--text-columns <name>" in err


def test_column_flags_that_nothing_reads_are_refused(checkpoints, tmp_path, capsys):
    """fp32 builds read no data; a question-answering model's data is SQuAD form."""
    assert _export(checkpoints / "trained", tmp_path / "a", "--text-columns", "review") == 2
    assert "--text-columns has no effect with --backend fp32" in capsys.readouterr().err
    tiny_hf_model("bert", "question-answering").save_pretrained(tmp_path / "qa")
    argv = ["quantize", str(tmp_path / "qa"), "--out", str(tmp_path / "b"), "--data", str(tmp_path / "squad.json")]
    assert main([*argv, "--label-column", "answers"]) == 2
    err = capsys.readouterr().err
    assert "--text-columns / --label-column pick classification columns" in err and "drop them" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
