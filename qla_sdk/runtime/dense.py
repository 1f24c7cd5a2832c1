"""Linear layers for the eager runtime: oneDNN with pre-packed weights and the activation fused in.

``torch.nn.Linear`` on CPU runs MKL's addmm: it copies the bias into the output, repacks the weight into the GEMM's
blocked layout on every call, and leaves the activation to a second pass over the output. oneDNN's
``_linear_pointwise`` with a weight packed once does neither, and the query, key and value projections run as one
GEMM (``benchmarks/latency.py`` ablates it).

Packed weights are cached per module, keyed by the weight's identity, storage and version counter, so an optimizer
step or a ``load_state_dict`` (both bump the version) repacks on the next inference. Only the runtime calls these,
after its guards (no autograd, no tracing); a module that is not exactly a float32 CPU ``nn.Linear`` (a quantized
swap-in, bf16 weights) runs its own forward. The cache holds one packed copy of each weight: the model's linear
weights take twice their memory once it has inferred.
"""

from __future__ import annotations

import weakref
from itertools import accumulate

import torch
from torch import nn

from qla_sdk.modeling.encoder import ACTIVATIONS

# activation name (transformers' ``hidden_act``) -> (oneDNN post-op, its algorithm); the reference encoder's
# ACTIVATIONS is the unfused fallback
_FUSED = {
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
}

# first module -> (fingerprint of the tensors packed, packed weight, bias to pass with it); one cache for single
# modules and one for stacks, so that a module used both ways does not repack on every call
_single: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()
_stacked: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()


def dense(linear: nn.Module, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """``activation(linear(x))``; through oneDNN with a packed weight in eager CPU float32 inference."""
    if _packable(linear, x):
        weight, bias = _packed(_single, (linear,))
        post_op, algorithm = _FUSED[activation] if activation else ("none", "")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], algorithm)
    y = linear(x)
    return ACTIVATIONS[activation](y) if activation else y


def dense_split(linears: tuple[nn.Module, ...], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tuple(linear(x) for linear in linears)``; in eager CPU float32 inference one GEMM on the stacked weights,
    returning views of its output (the query, key and value projections: one call instead of three). Elsewhere
    each module runs, so that training, export and quantization see them apart."""
    if not all(_packable(linear, x) for linear in linears):
        return tuple(linear(x) for linear in linears)
    weight, bias = _packed(_stacked, linears)
    y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    ends = list(accumulate(linear.out_features for linear in linears))
    return tuple(y[..., end - linear.out_features : end] for linear, end in zip(linears, ends, strict=True))


def _packable(linear: nn.Module, x: torch.Tensor) -> bool:
    # Exactly nn.Linear: a quantized or otherwise swapped-in module keeps its own forward.
    return (
        type(linear) is nn.Linear
        and x.dtype == torch.float32
        and linear.weight.dtype == torch.float32
        and x.device.type == "cpu"
        and linear.weight.device.type == "cpu"
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _packed(
    cache: weakref.WeakKeyDictionary, linears: tuple[nn.Linear, ...]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The stacked weights of ``linears`` in oneDNN's layout and their stacked bias, packed once per weight version."""
    tensors = [t for linear in linears for t in (linear.weight, linear.bias) if t is not None]
    cached = cache.get(linears[0])
    if cached is None or not _matches(cached[0], tensors):
        weight = torch.cat([linear.weight.detach() for linear in linears])
        bias = None
        if any(linear.bias is not None for linear in linears):
            parts = [torch.zeros(lin.out_features) if lin.bias is None else lin.bias.detach() for lin in linears]
            bias = torch.cat(parts)
        cached = (_fingerprint(tensors), torch.ops.mkldnn._reorder_linear_weight(weight), bias)
        cache[linears[0]] = cached
    return cached[1], cached[2]


def _fingerprint(tensors: list[torch.Tensor]) -> tuple:
    """Which tensors, where their data lives and their version counters: an in-place update (optimizer step,
    ``load_state_dict``) or a reassigned parameter changes one of them."""
    return tuple((weakref.ref(t), t.data_ptr(), t._version) for t in tensors)


def _matches(fingerprint: tuple, tensors: list[torch.Tensor]) -> bool:
    return len(fingerprint) == len(tensors) and all(
        ref() is t and ptr == t.data_ptr() and version == t._version
        for (ref, ptr, version), t in zip(fingerprint, tensors, strict=True)
    )
