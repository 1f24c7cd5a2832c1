"""The reference encoder: BERT/RoBERTa layers that drop tokens layer by layer and restore them at the end.

Length-Adaptive Transformer (Kim & Cho 2021), on PoWER-BERT: after a layer's self-attention, each token's
significance is the attention it receives, summed over heads and over real (non-padding) queries. The most
significant tokens go on to the feed-forward block and the next layers; the rest leave. Padding leaves first.
A dropped token keeps the last layer output it had, so the final hidden states cover every original position
(drop-and-restore) and a span head still scores every token. Selection happens before the attention output
projection, which therefore runs on the staying tokens only; the result is the same as selecting after it.

This is the one path that training, export, search and evaluation run. Faster eager inference lives in
``qla_sdk.runtime`` (applied explicitly, tested equal to this file).

All shapes are static for a given length config and input length, so ``torch.export`` sees the pruning as ordinary
ops (topk, sort, gather): no graph breaks and no data-dependent Python control flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling.length import LengthConfig

# transformers' ``hidden_act`` names this encoder implements
ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


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

    def attend(
        self, x: torch.Tensor, mask: torch.Tensor, need_probs: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        """Multi-head self-attention up to the context vectors, per token as (batch, len, heads, head_dim);
        ``attention_output`` finishes the block. The probabilities (batch, heads, len, len) are materialised only
        when asked (pruning, distillation); otherwise the fused scaled-dot-product kernel runs, as transformers' own
        SDPA path does. Also returns q, k, v as (batch, heads, len, head_dim) for distillation."""
        b, n, _ = x.shape
        q, k, v = (
            lin(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
            for lin in (self.query, self.key, self.value)
        )
        bias = (1.0 - mask[:, None, None, :].to(q.dtype)) * torch.finfo(q.dtype).min  # padding gets no attention
        if not need_probs:
            dropout = self.attn_dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
            return context.transpose(1, 2), None, (q, k, v)
        # 3-D bmm on flattened heads: a 4-D ``@`` exports as expand + bmm, and OpenVINO runs that expand as a copy of
        # the (len x len) probabilities. Scaling q (len x head_dim) is cheaper than scaling the scores.
        heads, d = self.num_heads, self.head_dim
        q3 = (q * (1.0 / math.sqrt(d))).reshape(b * heads, n, d)
        scores = torch.bmm(q3, k.reshape(b * heads, n, d).transpose(1, 2)).view(b, heads, n, n)
        probs = torch.softmax(scores + bias, dim=-1)
        dropped = self.attn_dropout(probs).reshape(b * heads, n, n)
        context = torch.bmm(dropped, v.reshape(b * heads, n, d)).view(b, heads, n, d)
        return context.transpose(1, 2), probs, (q, k, v)

    def attention_output(self, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Output projection, residual and norm. The encoder calls it on the tokens that stay only: a token that
        leaves keeps this layer's input, so its projection would be thrown away."""
        return self.attn_norm(x + self.dropout(self.attn_out(context.flatten(2))))

    def feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        inner = ACTIVATIONS[self.hidden_act](self.ffn_in(h))
        return self.ffn_norm(h + self.dropout(self.ffn_out(inner)))


def significance(probs: torch.Tensor, mask: torch.Tensor, keep_cls: bool) -> torch.Tensor:
    """Attention each token receives, summed over heads and real queries; padding scores -1 so it goes first."""
    # (mask as a row vector) @ probs sums over real queries in one pass, without a (B, H, L, L) temporary; a 3-D
    # bmm per head, as in ``Layer.attend``, so that no expand of the probabilities reaches an exported graph (one
    # product over all heads at once costs OpenVINO a Reorder copy of every probability map).
    b, heads, n, _ = probs.shape
    rows = mask.to(probs.dtype)[:, None, None, :].expand(b, heads, 1, n).reshape(b * heads, 1, n)
    received = torch.bmm(rows, probs.reshape(b * heads, n, n)).view(b, heads, n).sum(dim=1)
    score = torch.where(mask > 0, received, torch.full_like(received, -1.0))
    if keep_cls:
        # A real token's score is at most heads * queries, so this puts the first token above every other.
        top = float(heads * n + 1)
        first = torch.arange(n, device=score.device) == 0
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


def ratio_keep_rows(real: torch.Tensor, ratio: float) -> torch.Tensor:
    """``length.ratio_keep`` per row: ceil(float32(real tokens) * float32(ratio)), at least 1."""
    return torch.ceil(real.to(torch.float32) * torch.tensor(ratio, dtype=torch.float32)).clamp(min=1)


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
        batch, seq_len = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(torch.float32)  # 1 for the real tokens among the live ones
        widths = None if length_config is None else length_config.resolve(seq_len)
        x = self.embeddings(input_ids, token_type_ids)
        positions = torch.arange(seq_len, device=x.device).expand(batch, seq_len)  # original place of live tokens
        restore = _Restore()
        traces: list[LayerTrace | None] = []
        for i, layer in enumerate(self.layers):
            if layer_config is not None and not layer_config[i]:
                traces.append(None)
                continue
            prunes = widths is not None and length_config.drops_at(i, widths[i], x.shape[1])
            mask_in = mask
            context, probs, qkv = layer.attend(x, mask, need_probs=prunes or output_traces)
            if prunes:
                per_sample = None
                if length_config.is_ratio:  # each row keeps its share of its own real length
                    per_sample = ratio_keep_rows(attention_mask.sum(dim=1), length_config.lengths[i])
                score = significance(probs, mask, length_config.keep_cls)
                index, mask = select_tokens(score, mask, widths[i], per_sample)
                restore.record(x, positions, mask_in)  # tokens leaving here keep this layer's input
                positions = positions.gather(1, index)
                context, x = gather_rows(context.flatten(2), index), gather_rows(x, index)
            x = layer.feed_forward(layer.attention_output(context, x))
            if output_traces:
                traces.append(LayerTrace(probs, *qkv, mask_in, x))
        if not restore.states:
            return EncoderOutput(x, traces)
        restore.record(x, positions, mask)
        return EncoderOutput(restore.result(), traces)


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
