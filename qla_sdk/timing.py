"""Latency of a callable: warm-up, then percentiles over repeated runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)  # what names the callables: a model's name, a gene


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_times(cls, times_ms: Sequence[float]) -> LatencyStats:
        if not times_ms:
            raise ValueError("no timings: need at least one run")
        ordered = sorted(times_ms)
        return cls(
            _percentile(ordered, 0.5),
            _percentile(ordered, 0.9),
            _percentile(ordered, 0.99),
            statistics.fmean(ordered),
            len(ordered),
        )


def _percentile(sorted_ms: list[float], q: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[index]


def measure_times(
    fn: Callable[[], object], runs: int = 50, warmup: int = 10, max_seconds: float | None = None, min_runs: int = 1
) -> list[float]:
    """Milliseconds of ``runs`` calls after ``warmup`` calls; with ``max_seconds`` it stops early once that much
    time went into timed runs and at least ``min_runs`` were made (slow rows at large batches)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs={runs}, warmup={warmup}: need runs >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed * 1000)
        spent += elapsed
        if max_seconds is not None and spent >= max_seconds and len(times) >= min_runs:
            break
    return times


def measure_latency(fn: Callable[[], object], runs: int = 50, warmup: int = 10) -> LatencyStats:
    return LatencyStats.from_times(measure_times(fn, runs, warmup))


def interleaved_latency(
    fns: Mapping[K, Callable[[], object]],
    runs: int = 50,
    warmup: int = 10,
    rounds: int = 5,
    round_warmup: int = 3,
    after_round: Callable[[], object] | None = None,
) -> tuple[dict[K, LatencyStats], dict[K, list[float]]]:
    """Latency of several callables timed in turn, to compare them: each is warmed up by ``warmup`` calls, then in
    each of ``rounds`` rounds each makes its share of ``runs`` calls, the order rotated per round, so that a slow
    spell of the machine falls on all of them rather than on whichever ran then. Each turn starts with
    ``round_warmup`` untimed calls: the first calls after another callable ran are slower (its data evicted this
    one's weights from the caches), and a service runs its one model warm. Returns each one's stats over its
    ``runs`` timed calls and its median per round. ``after_round`` is called after each round (a progress bar)."""
    names = list(fns)
    if rounds < 1 or runs < rounds:
        raise ValueError(f"runs={runs}, rounds={rounds}: need rounds >= 1 and runs >= rounds (a call per round)")
    if warmup < 0 or round_warmup < 0:
        raise ValueError(f"warmup={warmup}, round_warmup={round_warmup}: must be >= 0")
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[K, list[float]] = {name: [] for name in names}
    medians: dict[K, list[float]] = {name: [] for name in names}
    for r in range(rounds if names else 0):
        share = runs // rounds + (1 if r < runs % rounds else 0)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            part = measure_times(fns[name], runs=share, warmup=round_warmup)
            times[name] += part
            medians[name].append(statistics.median(part))
        if after_round is not None:
            after_round()
    return {name: LatencyStats.from_times(t) for name, t in times.items()}, medians
