"""Row specs: the default comparison, length-config scaling, selection and validation."""

import pytest

from qla_bench.rows import RowSpec, default_rows, scale_length_config, select_rows
from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig


def test_default_rows_cover_the_comparison():
    rows = default_rows()
    roles = {r.name: r.role for r in rows}
    assert roles["bert-base-fp32-eager"] == "baseline" and list(roles.values()).count("baseline") == 1
    assert {"optimum-intel", "onnxruntime", "torch-dynamic"} == {r.backend for r in rows if r.role == "peer"}
    default = [r for r in rows if r.precision == "default"]
    assert [(r.name, r.role, r.backend) for r in default] == [("optimum-intel-minilm-default", "peer", "optimum-intel")]
    ours = [r for r in rows if r.role == "ours"]
    assert {r.backend for r in ours} == {"inductor", "openvino"} and all(r.precision == "int8" for r in ours)
    quala = [r for r in rows if r.model == "quala-minilm"]
    assert quala and all(r.length_config == "269,253,252,202,104,34" for r in quala)
    assert len({r.name for r in rows}) == len(rows)


@pytest.mark.parametrize(
    ("config", "seq_len", "expected"),
    [
        ("269,253,252,202,104,34", 384, (269, 253, 252, 202, 104, 34)),
        ("269,253,252,202,104,34", 128, (90, 84, 84, 67, 35, 11)),
        ("3,1", 16, (1, 1)),  # never below one token
        ("0.7,0.5", 128, (0.7, 0.5)),  # ratios are used as they are
        ("26,21@32", 32, (26, 21)),  # counts searched at 32 (a QuaLA checkpoint's own): scaled from there
        ("26,21@32", 64, (52, 42)),
    ],
)
def test_length_config_at(config, seq_len, expected):
    spec = RowSpec("r", "ours", "openvino", "int8", "minilm", length_config=config, length_config_seq_len=384)
    assert spec.length_config_at(seq_len).lengths == expected


def test_scaled_config_stays_non_increasing_and_within_the_input():
    scaled = scale_length_config(LengthConfig((100, 99, 98)), 100, 3)
    assert scaled.lengths == (3, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "winner"}, "role 'winner'"),
        ({"precision": "int4"}, "precision 'int4'"),
        ({"name": "has space"}, "row name"),
        ({"length_config": "9,x"}, "'x' is not a number"),
    ],
)
def test_bad_spec_is_a_config_error(kwargs, message):
    base = dict(name="r", role="ours", backend="eager", precision="fp32", model="minilm")
    with pytest.raises(ConfigError, match=message):
        RowSpec(**{**base, **kwargs})


def test_unknown_int8_backend_and_row_names():
    with pytest.raises(ConfigError, match="unknown \\['tensorrt'\\]"):
        default_rows(("openvino", "tensorrt"))
    with pytest.raises(ConfigError, match="unknown row"):
        select_rows(default_rows(), ["bert-base-fp32-eager", "nope"])
    picked = select_rows(default_rows(), ["torch-dynamic-minilm-int8", "bert-base-fp32-eager"])
    assert [r.name for r in picked] == ["torch-dynamic-minilm-int8", "bert-base-fp32-eager"]


def test_spec_round_trips_through_json_dict():
    spec = default_rows()[-1]
    assert RowSpec.from_dict(spec.to_dict()) == spec
