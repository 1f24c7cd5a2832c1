"""benchmarks/predict_phases.py on a tiny QA artifact: the phases of a predict call add up to the call."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))  # the deploy tests' tiny-artifact helpers
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_phases.py"


def squad_file(path: Path, questions: int) -> Path:
    context = "The castle was built in 1280 by the duke. It burned in 1410 and was rebuilt in stone by his heirs."
    qas = [
        {
            "id": f"q{i}",
            "question": f"When was the castle built, question {i}?",
            "answers": [{"text": "1280", "answer_start": 24}],
        }
        for i in range(questions)
    ]
    path.write_text(
        json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]})
    )
    return path


def test_phases_add_up_to_the_call(tmp_path):
    tokenizer = minilm_tokenizer()
    model = tiny_model("question-answering", tokenizer, tmp_path / "hf")
    artifact = tmp_path / "artifact"
    export_fp32(model, tokenizer, artifact)
    out = tmp_path / "phases.json"
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--artifact",
            str(artifact),
            "--squad",
            str(squad_file(tmp_path / "q.json", 8)),
            "--questions",
            "6",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    phases = figures["phases_mean_ms"]
    assert set(phases) == {"windows and tokenization", "graph runs", "span extraction", "rest"}
    assert all(ms >= 0 for ms in phases.values()) and phases["graph runs"] > 0
    assert abs(sum(phases.values()) - figures["mean_ms"]) < 0.01 + 1e-3 * figures["mean_ms"]
    assert figures["questions"] == 6 and sum(figures["graph_lengths"].values()) == 6  # one window per question
    assert out.with_suffix(".md").read_text().count("| graph runs |") == 1
