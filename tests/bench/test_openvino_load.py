"""benchmarks/openvino_load.py on a tiny int8 QA artifact: both load settings, their copies and memory; an artifact
of another backend is refused by name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))  # the deploy tests' tiny-artifact helpers
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_openvino_qa

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "openvino_load.py"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from qla_sdk.modeling import from_pretrained

    folder = tmp_path_factory.mktemp("load")
    checkpoint, int8 = tiny_openvino_qa(folder)
    return int8, export_fp32(from_pretrained(checkpoint, "question-answering"), minilm_tokenizer(), folder / "fp32")


def run(artifact, out):
    env = {**os.environ, "QLA_SDK_FUSED_ATTENTION": "0"}  # OpenVINO's own attention: no extension build
    command = [sys.executable, str(SCRIPT), "--artifact", str(artifact), "--rounds", "1", "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_both_settings_load_with_their_copies(tmp_path, artifacts):
    out = tmp_path / "load.json"
    result = run(artifacts[0], out)
    assert result.returncode == 0, result.stderr[-2000:]
    settings = json.loads(out.read_text())["settings"]
    copies = {name: row["copies"] for name, row in settings.items()}
    assert copies == {"max_batch_size=32 (default)": 8, "max_batch_size=1": 4}  # 2 lengths x masked, mask-free
    for row in settings.values():
        assert row["load_s_median"] > 0 and row["rss_mb_loaded_median"] > 0 and row["rss_mb_warm_median"] > 0
    assert out.with_suffix(".md").exists()


def test_an_artifact_of_another_backend_is_refused(tmp_path, artifacts):
    out = tmp_path / "load.json"
    result = run(artifacts[1], out)
    assert result.returncode != 0 and "give one exported with --backend openvino" in result.stderr
    assert not out.exists()
