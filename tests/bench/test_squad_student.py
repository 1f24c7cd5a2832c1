"""benchmarks/squad_student.py: its options reach the SQuAD recipe's stages, each option set has its own student
folder, and runs with other options land beside each other in the results."""

import json
from pathlib import Path

import pytest
from conftest import load_benchmark

from qla_sdk.recipe.config import load_recipe

squad_student = load_benchmark("squad_student")  # the script as a module, its folder on the path while it loads
TINY_SQUAD = Path(__file__).parents[1] / "fixtures" / "squad_tiny.json"


@pytest.mark.parametrize(("bf16", "copies"), [(False, 0), (True, 0), (False, 2)])
def test_the_options_reach_the_recipe(bf16, copies):
    data = [f"data.train={TINY_SQUAD}", f"data.eval={TINY_SQUAD}", *squad_student.teacher_overrides(bf16)]
    recipe = load_recipe(squad_student.RECIPE, data + squad_student.distill_overrides([0, 2, 4, 5], 3, bf16, copies))
    assert recipe.student.init_layers == [0, 2, 4, 5] and recipe.distill.train.epochs == 3
    assert recipe.teacher.finetune.bf16 is recipe.distill.train.bf16 is bf16
    assert recipe.distill.augment.copies == copies


def test_each_option_set_has_its_own_folder():
    options = [([0, 2, 4, 5], 2, False), ([0, 2, 4, 5], 4, True), ([0, 2, 4], 2, False), ([0, 2, 4, 5], 4, True, 2)]
    tags = {squad_student.tag(*o) for o in options}
    assert tags == {"layers0-2-4-5_e2", "layers0-2-4-5_e4_bf16", "layers0-2-4_e2", "layers0-2-4-5_e4_bf16_aug2"}


def test_runs_with_other_options_land_beside_each_other(tmp_path):
    out = tmp_path / "results.json"
    for name, layers, f1 in (("a", [0, 2, 4, 5], 49.5), ("b", [0, 2, 4], 40.0)):
        recipe = load_recipe(
            squad_student.RECIPE,
            [f"data.train={TINY_SQUAD}", f"data.eval={TINY_SQUAD}", *squad_student.distill_overrides(layers, 2)],
        )
        student_dir = tmp_path / name
        for stage in ("distill", "teacher"):
            (student_dir / stage).mkdir(parents=True)
            (student_dir / stage / "done.json").write_text(json.dumps({"seconds": 3.0}))
        teacher = {"dev": {"f1": 50.0, "exact_match": 40.0}}
        student = {"dev": {"f1": f1, "exact_match": 30.0}, "steps": 2}
        squad_student.write_report(str(out), name, teacher, student, layers, recipe, student_dir)
    runs = json.loads(out.read_text())["runs"]
    assert list(runs) == ["a", "b"]
    assert (runs["a"]["f1_drop"], runs["a"]["within_bar"]) == (0.5, True)
    assert (runs["b"]["f1_drop"], runs["b"]["within_bar"]) == (10.0, False)
    assert runs["b"]["encoder_layers_kept"] == "3/6" and runs["b"]["distill_seconds"] == 3.0
    assert all(r["machine"]["cpu_model"] and r["command"] and r["date"] for r in runs.values())
    report = out.with_suffix(".md").read_text()
    assert "| a | 4/6 | 2 | no | 0 | 50.00 | 49.50 |" in report and "| b | 3/6 |" in report
