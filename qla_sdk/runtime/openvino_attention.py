"""The pruning layers' attention as one OpenVINO operation.

An exported pruning layer computes its attention as separate nodes: scores, (mask bias,) softmax, the context
product and the significance product (the attention each token receives), with FakeQuantize nodes between them after
NNCF. The probabilities have two consumers, so OpenVINO cannot fuse them into its attention kernel, and every
(len x len) probability map makes several trips through memory. ``fuse_pruning_attention`` rewrites each such block
into one ``QuaLAPruningAttention`` node that computes the context and the significance in one pass per (batch, head)
from the float q, k and v the graph computed, and gives them back where the graph used them. The int8 linear layers
and everything else stay OpenVINO's. Two kernels compute the node:
- ``int8``: the C++ OpenVINO extension (``runtime/csrc/openvino_pruning_attention.cpp``, built on first use by
  ``runtime.openvino_extension``): q and k per token and v per channel in int8, the probabilities in uint8 for the
  context, float32 for the significance; its two products run on AMX tiles where the process can use them, else on
  AVX512-VNNI, else in portable C++ (the same outputs on all three); it runs on OpenVINO's threads. It also takes
  over the layer's token choice (``select_tokens``: the TopK, the sort of the chosen positions, and the row gathers
  of the context and of the layer's input), so the context is computed for the tokens that stay only, and no small
  TopK or Gather node runs per layer.
- ``float32``: a Python ``ov.Op`` on the eager runtime's native kernel (``runtime/csrc/pruning.cpp``), or ATen ops
  where that cannot be built: closer to the reference encoder than NNCF's int8 products, but slow.

``fuse_full_attention`` puts the full-length layers' attention (OpenVINO's ScaledDotProductAttention as exported)
on the same int8 operation, without a token choice.

Both are applied at load time by the OpenVINO backend (``backends.openvino.OpenVINORunner``), with the int8 kernel
wherever the extension builds (``QLA_SDK_FUSED_ATTENTION`` chooses otherwise), so the artifact on disk stays a plain
OpenVINO IR that any OpenVINO runtime reads. ``tests/runtime/test_openvino_attention.py`` holds the chosen tokens and
the logits to the reference, padded and unpadded; benchmarks/results/openvino_attention.md times it against
OpenVINO's own nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from qla_sdk.errors import ConfigError
from qla_sdk.runtime.native import native_kernels

OP_NAME, OP_SET = "QuaLAPruningAttention", "qla_sdk"
KERNELS = ("int8", "float32")
ISAS = ("auto", "amx_int8", "avx512_vnni", "portable")  # the int8 kernel's instructions
# Nodes between a linear layer's output and the attention products that only move, scale or fake-quantize values.
_PASS_THROUGH = ("Reshape", "Transpose", "FakeQuantize", "Multiply")


def _op_class():
    import openvino as ov

    class PruningAttention(ov.Op):
        """inputs q, k, v (batch, len, heads * head_dim) float32 [, mask (batch, len) float32, 1 for real tokens];
        attributes heads, scale. Outputs the context
        (batch, len, heads * head_dim) and each token's significance (batch, len): the softmax probabilities it
        receives, summed over heads and queries."""

        class_type_info = ov.DiscreteTypeInfo(OP_NAME, OP_SET)

        def __init__(self, inputs=None, attrs: dict | None = None) -> None:
            super().__init__(self, inputs)
            attrs = attrs or {}
            self.heads, self.scale = int(attrs.get("heads", 1)), float(attrs.get("scale", 1.0))
            self.kernels = native_kernels()
            if inputs is not None:
                self.constructor_validate_and_infer_types()

        def validate_and_infer_types(self) -> None:
            shape = self.get_input_partial_shape(0)
            self.set_output_type(0, self.get_input_element_type(0), shape)
            self.set_output_type(1, self.get_input_element_type(0), ov.PartialShape([shape[0], shape[1]]))

        def clone_with_new_inputs(self, new_inputs):
            return PruningAttention(new_inputs, {"heads": self.heads, "scale": self.scale})

        def get_type_info(self):
            return PruningAttention.class_type_info

        def visit_attributes(self, visitor) -> bool:
            visitor.on_attributes({"heads": self.heads, "scale": self.scale})
            return True

        def has_evaluate(self) -> bool:
            return True

        def evaluate(self, outputs, inputs) -> bool:
            q, k, v = (torch.from_numpy(t.data) for t in inputs[:3])
            mask = torch.from_numpy(inputs[3].data) if len(inputs) > 3 else None
            b, n, hidden = q.shape
            shape = (b, n, self.heads, hidden // self.heads)
            context, received = attention_with_significance(
                self.kernels, q.view(shape), k.view(shape), v.view(shape), self.scale, mask
            )
            outputs[0].shape, outputs[1].shape = [b, n, hidden], [b, n]
            np.copyto(outputs[0].data, context.reshape(b, n, hidden).numpy())
            np.copyto(outputs[1].data, received.numpy())
            return True

    return PruningAttention


_OP = {}


def pruning_attention_op():
    """The ``ov.Op`` class (created once: OpenVINO registers extensions by class)."""
    if "op" not in _OP:
        _OP["op"] = _op_class()
    return _OP["op"]


def attention_with_significance(
    kernels, q, k, v, scale: float, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v (batch, len, heads, head_dim) -> context (batch, len, heads, head_dim), significance (batch, len).
    With ``mask`` (batch, len), 1 for real tokens: padding keys get no attention and only real queries count, as
    in ``modeling.encoder``."""
    with torch.inference_mode():
        if kernels is not None:
            return kernels.attention_with_significance(q, k, v, scale, mask)
        b, n, heads, d = q.shape
        q3, k3, v3 = (t.transpose(1, 2).reshape(b * heads, n, d) for t in (q, k, v))
        scores = torch.bmm(q3 * scale, k3.transpose(1, 2)).view(b, heads, n, n)
        rows = torch.ones(b, n) if mask is None else mask
        if mask is not None:
            scores = scores + (1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min
        probs = torch.softmax(scores, dim=-1)
        context = torch.bmm(probs.view(b * heads, n, n), v3).view(b, heads, n, d).transpose(1, 2)
        return context, torch.einsum("bi,bhij->bj", rows, probs)


def fuse_pruning_attention(model, kernel: str = "float32", isa: str = "auto", choose_tokens: bool = True) -> int:
    """Rewrite every pruning attention block (softmax with a significance product) into one
    ``QuaLAPruningAttention`` node computed by ``kernel`` (one of ``KERNELS``), given the layer's mask where the graph
    adds a mask bias; returns the number of blocks rewritten. ``model`` is changed in place. ``int8`` raises
    ``ConfigError`` where its extension cannot be built. ``isa`` (int8 only, one of ``ISAS``) picks its matrix
    instructions: ``auto`` runs AMX tiles where the process can, else AVX512-VNNI, else portable C++; all give the same
    outputs.
    ``choose_tokens`` (int8 only): where the block's significance feeds the exporter's token choice, the node also
    chooses the tokens and computes their context only (the same tokens, the same context rows)."""
    import openvino.opset13 as ops

    _check_isa(isa)
    make_node = _node_maker(kernel)
    extra = {"isa": isa} if kernel == "int8" else {}
    fused = 0
    for softmax in [op for op in model.get_ordered_ops() if op.get_type_name() == "Softmax"]:
        block = _match(softmax)
        if block is None:
            continue
        q, k, v, mask, context_out, significance_out, heads, head_dim = block
        choice = (
            _token_choice(significance_out, context_out, mask, heads) if kernel == "int8" and choose_tokens else None
        )
        if choice is not None:
            mask = choice.mask
        inputs = [q, k, v] if mask is None else [q, k, v, mask]
        if choice is not None and choice.x is not None:
            inputs.append(choice.x)
        attrs = {"heads": heads, "scale": 1.0 / math.sqrt(head_dim), **extra}
        if choice is not None:
            attrs.update(keep=choice.keep, keep_cls=choice.keep_cls)
        node = make_node(inputs, attrs)
        context = node.output(0)
        if context_out.get_partial_shape().rank.get_length() == 2:  # (batch * len, hidden) for the row gather
            context = ops.reshape(context, ops.constant(np.array([-1, heads * head_dim], np.int64)), False).output(0)
        if choice is not None:  # the context of the chosen tokens replaces the graph's row gather of all of them
            choice.context_rows.replace(context)
            for choice_out, node_out in ((choice.positions, node.output(2)), (choice.ranks, node.output(3))):
                choice_out.replace(ops.convert(node_out, choice_out.get_element_type()).output(0))
            if choice.x is not None:
                width = ops.constant(np.array([-1, choice.x.get_partial_shape()[2].get_length()], np.int64))
                choice.x_rows.replace(ops.reshape(node.output(4), width, False).output(0))
            for target in list(choice.ranked.get_target_inputs()):  # shapes read off the graph's TopK
                if target.get_node().get_type_name() == "ShapeOf":
                    target.replace_source_output(node.output(2))
        else:
            for target in list(context_out.get_target_inputs()):
                target.replace_source_output(context)
        for target in list(significance_out.get_target_inputs()):
            target.replace_source_output(node.output(1))
        fused += 1
    if fused:
        model.validate_nodes_and_infer_types()
    return fused


def fuse_full_attention(model, isa: str = "auto") -> int:
    """Rewrite every full-length layer's attention (the exporter's ``ScaledDotProductAttention`` of the linear layers'
    q, k, v with the mask bias, as ``Layer.attend`` writes it where no probabilities are needed) into the int8
    ``QuaLAPruningAttention`` node without a token choice and without the significance (nothing chooses by it);
    returns the number rewritten, ``model`` changed in place. Why: OpenVINO runs that attention as one int8 Subgraph
    on AVX-512 even where the CPU has AMX, while the node's two products run on AMX tiles (or VNNI registers), with q,
    k and v in one layout and no transposes around it (benchmarks/results/openvino_attention*.md). Numerics are the
    int8 kernel's (``pruning_attention_int8.h``). Raises ``ConfigError`` where the extension cannot be built."""
    _check_isa(isa)
    make_node = _node_maker("int8")
    fused = 0
    for sdpa in [op for op in model.get_ordered_ops() if op.get_type_name() == "ScaledDotProductAttention"]:
        block = _match_full_attention(sdpa)
        if block is None:
            continue
        q, k, v, mask, context_out, heads, head_dim = block
        inputs = [q, k, v] if mask is None else [q, k, v, mask]
        attrs = {"heads": heads, "scale": 1.0 / math.sqrt(head_dim), "isa": isa, "significance": False}
        node = make_node(inputs, attrs)
        for target in list(context_out.get_target_inputs()):
            target.replace_source_output(node.output(0))
        fused += 1
    if fused:
        model.validate_nodes_and_infer_types()
    return fused


def _check_isa(isa: str) -> None:
    if isa not in ISAS:
        raise ConfigError(f"unknown isa {isa!r} for the int8 attention kernel; choose one of {', '.join(ISAS)}")


def _match_full_attention(sdpa):
    """(q, k, v, mask or None, context output, heads, head_dim) of an exported full-length attention, or None where
    the node is not ``Layer.attend``'s as exported: not causal, the default scale (no scale input), q, k and v each a
    (batch, len, hidden) f32 linear output split into heads by ``view`` + ``transpose(1, 2)`` (a FakeQuantize between
    them skipped), all three of one shape, the mask bias ``(1 - mask[:, None, None, :]) * float32.min`` of a
    (batch, len) float mask, or none; the context merged back by ``transpose(1, 2)`` + a reshape to (batch, len,
    hidden)."""
    if sdpa.get_input_size() not in (3, 4) or sdpa.get_attributes().get("causal"):
        return None
    split = [_heads_of(sdpa.input_value(i)) for i in range(3)]
    if any(part is None for part in split) or len({(heads, d) for _, heads, d in split}) != 1:
        return None
    (q, heads, head_dim), (k, _, _), (v, _, _) = split
    shape = q.get_partial_shape()
    if head_dim > 256 or any(not x.get_partial_shape().compatible(shape) for x in (k, v)):
        return None
    mask = None
    if sdpa.get_input_size() == 4:
        mask = _mask_of_bias(sdpa.input_value(3), shape)
        if mask is None:
            return None
    context_out = _heads_merged(sdpa.output(0), heads * head_dim)
    if context_out is None:
        return None
    return q, k, v, mask, context_out, heads, head_dim


def _transposes_heads(node) -> bool:
    """A Transpose that swaps axes 1 and 2 of a rank-4 value (``transpose(1, 2)``)."""
    order = _constant(node.input_value(1)) if node.get_type_name() == "Transpose" else None
    return order is not None and order.reshape(-1).tolist() == [0, 2, 1, 3]


def _heads_of(value):
    """(the (batch, len, hidden) f32 value, heads, head_dim) that ``value`` splits into heads as ``Layer.attend``
    does (reshape to (batch, len, heads, head_dim), then swap axes 1 and 2; a FakeQuantize before the reshape
    skipped), or None."""
    transpose = value.get_node()
    if not _transposes_heads(transpose):
        return None
    reshape = transpose.input_value(0).get_node()
    split = reshape.get_output_partial_shape(0)
    if reshape.get_type_name() != "Reshape" or not (split.rank.is_static and split.rank.get_length() == 4):
        return None
    if not (split[2].is_static and split[3].is_static):
        return None
    heads, head_dim = split[2].get_length(), split[3].get_length()
    source = reshape.input_value(0)
    if source.get_node().get_type_name() == "FakeQuantize":
        source = source.get_node().input_value(0)
    shape = source.get_partial_shape()
    if source.get_element_type().get_type_name() != "f32" or not _is_hidden(source, heads * head_dim):
        return None
    if not (shape[0].compatible(split[0]) and shape[1].compatible(split[1])):
        return None
    return source, heads, head_dim


def _heads_merged(context, hidden: int):
    """The (batch, len, hidden) value the attention's (batch, heads, len, head_dim) ``context`` becomes by swapping
    axes 1 and 2 and a reshape (``context.transpose(1, 2)`` then ``flatten(2)``), or None."""
    transpose = _only_consumer(context)
    if transpose is None or not _transposes_heads(transpose):
        return None
    reshape = _only_consumer(transpose.output(0))
    if reshape is None or reshape.get_type_name() != "Reshape" or not _is_hidden(reshape.output(0), hidden):
        return None
    return reshape.output(0)


def _mask_of_bias(bias, tokens):
    """The (batch, len) f32 mask of ``(1 - mask[:, None, None, :]) * float32.min`` as exported, for the queries and
    keys ``tokens`` (batch, len, hidden), or None."""
    shape = bias.get_partial_shape()
    if not (shape.rank.is_static and shape.rank.get_length() == 4 and all(shape[i] == 1 for i in (1, 2))):
        return None
    node = bias.get_node()
    if node.get_type_name() != "Multiply":
        return None
    lowest = [value is not None and value <= -1e38 for value in map(_filled_value, node.input_values())]
    if lowest.count(True) != 1:
        return None
    subtract = node.input_value(lowest.index(False)).get_node()
    if subtract.get_type_name() != "Subtract" or _filled_value(subtract.input_value(0)) != 1.0:
        return None
    mask = _up(subtract.input_value(1), ("Unsqueeze", "Reshape"))
    rows = mask.get_partial_shape()
    if mask.get_element_type().get_type_name() != "f32" or not (rows.rank.is_static and rows.rank.get_length() == 2):
        return None
    if not (rows[0].compatible(tokens[0]) and rows[1].compatible(tokens[1])):
        return None
    return mask


@dataclass
class _TokenChoice:
    """The exporter's token choice after one pruning attention block (``significance`` then ``select_tokens`` and
    ``gather_rows`` of the context, as exported)."""

    mask: object  # the layer's mask (batch, len) f32
    keep: int
    keep_cls: bool
    positions: object  # the sorted chosen positions (the sort's values)
    ranks: object  # the sort's indices
    ranked: object  # the TopK's indices (i64), which ShapeOf nodes may also read
    context_rows: object  # the row gather of the context
    x: object = None  # the layer's input (batch, len, width), where the graph gathers its rows by the same positions
    x_rows: object = None  # that row gather


def _token_choice(significance, context, mask, heads: int) -> _TokenChoice | None:
    """The token choice fed by ``significance`` (the block's summed significance) and gathering rows of ``context``,
    or None where the graph is not the exporter's: score = where(mask > 0, significance, -1) [, the first token set
    above all], TopK(max, constant k) whose indices alone go on, a sort of them, and one row gather of the context by
    the sorted positions (plus the batch offsets)."""
    consumers = [t.get_node() for t in significance.get_target_inputs()]
    wheres = [n for n in consumers if n.get_type_name() == "Select"]
    if len(wheres) != 1 or any(n.get_type_name() not in ("Select", "ShapeOf") for n in consumers):
        return None
    where = wheres[0]
    greater = where.input_value(0).get_node()
    if not _same(where.input_value(1), significance) or greater.get_type_name() != "Greater":
        return None
    threshold = _constant(greater.input_value(1))
    if threshold is None or np.any(threshold != 0) or _filled_value(where.input_value(2)) != -1.0:
        return None
    layer_mask = greater.input_value(0)
    if layer_mask.get_element_type().get_type_name() != "f32" or (mask is not None and not _same(mask, layer_mask)):
        return None
    score, keep_cls = where.output(0), False
    node = _only_consumer(score)
    if node is not None and node.get_type_name() == "Select":  # keep_cls: the first position gets a score above all
        first = _constant(node.input_value(0))
        if first is None or not _same(node.input_value(2), score) or not _is_first_only(first):
            return None
        # The kernel puts the first token above all; the graph's score does so where it is above every real score.
        top, length = _filled_value(node.input_value(1)), significance.get_partial_shape()[1]
        if top is None or not length.is_static or top <= heads * length.get_length():
            return None
        score, keep_cls = node.output(0), True
        node = _only_consumer(score)
    if node is None or node.get_type_name() != "TopK" or node.get_attributes().get("mode") != "max":
        return None
    keep = _constant(node.input_value(1))
    if (
        keep is None
        or keep.size != 1
        or node.get_attributes().get("axis") not in (-1, 1)
        or node.output(0).get_target_inputs()
    ):
        return None
    ranked = _down_single(node.output(1), ("Convert",))
    consumers = [t.get_node() for t in ranked.get_target_inputs()]  # the sort, and the ShapeOf of its k
    sorts = [n for n in consumers if n.get_type_name() == "TopK"]
    if len(sorts) != 1 or any(n.get_type_name() not in ("TopK", "ShapeOf") for n in consumers):
        return None
    sort = sorts[0]
    if sort.get_attributes().get("mode") != "min":
        return None
    if sort.get_attributes().get("sort") != "value" or not _same(sort.input_value(0), ranked):
        return None
    gathers = [t.get_node() for t in context.get_target_inputs()]
    if len(gathers) != 1 or gathers[0].get_type_name() != "Gather" or not _gathers_by(gathers[0], sort.output(0)):
        return None
    choice = _TokenChoice(
        layer_mask, int(keep.reshape(-1)[0]), keep_cls, sort.output(0), sort.output(1), ranked, gathers[0].output(0)
    )
    choice.x, choice.x_rows = _layer_input_gather(gathers[0], significance.get_partial_shape()[1])
    return choice


def _layer_input_gather(context_gather, length):
    """The other row gather by the context gather's indices: (the layer's input (batch, len, width) it reads, its
    output), or (None, None)."""
    indices = context_gather.input_value(1)
    others = [
        t.get_node()
        for t in indices.get_target_inputs()
        if t.get_index() == 1 and t.get_node().get_name() != context_gather.get_name()
    ]
    if len(others) != 1 or others[0].get_type_name() != "Gather":
        return None, None
    gather = others[0]
    x = _up(gather.input_value(0), ("Reshape",))
    shape = x.get_partial_shape()
    if not _gathers_rows(gather) or x.get_element_type().get_type_name() != "f32":
        return None, None
    if not (shape.rank.is_static and shape.rank.get_length() == 3 and shape[2].is_static):
        return None, None
    if shape[1].is_static and length.is_static and shape[1].get_length() != length.get_length():
        return None, None
    return x, gather.output(0)


def _gathers_rows(gather) -> bool:
    """Whether ``gather`` takes rows (a constant axis 0) of its data."""
    axis = _constant(gather.input_value(2))
    return axis is not None and axis.size == 1 and int(axis.reshape(-1)[0]) == 0


def _gathers_by(gather, positions) -> bool:
    """Whether ``gather`` takes rows (axis 0) of its data at ``positions`` plus the batch offsets (``gather_rows``)."""
    if not _gathers_rows(gather):
        return False
    value = _up(gather.input_value(1), ("Reshape",))
    node = value.get_node()
    return node.get_type_name() == "Add" and any(_same(node.input_value(i), positions) for i in range(2))


def _same(a, b) -> bool:
    return a.get_node().get_name() == b.get_node().get_name() and a.get_index() == b.get_index()


def _constant(value):
    node = value.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


def _filled_value(value) -> float | None:
    """The one value of a constant, or of a Broadcast of a one-value constant (``full_like``)."""
    if value.get_node().get_type_name() == "Broadcast":
        value = value.get_node().input_value(0)
    data = _constant(value)
    if data is None or np.unique(data).size != 1:
        return None
    return float(data.reshape(-1)[0])


def _is_first_only(data) -> bool:
    flat = np.asarray(data).reshape(-1).astype(bool)
    return flat.size > 0 and flat[0] and not flat[1:].any()


_FACTORY = {}


def _node_maker(kernel: str):
    if kernel not in KERNELS:
        raise ConfigError(f"unknown attention kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if kernel == "float32":
        return pruning_attention_op()
    if "int8" not in _FACTORY:  # one factory per process: it keeps the extension library loaded
        from openvino.utils.node_factory import NodeFactory

        from qla_sdk.runtime.openvino_extension import pruning_attention_library

        factory = NodeFactory()
        factory.add_extension(str(pruning_attention_library()))
        _FACTORY["int8"] = factory
    factory = _FACTORY["int8"]
    return lambda inputs, attrs: factory.create(OP_NAME, inputs, attrs)


def sum_significance_directly(model) -> int:
    """In a mask-free graph, replace each significance product (a (1 x len) row of ones times every head's
    probabilities, then a sum over heads) by one ReduceSum of the probabilities over heads and queries: the same sum,
    read in one streaming pass instead of a matrix-vector product per head. Returns how many were replaced; ``model``
    changes in place. Only valid where every query is real (the mask-free copy)."""
    import openvino.opset13 as ops

    replaced = 0
    for softmax in [op for op in model.get_ordered_ops() if op.get_type_name() == "Softmax"]:
        probs = softmax.output(0)
        shape = probs.get_partial_shape()
        if not (shape.rank.is_static and shape.rank.get_length() == 4):
            continue
        product = _significance_product(_down_single(probs, ("Reshape",)))
        if product is None:
            continue
        reduce = _only_consumer(_down_single(product.output(0), ("Reshape",)))
        if reduce is None or reduce.get_type_name() != "ReduceSum":
            continue
        total = ops.reduce_sum(probs, ops.constant(np.array([1, 2], np.int64)), keep_dims=False)
        reduce.output(0).replace(total.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def _significance_product(probs):
    """The MatMul that multiplies a (1 x len) row by the probabilities ``probs`` (its second operand), or None."""
    for target in probs.get_target_inputs():
        node = target.get_node()
        if node.get_type_name() == "MatMul" and target.get_index() == 1 and _is_row(node.get_output_partial_shape(0)):
            return node
    return None


def _is_row(shape) -> bool:
    return shape.rank.is_static and shape.rank.get_length() == 3 and shape[1].is_static and shape[1].get_length() == 1


def _match(softmax):
    """(q, k, v, mask or None, context output, significance output, heads, head_dim) of the block around
    ``softmax``, or None where the graph is not the exporter's pruning attention (the walk follows ``Layer.attend``
    and ``significance`` as exported). A graph with the mask bias gives the mask (batch, len) of the layer's input."""
    scores = _up(softmax.input_value(0), ("Reshape",))
    masked = scores.get_node().get_type_name() == "Add"
    if masked:  # scores + mask bias: the scores are the operand that comes from a MatMul
        operands = [_up(scores.get_node().input_value(i), ("Reshape",)) for i in range(2)]
        products = [o for o in operands if o.get_node().get_type_name() == "MatMul"]
        if len(products) != 1:
            return None
        scores = products[0]
    matmul = scores.get_node()
    if matmul.get_type_name() != "MatMul":
        return None
    attributes = matmul.get_attributes()
    out_shape, q_shape = softmax.get_output_partial_shape(0), matmul.get_input_partial_shape(0)
    if attributes.get("transpose_a") or not attributes.get("transpose_b") or not out_shape.rank.is_static:
        return None
    if out_shape.rank.get_length() != 4 or not (out_shape[1].is_static and q_shape[-1].is_static):
        return None
    heads, head_dim = out_shape[1].get_length(), q_shape[-1].get_length()
    hidden = heads * head_dim
    q, q_scale = _projection(matmul.input_value(0), hidden)
    k, k_scale = _projection(matmul.input_value(1), hidden)
    if q is None or k is None or not math.isclose(q_scale * k_scale, 1.0 / math.sqrt(head_dim), rel_tol=1e-6):
        return None
    probs = _down_single(softmax.output(0), ("Reshape",))
    context_product = significance_product = None
    for target in probs.get_target_inputs():
        node, index = target.get_node(), target.get_index()
        if node.get_type_name() == "FakeQuantize":
            node, index = _only_consumer(node.output(0)), 0
        if node is None or node.get_type_name() != "MatMul":
            return None
        if index == 1 and _is_row(node.get_output_partial_shape(0)):
            significance_product = node  # (mask row) x probabilities
        elif index == 0:
            context_product = node  # probabilities x v
    if context_product is None or significance_product is None:
        return None
    v, v_scale = _projection(context_product.input_value(1), hidden)
    if v is None or v_scale != 1.0:
        return None
    context_out = _down_context(context_product.output(0), hidden)
    per_head = _down_single(significance_product.output(0), ("Reshape",))
    reduce = _only_consumer(per_head)
    if context_out is None or reduce is None or reduce.get_type_name() != "ReduceSum":
        return None
    mask = _up(significance_product.input_value(0), ("Reshape", "Broadcast", "Unsqueeze")) if masked else None
    if mask is not None and not (
        mask.get_partial_shape().rank.is_static and mask.get_partial_shape().rank.get_length() == 2
    ):
        return None
    return q, k, v, mask, context_out, reduce.output(0), heads, head_dim


def _up(value, kinds: tuple[str, ...]):
    while value.get_node().get_type_name() in kinds:
        value = value.get_node().input_value(0)
    return value


def _is_hidden(value, hidden: int, rank: int = 3) -> bool:
    shape = value.get_partial_shape()
    return (
        shape.rank.is_static
        and shape.rank.get_length() == rank
        and shape[rank - 1].is_static
        and shape[rank - 1].get_length() == hidden
    )


def _projection(value, hidden: int):
    """Walk from an attention product's operand up to the linear layer output it reshapes: (output, scale), with
    FakeQuantize skipped (the float32 value) and a constant scalar Multiply folded into ``scale``."""
    scale = 1.0
    while True:
        node = value.get_node()
        kind = node.get_type_name()
        if _is_hidden(value, hidden) and kind != "FakeQuantize":
            return value, scale
        if kind not in _PASS_THROUGH:
            return None, scale
        if kind == "Multiply":
            operands = [node.input_value(0), node.input_value(1)]
            constants = [o for o in operands if o.get_node().get_type_name() == "Constant"]
            if len(constants) != 1 or constants[0].get_node().get_data().size != 1:
                return None, scale
            scale *= float(constants[0].get_node().get_data().reshape(-1)[0])
            value = next(o for o in operands if o.get_node().get_type_name() != "Constant")
            continue
        value = node.input_value(0)


def _only_consumer(value):
    targets = list(value.get_target_inputs())
    return targets[0].get_node() if len(targets) == 1 else None


def _down_single(value, kinds: tuple[str, ...]):
    """Follow single consumers of the given kinds."""
    while True:
        node = _only_consumer(value)
        if node is None or node.get_type_name() not in kinds:
            return value
        value = node.output(0)


def _down_context(value, hidden: int):
    """From the context product (batch * heads, len, head_dim) down its reshapes and transposes to the first value
    laid out as (batch, len, hidden) or (batch * len, hidden)."""
    while True:
        if _is_hidden(value, hidden) or _is_hidden(value, hidden, rank=2):
            return value
        node = _only_consumer(value)
        if node is None or node.get_type_name() not in ("Reshape", "Transpose", "FakeQuantize"):
            return None
        value = node.output(0)
