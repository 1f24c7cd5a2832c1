"""The pruning layers' attention as one operation in exported torch graphs, for Inductor.

An exported pruning layer computes its attention as ATen ops: the scores ``bmm``, the mask bias add, ``softmax``,
the context ``bmm`` and the significance product (a ``bmm`` of the mask rows with every head's probabilities, then a
sum over heads). The probabilities have two consumers, so Inductor cannot use its fused attention, and every
(len x len) map makes several trips through memory. ``fuse_pruning_attention_fx`` rewrites each such block of a
``torch.fx.GraphModule`` (an ``ExportedProgram``'s module, int8 or not) into one ``qla_sdk::pruning_attention``
call, which computes the context and the significance in one pass per (batch, head) with the scores kept in a few
rows or in L2. Inductor calls it as an external kernel; the linear layers, the token choice and everything else stay
Inductor's. Two kernels compute it (``KERNELS``):
- ``int8``: the OpenVINO extension's kernel (``runtime/csrc/pruning_attention_int8.h``: q, k per token and v per
  channel in int8, uint8 probabilities; AMX tiles, AVX512-VNNI or portable C++), for the int8 graphs the Inductor
  backend serves;
- ``float32``: the eager runtime's native kernel (``runtime/csrc/pruning.cpp``): the reference's numerics.

It is applied at load time by the Inductor backend (``backends.inductor.InductorRunner``; ``attention_kernel`` reads
``QLA_SDK_FUSED_ATTENTION``), so a saved program stays the reference graph; the backend's accuracy check at build
time scores the graph with the attention the runner will serve. ``tests/runtime/test_inductor_attention.py`` holds
the rewritten graph to the original (float32: the same outputs; int8: the same tokens chosen at every layer, logits
within int8 error), padded and unpadded.
"""

from __future__ import annotations

import operator
import warnings

import torch

from qla_sdk.errors import ConfigError
from qla_sdk.machine import has_avx512_vnni
from qla_sdk.runtime.native import (
    FUSED_ATTENTION_SWITCH,
    fused_attention_choice,
    int8_attention_kernels,
    int8_unavailable_reason,
    native_kernels,
)
from qla_sdk.runtime.openvino_attention import attention_with_significance  # the native kernel, ATen without it

aten = torch.ops.aten
KERNELS = ("float32", "int8")


