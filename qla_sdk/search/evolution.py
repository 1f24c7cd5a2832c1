"""Evolutionary search of per-layer lengths (Length-Adaptive Transformer, Kim & Cho 2021, section 4).

Model-free: ``evolve`` sees a gene only through ``fitness(gene) -> metric`` (higher is better) and
``cost(gene) -> float`` (MACs or milliseconds). Each gene is scored once; the cache and the population are saved
atomically as JSON after the initial population, after every new score and after every iteration, so an
interrupted search resumes where it stopped and ends exactly where an uninterrupted one would: every iteration
draws from its own seeded generator, and parents are the front as of the iteration's start.
"""

from __future__ import annotations

import json
import math
import numbers
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from qla_sdk.errors import ConfigError
from qla_sdk.io import write_json_atomic
from qla_sdk.options import option
from qla_sdk.search.genes import (
    Gene,
    check_gene,
    constant_rate_gene,
    constant_rate_genes,
    crossover,
    late_drop_genes,
    mutate,
)
from qla_sdk.search.pareto import best_within, cheapest_within, in_band, pareto_front

STATE_VERSION = 1
SAVE_INTERVAL_S = 2.0  # between saves after single scores; iteration ends and interruptions always save


@dataclass(frozen=True)
class EvolutionConfig:
    """The evolution itself; defaults as in the LAT paper's search: 30 iterations of 30 mutations and 30
    crossovers. (``qla_sdk.search.SearchConfig`` holds it with the fitness, cost and budget options.)"""

    iterations: int = option(30, "generations after the initial population (default %(default)s)")
    mutations: int = option(30, "mutated genes per generation (default %(default)s)")
    crossovers: int = option(30, "crossed-over genes per generation (default %(default)s)")
    mutation_prob: float = option(0.5, "chance that a layer's length mutates (default %(default)s)")
    length_drop_bound: float | None = option(
        None,
        "the smallest gene drops this share per layer, after the full_length_layers (default: the model's LAT rate, "
        "else 0.2)",
    )
    num_constant_rate: int = option(
        20,
        "constant-rate genes in the initial population, besides the full and the smallest (default %(default)s)",
        aliases=("--constant-rate", "--population-size"),
    )
    late_drop_rates: tuple[float, ...] | None = option(
        None,
        "also start from late-drop genes: for each rate and each layer but the first, the earlier layers keep every "
        "token and the later ones drop the rate each (default: none)",
    )
    min_length: int = option(1, "fewest tokens (or ratio steps) a layer keeps (default %(default)s)")
    seed: int = option(0, "seed of the evolution (default %(default)s)")
    full_length_layers: int | None = option(
        None,
        "first layers the initial genes keep whole (the smallest, the constant-rate and the late-drop ones); "
        "default: the model's LAT full_length_layers, else 0",
    )

    def __post_init__(self) -> None:
        def integer(name: str, low: int | None) -> None:  # numpy integers are stored as int; a bool is refused
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (low is not None and value < low):
                bound = "" if low is None else f" >= {low}"
                raise ConfigError(f"{name}={value!r}: must be an integer{bound}")
            object.__setattr__(self, name, int(value))

        def number(value: object) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(value, bool)

        for name in ("iterations", "mutations", "crossovers", "num_constant_rate"):
            integer(name, 0)
        integer("min_length", 1)
        integer("seed", None)
        if self.full_length_layers is not None:
            integer("full_length_layers", 0)
        if not number(self.mutation_prob) or not 0.0 < self.mutation_prob <= 1.0:
            raise ConfigError(f"mutation_prob={self.mutation_prob!r}: must lie in (0, 1], e.g. 0.5")
        object.__setattr__(self, "mutation_prob", float(self.mutation_prob))
        bound = self.length_drop_bound
        if bound is not None:
            if not number(bound) or not 0.0 < bound < 1.0:
                raise ConfigError(
                    f"length_drop_bound={bound!r}: must lie in (0, 1); use the drop rate the model was trained with "
                    "(LAT's default 0.2)"
                )
            object.__setattr__(self, "length_drop_bound", float(bound))
        rates = self.late_drop_rates
        if (rates is not None and not isinstance(rates, (list, tuple))) or any(
            not number(r) or not 0.0 < r < 1.0 for r in rates or ()
        ):
            raise ConfigError(
                f"late_drop_rates={rates!r}: must be a list of drop rates in (0, 1), e.g. [0.3, 0.5, 0.7]"
            )
        object.__setattr__(self, "late_drop_rates", tuple(float(r) for r in rates) if rates else None)


