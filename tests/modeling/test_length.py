import numpy as np
import pytest
import torch

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig


@pytest.mark.parametrize(
    "text, expected",
    [("269,253,252,202,104,34", (269, 253, 252, 202, 104, 34)), ("(0.7, 0.66, 0.5)", (0.7, 0.66, 0.5))],
)
def test_parse(text, expected):
    assert LengthConfig.parse(text).lengths == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1,1,0.83,0.66,0.27,0.13", (1.0, 1.0, 0.83, 0.66, 0.27, 0.13)),  # a searched gene, as reports print it
        ([1, 0.5], (1.0, 0.5)),
        ((np.int64(269), np.int64(253)), (269, 253)),  # numpy scalars, as a search hands them over
        ({"lengths": [np.int64(269)], "reference_length": np.int64(384)}, (269,)),
        ([np.float32(0.5), np.float64(0.25)], (0.5, 0.25)),
        ("none", None),
        (" None ", None),
    ],
)
def test_parse_whole_ratios_numpy_scalars_and_none(value, expected):
    parsed = LengthConfig.parse(value)
    if expected is None:
        assert parsed is None
    else:
        assert parsed.lengths == expected
        assert all(type(v) is type(expected[0]) for v in parsed.lengths)
        assert parsed.reference_length is None or type(parsed.reference_length) is int


@pytest.mark.parametrize(
    "value, words",
    [
        ("10,12", ["grows", "layer 1", "10 -> 12"]),
        ("10,0", ["layer 1", "0"]),
        ("0.5,1.5", ["1.5", "(0, 1]"]),
        ("10,0.5", ["mixes"]),
        ("10,abc", ["'abc'", "not a number"]),
        ([], ["empty"]),
        ("", ["no lengths", "'none' for full length"]),
        ("@384", ["no lengths"]),
        ("()", ["no lengths"]),
        ({"reference_length": 384}, ["no 'lengths' key"]),
        ({"lengths": "269,253"}, ["must be a list of numbers"]),
        (b"\x05\x04", ["type bytes"]),
        ("1,0.5,2", ["mixes"]),  # only 1 reads as a whole-length ratio
    ],
)
def test_bad_configs_name_the_value(value, words):
    with pytest.raises(ConfigError) as err:
        LengthConfig.parse(value)
    for word in words:
        assert word in str(err.value)


def test_check_layers_and_input_length():
    lc = LengthConfig.parse("300,200@384")
    with pytest.raises(ConfigError, match="3 layers"):
        lc.check(3, 384)
    with pytest.raises(ConfigError, match="chosen for inputs of 384 tokens.*has 400"):
        lc.check(2, 400)
    lc.check(2, 384)
    lc.check(2, 10)  # shorter inputs run: the config as it applies to them padded to 384


def test_token_counts_keep_what_the_input_padded_to_the_reference_length_keeps():
    lc = LengthConfig.parse("52,43,33@64")
    assert lc.reference_length == 64 and str(lc) == "52,43,33@64"
    assert lc.resolve(64) == (52, 43, 33)
    assert lc.resolve(10) == (10, 10, 10)  # padding leaves first: all 10 real tokens fit in 52
    assert lc.resolve(40) == (40, 40, 33)
    assert LengthConfig.parse(lc.to_dict()) == lc
    assert LengthConfig.parse("52,43,33", reference_length=64) == lc
    assert LengthConfig.parse("0.5,0.4", reference_length=64).reference_length is None  # ratios have none


@pytest.mark.parametrize(
    "value, words",
    [("52,43@40", ["reference_length=40", ">= the first count"]), ("52,43@x", ["'x'", "@384"])],
)
def test_bad_reference_lengths_name_the_fix(value, words):
    with pytest.raises(ConfigError) as err:
        LengthConfig.parse(value)
    for word in words:
        assert word in str(err.value)


def test_ratio_tokens_round_the_same_in_resolve_and_in_the_encoder():
    """The search grid: 100 ratio steps x 512 lengths. ``resolve`` (Python) and the encoder's per-row count (float32
    tensors, as exported graphs compute it) must agree on every pair."""
    from qla_sdk.modeling.encoder import ratio_keep_rows

    lengths = torch.arange(1, 513)
    for step in range(1, 101):
        ratio = round(step / 100, 6)
        rows = ratio_keep_rows(lengths, ratio).to(torch.int64).tolist()
        python = [LengthConfig((ratio,)).resolve(n)[0] for n in range(1, 513)]
        wrong = [n for n, a, b in zip(range(1, 513), rows, python, strict=True) if a != b]
        assert not wrong, f"ratio {ratio}: resolve and the encoder disagree at lengths {wrong[:5]}"


def test_resolve_ratios_round_up():
    assert LengthConfig.parse("0.5,0.25").resolve(9) == (5, 3)
    assert LengthConfig.parse("0.01").resolve(10) == (1,)


def test_roundtrip_dict():
    lc = LengthConfig.parse("5,4", keep_cls=False)
    assert LengthConfig.parse(lc.to_dict()) == lc
