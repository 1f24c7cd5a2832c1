import itertools
import json

import pytest

from qla_sdk.errors import ConfigError
from qla_sdk.search.evolution import Budget, EvolutionConfig, evolve, initial_genes
from qla_sdk.search.genes import late_drop_genes
from qla_sdk.search.pareto import dominates

LAYERS, SEQ = 4, 64
SMALL = EvolutionConfig(iterations=6, mutations=8, crossovers=8, num_constant_rate=5, seed=3)


def fitness(gene):
    """Cheap and structured: early layers matter more, with diminishing returns."""
    return round(sum(min(v, 40) * (LAYERS - i) for i, v in enumerate(gene)) / 1000, 6)


def cost(gene):
    return float(sum(gene) + gene[0])


class Interrupted(Exception):
    pass


def counting(fn, fail_after=None):
    calls = []

    def wrapped(gene):
        if fail_after is not None and len(calls) >= fail_after:
            raise Interrupted
        calls.append(gene)
        return fn(gene)

    return wrapped, calls


def test_same_seed_same_result_and_other_seed_differs():
    a = evolve(fitness, cost, LAYERS, SEQ, SMALL, progress=False)
    b = evolve(fitness, cost, LAYERS, SEQ, SMALL, progress=False)
    c = evolve(fitness, cost, LAYERS, SEQ, EvolutionConfig(**{**SMALL.__dict__, "seed": 4}), progress=False)
    assert a.to_dict() == b.to_dict()
    assert set(a.candidates) != set(c.candidates)


def test_every_gene_is_scored_once_and_front_is_consistent():
    scored, calls = counting(fitness)
    result = evolve(scored, cost, LAYERS, SEQ, SMALL, progress=False)
    assert len(calls) == len(set(calls)) == len(result.candidates)
    full, smallest, between = initial_genes(LAYERS, SEQ, SMALL)
    assert result.full.gene == full and result.smallest.gene == smallest
    assert {c.gene for c in result.constant_rate} == {full, smallest, *between}
    points = {g: (c.cost, c.metric) for g, c in result.candidates.items()}
    front = {c.gene for c in result.front}
    for gene, point in points.items():
        assert (gene in front) == (not any(dominates(q, point) for q in points.values()))
        assert all(b <= a for a, b in itertools.pairwise(gene))
        assert point[0] >= result.smallest.cost  # nothing cheaper than the smallest gene is scored
    assert len(result.history) == SMALL.iterations
    assert len(result.candidates) > len(result.constant_rate) + SMALL.iterations * 4  # offspring were scored


def test_search_improves_on_constant_rate_genes():
    result = evolve(fitness, cost, LAYERS, SEQ, EvolutionConfig(iterations=10, seed=0), progress=False)
    areas = [h["front_area"] for h in result.history]
    assert areas == sorted(areas) and areas[-1] > areas[0]
    # at each constant-rate gene's cost, the front holds a gene at least as good
    for c in result.constant_rate:
        assert max(f.metric for f in result.front if f.cost <= c.cost) >= c.metric


def test_budget_bounds_the_best_gene_and_the_offspring():
    full_cost = cost((SEQ,) * LAYERS)
    budget = Budget(max_cost=0.7 * full_cost, min_cost=0.6 * full_cost)
    result = evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=budget, progress=False)
    assert budget.contains(result.best.cost)
    initial = {c.gene for c in result.constant_rate}
    offspring = [c for g, c in result.candidates.items() if g not in initial]
    assert offspring and all(budget.contains(c.cost) for c in offspring)
    assert result.rejected > 0
    assert result.best.metric == max(c.metric for c in result.candidates.values() if budget.contains(c.cost))


@pytest.mark.parametrize("drop", [0.0, 0.05, 0.2])
def test_a_metric_drop_chooses_the_cheapest_gene_that_keeps_it(drop):
    result = evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=Budget(max_metric_drop=drop), progress=False)
    floor = result.full.metric - drop
    assert result.best.metric >= floor
    assert result.best.cost == min(c.cost for c in result.candidates.values() if c.metric >= floor)
    if drop > 0:
        assert result.best.cost < result.full.cost  # this fitness saturates: some tokens are free to drop


