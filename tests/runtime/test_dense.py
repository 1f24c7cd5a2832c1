"""oneDNN linears with packed weights: same numbers as nn.Linear, repacked whenever the weights change."""

import json
import shutil

import pytest
import torch
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import from_pretrained
from qla_sdk.modeling.encoder import ACTIVATIONS
from qla_sdk.runtime.dense import dense, dense_split

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _linear(seed: int = 0, out_features: int = 24) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(16, out_features)


@pytest.mark.parametrize("activation", [None, *sorted(ACTIVATIONS)])
def test_dense_equals_the_module_then_the_activation(activation):
    linear, x = _linear(), torch.randn(2, 5, 16)
    expected = linear(x) if activation is None else ACTIVATIONS[activation](linear(x))
    with torch.inference_mode():
        got = dense(linear, x, activation)
    assert torch.allclose(got, expected, atol=1e-5)


@needs_onednn
def test_inference_runs_onednn_and_training_runs_the_module(monkeypatch):
    linear, x = _linear(), torch.randn(3, 16)
    calls = []
    original = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or original(*a))
    with torch.inference_mode():
        dense(linear, x)
    assert calls == [1]
    trained = dense(linear, x)  # autograd on: the plain module, differentiable
    trained.sum().backward()
    assert calls == [1] and linear.weight.grad is not None
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    with torch.no_grad():
        assert torch.equal(dense(linear, x), linear(x))
    assert calls == [1]


@pytest.mark.parametrize(
    "change",
    ["in-place update", "new parameter", "load_state_dict"],
)
def test_a_weight_change_repacks(change):
    linear, x = _linear(), torch.randn(4, 16)
    with torch.inference_mode():
        dense(linear, x)  # packs
    if change == "in-place update":
        with torch.no_grad():
            linear.weight.mul_(-2.0)
    elif change == "new parameter":
        linear.weight = nn.Parameter(torch.randn_like(linear.weight))
    else:
        linear.load_state_dict(_linear(seed=1).state_dict())
    with torch.inference_mode():
        assert torch.allclose(dense(linear, x), linear(x), atol=1e-5)


def test_dense_split_equals_each_module():
    linears, x = (_linear(0), _linear(1, 8), _linear(2)), torch.randn(2, 3, 16)
    linears[1].bias = None
    with torch.inference_mode():
        parts = dense_split(linears, x)
    for part, linear in zip(parts, linears, strict=True):
        assert torch.allclose(part, linear(x), atol=1e-5)


class _Swapped(nn.Linear):
    """Stands for a module a quantizer or adapter puts in a Linear's place: its own forward must run."""

    def forward(self, x):
        return super().forward(x).round()


def test_swapped_in_modules_keep_their_forward():
    swapped, x = _Swapped(16, 24), torch.randn(2, 16)
    with torch.inference_mode():
        assert torch.equal(dense(swapped, x), swapped(x))


def test_an_unknown_activation_is_refused(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "swish"}))
    with pytest.raises(ConfigError, match="hidden_act 'swish' is not supported; use one of"):
        from_pretrained(tmp_path, "question-answering")
