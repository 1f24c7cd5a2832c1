"""`qla export CKPT` builds with what the checkpoint was trained with: its recorded max_length (the old default, 128,
failed on a model of 64 positions), and a --tokenizer whose ids the model reads: one past its embedding table is
refused (it failed only at predict), one that differs from the checkpoint's own is named (it scored 0 silently)."""

import json
import warnings

import pytest
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