@pytest.mark.parametrize("offset", [-0.1, 0.0, 0.05])
def test_a_metric_drop_counts_from_the_reference_metric_when_given(offset):
    """A reference (the fine-tuned model being compressed) may score above or below the searched model's full
    length; the floor moves with it, and the scored genes are the same as without one."""
    plain = evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=Budget(max_metric_drop=0.1), progress=False)
    reference = plain.full.metric + offset
    budget = Budget(max_metric_drop=0.1, reference_metric=reference)
    result = evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=budget, progress=False)
    assert result.candidates == plain.candidates
    floor = reference - 0.1
    inside = [c for c in result.candidates.values() if c.metric >= floor]
    assert result.best.cost == min(c.cost for c in inside) and result.best.metric >= floor
    assert result.best.cost <= plain.best.cost if offset <= 0 else result.best.cost >= plain.best.cost


def test_a_finished_search_resumes_under_another_metric_drop_as_if_run_with_it(tmp_path):
    """The drop and its reference only choose among the scored genes: changing them rescores nothing."""
    state = tmp_path / "state.json"
    evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=Budget(max_metric_drop=0.0), state_path=state, progress=False)
    calls = []
    budget = Budget(max_metric_drop=0.1, reference_metric=0.9)
    resumed = evolve(
        lambda g: calls.append(g) or fitness(g), cost, LAYERS, SEQ, SMALL,
        budget=budget, state_path=state, resume=True, progress=False,
    )  # fmt: skip
    assert not calls
    assert resumed.to_dict() == evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=budget, progress=False).to_dict()
    with pytest.raises(ConfigError, match="belongs to another search"):  # the cost band decides what is scored
        evolve(fitness, cost, LAYERS, SEQ, SMALL, budget=Budget(max_cost=1e9), state_path=state, resume=True,
               progress=False)  # fmt: skip


def test_no_gene_within_the_drop_of_a_higher_reference_chooses_none():
    points = {(4, 4): (1.0, 0.80), (2, 2): (0.5, 0.70)}
    assert Budget(max_metric_drop=0.05, reference_metric=0.9).choose(points, 0.80) is None
    assert Budget(max_metric_drop=0.05).choose(points, 0.80) == (4, 4)