@torch.library.custom_op("qla_sdk::pruning_attention", mutates_args=())
def pruning_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, heads: int, precision: str = "float32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (already scaled), k, v (batch * heads, len, head_dim); bias (batch, 1, 1, len): 0 for a real token, the
    float32 minimum for padding; ``precision``: the kernel, one of ``KERNELS`` (not named ``kernel``: Inductor's
    external-kernel lowering takes that keyword itself). Returns the context (batch, len, heads, head_dim)
    and the significance (batch, len): the probabilities each token receives, summed over heads and real queries."""
    rows, n, d = q.shape
    batch = rows // heads
    q4, k4, v4 = (t.reshape(batch, heads, n, d).transpose(1, 2) for t in (q, k, v))  # head_dim stays contiguous
    real = bias.reshape(batch, n) == 0
    mask = None if bool(real.all()) else real.to(torch.float32)
    if precision == "int8":
        int8 = int8_attention_kernels()
        if int8 is None:
            raise ConfigError(
                f"the int8 attention kernel cannot run here ({int8_unavailable_reason() or 'its build failed'}); "
                f"fuse with kernel='float32', or set {FUSED_ATTENTION_SWITCH}=float32"
            )
        if not q4.stride() == k4.stride() == v4.stride():  # the kernel walks the three with one set of strides
            q4, k4, v4 = (t.contiguous() for t in (q4, k4, v4))
        return int8.attention_int8(q4, k4, v4, 1.0, mask)
    context, significance = attention_with_significance(native_kernels(), q4, k4, v4, 1.0, mask)
    return context.contiguous(), significance.contiguous()


@pruning_attention.register_fake
def _(q, k, v, bias, heads, precision="float32"):
    rows, n, d = q.shape
    return q.new_empty((rows // heads, n, heads, d)), q.new_empty((rows // heads, n))


def attention_kernel() -> str | None:
    """The kernel compiled torch graphs' pruning attention runs, from ``QLA_SDK_FUSED_ATTENTION`` (the switch the
    OpenVINO backend reads too):
    - unset or ``auto`` (the default): ``int8`` where its kernel builds here and runs on AMX tiles or AVX512-VNNI,
      else ``float32`` where the native kernels build, else None (the graph as exported);
    - ``0``: None; ``float32``: the native kernel (None where it cannot build);
    - ``int8`` (or ``1``): the int8 kernel (its portable code on CPUs without AVX512-VNNI: the same outputs, slower),
      or ``float32`` with a warning where it cannot be built here."""
    choice = fused_attention_choice()
    if choice == "off":
        return None
    # auto builds the int8 kernel only where its vector code can run
    int8 = int8_attention_kernels() if choice == "int8" or (choice == "auto" and has_avx512_vnni()) else None
    if int8 is not None and (choice == "int8" or int8.isa() != "portable"):
        return "int8"
    fallback = "float32" if native_kernels() is not None else None
    if choice == "int8":
        warnings.warn(
            f"qla-sdk: the int8 fused attention cannot run here ({int8_unavailable_reason() or 'its build failed'}); "
            f"{'the float32 one is used instead' if fallback else 'the graph runs as exported'}",
            RuntimeWarning,
            stacklevel=2,
        )
    return fallback


def fuse_pruning_attention_fx(module: torch.fx.GraphModule, kernel: str = "float32") -> int:
    """Rewrite every pruning attention block of ``module`` (a softmax whose probabilities feed a context ``bmm`` and a
    significance ``bmm`` summed over heads) into one ``qla_sdk::pruning_attention`` call computed by ``kernel`` (one
    of ``KERNELS``); returns how many were rewritten. ``module`` is changed in place and recompiled. Blocks of
    another shape are left alone."""
    if kernel not in KERNELS:
        raise ConfigError(f"unknown attention kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    graph = module.graph
    fused = 0
    for softmax in [n for n in graph.nodes if n.op == "call_function" and n.target == aten.softmax.int]:
        block = _match(softmax)
        if block is None:
            continue
        q, k, v, bias, heads, context_out, significance_out = block
        with graph.inserting_before(context_out):
            call = graph.call_function(torch.ops.qla_sdk.pruning_attention.default, (q, k, v, bias, heads, kernel))
            context = graph.call_function(operator.getitem, (call, 0))
            significance = graph.call_function(operator.getitem, (call, 1))
        context_out.replace_all_uses_with(context)
        significance_out.replace_all_uses_with(significance)
        fused += 1
    if fused:
        graph.eliminate_dead_code()
        # FX keeps dropout (a random op) even when nothing reads it: drop the ones left without readers.
        for node in reversed(list(graph.nodes)):
            if _is(node, aten.dropout.default) and not node.users:
                graph.erase_node(node)
        graph.eliminate_dead_code()
        module.recompile()
    return fused


def _match(softmax):
    """(q, k, v, bias, heads, context node, significance node) of a pruning attention block, or None. The block, as
    ``modeling.encoder`` writes it and ``torch.export`` records it:
    scores = view(bmm(q, transpose(k)), (b, heads, n, n)); probs = softmax(scores + bias, -1);
    context = transpose(view(bmm(reshape(dropout?(probs)), v), (b, heads, n, d)), 1, 2);
    significance = sum(view(bmm(rows, reshape(probs)), (b, heads, n)), [1])."""
    add = softmax.args[0]
    if softmax.args[1] not in (-1, 3) or not _is(add, aten.add.Tensor) or len(add.args) != 2:
        return None
    scores, bias = add.args
    if not _is(scores, aten.view.default) or not _is(scores.args[0], aten.bmm.default):
        return None
    q, k_t = scores.args[0].args
    if not _is(k_t, aten.transpose.int) or sorted(k_t.args[1:]) != [1, 2]:
        return None
    heads = scores.args[1][1]
    if not isinstance(heads, int):
        return None
    context_bmm = significance_bmm = None
    probs = _chain(softmax)
    for user in _through(softmax):
        if not _is(user, aten.bmm.default):
            return None  # the probabilities go somewhere else too (distillation traces): not this block
        if user.args[0] in probs:
            context_bmm = user
        elif user.args[1] in probs:
            significance_bmm = user
    if context_bmm is None or significance_bmm is None:
        return None
    context_view = _only_user(context_bmm)
    context_out = _only_user(context_view) if _is(context_view, aten.view.default) else None
    if not _is(context_out, aten.transpose.int) or sorted(context_out.args[1:]) != [1, 2]:
        return None
    significance_view = _only_user(significance_bmm)
    significance_out = _only_user(significance_view) if _is(significance_view, aten.view.default) else None
    if not _is(significance_out, aten.sum.dim_IntList) or list(significance_out.args[1]) != [1]:
        return None
    if len(significance_out.args) > 2 and significance_out.args[2]:
        return None  # keepdim
    return q, k_t.args[0], context_bmm.args[1], bias, heads, context_out, significance_out


def _is(node, target) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target == target


def _only_user(node):
    users = list(node.users) if isinstance(node, torch.fx.Node) else []
    return users[0] if len(users) == 1 else None


def _chain(start) -> set:
    """``start`` and the nodes that only move or copy its values (reshape, view, dropout in eval, clone)."""
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for user in node.users:
            if _moves_values(user) and user not in seen:
                seen.add(user)
                todo.append(user)
    return seen


def _moves_values(node) -> bool:
    if _is(node, aten.dropout.default):
        return len(node.args) > 2 and node.args[2] is False  # dropout outside training: the identity
    return any(_is(node, t) for t in (aten.reshape.default, aten.view.default, aten.clone.default))


def _through(start) -> list:
    """The consumers of ``start``'s values past the nodes that only move them."""
    return [u for node in _chain(start) for u in node.users if not _moves_values(u)]
