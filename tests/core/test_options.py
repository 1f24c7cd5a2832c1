"""Options are written once, in their config dataclass: the CLI flags and the recipe's YAML sections come from it,
so a new field is a new flag and a new recipe key without any other edit."""

import argparse
import dataclasses

import pytest

from qla_sdk.cli import build_parser
from qla_sdk.config import from_dict
from qla_sdk.errors import ConfigError
from qla_sdk.options import add_options, option_names, options_from_args
from qla_sdk.recipe.config import RecipeConfig
from qla_sdk.search import EvolutionConfig, SearchConfig
from qla_sdk.search.job import SearchJob
from qla_sdk.train.config import TrainConfig
from qla_sdk.train.distill import DistillConfig
from qla_sdk.train.length_drop import LatConfig


def dests(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices[command]._actions if a.dest != "help"}


def test_every_search_option_is_a_qla_search_flag_and_nothing_else_is():
    expected = option_names(SearchJob, exclude=("config",)) | option_names(SearchConfig, exclude=("evolution",))
    expected |= option_names(EvolutionConfig)
    assert dests("search") == expected


@pytest.mark.parametrize("command", ["finetune", "distill", "lat-train"])
def test_every_train_option_is_a_training_flag(command):
    assert option_names(TrainConfig, exclude=("output_dir",)) <= dests(command)


@pytest.mark.parametrize(("command", "config"), [("distill", DistillConfig), ("lat-train", LatConfig)])
def test_every_stage_option_is_a_flag_of_its_command(command, config):
    assert option_names(config) <= dests(command)


def test_the_recipe_sections_are_the_configs():
    hints = {f.name: f.type for f in dataclasses.fields(RecipeConfig)}
    assert hints["search"] in (SearchConfig, "SearchConfig")
    every = {f.name: f.default for f in dataclasses.fields(SearchConfig) if f.name != "evolution"}
    section = from_dict(SearchConfig, {**every, "evolution": {"iterations": 3}}, where="search")
    assert section.evolution.iterations == 3


def test_a_new_field_becomes_a_flag_that_round_trips():
    @dataclasses.dataclass
    class Extended(SearchConfig):
        patience: int = dataclasses.field(default=4, metadata={"help": "a new option"})

    parser = argparse.ArgumentParser()
    add_options(parser, Extended, exclude=("evolution",))
    args = parser.parse_args(["--patience", "7", "--max-macs", "55%", "--ratio"])
    built = options_from_args(Extended, args)
    assert (built.patience, built.max_macs, built.ratio) == (7, "55%", True)


def test_a_bad_flag_value_is_the_configs_own_error():
    parser = argparse.ArgumentParser()
    add_options(parser, SearchConfig, exclude=("evolution",))
    with pytest.raises(ConfigError, match="not both"):
        options_from_args(SearchConfig, parser.parse_args(["--max-macs", "50%", "--max-latency-ms", "8"]))