@dataclass(frozen=True)
class Budget:
    """Keep genes costing within ``[min_cost, max_cost]`` (either bound may be None); ``unit`` names the cost. With
    ``max_metric_drop`` the chosen gene is the cheapest whose metric is at most that far below
    ``reference_metric`` (default: the full-length model's), instead of the most accurate in the band. A reference
    is the model the user compresses (the fine-tuned teacher), whose accuracy is the one to keep: the searched
    model's own full length may score above or below it."""

    max_cost: float | None = None
    min_cost: float | None = None
    unit: str = "cost"
    max_metric_drop: float | None = None
    reference_metric: float | None = None

    def __post_init__(self) -> None:
        drop = self.max_metric_drop
        if drop is not None and (not isinstance(drop, (int, float)) or math.isnan(drop) or drop < 0):
            raise ConfigError(f"max_metric_drop={drop!r}: must be a number of metric points >= 0")
        reference = self.reference_metric
        if reference is not None and (not isinstance(reference, (int, float)) or not math.isfinite(reference)):
            raise ConfigError(f"reference_metric={reference!r}: must be a finite metric value")
        if reference is not None and drop is None:
            raise ConfigError("a reference metric only applies with max_metric_drop: give both, or neither")
        for name in ("max_cost", "min_cost"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or math.isnan(value) or value <= 0):
                raise ConfigError(f"budget {name}={value!r} ({self.unit}): must be a positive number")
        if self.max_cost is not None and self.min_cost is not None and self.min_cost > self.max_cost:
            raise ConfigError(
                f"budget band [{self.min_cost:g}, {self.max_cost:g}] {self.unit} is empty: the lower bound must not "
                "exceed the upper"
            )

    def choose(self, points: dict, full_metric: float):
        """The chosen gene among ``{gene: (cost, metric)}``, or None where no gene qualifies."""
        if self.max_metric_drop is None:
            return best_within(points, self.max_cost, self.min_cost)
        reference = full_metric if self.reference_metric is None else self.reference_metric
        return cheapest_within(points, reference - self.max_metric_drop, self.max_cost, self.min_cost)

    def contains(self, cost: float) -> bool:
        return in_band(cost, self.max_cost, self.min_cost)

    def check(self, smallest_cost: float, full_cost: float) -> None:
        """Reject a budget no gene of the search can meet, or one the full-length model already meets."""
        if self.max_cost is not None and self.max_cost < smallest_cost:
            raise ConfigError(
                f"budget of {self.max_cost:g} {self.unit} is below the smallest sub-model searched "
                f"({smallest_cost:g} {self.unit}, every layer after the full_length_layers dropping length_drop_bound "
                "of its tokens, or the cheapest late-drop gene): raise the budget, or raise length_drop_bound if the "
                "model was trained with a larger drop rate"
            )
        if self.max_cost is not None and self.max_cost > full_cost:
            raise ConfigError(
                f"budget of {self.max_cost:g} {self.unit} is above the full-length model ({full_cost:g} {self.unit}),"
                " which fits already: give a budget below the full model's cost, or skip the search"
            )
        if self.min_cost is not None and self.min_cost > full_cost:
            raise ConfigError(
                f"lower budget bound {self.min_cost:g} {self.unit} is above the full-length model ({full_cost:g}):"
                " no gene costs that much"
            )


