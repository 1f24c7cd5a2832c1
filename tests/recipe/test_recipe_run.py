"""`qla run` end to end on a tiny recipe: a tiny random BERT teacher (tests/conftest.py), the tiny SST-2 fixture,
a few steps per training stage, a one-iteration search, OpenVINO int8; then a run killed inside a stage and resumed,
a re-run that skips everything, and `--from`."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

import qla_sdk
from qla_sdk import machine
from qla_sdk.cli import main
from qla_sdk.config import to_dict
from qla_sdk.io import sha256_file
from qla_sdk.recipe.config import load_recipe
from qla_sdk.recipe.run import stage_options
from qla_sdk.recipe.runner import read_marker
from qla_sdk.recipe.stages import STAGES

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "sst2_tiny.tsv"
TRAIN = {"max_steps": 2, "batch_size": 4, "checkpoint_every": 1, "bf16": False, "log_every": 1}
REPORT_KEYS = ("teacher_dev_acc", "final_dev_acc", "final_backend", "length_config")


def write_vocab(path: Path, texts: list[str], size: int = 120) -> Path:
    words = Counter(w for t in texts for w in t.lower().split())
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w, _ in words.most_common(size - 5)]
    path.write_text("\n".join(vocab) + "\n")
    return path


@pytest.fixture(scope="module")
def recipe_file(tiny_checkpoint, tmp_path_factory):
    teacher, _ = tiny_checkpoint("bert", "text-classification")
    root = tmp_path_factory.mktemp("recipe")
    vocab = write_vocab(root / "vocab.txt", [line.split("\t")[0] for line in FIXTURE.read_text().splitlines()[1:]])
    recipe = {
        "name": "tiny",
        "task": "text-classification",
        "data": {"train": str(FIXTURE), "eval": str(FIXTURE), "max_length": 32},
        "teacher": {"model": str(teacher), "tokenizer": str(vocab), "finetune": TRAIN},
        "student": {"init_layers": [1]},
        "distill": {"train": TRAIN},
        "lat": {"train": TRAIN},
        "search": {"evolution": {"iterations": 1, "mutations": 2, "crossovers": 2, "num_constant_rate": 2}},
        "quantize": {
            "backend": "openvino",
            "calibration_samples": 8,
            "tolerance": 0.5,
            "tolerance_from": "reference",  # the teacher's accuracy
            "max_trials": 1,
        },
        "benchmark": {"runs": 3, "warmup": 1, "rounds": 3},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run(recipe_file, out, *extra) -> int:
    return main(["run", "--config", str(recipe_file), "--output", str(out), "--no-progress", *extra])


def report(out: Path) -> dict:
    return json.loads((out / "report" / "report.json").read_text())


@pytest.fixture(scope="module")
def finished(recipe_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert run(recipe_file, out) == 0
    return out


def test_whole_recipe(finished):
    for stage in STAGES:
        assert read_marker(finished / stage) is not None, stage
    r = report(finished)
    for key in (*REPORT_KEYS, "teacher_latency_ms", "final_latency_ms", "wall_time_s"):
        assert r[key] is not None, key
    assert r["final_backend"] == "openvino" and r["latency_batch_size"] == 1
    # As served at batch 1: the eager teacher on the median dev row unpadded (not padded to max_length 32, which
    # billed it for tokens the artifact drops first), the artifact at the graph length that holds the row.
    graphs = qla_sdk.load(r["artifact"]).runner.seq_lens
    assert r["latency_seq_len"] < 32 and r["final_latency_seq_len"] == min(
        g for g in graphs if g >= r["latency_seq_len"]
    )
    assert "unpadded for the eager models" in (finished / "report" / "report.md").read_text()
    assert [row["stage"] for row in r["stages"]] == ["teacher", "distill", "search", "final"]
    macs = {row["stage"]: row["macs"] for row in r["stages"]}
    assert macs["search"] <= macs["distill"] < macs["teacher"]  # 1 layer vs 2, fewer tokens, at the real tokens
    # the artifact's token counts keep up to that many of its graph's positions, padding included
    assert macs["final"] >= macs["search"]
    assert len(r["length_config"]["lengths"]) == 1
    build = read_marker(finished / "quantize")["outputs"]["build"]
    assert build["tolerance_from"] == "reference model"
    assert build["reference_metric"] == pytest.approx(r["teacher_dev_acc"], abs=1e-6)  # the teacher, scored again
    assert (finished / "report" / "stages.png").stat().st_size > 1000
    assert (finished / "report" / "pareto.png").stat().st_size > 1000
    markdown = (finished / "report" / "report.md").read_text()
    assert "qla_sdk.load(" in markdown and r["artifact"] in markdown
    # where the int8 accuracy holds: the CPU and kernel classes its check ran on (here)
    here = machine.kernel_classes()
    assert r["accuracy_checked_on"] == {"cpu_model": here["cpu_model"], "int8": here["int8"]}  # f32: no bf16
    assert f"checked on {here['cpu_model']} (int8 kernels {here['int8']}): it holds on CPUs of" in markdown
    # what a reader needs: the spread of the timings, the length config in words, seconds per stage
    assert "| p90 ms |" in markdown and "tokens of 32 kept after each layer" in markdown
    # every model timed once per round, in turn: the speed-up of each round beside the pooled one
    assert "timed in 3 interleaved rounds" in markdown and len(r["speedup_by_round"]) == 3
    assert all(row["latency"]["runs"] == 3 for row in r["stages"])
    assert "1 threads" not in markdown and (" threads," in markdown or "1 thread," in markdown)
    assert f"teacher {r['stage_seconds']['teacher']:.0f} s, distill" in markdown
    predictor = qla_sdk.load(r["artifact"])
    assert predictor.manifest.length_config.to_dict() == r["length_config"]
    assert predictor.predict(["a gorgeous , witty , seductive movie ."])[0]["label"] in ("0", "1")
    # what training read, through distillation, LAT and the search's copy (qla eval reads a dev set's same columns)
    assert (predictor.manifest.text_columns, predictor.manifest.label_column) == (("sentence",), "label")


def test_training_stages_record_the_columns_they_read_and_the_artifact_carries_them(tiny_checkpoint, tmp_path):
    from qla_sdk.deploy.artifact import read_manifest
    from qla_sdk.recipe.stages import RecipeStages

    teacher, _ = tiny_checkpoint("bert", "text-classification")
    rows = [("a gorgeous movie", "gorgeous and witty", "1"), ("a dull movie", "dull and long", "0")] * 4
    data = tmp_path / "reviews.tsv"
    data.write_text("title\tcontent\tlabel\n" + "".join("\t".join(r) + "\n" for r in rows))
    vocab = write_vocab(tmp_path / "vocab.txt", [" ".join(r[:2]) for r in rows])
    recipe = {
        "task": "text-classification",
        "data": {"train": str(data), "eval": str(data), "max_length": 16},
        "teacher": {"model": str(teacher), "tokenizer": str(vocab), "finetune": {**TRAIN, "max_steps": 1}},
        "student": {"init_layers": [1]},
        "quantize": {"backend": "fp32"},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    lines: list[str] = []
    stages = RecipeStages(load_recipe(tmp_path / "tiny.yaml"), tmp_path / "out", progress=False, log=lines.append)
    trained = stages.teacher(tmp_path / "out" / "teacher", {}, resume=False)
    meta = json.loads((Path(trained["model"]) / "qla.json").read_text())
    assert (meta["text_columns"], meta["label_column"]) == (["content"], "label")  # detected: "content" by name
    assert lines == [
        "recipe data: training on text from 'content' (detected by name); 'title' hold(s) text too: "
        "to train on others, set data.text_columns in the recipe"
    ]
    quantized = stages.quantize(tmp_path / "out" / "quantize", {"search": trained, "teacher": trained}, resume=False)
    manifest = read_manifest(quantized["artifact"])
    assert (manifest.text_columns, manifest.label_column) == (("content",), "label")


@pytest.mark.parametrize("named_by", ["recipe", "model"])
def test_the_search_and_quantize_stages_read_the_recipes_columns(tiny_checkpoint, tmp_path, monkeypatch, named_by):
    """Detection picks "sentence" by name, one word a row; the recipe names "review" (or, naming none, the model
    records that its training read "review"): the genes are scored, and int8 calibrated and checked, on it (they read
    detection's pick on the dev file, silently, whatever the recipe said or the training read)."""
    import qla_sdk.deploy
    from qla_sdk.recipe.stages import RecipeStages

    folder, _ = tiny_checkpoint("bert", "text-classification")
    lat = shutil.copytree(folder, tmp_path / "lat")  # a length-adaptive model recording no columns
    meta = {"task": "text-classification", "labels": ["0", "1"], "length_adaptive": {"length_drop_prob": 0.2}}
    if named_by == "model":
        meta.update(text_columns=["review"], label_column="label")
    (lat / "qla.json").write_text(json.dumps(meta))
    reviews = [line.split("\t") for line in FIXTURE.read_text().splitlines()[1:]]
    data = tmp_path / "reviews.tsv"
    data.write_text("sentence\treview\tlabel\n" + "".join(f"ok\t{text}\t{label}\n" for text, label in reviews))
    vocab = write_vocab(tmp_path / "vocab.txt", [text for text, _ in reviews])
    recipe = {
        "task": "text-classification",
        "data": {"train": str(data), "eval": str(data), "max_length": 24}
        | ({"text_columns": ["review"]} if named_by == "recipe" else {}),
        "teacher": {"model": str(lat), "tokenizer": str(vocab), "finetune": None},
        "student": {"init_layers": [1]},
        "search": {"evolution": {"iterations": 0, "num_constant_rate": 2}},
        "quantize": {"backend": "openvino", "calibration_samples": 8},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    stages = RecipeStages(load_recipe(tmp_path / "tiny.yaml"), tmp_path / "out", progress=False)
    tokenizer = stages.tokenizer
    lengths = {  # the token count of each row, in each column: [CLS] ok [SEP] is 3
        column: [len(tokenizer(text, truncation=True, max_length=24)["input_ids"]) for text in texts]
        for column, texts in (("sentence", ["ok"] * len(reviews)), ("review", [text for text, _ in reviews]))
    }
    searched = stages.search(tmp_path / "out" / "search", {"lat": {"model": str(lat)}}, resume=False)
    front = json.loads((tmp_path / "out" / "search" / "front.json").read_text())
    assert front["dev_mean_length"] == round(sum(lengths["review"]) / len(reviews), 2)

    handed = {}

    class Built(Exception):
        pass

    def export_model(model, out, tokenizer, **kwargs):  # what the stage builds from, not a build
        handed.update(kwargs)
        raise Built

    monkeypatch.setattr(qla_sdk.deploy, "export_model", export_model)
    with pytest.raises(Built):
        stages.quantize(tmp_path / "out" / "quantize", {"search": searched, "teacher": searched}, resume=False)
    assert [len(row["input_ids"]) for row in handed["calibration"]] == lengths["review"][:8]
    scored = []

    def run(ids, mask, types):
        scored.extend(mask.sum(-1).tolist())
        return torch.zeros(len(ids), 2)

    handed["evaluate"](run, 24)
    assert scored == lengths["review"]


def test_rerun_skips_every_stage(recipe_file, finished, capsys):
    before = {s: (finished / s / "done.json").stat().st_mtime_ns for s in STAGES}
    assert run(recipe_file, finished) == 0
    assert {s: (finished / s / "done.json").stat().st_mtime_ns for s in STAGES} == before
    assert capsys.readouterr().err.count("done earlier, skipped") == len(STAGES)


def test_killed_run_resumes_inside_the_stage(recipe_file, finished, tmp_path, monkeypatch, capsys):
    import qla_sdk.train.loop as loop

    write = loop.write_checkpoint
    lat_checkpoints = []

    def kill_after_first_lat_checkpoint(output_dir, step, *args):
        folder = write(output_dir, step, *args)
        if Path(output_dir).name == "lat":
            lat_checkpoints.append(step)
            raise KeyboardInterrupt  # as Ctrl-C after the LAT stage's first checkpoint
        return folder

    out = tmp_path / "out"
    monkeypatch.setattr(loop, "write_checkpoint", kill_after_first_lat_checkpoint)
    assert run(recipe_file, out) == 130
    assert lat_checkpoints == [1]
    assert read_marker(out / "distill") is not None and read_marker(out / "lat") is None
    monkeypatch.setattr(loop, "write_checkpoint", write)
    capsys.readouterr()

    assert run(recipe_file, out) == 0
    err = capsys.readouterr().err
    assert "[teacher] done earlier, skipped" in err and "[distill] done earlier, skipped" in err
    assert "stage 3/8 lat: resuming" in err
    lat = read_marker(out / "lat")["outputs"]
    assert lat["steps"] == 2 and lat["resumed_from"].endswith("step-00000001")
    weights = "lat/final/model.safetensors"
    assert sha256_file(out / weights) == sha256_file(finished / weights)  # resumed to the very same weights
    resumed, uninterrupted = report(out), report(finished)
    assert {k: resumed[k] for k in REPORT_KEYS} == {k: uninterrupted[k] for k in REPORT_KEYS}


def test_from_stage_redoes_it_and_the_later_ones(recipe_file, finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = {s: read_marker(out / s)["seconds"] for s in STAGES}
    assert run(recipe_file, out, "--from", "quantize") == 0
    after = {s: read_marker(out / s)["seconds"] for s in STAGES}
    kept = STAGES[: STAGES.index("quantize")]
    assert all(after[s] == before[s] for s in kept)
    assert all(after[s] != before[s] for s in STAGES[len(kept) :])
    assert {k: report(out)[k] for k in REPORT_KEYS} == {k: report(finished)[k] for k in REPORT_KEYS}


def test_until_stops_after_the_stage(recipe_file, finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = {s: read_marker(out / s)["seconds"] for s in STAGES}
    capsys.readouterr()
    assert run(recipe_file, out, "--from", "search", "--until", "quantize") == 0
    after = {s: read_marker(out / s)["seconds"] for s in STAGES[: STAGES.index("export")]}
    assert [s for s in after if after[s] != before[s]] == ["search", "quantize"]
    later = ("export", "benchmark", "report")
    # built on the old quantize: set aside, so that the next run redoes them rather than skipping them
    assert all(not (out / s).exists() and read_marker(out / f"{s}.stale") is not None for s in later)
    assert "stopped after quantize" in capsys.readouterr().out
    assert run(recipe_file, out) == 0
    assert all(read_marker(out / s)["seconds"] != before[s] for s in later)


def test_a_metric_drop_counts_from_the_fine_tuned_teacher(recipe_file, finished, tmp_path):
    """The accuracy a recipe keeps is the teacher's: the search's metric drop counts from it, not from the
    distilled, length-adaptive model's own full length."""
    recipe = yaml.safe_load(recipe_file.read_text())
    recipe["search"].update(max_metric_drop=0.5, subset=8, confirm=True)  # genes scored on 8 rows, then on all
    changed = tmp_path / "drop.yaml"
    changed.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    assert run(changed, out) == 0
    search = read_marker(out / "search")["outputs"]
    teacher_accuracy = read_marker(out / "teacher")["outputs"]["dev"]["accuracy"]
    # the teacher on every dev row (confirm's floor), as the teacher stage scored it; the search's own reference is
    # the teacher on the 8-row subset
    assert search["search_confirmed"]["reference_metric"] == pytest.approx(teacher_accuracy)
    assert search["search_reference_metric"] is not None
    front = json.loads((out / "search" / "front.json").read_text())
    assert front["reference"]["model"] == str(out / "teacher" / "final")  # the copy's teacher, not the original's
    assert front["best"]["metric"] >= search["search_reference_metric"] - 0.5
    assert search["dev"] == search["search_confirmed"]["kept"]["scores"]  # confirm's scores, not a second pass
    assert read_marker(finished / "search")["outputs"]["search_reference_metric"] is None  # no drop, no reference


def test_two_processes_train_together_and_report_once(recipe_file, finished, tmp_path):
    """Under torchrun the training stages run DDP on both processes; the rest runs once, on the main process."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "qla_sdk.cli"]
    command += ["run", "--config", str(recipe_file), "--output", str(out), "--no-progress"]
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert child.returncode == 0, child.stderr[-3000:]
    for stage in ("teacher", "distill", "lat"):
        state = json.loads(next((out / stage / "checkpoints").glob("step-*/state.json")).read_text())
        assert state["config"]["world_size"] == 2, stage
    assert child.stdout.count("report: ") == 1 and child.stderr.count("[search] running") == 1
    assert set(report(out)) == set(report(finished))


def write_old_markers(out: Path, recipe_file: Path, finished: Path, ran_in: Path) -> None:
    """Rewrite the markers in ``out`` (a copy of ``finished``) as earlier versions wrote them in a run into
    ``ran_in``: the hash of every option (display ones too), absolute paths under ``ran_in``, no recorded options or
    output folder."""
    options = stage_options(load_recipe(recipe_file))
    for stage in STAGES:
        marker = read_marker(out / stage)
        digest = hashlib.sha256(json.dumps(to_dict(options[stage]), sort_keys=True, default=str).encode())
        assert marker["options_hash"] == digest.hexdigest()[:16]  # new markers keep the old hash too
        outputs = json.loads(json.dumps(marker["outputs"]).replace(str(finished), str(ran_in)))
        old = {"options_hash": marker["options_hash"], "outputs": outputs}
        old.update(seconds=marker["seconds"], attempts=marker["attempts"])
        (out / stage / "done.json").write_text(json.dumps(old, indent=2))


def test_a_copied_output_folder_with_old_markers_skips_every_stage_and_reads_its_own_files(
    recipe_file, finished, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    write_old_markers(out, recipe_file, finished, ran_in=finished)
    capsys.readouterr()
    assert run(recipe_file, out) == 0
    captured = capsys.readouterr()
    assert captured.err.count("done earlier, skipped") == len(STAGES)
    assert f"artifact: {out / 'export' / 'model'} " in captured.out  # the copy's, not the original's


def test_display_options_rerun_nothing(recipe_file, finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    capsys.readouterr()
    display = ["teacher.finetune.progress=false", "distill.train.log_every=7", "lat.train.eval_batch_size=3"]
    display += ["lat.train.keep_checkpoints=1", "teacher.finetune.checkpoint_every=5"]
    assert run(recipe_file, out, *(f"--set={item}" for item in display)) == 0
    assert capsys.readouterr().err.count("done earlier, skipped") == len(STAGES)


def test_a_deleted_artifact_reruns_its_stage_and_the_later_ones(recipe_file, finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    shutil.rmtree(out / "export" / "model")
    capsys.readouterr()
    assert run(recipe_file, out) == 0
    err = capsys.readouterr().err
    assert err.count("done earlier, skipped") == STAGES.index("export")
    assert f"[export] done earlier, but {out / 'export' / 'model'} no longer exists: running it" in err
    assert qla_sdk.load(out / "export" / "model").predict(["a gorgeous movie ."])


def test_a_moved_output_folder_with_old_markers_reruns_a_changed_stage_on_its_own_files(
    recipe_file, finished, tmp_path, capsys
):
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(finished, first)
    write_old_markers(first, recipe_file, finished, ran_in=first)
    first.rename(moved)  # the markers name files in first, which is no more
    capsys.readouterr()
    assert run(recipe_file, moved, "--set", "quantize.calibration_samples=4") == 0
    err = capsys.readouterr().err
    assert err.count("done earlier, skipped") == STAGES.index("quantize")
    assert "[quantize] options changed since it ran: running it and the later stages again" in err
    assert report(moved)["artifact"] == str(moved / "export" / "model")


@pytest.mark.parametrize("seq_len", [None, 24])
def test_the_timed_input_is_the_median_dev_row_unpadded_unless_a_length_is_given(seq_len):
    from qla_sdk.data import ClassificationFeatures
    from qla_sdk.recipe.measure import benchmark_input

    rows = ClassificationFeatures(input_ids=[[2, 5, 3], [2, 5, 6, 7, 8, 3], [2, 5, 6, 7, 3]], token_type_ids=None)
    ids, mask, _ = benchmark_input(rows, seq_len, pad_token_id=0)
    assert ids.shape == (1, seq_len or 5) and ids[0, :5].tolist() == [2, 5, 6, 7, 3] and int(mask.sum()) == 5
