"""``SearchConfig`` and ``EvolutionConfig`` check every value where it is defined: a wrong type or an unknown choice
is a one-line ``ConfigError`` naming it, for Python callers and ``qla search`` flags alike."""

import argparse

import pytest

from qla_sdk.cli import main
from qla_sdk.errors import ConfigError
from qla_sdk.options import add_options, options_from_args
from qla_sdk.search.config import SearchConfig, parse_amount
from qla_sdk.search.evolution import EvolutionConfig


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cost": "flops"}, r"cost='flops' is unknown; choose one of macs, latency"),
        ({"metric": 1}, r"metric=1: give a metric name such as accuracy or f1"),
        ({"evolution": 5}, r"evolution=5: give an EvolutionConfig or a dict of its options"),
        ({"evolution": {"iteration": 2}}, r"evolution: unknown key 'iteration'; did you mean 'iterations'"),
        ({"evolution": {"iterations": "2"}}, r"evolution.iterations: expected an integer, got '2'"),
        ({"ratio": "yes"}, r"ratio='yes': must be True or False"),
        ({"confirm": 1, "max_metric_drop": 0.5}, r"confirm=1: must be True or False"),
        ({"measure_latency": "no"}, r"measure_latency='no': must be True or False"),
        ({"latency_int8": None}, r"latency_int8=None: must be True or False"),
        ({"batch_size": "64"}, r"batch_size='64': must be an integer >= 1"),
        ({"ratio_steps": True}, r"ratio_steps=True: must be an integer >= 1"),
        ({"latency_runs": 2.5}, r"latency_runs=2.5: must be an integer >= 1"),
        ({"latency_batch_size": 0}, r"latency_batch_size=0: must be >= 1"),
        ({"latency_warmup": -1}, r"latency_warmup=-1: must be >= 0"),
        ({"subset_seed": "0"}, r"subset_seed='0': must be an integer"),
        ({"subset": True}, r"subset=True: must be an integer >= 1 dev examples, or null for all"),
        ({"subset": 0}, r"subset=0: must be >= 1 dev examples"),
        ({"threads": 1.5}, r"threads=1.5: must be an integer >= 1, or null"),
        ({"latency_seq_len": 0}, r"latency_seq_len=0: must be >= 1, or null"),
        ({"max_metric_drop": "0.5"}, r"max_metric_drop='0.5': must be a number of metric points >= 0"),
        ({"max_metric_drop": True}, r"max_metric_drop=True: must be a number of metric points >= 0"),
        ({"max_metric_drop": float("nan")}, r"max_metric_drop=nan: must be a number of metric points >= 0"),
        ({"max_metric_drop": float("inf")}, r"max_metric_drop=inf: must be >= 0 metric points and finite"),
        ({"max_metric_drop": -1}, r"max_metric_drop=-1: must be >= 0 metric points"),
        ({"max_macs": True}, r"max_macs=True: give a number or text such as 1.2G or 55%"),
        ({"max_latency_ms": [8]}, r"max_latency_ms=\[8\]: give a number or text"),
        ({"confirm": True}, r"give max_metric_drop too \(--max-metric-drop\)"),
        ({"latency_int8": True}, r"set latency_backend \(--latency-backend\) openvino, or drop latency_int8"),
    ],
)
def test_bad_search_values_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latency_backend": "openvino"}, r"latency_backend \(--latency-backend\) set how genes are timed, and this"),
        ({"latency_runs": 3, "max_macs": "55%"}, r"latency_runs \(--latency-runs\) set how .*no effect"),
        ({"threads": 2}, r"threads \(--threads\) set how genes are timed"),
    ],
)
def test_timing_options_where_no_gene_is_timed_say_so(kwargs, message):
    """A warning, not an error: a recipe setting them beside measure_latency may turn measure_latency off alone."""
    with pytest.warns(UserWarning, match=message):
        SearchConfig(**kwargs)


@pytest.mark.parametrize("timed", [{"measure_latency": True}, {"max_latency_ms": "8"}, {"cost": "latency"}])
def test_timing_options_apply_where_genes_are_timed(timed, recwarn):
    config = SearchConfig(latency_backend="openvino", latency_runs=3, latency_warmup=1, threads=2, **timed)
    assert (config.latency_backend, config.latency_runs) == ("openvino", 3)
    assert not [w for w in recwarn if "set how genes are timed" in str(w.message)]