@dataclass(frozen=True)
class Candidate:
    gene: Gene
    cost: float
    metric: float

    def to_dict(self) -> dict:
        return {"gene": list(self.gene), "cost": self.cost, "metric": self.metric}


@dataclass
class SearchResult:
    candidates: dict[Gene, Candidate]  # every scored gene
    front: list[Candidate]  # by increasing cost
    best: Candidate | None  # highest metric within the budget (cheapest within the metric drop, if one is given)
    full: Candidate
    smallest: Candidate
    constant_rate: list[Candidate]  # the initial constant-rate genes, full and smallest included, by cost
    iterations: int
    late_drop: list[Candidate] = field(default_factory=list)  # the initial late-drop genes, by cost
    history: list[dict] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    rejected: int = 0  # offspring outside the budget band, never scored
    search_time_s: float = 0.0  # seconds of searching, the runs before a resume included (not in to_dict: a result)

    def to_dict(self) -> dict:
        return {
            "best": self.best.to_dict() if self.best else None,
            "full": self.full.to_dict(),
            "smallest": self.smallest.to_dict(),
            "front": [c.to_dict() for c in self.front],
            "constant_rate": [c.to_dict() for c in self.constant_rate],
            "late_drop": [c.to_dict() for c in self.late_drop],
            "iterations": self.iterations,
            "scored": len(self.candidates),
            "rejected": self.rejected,
            "budget": asdict(self.budget),
            "history": self.history,
        }


@dataclass
class _Record:
    cost: float
    metric: float | None  # None: cost outside the budget band, never scored
    born: int  # 0: initial population; k: iteration k


