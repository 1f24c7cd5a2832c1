"""benchmarks/squad_length_drop.py: its options reach the SQuAD recipe's stages, and each option set has its own lat
folder (runs with other options land beside it)."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import load_benchmark

from qla_sdk.data import load_squad
from qla_sdk.errors import ConfigError
from qla_sdk.recipe.config import load_recipe

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def squad_length_drop():
    return load_benchmark("squad_length_drop")


@pytest.mark.parametrize("bf16", [False, True])
def test_the_options_reach_the_recipe(squad_length_drop, bf16):
    fixture = FIXTURES / "squad_tiny.json"
    data = [f"data.train={fixture}", f"data.eval={fixture}"]
    recipe = load_recipe(squad_length_drop.RECIPE, data + squad_length_drop.overrides(2, 0.6, 3, bf16))
    lat = recipe.lat.length_adaptive
    assert (lat.full_length_layers, lat.length_drop_prob, recipe.lat.train.epochs) == (2, 0.6, 3)
    assert recipe.teacher.finetune.bf16 is recipe.lat.train.bf16 is bf16
    assert str(lat.smallest_length_config(6)) == "1.0,1.0,0.4,0.16,0.064,0.0256"


def test_each_option_set_has_its_own_folder(squad_length_drop):
    tags = {squad_length_drop.tag(*o) for o in [(2, 0.6, 2, False), (2, 0.6, 2, True), (0, 0.2, 2, False)]}
    assert tags == {"whole2_p0.6_e2", "whole2_p0.6_e2_bf16", "whole0_p0.2_e2"}


@pytest.mark.parametrize(
    ("configs", "message"),
    [("1,1,0.5", "must be 6 ratios"), ("1,1,0.5,0.6,0.2,0.1", "non-increasing"), ("1,1,1,1,1,1.5", "a ratio in")],
)
def test_a_bad_length_config_is_refused_before_any_training(squad_length_drop, tmp_path, configs, message):
    with pytest.raises(ConfigError, match=message):
        squad_length_drop.main(["--work", str(tmp_path / "w"), "--configs", configs])
    assert not (tmp_path / "w").exists()  # nothing split or trained


def test_a_bf16_teacher_trains_in_a_folder_of_its_own(squad_length_drop, tmp_path):
    assert squad_length_drop.teacher_folder(tmp_path, False) == tmp_path / "run"  # squad_recipe.py's
    assert squad_length_drop.teacher_folder(tmp_path, True) == tmp_path / "run_bf16"


def test_scores_resume_and_runs_with_other_options_land_beside_each_other(squad_length_drop, tiny_checkpoint, tmp_path):
    model, _ = tiny_checkpoint("bert", "question-answering")
    fixture = FIXTURES / "squad_tiny.json"
    words = {w.strip("?.,").lower() for e in load_squad(fixture) for w in f"{e.question} {e.context}".split()}
    served = tmp_path / "model"
    shutil.copytree(model, served)
    (served / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]) + "\n")
    sets = [f"data.train={fixture}", f"data.eval={fixture}", "data.max_length=48", "data.doc_stride=16"]
    sets += ["quantize.seq_lens=[32, 48]"]  # the recipe's own graph lengths go to 384, past this max_length
    out = tmp_path / "results.json"
    for name, whole, drop, attempts in (("a", 1, 0.6, 1), ("b", 0, 0.4, 2)):
        recipe = load_recipe(squad_length_drop.RECIPE, sets + squad_length_drop.overrides(whole, drop, 1, False))
        lat_dir = tmp_path / name
        for stage in ("lat", "teacher"):
            (lat_dir / stage).mkdir(parents=True)
            (lat_dir / stage / "done.json").write_text(json.dumps({"seconds": 3.0, "attempts": attempts}))
        scores = squad_length_drop.score_configs(str(served), fixture, recipe, ["1,0.5"], lat_dir / "scores.json")
        assert list(scores) == ["full", "1,0.5"] and all(0 <= s["f1"] <= 100 for s in scores.values())
        # scored configs are read back, not scored again: the model is not even loaded
        assert (
            squad_length_drop.score_configs("no-model", fixture, recipe, ["1,0.5"], lat_dir / "scores.json") == scores
        )
        teacher, lat = {"dev": {"f1": 50.0, "exact_match": 40.0}}, {"model": str(served), "steps": 2}
        squad_length_drop.write_report(str(out), name, teacher, lat, scores, recipe, lat_dir, fixture)
    runs = json.loads(out.read_text())["runs"]
    assert list(runs) == ["a", "b"]
    assert runs["a"]["length_adaptive"]["length_drop_prob"] == 0.6 and runs["b"]["smallest_length_config"] == "0.6,0.36"
    assert [r["lengths"] for r in runs["a"]["rows"]] == ["full", "1,0.5"] and runs["a"]["rows"][1]["macs_ratio"] < 1
    assert all(r["machine"]["cpu_model"] and r["command"] and r["date"] for r in runs.values())
    report = out.with_suffix(".md").read_text()
    assert report.count("| full |") == 2
    assert "p 0.6 after the first layer," in report and "p 0.4 at every layer," in report
    assert report.count(" over 2 runs") == 1  # only the resumed stage says its seconds add up two runs