@pytest.mark.parametrize("name", ["min_macs", "min_latency_ms"])
def test_the_lower_end_of_a_band_may_be_zero(name):
    assert getattr(SearchConfig(**{name: 0}), name) == "0"
    with pytest.raises(ConfigError, match=r"must be >= 0"):
        SearchConfig(**{name: -1})


def test_evolution_may_be_given_as_a_dict():
    config = SearchConfig(evolution={"iterations": 2, "late_drop_rates": [0.5]})
    assert config.evolution == EvolutionConfig(iterations=2, late_drop_rates=(0.5,))


def test_numpy_integers_are_integers():
    np = pytest.importorskip("numpy")
    config = SearchConfig(batch_size=np.int64(8), subset=np.int32(50), max_macs=np.float64(1.2e9))
    assert type(config.batch_size) is int and type(config.subset) is int
    assert parse_amount(config.max_macs, 1.0, "MACs") == 1.2e9
    evolution = EvolutionConfig(iterations=np.int64(3), seed=np.int64(1), mutation_prob=np.float32(0.5))
    assert type(evolution.iterations) is int and type(evolution.seed) is int and evolution.mutation_prob == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_length": True}, r"min_length=True: must be an integer >= 1"),
        ({"seed": True}, r"seed=True: must be an integer"),
        ({"seed": "0"}, r"seed='0': must be an integer"),
        ({"mutations": 2.0}, r"mutations=2.0: must be an integer >= 0"),
        ({"mutation_prob": "0.5"}, r"mutation_prob='0.5': must lie in \(0, 1\]"),
        ({"mutation_prob": True}, r"mutation_prob=True: must lie in \(0, 1\]"),
        ({"length_drop_bound": "0.2"}, r"length_drop_bound='0.2': must lie in \(0, 1\)"),
        ({"late_drop_rates": "0.3,0.5"}, r"late_drop_rates='0.3,0.5': must be a list of drop rates"),
    ],
)
def test_bad_evolution_values_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EvolutionConfig(**kwargs)


@pytest.mark.parametrize("text", ["-5", "0", "0%", "-55%", "-1.2G", -5, 0.0])
def test_a_budget_must_be_positive(text):
    with pytest.raises(ConfigError, match=r"budget .* must be > 0"):
        parse_amount(str(text), 1e9, "MACs")
    with pytest.raises(ConfigError, match=r"budget .* must be > 0"):
        SearchConfig(max_macs=text)


@pytest.mark.parametrize("text", ["lots", "1.2.3G", "nan", "5 ms"])
def test_a_budget_that_is_no_number_says_so(text):
    with pytest.raises(ConfigError, match=r"is not a number: write e.g. 1.2G"):
        parse_amount(text, 1e9, "MACs")


@pytest.mark.parametrize(("text", "value"), [("1.2G", 1.2e9), ("+900M", 9e8), ("55%", 0.55e9), ("8.5", 8.5)])
def test_budgets_parse(text, value):
    assert parse_amount(text, 1e9, "MACs") == pytest.approx(value)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-macs", "-5"], "budget '-5' (MACs) must be > 0"),
        (["--max-latency-ms", "0"], "budget '0' (ms) must be > 0"),
        (["--confirm"], "give max_metric_drop too (--max-metric-drop)"),
    ],
)
def test_search_flags_are_checked_before_any_work(tmp_path, capsys, flags, message):
    argv = ["search", "--model", str(tmp_path / "m"), "--data", "dev.tsv", "--output", str(tmp_path / "out")]
    assert main([*argv, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_cost_flag_takes_only_known_axes():
    parser = argparse.ArgumentParser()
    add_options(parser, SearchConfig, exclude=("evolution",))
    assert options_from_args(SearchConfig, parser.parse_args(["--cost", "latency"])).cost_kind == "latency"
    with pytest.raises(SystemExit):
        parser.parse_args(["--cost", "flops"])