class _Search:
    """The mutable state of one search and its JSON form."""

    def __init__(self, fitness, cost, num_layers, seq_len, config, budget, state_path, context) -> None:
        self.fitness, self.cost_fn, self.context = fitness, cost, context or {}
        self.num_layers, self.seq_len, self.config, self.budget = num_layers, seq_len, config, budget
        self.state_path = Path(state_path) if state_path is not None else None
        self.records: dict[Gene, _Record] = {}
        self.completed = -1  # iterations finished; 0 once the initial population is scored
        self.history: list[dict] = []
        self.saved_at = -math.inf
        self.started, self.seconds_before = time.monotonic(), 0.0  # seconds_before: of the runs a resume continues

    def seconds(self) -> float:
        """Seconds spent on this search so far, across resumed runs."""
        return self.seconds_before + time.monotonic() - self.started

    # -- state -------------------------------------------------------------------------------------------------
    def identity(self) -> dict:
        config = asdict(self.config)
        config.pop("iterations")  # a resumed search may run longer
        if config["late_drop_rates"] is None:
            config.pop("late_drop_rates")  # as states written before the option existed
        if not config["full_length_layers"]:
            config.pop("full_length_layers")  # likewise
        return {
            "num_layers": self.num_layers,
            "seq_len": self.seq_len,
            "config": config,
            "budget": _band(asdict(self.budget)),
            "context": self.context,
        }

    def save(self, force: bool = True) -> None:
        if self.state_path is None or (not force and time.monotonic() - self.saved_at < SAVE_INTERVAL_S):
            return
        if all(r.metric is None for r in self.records.values()):
            return  # no gene scored yet (a search failing on its first): no state to resume, at most one cost lost
        self.saved_at = time.monotonic()
        write_json_atomic(
            self.state_path,
            {
                "version": STATE_VERSION,
                "search": self.identity(),
                "completed_iterations": self.completed,
                "search_time_s": self.seconds(),
                "history": self.history,
                "genes": [
                    {"gene": list(g), "cost": r.cost, "metric": r.metric, "born": r.born}
                    for g, r in self.records.items()
                ],
            },
        )

    def load(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read search state {self.state_path} ({exc}); delete it to start over") from None
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"search state {self.state_path} has version {state.get('version')}; delete it")
        saved, current = state["search"], json.loads(json.dumps(self.identity()))
        saved = {**saved, "budget": _band(saved.get("budget", {}))}  # states written before the band-only identity
        if isinstance(saved.get("context"), dict) and isinstance(current.get("context"), dict):
            for key in (set(current["context"]) - set(saved["context"])) & {"data_digest"}:
                current["context"].pop(key)  # states written before the data was compared
        if saved != current:
            diff = _diff(saved, current)
            raise ConfigError(
                f"search state {self.state_path} belongs to another search ({diff}): rerun with the same options, "
                "or use another output folder"
            )
        self.completed = int(state["completed_iterations"])
        self.seconds_before = float(state.get("search_time_s", 0.0))  # states before it was recorded: unknown, 0
        self.history = list(state["history"])
        for item in state["genes"]:
            self.records[tuple(item["gene"])] = _Record(item["cost"], item["metric"], item["born"])
        for entry in self.history:  # the choice rule may have changed (metric drop, reference): apply today's
            entry.update(self.best_of(entry["iteration"]))

    def best_of(self, iteration: int) -> dict:
        """The gene the budget chooses among those scored by ``iteration``, as a history entry's fields."""
        points = self.population(iteration)
        best = self.budget.choose(points, points[(self.seq_len,) * self.num_layers][1])
        return {"best_gene": list(best) if best else None, "best_metric": points[best][1] if best else None}

    # -- scoring -----------------------------------------------------------------------------------------------
    def cost_of(self, gene: Gene, born: int) -> float:
        record = self.records.get(gene)
        if record is not None:
            return record.cost
        value = float(self.cost_fn(gene))
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"cost of gene {gene} is {value}; a cost must be a finite number >= 0")
        self.records[gene] = _Record(value, None, born)
        return value

    def score(self, gene: Gene, born: int) -> float:
        self.cost_of(gene, born)
        record = self.records[gene]
        if record.metric is None:
            value = float(self.fitness(gene))
            if math.isnan(value):
                raise ConfigError(f"fitness of gene {gene} is NaN; check the evaluation data and metric")
            record.metric = value
            self.save(force=False)  # long evaluations are not lost
        return record.metric

    def population(self, upto: int) -> dict[Gene, tuple[float, float]]:
        return {g: (r.cost, r.metric) for g, r in self.records.items() if r.born <= upto and r.metric is not None}

    def candidate(self, gene: Gene) -> Candidate:
        r = self.records[gene]
        return Candidate(gene, r.cost, r.metric)


def _diff(saved: dict, current: dict, prefix: str = "") -> str:
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            return f"{prefix}{key} was {a!r}, now {b!r}"
    return "unknown difference"


def initial_genes(num_layers: int, seq_len: int, config: EvolutionConfig) -> tuple[Gene, Gene, list[Gene]]:
    """(full, smallest, constant-rate genes between them); the first ``full_length_layers`` whole in each, as LAT
    trained them."""
    full = (seq_len,) * num_layers
    bound = 0.2 if config.length_drop_bound is None else config.length_drop_bound  # LAT's default drop rate
    full_layers = config.full_length_layers or 0
    head, rest = (seq_len,) * full_layers, num_layers - full_layers
    smallest = head + constant_rate_gene(seq_len, rest, bound, config.min_length)
    between = [head + g for g in constant_rate_genes(seq_len, rest, bound, config.num_constant_rate, config.min_length)]
    return full, smallest, [g for g in between if g not in (full, smallest)]


def _band(budget: dict) -> dict:
    """The part of a budget that decides which genes are scored (the cost band); the metric drop and its reference
    only choose among them, so a search may resume under another of those."""
    return {k: budget.get(k) for k in ("max_cost", "min_cost", "unit")}


