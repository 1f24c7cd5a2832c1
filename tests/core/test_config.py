from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from qla_sdk.config import from_dict, load_yaml, to_dict
from qla_sdk.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-4
    steps: int | None = None

    def __post_init__(self):
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be > 0")


@dataclass
class Outer:
    name: str
    backend: Literal["inductor", "openvino"] = "inductor"
    layers: tuple[int, ...] = (0, 2)
    inner: Inner = field(default_factory=Inner)
    out: Path = Path("runs")


def test_roundtrip():
    cfg = from_dict(Outer, {"name": "x", "layers": [1, 3], "inner": {"lr": 2, "steps": 5}, "out": "o"})
    assert cfg == Outer("x", "inductor", (1, 3), Inner(2.0, 5), Path("o"))
    assert to_dict(cfg)["out"] == "o"


@pytest.mark.parametrize("text", ["2e-5", "2E-5", " 2e-5 ", "+2e-05"])
def test_exponent_without_a_dot_is_a_number(text):
    # YAML 1.1 (PyYAML) reads ``lr: 2e-5`` as the string "2e-5"
    assert from_dict(Outer, {"name": "x", "inner": {"lr": text}}).inner.lr == 2e-5


def test_numpy_numbers_are_plain_numbers():
    """A config built from array statistics: numpy integers used to be refused, np.float32(0.2) stored as
    0.20000000298."""
    np = pytest.importorskip("numpy")
    cfg = from_dict(
        Outer, {"name": "x", "layers": [np.int64(1)], "inner": {"lr": np.float32(0.2), "steps": np.int32(5)}}
    )
    assert cfg.inner == Inner(0.2, 5) and cfg.layers == (1,)
    assert type(cfg.inner.steps) is int and type(cfg.layers[0]) is int and type(cfg.inner.lr) is float


@pytest.mark.parametrize(
    "data, words",
    [
        ({"name": "x", "backnd": "openvino"}, ["unknown key 'backnd'", "did you mean 'backend'"]),
        ({"name": "x", "backend": "tensorrt"}, ["config.backend", "'tensorrt'", "'inductor'"]),
        ({"name": "x", "inner": {"lr": "fast"}}, ["config.inner.lr", "expected a number"]),
        ({"name": "x", "inner": {"lr": -1}}, ["config.inner", "lr=-1.0"]),
        ({"name": "x", "inner": {"steps": True}}, ["config.inner.steps"]),
        ({"name": "x", "layers": [1, "a"]}, ["config.layers[1]", "integer"]),
        ({}, ["missing required key 'name'"]),
        ([], ["expected a mapping"]),
    ],
)
def test_errors_name_the_key(data, words):
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data)
    for word in words:
        assert word in str(err.value)


def test_yaml_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder: give the recipe's YAML file"):
        load_yaml(tmp_path)


@pytest.mark.parametrize(
    "text", ["data:\n  max_length: 32\n  max_length: 16\n", "data: {a: 1}\nmodel: x\ndata: {a: 2}\n"]
)
def test_a_key_given_twice_is_refused(tmp_path, text):
    """A repeated key would otherwise keep its last value without a word, where an unknown key is refused."""
    (tmp_path / "dup.yaml").write_text(text)
    with pytest.raises(ConfigError, match="is given twice in one section"):
        load_yaml(tmp_path / "dup.yaml")
