"""benchmarks/openvino_precision.py on a tiny int8 QA artifact: three rows per graph length, timed; a graph length
the artifact lacks is refused by name."""

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

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "openvino_precision.py"


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory):
    return tiny_openvino_qa(tmp_path_factory.mktemp("precision"))


def run(checkpoint, artifact, out, *extra):
    command = [sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint), "--artifact", str(artifact)]
    # OpenVINO's own attention nodes: on AVX512-VNNI or AMX, the int8 operation would first be built (minutes).
    env = {**os.environ, "QLA_SDK_FUSED_ATTENTION": "0"}
    return subprocess.run(
        [*command, "--rounds", "2", "--calls", "2", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_int8_and_fp32_rows_for_each_graph_length(tmp_path, int8_artifact):
    out = tmp_path / "precision.json"
    result = run(*int8_artifact, out, "--seq-lens", "32,64")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["length_config"] == "0.5,0.25" and figures["artifact_inference_precision"] == "f32"
    expected = {
        f"{row} @ {n}"
        for n in (32, 64)
        for row in ("int8 artifact as served", "fp32, same length config", "fp32, full length")
    }
    assert set(figures["median_ms"]) == expected and all(ms > 0 for ms in figures["median_ms"].values())
    assert "isa_flags" in figures["machine"]
    table = out.with_suffix(".md").read_text()
    assert table.count("| 64 |") == 3 and table.count("| int8 artifact as served | ") == 2
    assert all(" | 1.00 | " in line for line in table.splitlines() if "int8 artifact as served" in line)


def test_a_graph_length_the_artifact_lacks_is_refused(tmp_path, int8_artifact):
    result = run(*int8_artifact, tmp_path / "p.json", "--seq-lens", "48")
    assert result.returncode != 0 and "no graph of [48] tokens; it has [32, 64]" in result.stderr
    assert not (tmp_path / "p.json").exists()


def test_seq_lens_that_are_not_numbers_are_refused(tmp_path, int8_artifact):
    result = run(*int8_artifact, tmp_path / "p.json", "--seq-lens", "32,long")
    assert result.returncode != 0 and "give token counts separated by commas" in result.stderr
