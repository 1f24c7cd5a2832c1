"""benchmarks/distill_augment.py: its runs reach the demo recipe's distill stage, and each lands in the results
beside the others."""

import json

import pytest
from conftest import load_benchmark

from qla_sdk.recipe.config import load_recipe

distill_augment = load_benchmark("distill_augment")


def test_runs_are_copies_and_epochs():
    assert distill_augment.parse_runs("0:4,0:12,2:4") == [(0, 4), (0, 12), (2, 4)]
    for bad in ("2", "a:4", "2:0", "2:-1"):
        with pytest.raises(SystemExit, match="copies:epochs"):
            distill_augment.parse_runs(bad)


def test_each_run_lands_beside_the_others(tmp_path):
    out = tmp_path / "results.json"
    for copies, epochs, accuracy in ((0, 12, 0.80), (2, 4, 0.82)):
        name = distill_augment.run_name([0, 2, 4], copies, epochs, 42)
        overrides = ["student.init_layers=[0, 2, 4]", f"distill.train.epochs={epochs}"]
        recipe = load_recipe(distill_augment.RECIPE, [*overrides, f"distill.augment.copies={copies}"])
        (tmp_path / name / "distill").mkdir(parents=True)
        (tmp_path / name / "distill" / "done.json").write_text(json.dumps({"seconds": 5.0}))
        student = {"dev": {"accuracy": accuracy}, "steps": 375}
        distill_augment.write_report(str(out), name, {"dev": {"accuracy": 0.84}}, student, recipe, tmp_path / name, 42)
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"layers0-2-4_copies0_e12_s42", "layers0-2-4_copies2_e4_s42"}
    augmented = runs["layers0-2-4_copies2_e4_s42"]
    assert (augmented["copies"], augmented["epochs"], augmented["points_lost"]) == (2, 4, 2.0)
    assert runs["layers0-2-4_copies0_e12_s42"]["points_lost"] == 4.0
    assert "| layers0-2-4_copies2_e4_s42 | 42 | 3 | 2 | 4 | 375 | 84.00 | 82.00 | 2.00 | 5 |" in (
        out.with_suffix(".md").read_text()
    )
