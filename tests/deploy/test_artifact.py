"""The artifact folder: complete or absent, every file checked, nothing outside it read."""

import json

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

from qla_sdk.deploy import FORMAT_VERSION, read_manifest
from qla_sdk.errors import CheckpointError, IntegrityError
from qla_sdk.modeling import LengthConfig


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def classifier(tokenizer, tmp_path_factory):
    return tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"), LengthConfig.parse("0.7,0.4"))


@pytest.fixture()
def artifact(tmp_path, classifier, tokenizer):
    return export_fp32(classifier, tokenizer, tmp_path / "art")


def test_manifest_records_everything(artifact):
    data = json.loads((artifact / "qla.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["task"] == "text-classification" and data["labels"] == ["negative", "positive"]
    assert data["length_config"] == {"lengths": [0.7, 0.4], "keep_cls": True}
    assert data["backend"] == "fp32" and {"torch", "transformers"} <= set(data["versions"])
    on_disk = sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file())
    assert sorted(data["files"]) == [f for f in on_disk if f != "qla.json"]
    assert "model/model.safetensors" in data["files"] and any(f.startswith("tokenizer/") for f in data["files"])
    assert not [f for f in on_disk if f.endswith((".bin", ".pt", ".pth", ".pkl"))]  # no pickles
    read_manifest(artifact)


def test_the_columns_training_read_are_manifest_fields_and_checked(tmp_path, classifier, tokenizer):
    """Recorded at export (qla eval reads a dev set's same columns); an artifact without them (exported before they
    were recorded, or QA) reads as recording none; a hand edit that breaks them is refused like other fields."""
    columns = {"text_columns": ["title"], "label_column": "verdict"}
    recorded = export_fp32(classifier, tokenizer, tmp_path / "art", extra=columns)
    manifest = read_manifest(recorded)
    assert (manifest.text_columns, manifest.label_column) == (("title",), "verdict")
    _edit(recorded, lambda d: [d.pop(k) for k in columns])
    manifest = read_manifest(recorded)  # qla.json is not in its own sha256 list: the edit passes the file checks
    assert (manifest.text_columns, manifest.label_column) == (None, None)
    for bad in ({"text_columns": "title"}, {"text_columns": ["a", "b", "c"]}, {"label_column": 1}):
        _edit(recorded, lambda d, bad=bad: d.update({**columns, **bad}))
        with pytest.raises(CheckpointError, match="text_columns .* and label_column .* are not 1 or 2 column names"):
            read_manifest(recorded)


def test_modified_file_is_refused_by_name(artifact):
    weights = artifact / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="model/model.safetensors was modified"):
        read_manifest(artifact)


def test_missing_file(artifact):
    (artifact / "model" / "config.json").unlink()
    with pytest.raises(IntegrityError, match="model/config.json is listed"):
        read_manifest(artifact)


def _edit(artifact, change):
    data = json.loads((artifact / "qla.json").read_text())
    change(data)
    (artifact / "qla.json").write_text(json.dumps(data))


def test_newer_format_is_refused(artifact):
    _edit(artifact, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer than this qla-sdk reads"):
        read_manifest(artifact)


@pytest.mark.parametrize("path", ["../outside.json", "/etc/passwd", "model/../../x", "a\\..\\b"])
def test_paths_escaping_the_folder_are_refused(artifact, path):
    _edit(artifact, lambda d: d["files"].update({path: "0" * 64}))
    with pytest.raises(CheckpointError, match="refused"):
        read_manifest(artifact)


def test_symlink_out_of_the_folder_is_refused(artifact, tmp_path):
    (tmp_path / "secret").write_text("x")
    (artifact / "model" / "link").symlink_to(tmp_path / "secret")
    _edit(artifact, lambda d: d["files"].update({"model/link": "0" * 64}))
    with pytest.raises(CheckpointError, match="outside the artifact"):
        read_manifest(artifact)


def test_not_an_artifact(tmp_path):
    with pytest.raises(CheckpointError, match="not an exported artifact"):
        read_manifest(tmp_path)
    with pytest.raises(CheckpointError, match="missing does not exist: give the folder `qla export`"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "model.onnx").write_text("x")
    with pytest.raises(CheckpointError, match=r"model.onnx is a file: give the folder holding qla.json, which"):
        read_manifest(tmp_path / "model.onnx")
    (tmp_path / "qla.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(CheckpointError, match=f"qla.json is a file: give its folder, {tmp_path}, which"):
        read_manifest(tmp_path / "qla.json")


def test_interrupted_export_leaves_nothing(tmp_path, classifier, tokenizer):
    class Exploding:
        pad_token_id = 0

        def __len__(self):  # export checks the vocabulary against the model's embeddings
            return len(tokenizer)

        def save_pretrained(self, path):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_fp32(classifier, Exploding(), tmp_path / "art")
    assert not (tmp_path / "art").exists() and not list(tmp_path.iterdir())


def test_length_config_given_to_export_is_the_one_that_runs(tmp_path, classifier, tokenizer):
    import qla_sdk

    out = export_fp32(classifier, tokenizer, tmp_path / "art", length_config="0.5,0.2")
    assert str(qla_sdk.load(out).manifest.length_config) == "0.5,0.2"
    assert str(qla_sdk.load(out).runner.length_config) == "0.5,0.2"
    assert str(classifier.length_config) == "0.7,0.4"  # the exported model object is left as it was


@pytest.mark.parametrize(
    "tolerance_from, with_reference, message",
    [
        ("reference", False, "none was given: pass reference_model"),
        ("fp32", True, "it would be ignored: set tolerance_from='reference'"),
    ],
)
def test_a_reference_model_and_tolerance_from_must_agree(
    tmp_path, classifier, tokenizer, tolerance_from, with_reference, message
):
    from qla_sdk.deploy import export_model
    from qla_sdk.errors import ConfigError
    from qla_sdk.quantize import QuantConfig

    config = QuantConfig(backend="openvino", tolerance_from=tolerance_from)
    with pytest.raises(ConfigError, match=message):
        export_model(
            classifier,
            tmp_path / "art",
            tokenizer,
            config=config,
            calibration=[{"input_ids": [101, 2000, 102]}],
            evaluate=lambda run, seq_len: 1.0,
            reference_model=classifier if with_reference else None,
        )
    assert not (tmp_path / "art").exists()


def test_export_replaces_an_earlier_artifact(artifact, classifier, tokenizer):
    export_fp32(classifier, tokenizer, artifact)  # the same --out again: re-export
    read_manifest(artifact)


@pytest.mark.parametrize("existing", ["checkpoint", "user folder", "file"])
def test_export_refuses_an_out_that_is_not_an_artifact(tmp_path, tokenizer, existing):
    """``qla export CKPT --out CKPT`` (or a folder of the user's, or a file) is refused before the build, and
    nothing there changes."""
    from qla_sdk.cli import main

    checkpoint = tmp_path / "ckpt"
    tiny_model("text-classification", tokenizer, checkpoint)
    tokenizer.save_pretrained(str(checkpoint))
    out = {"checkpoint": checkpoint, "user folder": tmp_path / "mine", "file": tmp_path / "data.json"}[existing]
    if existing == "user folder":
        out.mkdir()
        (out / "notes.txt").write_text("precious")
    elif existing == "file":
        out.write_text("precious")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["export", str(checkpoint), "--out", str(out), "--max-length", "32"]) == 2
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing added or lost
