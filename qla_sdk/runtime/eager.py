"""The eager runtime: the reference encoder's numbers, computed faster, for float32 inference on CPU.

What it does differently from ``qla_sdk.modeling.encoder`` (the reference), on rows without padding:
- linear layers through oneDNN with weights packed once, GELU fused, q/k/v as one GEMM (``dense``);
- pruning layers: attention, significance and top-k in native kernels (``native``; ATen ops where they could not be
  built), with the probabilities kept per head instead of materialised for all heads;
- no attention masks to build or carry, dropped tokens' states written in place, denormals flushed (``denormals``).

It is applied explicitly (``EagerRuntime(model)``, as the fp32 backend does) and only where it is exact enough to
stand in for the reference: no autograd, model in eval mode, float32 CPU weights, no autocast, no tracing, no
per-layer traces, every row unpadded. Any other call runs the reference forward unchanged. Tests hold it equal to the
reference (selected tokens and logits) on the real MiniLM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qla_sdk.modeling import LengthConfig, TaskModel
from qla_sdk.modeling.encoder import Layer
from qla_sdk.modeling.heads import MODEL_LENGTH_CONFIG
from qla_sdk.runtime.denormals import flush_denormals
from qla_sdk.runtime.dense import dense, dense_split
from qla_sdk.runtime.native import native_kernels


class EagerRuntime:
    """``EagerRuntime(model)(input_ids, attention_mask, token_type_ids, length_config=...)`` returns what
    ``model(...)`` returns. Construction builds the native kernels (once per machine), so the first request does
    not pay for the compile."""

    def __init__(self, model: TaskModel, native: bool = True) -> None:
        self.model = model
        self.kernels = native_kernels() if native else None

    def applies(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> bool:
        """Whether this call can take the fast route (else the reference forward runs)."""
        weight = self.model.encoder.layers[0].query.weight
        return (
            not torch.is_grad_enabled()
            and not self.model.training
            and weight.device.type == "cpu"
            and weight.dtype == torch.float32
            and input_ids.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")
            and not (torch.compiler.is_compiling() or torch.jit.is_tracing())
            and (attention_mask is None or bool(attention_mask.all()))
        )

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        length_config: LengthConfig | str | None = MODEL_LENGTH_CONFIG,
        layer_config: tuple[bool, ...] | None = None,
    ):
        model = self.model
        if not self.applies(input_ids, attention_mask):
            return model(input_ids, attention_mask, token_type_ids, length_config, layer_config)
        length_config = model.resolve_length_config(length_config)
        model.check_call(input_ids, attention_mask, token_type_ids, length_config, layer_config)
        with flush_denormals():
            hidden = self.encode(input_ids, token_type_ids, length_config, layer_config)
        return model.head(hidden)

    def encode(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        length_config: LengthConfig | None,
        layer_config: tuple[bool, ...] | None,
    ) -> torch.Tensor:
        """The reference encoder's last hidden state for unpadded rows."""
        encoder = self.model.encoder
        x = encoder.embeddings(input_ids, token_type_ids)
        widths = None if length_config is None else length_config.resolve(input_ids.shape[1])
        positions = None  # original position of each live token; None while nothing was dropped
        final = None  # the restored states, written in place
        for i, layer in enumerate(encoder.layers):
            if layer_config is not None and not layer_config[i]:
                continue
            if widths is not None and length_config.drops_at(i, widths[i], x.shape[1]):
                context, received = self.attend_with_significance(layer, x)
                index = self.top_tokens(received, widths[i], length_config.keep_cls)
                final = put_rows(final, x, positions)  # tokens leaving here keep this layer's input
                positions = index if positions is None else positions.gather(1, index)
                context, x = take_rows(context, index), take_rows(x, index)
            else:
                q, k, v = (t.transpose(1, 2) for t in project(layer, x))
                context = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
            x = layer.attn_norm(x + dense(layer.attn_out, context.flatten(2)))
            x = layer.ffn_norm(x + dense(layer.ffn_out, dense(layer.ffn_in, x, layer.hidden_act)))
        return x if positions is None else put_rows(final, x, positions)

    def attend_with_significance(self, layer: Layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The context (batch, len, heads, head_dim) and each token's significance (batch, len): the attention it
        receives, summed over heads and queries. One pass over each head's probabilities in the native kernel;
        otherwise ATen ops from the materialised probabilities, softmax in place (a fresh (heads x len x len)
        buffer per op costs more than the arithmetic)."""
        q, k, v = project(layer, x)
        scale = 1.0 / math.sqrt(layer.head_dim)
        if self.kernels is not None:
            return self.kernels.attention_with_significance(q, k, v, scale)
        b, n, heads, d = q.shape
        q3, k3, v3 = (t.transpose(1, 2).reshape(b * heads, n, d) for t in (q, k, v))
        scores = torch.bmm(q3 * scale, k3.transpose(1, 2))
        probs = torch.ops.aten._softmax.out(scores, -1, False, out=scores)
        context = torch.bmm(probs, v3).view(b, heads, n, d).transpose(1, 2)
        ones = probs.new_ones(b * heads, 1, n)
        return context, torch.bmm(ones, probs).view(b, heads, n).sum(dim=1)

    def top_tokens(self, received: torch.Tensor, width: int, keep_cls: bool) -> torch.Tensor:
        """The reference ``select_tokens`` for unpadded rows: the ``width`` tokens that receive the most attention,
        in original order (ties to the earlier position, as ``torch.topk`` breaks them). Modifies ``received``."""
        if self.kernels is not None:
            return self.kernels.top_tokens(received, width, keep_cls)
        if keep_cls:
            received[:, 0] = float("inf")  # above every real score, as the reference's boost is
        return received.topk(width, dim=-1).indices.sort(dim=-1).values


def project(layer: Layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values as (batch, len, heads, head_dim) views of one stacked GEMM."""
    b, n, _ = x.shape
    q, k, v = dense_split((layer.query, layer.key, layer.value), x)
    shape = (b, n, layer.num_heads, layer.head_dim)
    return q.view(shape), k.view(shape), v.view(shape)


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for (batch, len, ...) of any trailing shape: one index_select at batch 1, which also makes
    the per-head context contiguous without a separate copy."""
    if x.shape[0] == 1:
        return x[0].index_select(0, index[0]).unsqueeze(0)
    flat = x.flatten(2)
    return flat.gather(1, index.unsqueeze(-1).expand(-1, -1, flat.shape[-1])).view(x.shape[0], -1, *x.shape[2:])


def put_rows(final: torch.Tensor | None, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Write each live token's state ``x`` at its original position of ``final``, in place. Before the first drop
    (``positions`` None) ``x`` covers every position in order and becomes ``final``: nothing reads that layer input
    again, so it is not copied."""
    if final is None:
        return x
    if x.shape[0] == 1:
        final[0].index_copy_(0, positions[0], x[0])
    else:
        final.scatter_(1, positions.unsqueeze(-1).expand_as(x), x)
    return final
