"""benchmarks/openvino_memory.py's per-process steps on a tiny int8 QA graph: the memory steps under a token limit,
and the time per row under each limit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))  # the deploy tests' tiny-artifact helpers
from deploy_helpers import minilm_tokenizer, tiny_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "openvino_memory.py"


@pytest.fixture(scope="module")
def graph_xml(tmp_path_factory):
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    folder = tmp_path_factory.mktemp("memory")
    tokenizer = minilm_tokenizer()
    model = tiny_model("question-answering", tokenizer, folder / "hf", length_config="0.5,0.25")
    calibration = [{"input_ids": [101, *range(2000, 2000 + n), 102]} for n in (10, 20, 30)]
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=(32,))
    export_model(model, folder / "artifact", tokenizer, config=config, calibration=calibration, max_length=32)
    return next((folder / "artifact").rglob("seq32.xml"))


def run(mode, xml, limits, out):
    command = [sys.executable, str(SCRIPT), mode, str(xml), "f32", limits, str(out)]
    env = {**os.environ, "QLA_SDK_FUSED_ATTENTION": "0"}  # OpenVINO's own attention: no extension build
    options = ["--seq-len", "32", "--batch", "4", "--threads", "1", "--rounds", "2"]
    result = subprocess.run([*command, *options], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("limit", [64, 128])
def test_memory_steps_under_a_token_limit(tmp_path, graph_xml, limit):
    figures = run("--one", graph_xml, str(limit), tmp_path / "one.json")
    assert figures["copies"] == 4  # masked and mask-free, each static batch 1 and dynamic
    steps = figures["steps"]
    assert list(steps) == ["start", "read", "compiled", "after batch 1", "after batch 4"]
    assert all(step["rss_mb"] > 0 and step["peak_mb"] >= step["rss_mb"] for step in steps.values())


def test_time_per_row_for_each_limit(tmp_path, graph_xml):
    figures = run("--time", graph_xml, "64,128", tmp_path / "time.json")
    assert len(figures) == 2 and all(ms > 0 for ms in figures)