def _parents(points: dict[Gene, tuple[float, float]], budget: Budget) -> list[Gene]:
    """The front inside the budget band, plus the nearest front gene on either side so children can reach it."""
    front = pareto_front(points)
    inside = [g for g in front if budget.contains(points[g][0])]
    below = [g for g in front if budget.min_cost is not None and points[g][0] < budget.min_cost]
    above = [g for g in front if budget.max_cost is not None and points[g][0] > budget.max_cost]
    return below[-1:] + inside + above[:1]


def _offspring(search: _Search, iteration: int, parents: list[Gene], lower_cost: float) -> None:
    """Score up to ``mutations`` new mutants and ``crossovers`` new crosses of ``parents``."""
    config = search.config
    rng = random.Random(f"qla-search/{config.seed}/{iteration}")
    seen = {g for g, r in search.records.items() if r.born < iteration}

    def make(count: int, draw: Callable[[], Gene]) -> None:
        made, attempts = 0, 0
        while made < count and attempts < 20 * count:  # small spaces run out of new genes
            attempts += 1
            gene = draw()
            if gene in seen:
                continue
            seen.add(gene)
            cost = search.cost_of(gene, iteration)
            if cost < lower_cost or not search.budget.contains(cost):
                continue  # recorded with its cost, never scored
            search.score(gene, iteration)
            made += 1

    make(
        config.mutations,
        lambda: mutate(rng.choice(parents), rng, search.seq_len, config.mutation_prob, config.min_length),
    )
    if len(parents) >= 2:
        make(config.crossovers, lambda: crossover(*rng.sample(parents, 2)))


def _front_area(points: dict[Gene, tuple[float, float]], low: float, high: float) -> float:
    """Mean over budgets in ``[low, high]`` of the best metric affordable at that budget.

    The area under the front's step curve divided by the width; it can only grow as genes are added (LAT's area,
    which starts at the first front point, can shrink when the front does).
    """
    front = [points[g] for g in pareto_front(points)]
    if high <= low or not front:
        return 0.0
    area = 0.0
    for (cost, metric), (next_cost, _) in zip(front, [*front[1:], (high, None)], strict=True):
        start, end = max(cost, low), min(next_cost, high)
        if end > start:
            area += (end - start) * metric
    return area / (high - low)


