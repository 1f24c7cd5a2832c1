import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qla_sdk.search.pareto import best_within, cheapest_within, dominates, pareto_front

# (cost, metric): lower cost and higher metric are better.
POINTS = {
    "full": (100.0, 0.92),
    "a": (60.0, 0.90),
    "b": (70.0, 0.89),  # dominated by a (cheaper and better)
    "c": (40.0, 0.85),
    "d": (40.0, 0.80),  # dominated by c (same cost, worse)
    "e": (20.0, 0.70),
    "f": (50.0, 0.85),  # dominated by c (same metric, dearer)
    "g": (20.0, 0.70),  # an exact tie with e: neither dominates
    "h": (95.0, 0.92),  # dominates full (same metric, cheaper)
}


def test_front_of_hand_made_points():
    assert pareto_front(POINTS) == ["e", "g", "c", "a", "h"]


def test_no_front_point_is_dominated_and_every_dominated_point_is_off_it():
    front = set(pareto_front(POINTS))
    for key, point in POINTS.items():
        dominated = any(dominates(other, point) for other in POINTS.values())
        assert (key in front) == (not dominated), key


@pytest.mark.parametrize(
    "a, b, expected",
    [((1, 1), (2, 0), True), ((1, 1), (1, 1), False), ((1, 1), (1, 0.5), True), ((2, 1), (1, 0), False)],
)
def test_dominates(a, b, expected):
    assert dominates(a, b) is expected


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 50), st.tuples(st.integers(1, 8), st.integers(0, 8)), max_size=25))
def test_front_matches_brute_force(points):
    front = pareto_front(points)
    expected = {k for k, p in points.items() if not any(dominates(q, p) for q in points.values())}
    assert set(front) == expected and len(front) == len(expected)
    assert [points[k][0] for k in front] == sorted(points[k][0] for k in front)


def test_cheapest_within_a_metric_floor_and_band():
    full = POINTS["full"]
    assert cheapest_within(POINTS, full[1]) in {k for k, p in POINTS.items() if p[1] >= full[1]}
    for floor in sorted({p[1] for p in POINTS.values()}):
        got = cheapest_within(POINTS, floor)
        assert POINTS[got][1] >= floor
        assert POINTS[got][0] == min(p[0] for p in POINTS.values() if p[1] >= floor)
    assert cheapest_within(POINTS, max(p[1] for p in POINTS.values()) + 1) is None
    assert cheapest_within(POINTS, 0, max_cost=1) is None


def test_best_within_budget_and_band():
    assert best_within(POINTS, max_cost=65) == "a"
    assert best_within(POINTS, max_cost=45) == "c"
    assert best_within(POINTS, max_cost=30, min_cost=10) == "e"  # e and g tie: the smaller key
    assert best_within(POINTS, max_cost=10) is None
    assert best_within(POINTS, None) == "h"  # full and h tie on metric: the cheaper wins
