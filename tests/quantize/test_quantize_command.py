"""`qla quantize` refuses the options of the accuracy check without a dev set to check on, before any work."""

import pytest

from qla_sdk.cli import main


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tolerance", "0.5"], "--tolerance bounds the metric drop of the accuracy check: give --eval-data too"),
        (["--keep", "best", "--backend", "openvino"], "--keep chooses among tuning configs by their dev metric"),
        (["--keep", "first"], "--keep chooses among tuning configs by their dev metric: give --eval-data too"),
        (["--reference-model", "teacher"], "--reference-model sets where the accuracy check counts from"),
    ],
)
def test_accuracy_check_options_need_eval_data(tmp_path, capsys, extra, message):
    out = tmp_path / "int8"
    argv = ["quantize", str(tmp_path / "model"), "--out", str(out), "--data", "train.tsv", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--tolerance", "0.5"], ["--keep", "first"]])
def test_with_eval_data_they_are_accepted(tmp_path, capsys, extra):
    """The refusal is about the missing dev set: with one, the run goes on (here to the missing model folder)."""
    argv = ["quantize", str(tmp_path / "model"), "--out", str(tmp_path / "int8"), "--data", "train.tsv"]
    main([*argv, "--eval-data", "dev.tsv", *extra])
    assert "give --eval-data too" not in capsys.readouterr().err
