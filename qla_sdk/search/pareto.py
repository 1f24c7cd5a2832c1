"""The Pareto front of (cost, metric) points: lower cost and higher metric are better.

A point dominates another when it costs no more, scores no less, and is strictly better in one of the two. The
front is every point nothing dominates (exact ties both stay). Cost and metric are compared only with each other:
MACs with MACs, milliseconds with milliseconds.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a = (cost, metric)`` dominates ``b``."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(points: Mapping[Hashable, tuple[float, float]]) -> list:
    """Keys of the non-dominated points, by increasing cost (then by key, for a deterministic order)."""
    order = sorted(points, key=lambda k: (points[k][0], -points[k][1], k))
    front: list = []
    best_metric = best_cost = None
    for key in order:
        cost, metric = points[key]
        if best_metric is None or metric > best_metric:
            front.append(key)
            best_metric, best_cost = metric, cost
        elif metric == best_metric and cost == best_cost:
            front.append(key)  # an exact tie of the last front point: neither dominates the other
    return front


def in_band(cost: float, max_cost: float | None, min_cost: float | None = None) -> bool:
    """Whether ``cost`` lies within ``[min_cost, max_cost]``; a bound of None is open."""
    return (max_cost is None or cost <= max_cost) and (min_cost is None or cost >= min_cost)


def best_within(points: Mapping[Hashable, tuple[float, float]], max_cost: float | None, min_cost: float | None = None):
    """The key with the highest metric among points costing within ``[min_cost, max_cost]`` (cheaper on ties)."""
    inside = [k for k, (cost, _) in points.items() if in_band(cost, max_cost, min_cost)]
    if not inside:
        return None
    return min(inside, key=lambda k: (-points[k][1], points[k][0], k))


def cheapest_within(
    points: Mapping[Hashable, tuple[float, float]],
    min_metric: float,
    max_cost: float | None = None,
    min_cost: float | None = None,
):
    """The key of the cheapest point scoring at least ``min_metric`` within ``[min_cost, max_cost]`` (higher metric,
    then key, on ties), or None."""
    inside = [k for k, (cost, metric) in points.items() if metric >= min_metric and in_band(cost, max_cost, min_cost)]
    if not inside:
        return None
    return min(inside, key=lambda k: (points[k][0], -points[k][1], k))
