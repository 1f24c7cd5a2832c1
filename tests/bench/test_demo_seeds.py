"""benchmarks/demo_seeds.py scores each seed on the dev rows its search never saw: exactly those outside the
search's fixed subset, none when the search scored the whole dev set."""

import pytest
from conftest import load_benchmark

from qla_sdk.search.job import dev_subset


@pytest.fixture(scope="module")
def demo_seeds():
    return load_benchmark("demo_seeds")


@pytest.mark.parametrize("subset, seed", [(600, 0), (600, 3), (100, 0)])
def test_the_unsearched_rows_are_the_dev_rows_the_search_did_not_score(demo_seeds, subset, seed):
    rows = demo_seeds.unsearched_rows(872, {"subset": subset, "subset_seed": seed})
    scored = dev_subset(872, subset, seed)
    assert len(rows) == 872 - subset
    assert sorted(rows + scored) == list(range(872))


@pytest.mark.parametrize("subset", [None, 872, 1000])
def test_a_search_on_the_whole_dev_set_leaves_no_row_unsearched(demo_seeds, subset):
    assert demo_seeds.unsearched_rows(872, {"subset": subset, "subset_seed": 0}) == []
