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
from deploy_helpers import tiny_openvino_qa

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "openvino_memory.py"


@pytest.fixture(scope="module")
def graph_xml(tmp_path_factory):
    _, artifact = tiny_openvino_qa(tmp_path_factory.mktemp("memory"), seq_lens=(32,))
    return artifact / "model" / "seq32.xml"


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
