"""`qla-bench` options and its clear errors on bad input (nothing runs before the input is checked)."""

import re
from pathlib import Path

import pytest

from qla_bench.cli import main
from qla_bench.suite import BenchSettings, plan_rows, quick_settings
from qla_sdk.errors import ConfigError


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backends", "tensorrt"], "unknown \\['tensorrt'\\]"),
        (["--bert-base", "/no/such/model"], "model folder /no/such/model does not exist"),
        (["--instances", "4096"], "--instances 4096 is more than"),
        (["--cores", "4096"], "--cores 4096"),
        (["--runs", "10", "--rows", "bert-base-fp32-eager"], "need >= 50 runs; use --quick"),
        (["--rows", "bert-large"], "unknown row"),
        (["--seq-lens", "1024"], "sequence lengths \\(1024,\\)"),
        (["--batch-sizes", "32"], "include 1"),
        (["--accuracy-from", "/no/such.json"], "no such file"),
        (["--length-config", "300,400,1,1,1,1"], "grows at layer 1"),
        (
            ["--length-config", "300,200,100"],
            r"row lat-minilm-fp32-eager \(quala-minilm\): .* 3 entries but the model has 6 layers",
        ),
        (["--length-config-seq-len", "0"], "--length-config-seq-len 0: give the length"),
        (["--throughput-max-s", "0"], "--throughput-max-s 0.0: give a time cap"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--out", str(out), *argv]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("qla-bench: error:") and re.search(message, err), err


def test_an_out_that_cannot_take_the_results_is_refused_first(capsys, tmp_path):
    (tmp_path / "a-file").write_text("kept")
    for out, message in [
        (tmp_path, "is a folder: give the results file"),
        (tmp_path / "a-file" / "b.json", "a-file is a file"),
    ]:
        assert main(["--quick", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == "kept"


def test_list_rows(capsys):
    assert main(["--list-rows", "--backends", "openvino"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith("bert-base-fp32-eager") and "269,253,252,202,104,34" in lines[4]


def test_quick_settings_and_overrides():
    settings = quick_settings(runs=3, seq_lens=(32,))
    assert settings.quick and settings.runs == 3 and settings.seq_lens == (32,) and settings.batch_sizes == (1, 4)
    assert BenchSettings().seq_lens == (384, 128) and BenchSettings().batch_sizes == (1, 32)


def test_a_trained_quala_checkpoint_brings_its_length_config(tmp_path):
    folder = tmp_path / "quala"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "num_hidden_layers": 6}')
    (folder / "qla.json").write_text('{"length_config": {"lengths": [200, 100, 50, 40, 30, 20], "keep_cls": true}}')
    rows = plan_rows(BenchSettings(models={"quala-minilm": str(folder)}, rows=("quala-minilm-int8-openvino",)))
    assert rows[0].length_config == "200,100,50,40,30,20"
    with pytest.raises(ConfigError, match="model override 'gpt'"):
        BenchSettings(models={"gpt": str(folder)})


def test_benchmarks_run_py_is_the_same_command():
    text = (Path(__file__).resolve().parents[2] / "benchmarks" / "run.py").read_text()
    assert "from qla_bench.cli import add_arguments, run" in text
