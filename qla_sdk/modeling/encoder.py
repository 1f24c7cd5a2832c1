"""A compact BERT/RoBERTa encoder that drops tokens layer by layer and restores them at the end.

Length-Adaptive Transformer (Kim & Cho 2021), on PoWER-BERT: after a layer's self-attention, each token's
significance is the attention it receives, summed over heads and over real (non-padding) queries. The most
significant tokens go on to the feed-forward block and the next layers; the rest leave. Padding leaves first.
A dropped token keeps the last layer output it had, so the final hidden states cover every original position
(drop-and-restore) and a span head still scores every token. Selection happens before the attention output
projection, which therefore runs on the staying tokens only; the result is the same as selecting after it.

Eager inference takes faster routes to the same numbers: linear layers through oneDNN with packed weights
(``dense``), and on rows without padding the pruning layers' attention, significance and top-k through native
kernels (``native``) when they could be built.

All shapes are static for an integer length config, so ``torch.export`` sees the pruning as ordinary ops
(topk, sort, gather, scatter): no graph breaks and no data-dependent Python control flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling.denormals import flush_denormals
from qla_sdk.modeling.dense import ACTIVATIONS, dense, dense_split, eager_inference
from qla_sdk.modeling.length import LengthConfig
from qla_sdk.modeling.native import native_kernels


@dataclass
class LayerTrace:
    """What a layer saw, for distillation: per-head attention probabilities and the q/k/v it attended with."""

    attention_probs: torch.Tensor  # (batch, heads, q_len, k_len)
    query: torch.Tensor  # (batch, heads, len, head_dim)
    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor  # (batch, len) 1 for real tokens at this layer's input
    hidden_states: torch.Tensor  # (batch, out_len, hidden) this layer's output


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (batch, seq, hidden): every original position, dropped ones restored
    traces: list[LayerTrace | None] = field(default_factory=list)


class Embeddings(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # RoBERTa numbers real tokens from padding_idx + 1 and gives padding the padding position.
        self.roberta_positions = config.model_type == "roberta"
        self.pad_token_id = config.pad_token_id

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        if self.roberta_positions:
            not_pad = input_ids.ne(self.pad_token_id).long()
            positions = torch.cumsum(not_pad, dim=1) * not_pad + self.pad_token_id
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class Layer(nn.Module):
    """Self-attention, then (optionally) token selection, then the feed-forward block."""

    def __init__(self, config) -> None:
        super().__init__()
        hidden, self.num_heads = config.hidden_size, config.num_attention_heads
        self.head_dim = hidden // self.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(hidden, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        if config.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {config.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}")
        self.hidden_act = config.hidden_act
        self.attn_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values as (batch, len, heads, head_dim) views of the projections."""
        b, n, _ = x.shape
        q, k, v = dense_split((self.query, self.key, self.value), x)
        shape = (b, n, self.num_heads, self.head_dim)
        return q.view(shape), k.view(shape), v.view(shape)

    def attend(
        self, x: torch.Tensor, mask: torch.Tensor | None, need_probs: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        """Multi-head self-attention up to the context vectors, returned per token as (batch, len, heads,
        head_dim); ``attention_output`` finishes the block. Probabilities are materialised only when asked
        (pruning, distillation); otherwise the fused scaled-dot-product kernel runs, as transformers' own SDPA
        path does. ``mask`` None: every token is real (eager inference on unpadded input), so no attention bias is
        built."""
        q, k, v = (t.transpose(1, 2) for t in self._project(x))
        bias = None if mask is None else (1.0 - mask[:, None, None, :].to(q.dtype)) * torch.finfo(q.dtype).min
        if need_probs:
            # 3-D bmm on flattened heads: a 4-D ``@`` exports as expand + bmm, and OpenVINO runs that expand as a
            # copy of the (len x len) probabilities. Scaling q (len x head_dim) is cheaper than scaling the scores.
            b, heads, n, d = q.shape
            q3 = (q * (1.0 / math.sqrt(self.head_dim))).reshape(b * heads, n, d)
            scores = torch.bmm(q3, k.reshape(b * heads, n, d).transpose(1, 2)).view(b, heads, n, n)
            if eager_inference():
                probs = _softmax_in_place(scores, mask, bias)
            else:
                probs = torch.softmax(scores if bias is None else scores + bias, dim=-1)
            dropped = self.attn_dropout(probs).reshape(b * heads, n, n)
            context = torch.bmm(dropped, v.reshape(b * heads, n, d)).view(b, heads, n, d)
        else:
            probs = None
            dropout = self.attn_dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        return context.transpose(1, 2), probs, (q, k, v)

    def attend_with_significance(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention of a pruning layer on rows without padding, in eager inference: the context
        (batch, len, heads, head_dim) and each token's significance (batch, len), the attention it receives summed
        over heads and queries. The native kernel computes both in one pass over each head's probabilities when it
        is built; otherwise ATen ops do, from the materialised probabilities."""
        kernel = native_kernels()
        if kernel is not None:
            q, k, v = self._project(x)
            return kernel.attention_with_significance(q, k, v, 1.0 / math.sqrt(self.head_dim))
        context, probs, _ = self.attend(x, None)
        b, heads, n, _ = probs.shape
        ones = probs.new_ones(b * heads, 1, n)  # the product ``significance`` uses, without a mask to apply
        return context, torch.bmm(ones, probs.view(b * heads, n, n)).view(b, heads, n).sum(dim=1)

    def attention_output(self, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Output projection, residual and norm. The encoder calls it on the tokens that stay only: a token that
        leaves keeps this layer's input, so its projection would be thrown away."""
        return self.attn_norm(x + self.dropout(dense(self.attn_out, context.flatten(2))))

    def feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.ffn_norm(h + self.dropout(dense(self.ffn_out, dense(self.ffn_in, h, self.hidden_act))))


def _softmax_in_place(scores: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """Masked softmax that reuses the scores buffer. At length 384 the scores are 12 x 384 x 384 floats (7 MB);
    a fresh buffer for ``scores + bias`` and another for the softmax cost more than the arithmetic (page faults
    and cache misses): this alone took the pruned forward from 36 to 30 ms in ``benchmarks/latency.py``."""
    if mask is not None and not bool(mask.all()):  # an unpadded input (the deployment case) needs no mask
        scores.add_(bias)
    return torch.ops.aten._softmax.out(scores, -1, False, out=scores)


def significance(probs: torch.Tensor, mask: torch.Tensor, keep_cls: bool) -> torch.Tensor:
    """Attention each token receives, summed over heads and real queries; padding scores -1 so it goes first."""
    # (mask as a row vector) @ probs sums over real queries in one pass, without a (B, H, L, L) temporary; a 3-D
    # bmm per head, as in ``Layer.attend``, so that no expand of the probabilities reaches an exported graph. One
    # (1 x heads*len) product over probabilities reshaped to (B, heads*len, len) is no faster in eager mode and
    # costs OpenVINO a copy of every probability map (a Reorder: 15.5 instead of 13.9 ms at 384 in
    # ``benchmarks/profile_openvino.py``).
    b, heads, n, _ = probs.shape
    rows = mask.to(probs.dtype)[:, None, None, :].expand(b, heads, 1, n).reshape(b * heads, 1, n)
    received = torch.bmm(rows, probs.reshape(b * heads, n, n)).view(b, heads, n).sum(dim=1)
    score = torch.where(mask > 0, received, torch.full_like(received, -1.0))
    if keep_cls:
        # A real token's score is at most heads * queries, so this puts the first token above every other.
        top = float(probs.shape[1] * probs.shape[2] + 1)
        first = torch.arange(score.shape[1], device=score.device) == 0
        score = torch.where(first.unsqueeze(0), torch.full_like(score, top), score)
    return score


def select_tokens(
    score: torch.Tensor, mask: torch.Tensor, width: int, per_sample: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (in original order) of the ``width`` most significant tokens, and the mask after selection.

    ``per_sample`` (batch,) keeps fewer real tokens in some rows (ratio configs): the extra, least significant
    selected tokens are masked out, which makes each row behave as if it ran alone and unpadded.
    """
    by_rank = score.topk(width, dim=-1).indices
    index, order = by_rank.sort(dim=-1)
    new_mask = mask.gather(1, index)
    if per_sample is not None:
        rank_kept = (torch.arange(width, device=score.device).unsqueeze(0) < per_sample.unsqueeze(1)).to(mask.dtype)
        new_mask = new_mask * rank_kept.gather(1, order)
    return index, new_mask


class Encoder(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        length_config: LengthConfig | None = None,
        layer_config: tuple[bool, ...] | None = None,
        output_traces: bool = False,
    ) -> EncoderOutput:
        """Run the layers; ``length_config`` prunes tokens, ``layer_config`` skips layers (LayerDrop).

        A skipped layer passes its input through unchanged and prunes nothing.
        """
        with flush_denormals(enabled=eager_inference()):
            return self._forward(input_ids, attention_mask, token_type_ids, length_config, layer_config, output_traces)

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        length_config: LengthConfig | None,
        layer_config: tuple[bool, ...] | None,
        output_traces: bool,
    ) -> EncoderOutput:
        batch, seq_len = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(torch.float32)
        # Eager inference on rows without padding (batch 1, the deployment case) takes a lean path: no attention
        # bias, no masks to carry, dropped states written in place. Each small op costs 5-10 us on a Xeon core;
        # the MiniLM forward of ``benchmarks/latency.py`` with its length config went from 465 to 331 dispatched ops
        # when this path was added.
        unpadded = eager_inference() and not output_traces and bool(attention_mask.all())
        x = self.embeddings(input_ids, token_type_ids)
        widths = per_sample = None
        if length_config is not None:
            widths = length_config.resolve(seq_len)
        positions = None  # original position of each live token; None while nothing was dropped
        restore = _Restore()
        final = None  # the unpadded path's restored states, filled in place
        traces: list[LayerTrace | None] = []
        for i, layer in enumerate(self.layers):
            if layer_config is not None and not layer_config[i]:
                traces.append(None)
                continue
            ratio_drops = length_config is not None and length_config.is_ratio and length_config.lengths[i] < 1.0
            prunes = widths is not None and (widths[i] < x.shape[1] or ratio_drops)
            mask_in = mask
            if prunes and unpadded:
                context, received = layer.attend_with_significance(x)
                index = top_tokens(received, widths[i], length_config.keep_cls)
                final = put_rows(final, x, positions)  # tokens leaving here keep this layer's input
                positions = index if positions is None else positions.gather(1, index)
                context, x = take_rows(context, index), take_rows(x, index)
            else:
                context, probs, qkv = layer.attend(x, None if unpadded else mask, need_probs=prunes or output_traces)
                if prunes:
                    if length_config.is_ratio:
                        real = attention_mask.sum(dim=1)
                        per_sample = torch.ceil(real.to(torch.float32) * length_config.lengths[i]).clamp(min=1)
                    score = significance(probs, mask, length_config.keep_cls)
                    index, mask = select_tokens(score, mask, widths[i], per_sample)
                    if positions is None:
                        positions = torch.arange(seq_len, device=x.device).expand(batch, seq_len)
                    # Tokens leaving here keep this layer's input as their final state.
                    restore.record(x, positions, mask_in)
                    positions = positions.gather(1, index)
                    context, x = gather_rows(context.flatten(2), index), gather_rows(x, index)
            x = layer.feed_forward(layer.attention_output(context, x))
            if output_traces:
                traces.append(LayerTrace(probs, *qkv, mask_in, x))
        if positions is None:
            restored = x
        elif unpadded:
            restored = put_rows(final, x, positions)
        else:
            restore.record(x, positions, mask)
            restored = restore.result()
        return EncoderOutput(restored, traces)


def top_tokens(received: torch.Tensor, width: int, keep_cls: bool) -> torch.Tensor:
    """``select_tokens`` for rows without padding (eager inference): the ``width`` tokens that receive the most
    attention, in original order, with nothing to mask or carry. Modifies ``received``."""
    kernel = native_kernels()
    if kernel is not None:  # one call for what takes three ops here; ties go to the earlier position
        return kernel.top_tokens(received, width, keep_cls)
    if keep_cls:
        received[:, 0] = float("inf")  # above every real score, as ``significance``'s boost is
    return received.topk(width, dim=-1).indices.sort(dim=-1).values


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` in eager mode, for (batch, len, ...) of any trailing shape: one index_select at batch 1,
    which also makes the per-head context contiguous without a separate copy."""
    if x.shape[0] == 1:
        return x[0].index_select(0, index[0]).unsqueeze(0)
    return gather_rows(x.flatten(2), index)


def put_rows(final: torch.Tensor | None, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Write each live token's state ``x`` at its original position of ``final``, in place (eager inference only).
    Before the first drop (``positions`` None) ``x`` covers every position in order and becomes ``final``: nothing
    reads that layer input again, so it is not copied."""
    if final is None:
        return x
    if x.shape[0] == 1:
        final[0].index_copy_(0, positions[0], x[0])
    else:
        final.scatter_(1, positions.unsqueeze(-1).expand_as(x), x)
    return final


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` as one row gather on the flattened batch (OpenVINO runs it as an optimised Gather,
    where the element-wise ``torch.gather`` becomes GatherElements on a reference kernel)."""
    batch, length, hidden = x.shape
    offsets = torch.arange(batch, device=x.device).unsqueeze(1) * length
    return x.reshape(batch * length, hidden).index_select(0, (index + offsets).reshape(-1)).view(batch, -1, hidden)


class _Restore:
    """Drop-and-restore bookkeeping without scattering hidden states.

    Each pruning layer's input is kept as it is; ``slot`` (batch, seq) says, for every original position, which
    kept row holds its latest state. Only live tokens update their slot, so masked tokens (padding, or tokens a
    ratio config dropped from a shorter row) keep the state they had when they left. One row gather at the end
    builds the restored sequence.
    """

    def __init__(self) -> None:
        self.states: list[torch.Tensor] = []
        self.slot: torch.Tensor | None = None
        self.rows = 0

    def record(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> None:
        new_slot = self.rows + torch.arange(x.shape[1], device=x.device).unsqueeze(0).expand_as(positions)
        if self.slot is None:  # the first record covers every position
            self.slot = new_slot
        else:
            current = self.slot.gather(1, positions)
            self.slot = self.slot.scatter(1, positions, torch.where(mask > 0, new_slot, current))
        self.states.append(x)
        self.rows += x.shape[1]

    def result(self) -> torch.Tensor:
        return gather_rows(torch.cat(self.states, dim=1), self.slot)
