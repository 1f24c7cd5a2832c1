"""Options are written once, in their config dataclass: the CLI flags and the recipe's YAML sections come from it,
so a new field is a new flag and a new recipe key without any other edit."""

import argparse
import dataclasses
from pathlib import Path

import pytest

from qla_sdk.cli import build_parser
from qla_sdk.config import from_dict
from qla_sdk.errors import ConfigError
from qla_sdk.options import add_options, option_names, options_from_args
from qla_sdk.recipe.config import DataSection, RecipeConfig
from qla_sdk.search import EvolutionConfig, SearchConfig
from qla_sdk.search.job import SearchJob
from qla_sdk.train.augment import AugmentConfig
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


def test_a_prefix_names_a_configs_flags_and_reads_them_back():
    assert option_names(AugmentConfig, prefix="augment") == {
        "augment_copies",
        "augment_replace_prob",
        "augment_neighbors",
    }
    assert option_names(AugmentConfig, prefix="augment") <= dests("distill")
    parser = argparse.ArgumentParser()
    add_options(parser, AugmentConfig, prefix="augment")
    args = parser.parse_args(["--augment-copies", "3", "--augment-replace-prob", "0.25"])
    assert options_from_args(AugmentConfig, args, prefix="augment") == AugmentConfig(copies=3, replace_prob=0.25)
    with pytest.raises(SystemExit):
        parser.parse_args(["--copies", "3"])


def test_a_bad_flag_value_is_the_configs_own_error():
    parser = argparse.ArgumentParser()
    add_options(parser, SearchConfig, exclude=("evolution",))
    with pytest.raises(ConfigError, match="not both"):
        options_from_args(SearchConfig, parser.parse_args(["--max-macs", "50%", "--max-latency-ms", "8"]))


def test_a_new_search_field_is_a_qla_search_flag_and_a_recipe_key_without_other_edits(monkeypatch, tmp_path):
    """Written once: a field added to SearchConfig is a ``qla search`` flag and a key of the recipe's search section
    (both pick up the class they are generated from; nothing maps fields by hand)."""
    import qla_sdk.commands.search as search_command
    from qla_sdk.recipe.config import load_recipe

    @dataclasses.dataclass
    class Extended(SearchConfig):
        patience: int = dataclasses.field(default=4, metadata={"help": "a new option"})

    monkeypatch.setattr(search_command, "SearchConfig", Extended)
    monkeypatch.setitem(RecipeConfig.__annotations__, "search", Extended)
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    args = sub.choices["search"].parse_args(["--model", "m", "--data", "d", "--output", "o", "--patience", "7"])
    job = search_command.job_from_args(args)
    assert isinstance(job.config, Extended) and job.config.patience == 7

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "sst2_tiny.tsv"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"task: text-classification\ndata: {{train: {fixture}, eval: {fixture}}}\n"
        "teacher: {model: pretrained:minilm}\nstudent: null\nsearch: {patience: 9, max_macs: 55%}\n"
    )
    assert load_recipe(recipe).search.patience == 9


DEFINED_ONCE = [SearchJob, SearchConfig, EvolutionConfig, TrainConfig, DataSection, AugmentConfig]


@pytest.mark.parametrize("config", DEFINED_ONCE, ids=lambda c: c.__name__)
def test_help_strings_name_defaults_through_argparse_not_a_second_copy(config):
    """A help saying ``(default 64)`` is a second copy of the default that goes stale; ``%(default)s`` is argparse
    reading the field's own default."""
    for f in dataclasses.fields(config):
        help_text = f.metadata.get("help") or ""
        if f.default not in (None, dataclasses.MISSING) and "default" in help_text:
            assert "%(default)s" in help_text, f"{config.__name__}.{f.name}: {help_text!r}"


@pytest.mark.parametrize("command", ["finetune", "distill", "lat-train"])
def test_the_data_flags_are_the_recipes_data_section(command):
    assert option_names(DataSection) | {"task", "tokenizer"} <= dests(command)


def test_a_list_field_takes_several_values():
    parser = argparse.ArgumentParser()
    add_options(parser, DataSection)
    args = parser.parse_args(["--train", "t", "--eval", "e", "--text-columns", "question", "sentence"])
    assert options_from_args(DataSection, args).text_columns == ["question", "sentence"]
    assert options_from_args(DataSection, parser.parse_args(["--train", "t", "--eval", "e"])).text_columns is None
    with pytest.raises(ConfigError, match="doc_stride=0: must be >= 1"):
        options_from_args(DataSection, parser.parse_args(["--train", "t", "--eval", "e", "--doc-stride", "0"]))


def test_a_tuple_field_takes_several_values_and_stays_a_tuple():
    parser = argparse.ArgumentParser()
    add_options(parser, EvolutionConfig)
    args = parser.parse_args(["--late-drop-rates", "0.3", "0.5"])
    assert options_from_args(EvolutionConfig, args).late_drop_rates == (0.3, 0.5)
    assert options_from_args(EvolutionConfig, parser.parse_args([])).late_drop_rates is None
    with pytest.raises(ConfigError, match=r"late_drop_rates=.*in \(0, 1\)"):
        options_from_args(EvolutionConfig, parser.parse_args(["--late-drop-rates", "0.3", "1.5"]))


@pytest.mark.parametrize(
    ("config", "values", "message"),
    [
        (SearchConfig, {"latency_seq_len": 0}, "latency_seq_len=0: must be >= 1"),
        (SearchJob, {"model": "m", "data": "d", "output": "o", "seq_len": 4}, "seq_len=4: must be >= 8"),
        (SearchJob, {"model": "m", "data": "d", "output": "o", "doc_stride": 0}, "doc_stride=0: must be >= 1"),
        (SearchJob, {"model": "m", "data": "d", "output": "o", "text_columns": ["a", "b", "c"]}, "one column, or two"),
    ],
)
def test_search_values_are_checked_where_they_are_defined(config, values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(config, values)
