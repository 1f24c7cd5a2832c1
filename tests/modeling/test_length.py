import pytest

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig


@pytest.mark.parametrize(
    "text, expected",
    [("269,253,252,202,104,34", (269, 253, 252, 202, 104, 34)), ("(0.7, 0.66, 0.5)", (0.7, 0.66, 0.5))],
)
def test_parse(text, expected):
    assert LengthConfig.parse(text).lengths == expected


@pytest.mark.parametrize(
    "value, words",
    [
        ("10,12", ["grows", "layer 1", "10 -> 12"]),
        ("10,0", ["layer 1", "0"]),
        ("0.5,1.5", ["1.5", "(0, 1]"]),
        ("10,0.5", ["mixes"]),
        ("10,abc", ["'abc'", "not a number"]),
        ([], ["empty"]),
    ],
)
def test_bad_configs_name_the_value(value, words):
    with pytest.raises(ConfigError) as err:
        LengthConfig.parse(value)
    for word in words:
        assert word in str(err.value)


def test_check_layers_and_input_length():
    lc = LengthConfig.parse("300,200")
    with pytest.raises(ConfigError, match="3 layers"):
        lc.check(3, 384)
    with pytest.raises(ConfigError, match="only 128"):
        lc.check(2, 128)
    lc.check(2, 384)


def test_resolve_ratios_round_up():
    assert LengthConfig.parse("0.5,0.25").resolve(9) == (5, 3)
    assert LengthConfig.parse("0.01").resolve(10) == (1,)


def test_roundtrip_dict():
    lc = LengthConfig.parse("5,4", keep_cls=False)
    assert LengthConfig.parse(lc.to_dict()) == lc