@pytest.mark.parametrize("fail_after", [3, 40, 75])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, fail_after):
    expected = evolve(fitness, cost, LAYERS, SEQ, SMALL, progress=False).to_dict()
    state = tmp_path / "state.json"
    broken, first_calls = counting(fitness, fail_after)
    with pytest.raises(Interrupted):
        evolve(broken, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    assert json.loads(state.read_text())["genes"]  # state was saved before the interruption
    resumed_fitness, second_calls = counting(fitness)
    resumed = evolve(resumed_fitness, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    assert resumed.to_dict() == expected
    assert not set(first_calls) & set(second_calls)  # nothing scored twice


def test_a_search_failing_on_its_first_gene_leaves_no_state(tmp_path):
    """Nothing was scored: a state file would only make the corrected rerun ask for --resume, then refuse it."""
    state = tmp_path / "state.json"
    broken, _ = counting(fitness, 0)
    with pytest.raises(Interrupted):
        evolve(broken, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    assert not state.exists()


def test_a_resumed_search_counts_the_time_of_the_runs_before(tmp_path, monkeypatch):
    """front.json's times said only what the last run took: a search resumed for its last iteration looked cheap."""
    import itertools

    import qla_sdk.search.evolution as evolution

    clock = itertools.count(0, 10)  # every reading of the clock is 10 s after the one before
    monkeypatch.setattr(evolution.time, "monotonic", lambda: next(clock))
    state = tmp_path / "state.json"
    broken, _ = counting(fitness, 40)
    with pytest.raises(Interrupted):
        evolve(broken, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    before = json.loads(state.read_text())["search_time_s"]
    resumed = evolve(fitness, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    assert before > 0 and resumed.search_time_s > before + 10


def test_resume_can_extend_iterations(tmp_path):
    state = tmp_path / "state.json"
    evolve(fitness, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    longer = EvolutionConfig(**{**SMALL.__dict__, "iterations": 9})
    assert (
        evolve(fitness, cost, LAYERS, SEQ, longer, state_path=state, progress=False).to_dict()
        == evolve(fitness, cost, LAYERS, SEQ, longer, progress=False).to_dict()
    )


def test_late_drop_genes_join_the_initial_population_and_reach_what_mutants_miss():
    late = EvolutionConfig(**{**SMALL.__dict__, "late_drop_rates": (0.5, 0.9)})
    expected = set(late_drop_genes(SEQ, LAYERS, (0.5, 0.9)))
    scored, calls = counting(fitness)
    result = evolve(scored, cost, LAYERS, SEQ, late, progress=False)
    assert {c.gene for c in result.late_drop} == expected
    assert expected <= set(calls[: 2 + len(initial_genes(LAYERS, SEQ, late)[2]) + len(expected)])  # initial population
    assert result.to_dict()["late_drop"] == [c.to_dict() for c in sorted(result.late_drop, key=lambda c: c.cost)]
    without = evolve(fitness, cost, LAYERS, SEQ, SMALL, progress=False)
    assert not expected & set(without.candidates) and without.late_drop == []
    # the plain search never scores a gene as cheap as (64, 64, 64, 7) that keeps the first three layers whole
    cheap = cost((SEQ, SEQ, SEQ, 7))
    assert (SEQ, SEQ, SEQ, 7) in expected
    assert not any(g[:3] == (SEQ,) * 3 and cost(g) <= cheap for g in without.candidates)


def test_a_state_from_before_late_drop_rates_still_resumes_and_other_rates_are_another_search(tmp_path):
    state = tmp_path / "state.json"
    evolve(fitness, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    saved = json.loads(state.read_text())
    assert "late_drop_rates" not in saved["search"]["config"]  # as written before the option existed
    scored, calls = counting(fitness)
    assert evolve(scored, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False).iterations == SMALL.iterations
    assert calls == []
    late = EvolutionConfig(**{**SMALL.__dict__, "late_drop_rates": (0.5,)})
    with pytest.raises(ConfigError, match=r"config.late_drop_rates was None, now \[0.5\]"):
        evolve(fitness, cost, LAYERS, SEQ, late, state_path=state, progress=False)


@pytest.mark.parametrize("whole", [1, 2])
def test_full_length_layers_keep_the_first_layers_of_every_initial_gene_whole(whole):
    config = EvolutionConfig(**{**SMALL.__dict__, "late_drop_rates": (0.5, 0.9), "full_length_layers": whole})
    _, smallest, between = initial_genes(LAYERS, SEQ, config)
    assert smallest == (SEQ,) * whole + (52, 42, 34)[: LAYERS - whole]  # 0.2 a layer after the whole ones
    assert between and all(g[:whole] == (SEQ,) * whole for g in between)
    scored, calls = counting(fitness)
    result = evolve(scored, cost, LAYERS, SEQ, config, progress=False)
    assert {c.gene for c in result.late_drop} == {g for g in late_drop_genes(SEQ, LAYERS, (0.5, 0.9)) if
                                                  g[:whole] == (SEQ,) * whole} - {smallest, *between}  # fmt: skip
    assert all(g[:whole] == (SEQ,) * whole for g in calls[: 2 + len(between) + len(result.late_drop)])


def test_with_full_length_layers_offspring_down_to_the_cheapest_late_drop_gene_are_scored():
    config = EvolutionConfig(**{**SMALL.__dict__, "late_drop_rates": (0.9,), "full_length_layers": 2})
    full, smallest, between = initial_genes(LAYERS, SEQ, config)
    result = evolve(fitness, cost, LAYERS, SEQ, config, progress=False)
    floor = min(c.cost for c in result.late_drop)
    assert floor < cost(smallest)
    initial = {full, smallest, *between, *(c.gene for c in result.late_drop)}
    offspring = [c for g, c in result.candidates.items() if g not in initial]
    assert any(floor <= c.cost < cost(smallest) for c in offspring)  # below the smallest gene, once never scored
    assert evolve(fitness, cost, LAYERS, SEQ, config, budget=Budget(max_cost=floor), progress=False).best


def test_full_length_layers_must_leave_a_layer_to_drop_in():
    with pytest.raises(
        ConfigError,
        match=r"full_length_layers=4 .*search.evolution.full_length_layers.* keeps all 4 layers whole.*at most 3",
    ):
        evolve(fitness, cost, LAYERS, SEQ, EvolutionConfig(full_length_layers=4), progress=False)


def test_a_state_from_before_full_length_layers_resumes_under_zero_only(tmp_path):
    state = tmp_path / "state.json"
    evolve(fitness, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    assert "full_length_layers" not in json.loads(state.read_text())["search"]["config"]
    zero = EvolutionConfig(**{**SMALL.__dict__, "full_length_layers": 0})
    scored, calls = counting(fitness)
    assert evolve(scored, cost, LAYERS, SEQ, zero, state_path=state, progress=False).iterations == SMALL.iterations
    assert calls == []
    two = EvolutionConfig(**{**SMALL.__dict__, "full_length_layers": 2})
    with pytest.raises(ConfigError, match=r"config.full_length_layers was None, now 2"):
        evolve(fitness, cost, LAYERS, SEQ, two, state_path=state, progress=False)


def test_resume_refuses_state_of_another_search(tmp_path):
    state = tmp_path / "state.json"
    evolve(fitness, cost, LAYERS, SEQ, SMALL, state_path=state, progress=False)
    other = EvolutionConfig(**{**SMALL.__dict__, "mutation_prob": 0.3})
    with pytest.raises(ConfigError, match=r"config.mutation_prob was 0.5, now 0.3"):
        evolve(fitness, cost, LAYERS, SEQ, other, state_path=state, progress=False)
    fresh = evolve(fitness, cost, LAYERS, SEQ, other, state_path=state, resume=False, progress=False)
    assert fresh.iterations == SMALL.iterations


@pytest.mark.parametrize(
    "budget, message",
    [
        (Budget(max_cost=50.0), "below the smallest sub-model"),
        (Budget(max_cost=10_000.0), "above the full-length model"),
        (Budget(min_cost=10_000.0), "lower budget bound"),
    ],
)
def test_budget_out_of_range_fails_before_scoring(budget, message):
    scored, calls = counting(fitness)
    with pytest.raises(ConfigError, match=message):
        evolve(scored, cost, LAYERS, SEQ, SMALL, budget=budget, progress=False)
    assert calls == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iterations": -1}, "iterations=-1"),
        ({"mutation_prob": 0.0}, "mutation_prob=0.0"),
        ({"length_drop_bound": 1.0}, "length_drop_bound=1.0"),
        ({"min_length": 0}, "min_length=0"),
        ({"full_length_layers": -1}, "full_length_layers=-1"),
        ({"full_length_layers": True}, "full_length_layers=True"),
    ],
)
def test_search_config_validates(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EvolutionConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_cost": -1.0}, "max_cost=-1.0"), ({"max_cost": 5.0, "min_cost": 6.0}, "is empty"),
     ({"max_metric_drop": -0.5}, "max_metric_drop=-0.5"),
     ({"max_metric_drop": 0.5, "reference_metric": float("nan")}, "reference_metric=nan"),
     ({"reference_metric": 0.8}, "only applies with max_metric_drop")],
)  # fmt: skip
def test_budget_validates(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Budget(**kwargs)


def test_nan_fitness_is_a_clear_error():
    with pytest.raises(ConfigError, match="NaN"):
        evolve(lambda g: float("nan"), cost, LAYERS, SEQ, SMALL, progress=False)


def test_a_cost_that_does_not_fall_with_length_is_refused():
    with pytest.raises(ConfigError, match="does not pay"):
        evolve(fitness, lambda gene: 1.0, LAYERS, SEQ, SMALL, progress=False)
