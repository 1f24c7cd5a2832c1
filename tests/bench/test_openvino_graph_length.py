"""benchmarks/openvino_graph_length.py on a tiny QA checkpoint with a ratio length config: the padded graph, the
exact-length graph and the dynamic-length graph all give the eager model's output and are timed; a checkpoint
without a ratio config is refused by name."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))  # the deploy tests' tiny-model helpers
from deploy_helpers import minilm_tokenizer, tiny_model

from qla_sdk.modeling import LengthConfig
from qla_sdk.modeling.checkpoint import save_pretrained

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "openvino_graph_length.py"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graph_length")
    model = tiny_model("question-answering", minilm_tokenizer(), folder / "hf")
    searched = folder / "searched"
    model.length_config = LengthConfig.parse("0.7,0.4")
    save_pretrained(model, searched)
    return folder / "hf", searched


def run(checkpoint, out, *extra):
    command = [sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint), "--out", str(out)]
    options = ["--tokens", "11", "--bucket", "16", "--rounds", "2", "--calls", "2", "--threads", "1", *extra]
    return subprocess.run([*command, *options], capture_output=True, text=True, timeout=300)


def test_three_graphs_each_equal_to_eager_and_timed(tmp_path, checkpoints):
    out = tmp_path / "length.json"
    result = run(checkpoints[1], out)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    rows = ["graph of 16 tokens, input padded to it", "graph of exactly 11 tokens", "dynamic-length graph, run at 11"]
    assert list(figures["median_ms"]) == rows and all(ms > 0 for ms in figures["median_ms"].values())
    assert all(error < 1e-3 for error in figures["max_abs_error_vs_eager"].values())
    # the padded graph's widths are shares of 16 tokens, the exact graph's of the input's 11
    assert figures["widths"] == {"bucket": [12, 7], "exact": [8, 5]}
    assert "isa_flags" in figures["machine"]


def test_a_checkpoint_without_a_ratio_config_is_refused(tmp_path, checkpoints):
    result = run(checkpoints[0], tmp_path / "l.json")
    assert result.returncode != 0 and "has no ratio length config" in result.stderr
    assert not (tmp_path / "l.json").exists()
