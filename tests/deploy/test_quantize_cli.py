"""`qla quantize` end to end: calibrate, check int8 against fp32 on a dev set, write, load, predict."""

import json

import pytest
from deploy_helpers import minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.cli import main

pytest.importorskip("nncf")


@pytest.mark.parametrize("reference", [False, True])
def test_quantize_openvino_with_accuracy_check(minilm_dir, tmp_path, capsys, reference):
    folder = tmp_path / "checkpoint"
    model = tiny_model("text-classification", minilm_tokenizer(), folder)
    data = tmp_path / "train.tsv"
    data.write_text(
        "sentence\tlabel\n"
        + "".join(f"film number {i} was {w}\t{i % 2}\n" for i, w in enumerate(["good", "bad", "long", "fine"] * 3))
    )
    out = tmp_path / "int8"
    argv = [
        "quantize",
        str(folder),
        "--out",
        str(out),
        "--backend",
        "openvino",
        "--tokenizer",
        str(minilm_dir),
        "--length-config",
        "12,6",
        "--max-length",
        "32",
        "--data",
        str(data),
        "--eval-data",
        str(data),
        "--tolerance",
        "0.5",
        "--calibration-samples",
        "8",
    ]
    if reference:  # the tolerance counts from a reference model's metric (here the same checkpoint at full length)
        argv += ["--reference-model", str(folder)]
    assert main(argv) == 0, capsys.readouterr().err
    manifest = json.loads((out / "qla.json").read_text())
    assert manifest["precision"] == "int8" and manifest["model"]["seq_lens"] == [32]
    build = manifest["build"]
    assert build["trials"] and "fp32_metric" in build and "asymmetric" in build["activations"]
    assert build["metric"] == "accuracy"  # the scale of fp32_metric / int8_metric (SQuAD: "f1 / 100")
    assert build["calibration_rows"] == 8  # of the 12 rows of --data
    assert build["tolerance_from"] == ("reference model" if reference else "fp32 model")
    assert ("reference_metric" in build) == reference
    predictor = qla_sdk.load(out)
    assert predictor.predict("a good film")["label"] in model.config.id2label.values()
    assert main(["quantize", str(folder), "--out", str(tmp_path / "x"), "--backend", "fp32"]) == 2


def test_a_reference_model_needs_eval_data(tmp_path, capsys):
    folder = tmp_path / "checkpoint"
    tiny_model("text-classification", minilm_tokenizer(), folder)
    argv = ["quantize", str(folder), "--out", str(tmp_path / "int8"), "--backend", "openvino"]
    assert main([*argv, "--data", str(folder), "--reference-model", str(folder)]) == 2
    assert "give --eval-data too" in capsys.readouterr().err
    assert not (tmp_path / "int8").exists()


def test_calibration_on_fewer_rows_than_asked_is_said_and_recorded(minilm_dir, tmp_path, capsys):
    """--calibration-samples beyond the data used every row silently, and no artifact said how many it saw."""
    folder = tmp_path / "checkpoint"
    tiny_model("text-classification", minilm_tokenizer(), folder)
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"film number {i} was good\t{i % 2}\n" for i in range(5)))
    argv = ["export", str(folder), "--out", str(tmp_path / "int8"), "--backend", "openvino", "--data", str(data)]
    argv += ["--tokenizer", str(minilm_dir), "--max-length", "32", "--calibration-samples", "300"]
    with pytest.warns(UserWarning, match="--calibration-samples 300, and train of --data has 5 rows: int8 is calib"):
        assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "int8" / "qla.json").read_text())["build"]["calibration_rows"] == 5
