import pytest

from qla_sdk.recipe.report import _count, _described, _lost, shown


@pytest.mark.parametrize(
    ("length_config", "expected"),
    [
        ({"lengths": [0.83, 0.74], "keep_cls": True}, "`0.83,0.74`, the share of each input's real tokens kept"),
        ({"lengths": [52, 42], "keep_cls": True, "reference_length": 64}, "`52,42@64`, the tokens of 64 kept"),
        ({"lengths": [52, 42], "keep_cls": True}, "`52,42`, the tokens kept"),
        (None, "none (every token through every layer)"),
    ],
)
def test_a_length_config_is_described_in_words(length_config, expected):
    assert _described(length_config).startswith(expected)


@pytest.mark.parametrize(
    ("value", "metric", "expected"),
    [(0.83716, "accuracy", "83.72%"), (72.564, "f1", "72.56"), (61.0, "exact_match", "61.00")],
)
def test_a_metric_is_shown_in_its_own_units(value, metric, expected):
    assert shown(value, metric) == expected


def test_counts_are_spelled_for_one_and_many():
    assert (_count(1, "thread"), _count(2, "thread")) == ("1 thread", "2 threads")


@pytest.mark.parametrize(
    ("points", "expected"), [(1.95, "1.95 points lost"), (0.0, "0.00 points lost"), (-1.26, "1.26 points gained")]
)
def test_a_gain_is_not_written_as_a_negative_loss(points, expected):
    assert _lost(points) == expected
