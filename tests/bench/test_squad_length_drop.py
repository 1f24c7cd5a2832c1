"""benchmarks/squad_length_drop.py: its options reach the SQuAD recipe's stages, and each option set has its own lat
folder (runs with other options land beside it)."""

from pathlib import Path

import pytest
from conftest import load_benchmark

from qla_sdk.recipe.config import load_recipe


@pytest.fixture(scope="module")
def squad_length_drop():
    return load_benchmark("squad_length_drop")


@pytest.mark.parametrize("bf16", [False, True])
def test_the_options_reach_the_recipe(squad_length_drop, bf16):
    fixture = Path(__file__).parents[1] / "fixtures" / "squad_tiny.json"
    data = [f"data.train={fixture}", f"data.eval={fixture}"]
    recipe = load_recipe(squad_length_drop.RECIPE, data + squad_length_drop.overrides(2, 0.6, 3, bf16))
    lat = recipe.lat.length_adaptive
    assert (lat.full_length_layers, lat.length_drop_prob, recipe.lat.train.epochs) == (2, 0.6, 3)
    assert recipe.teacher.finetune.bf16 is recipe.lat.train.bf16 is bf16
    assert str(lat.smallest(6)) == "1.0,1.0,0.4,0.16,0.064,0.0256"


def test_each_option_set_has_its_own_folder(squad_length_drop):
    tags = {squad_length_drop.tag(*o) for o in [(2, 0.6, 2, False), (2, 0.6, 2, True), (0, 0.2, 2, False)]}
    assert tags == {"whole2_p0.6_e2", "whole2_p0.6_e2_bf16", "whole0_p0.2_e2"}