def evolve(
    fitness: Callable[[Gene], float],
    cost: Callable[[Gene], float],
    num_layers: int,
    seq_len: int,
    config: EvolutionConfig | None = None,
    state_path: str | Path | None = None,
    budget: Budget | None = None,
    resume: bool = True,
    progress: bool = True,
    context: dict | None = None,
) -> SearchResult:
    """Search non-increasing per-layer lengths in ``[min_length, seq_len]`` for the best ``fitness`` per ``cost``.

    ``state_path``: JSON file of the search state; with ``resume`` an existing one is continued (it must come from
    the same options, ``iterations`` aside, and the same JSON-able ``context``: whatever else decides the scores,
    such as the model, data and metric), without it the search starts over. Offspring cheaper than the smallest
    gene or outside ``budget`` are not scored.
    """
    config = config or EvolutionConfig()
    if config.min_length > seq_len:  # else the first gene is refused as out of range, naming no option
        raise ConfigError(
            f"min_length {config.min_length} (--min-length) is more than a layer can keep here: {seq_len} (the "
            "search's --seq-len, or --ratio-steps with --ratio); give at most that"
        )
    if config.length_drop_bound is None:  # LAT's default drop rate
        config = replace(config, length_drop_bound=0.2)
    if (config.full_length_layers or 0) >= num_layers:
        raise ConfigError(
            f"full_length_layers={config.full_length_layers} (--full-length-layers, search.evolution."
            f"full_length_layers, or the model's LAT record) keeps all {num_layers} layers whole: no initial gene "
            f"would drop a token. Give at most {num_layers - 1}"
        )
    budget = budget or Budget()
    search = _Search(fitness, cost, num_layers, seq_len, config, budget, state_path, context)
    if search.state_path is not None and resume and search.state_path.exists():
        search.load()

    full, smallest, between = initial_genes(num_layers, seq_len, config)
    full_layers = config.full_length_layers or 0
    late = [
        g
        for g in late_drop_genes(seq_len, num_layers, config.late_drop_rates or (), config.min_length)
        if g[:full_layers] == full[:full_layers] and g not in (full, smallest, *between)
    ]
    for gene in (full, smallest, *between, *late):
        check_gene(gene, num_layers, seq_len)
    full_cost, smallest_cost = search.cost_of(full, 0), search.cost_of(smallest, 0)
    if smallest_cost >= full_cost:
        raise ConfigError(
            f"the smallest sub-model {smallest} costs {smallest_cost:g} {budget.unit}, no less than the full length "
            f"{full} ({full_cost:g}): dropping tokens does not pay at this size. Use longer inputs, a larger "
            "length_drop_bound, or MACs as the cost (measured latency of tiny models is dominated by overheads)"
        )
    # Offspring cheaper than the floor are not scored. With the first layers whole, the smallest gene drops only in
    # the later ones, and late-drop genes go below it: the floor is the cheapest initial gene.
    floor = smallest_cost
    if full_layers:
        floor = min([smallest_cost, *(search.cost_of(g, 0) for g in late)])
    budget.check(floor, full_cost)  # before any expensive scoring, and before any state is written
    try:
        if search.completed < 0:
            if progress:
                count = 2 + len(between) + len(late)
                print(f"search: scoring the initial population of {count} genes", file=sys.stderr)
            for gene in (full, smallest, *between, *late):
                search.score(gene, 0)
            search.completed = 0
            search.save()
        _iterate(search, floor, full_cost, progress)
    except BaseException:
        search.save()  # an interrupted search keeps every score it paid for
        raise

    points = search.population(search.completed)
    best = budget.choose(points, points[full][1])
    initial = sorted({full, smallest, *between}, key=lambda g: (points[g][0], g))
    return SearchResult(
        candidates={g: search.candidate(g) for g in points},
        front=[search.candidate(g) for g in pareto_front(points)],
        best=search.candidate(best) if best else None,
        full=search.candidate(full),
        smallest=search.candidate(smallest),
        constant_rate=[search.candidate(g) for g in initial],
        late_drop=[search.candidate(g) for g in sorted(late, key=lambda g: (points[g][0], g))],
        iterations=search.completed,
        history=search.history,
        budget=budget,
        rejected=sum(1 for r in search.records.values() if r.metric is None),
        search_time_s=search.seconds(),
    )


def _iterate(search: _Search, smallest_cost: float, full_cost: float, progress: bool) -> None:
    config, budget = search.config, search.budget
    bar = _progress_bar(config.iterations, search.completed, progress)
    try:
        for iteration in range(search.completed + 1, config.iterations + 1):
            parents = _parents(search.population(iteration - 1), budget)
            _offspring(search, iteration, parents, smallest_cost)
            points = search.population(iteration)
            chosen = search.best_of(iteration)
            search.history.append(
                {
                    "iteration": iteration,
                    "scored": len(points),
                    "front_size": len(pareto_front(points)),
                    "front_area": _front_area(points, smallest_cost, full_cost),
                    **chosen,
                }
            )
            search.completed = iteration
            search.save()
            if bar is not None:
                bar.update(1)
                best = tuple(chosen["best_gene"]) if chosen["best_gene"] else None
                if best is not None:
                    postfix = {"best": f"{points[best][1]:.4g}", "cost": f"{points[best][0]:.4g}"}
                    bar.set_postfix(**postfix, front=search.history[-1]["front_size"], refresh=False)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int, done: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=min(done, total), desc="search", unit="iter", file=sys.stderr, leave=True)
