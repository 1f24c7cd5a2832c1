"""Task heads on top of the encoder, and the task model the SDK trains, quantizes and serves."""

from __future__ import annotations

import torch
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling.encoder import Encoder, EncoderOutput
from qla_sdk.modeling.length import LengthConfig

TASKS = ("question-answering", "text-classification")
# ``length_config`` default of the task model's calls: run the model's own config (``model.length_config``, the
# searched one a deployed model carries; None for full length). Pass None explicitly for full length.
MODEL_LENGTH_CONFIG = "model"


class SpanHead(nn.Module):
    """Start/end logits for every position (drop-and-restore makes every position available)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.qa = nn.Linear(config.hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.qa(hidden).unbind(dim=-1)
        return start, end


class ClassificationHead(nn.Module):
    """dense + tanh on the first token, then a linear layer: BERT's pooler+classifier and RoBERTa's head alike."""

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        # RoBERTa applies dropout before the dense layer too; BERT's pooler does not.
        self.dropout_first = config.model_type == "roberta"

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        first = hidden[:, 0]
        if self.dropout_first:
            first = self.dropout(first)
        return self.out(self.dropout(torch.tanh(self.dense(first))))


class TaskModel(nn.Module):
    """Encoder + head. ``forward`` returns ``(start_logits, end_logits)`` for QA and ``logits`` otherwise."""

    def __init__(self, config, task: str) -> None:
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(TASKS)}")
        self.config, self.task = config, task
        self.encoder = Encoder(config)
        self.head = SpanHead(config) if task == "question-answering" else ClassificationHead(config)
        self.length_config = None  # the searched config a deployed model runs with

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def length_config(self) -> LengthConfig | None:
        return self._length_config

    @length_config.setter
    def length_config(self, value: LengthConfig | str | None) -> None:
        """Parsed and checked against the layer count here, so a bad config fails where it is set, not in a later
        forward pass or save."""
        config = LengthConfig.parse(value)
        if config is not None:
            config.check(self.num_layers)
        self._length_config = config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        length_config: LengthConfig | str | None = MODEL_LENGTH_CONFIG,
        layer_config: tuple[bool, ...] | None = None,
        output_traces: bool = False,
    ):
        """Logits; with ``output_traces`` also the encoder output (a DDP-wrapped model only exposes forward)."""
        outputs, encoded = self.run(
            input_ids, attention_mask, token_type_ids, length_config, layer_config, output_traces
        )
        return (outputs, encoded) if output_traces else outputs

    def run(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        length_config: LengthConfig | str | None = MODEL_LENGTH_CONFIG,
        layer_config: tuple[bool, ...] | None = None,
        output_traces: bool = False,
    ) -> tuple[object, EncoderOutput]:
        """Like ``forward``, also returning the encoder output (per-layer traces for distillation)."""
        length_config = self.resolve_length_config(length_config)
        if not _compiling():
            self.check_call(input_ids, attention_mask, token_type_ids, length_config, layer_config)
        out = self.encoder(input_ids, attention_mask, token_type_ids, length_config, layer_config, output_traces)
        return self.head(out.last_hidden_state), out

    def resolve_length_config(self, length_config: LengthConfig | str | None) -> LengthConfig | None:
        """``"model"``: this model's own config; anything else is parsed (None: full length)."""
        if isinstance(length_config, str) and length_config == MODEL_LENGTH_CONFIG:
            return self.length_config
        return LengthConfig.parse(length_config)

    def check_call(self, input_ids, attention_mask, token_type_ids, length_config, layer_config) -> None:
        """Reject inputs and configs this model cannot run, with the fix in the message."""
        check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        if length_config is not None:
            length_config.check(self.num_layers, input_ids.shape[1])
        if layer_config is not None and len(layer_config) != self.num_layers:
            raise ConfigError(f"layer config has {len(layer_config)} entries; the model has {self.num_layers} layers")

    def with_length_config(self, length_config: LengthConfig | str | None = MODEL_LENGTH_CONFIG) -> FixedLengthModel:
        """A module whose forward takes only tensors, for export and compilation (None: full length)."""
        return FixedLengthModel(self, self.resolve_length_config(length_config))


class FixedLengthModel(nn.Module):
    """The task model with its length config baked in: ``forward(input_ids, attention_mask, token_type_ids)``."""

    def __init__(self, model: TaskModel, length_config: LengthConfig | None) -> None:
        super().__init__()
        self.model, self.length_config = model, length_config

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids, attention_mask, token_type_ids, self.length_config)


def _compiling() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def max_input_length(config) -> int:
    """The longest input the position embeddings cover (RoBERTa numbers positions from ``pad_token_id + 1``)."""
    return config.max_position_embeddings - (config.pad_token_id + 1 if config.model_type == "roberta" else 0)


def check_inputs(config, input_ids, attention_mask, token_type_ids) -> None:
    """Reject what would otherwise fail deep inside torch (or silently read the wrong embedding)."""
    if (
        not isinstance(input_ids, torch.Tensor)
        or input_ids.dim() != 2
        or input_ids.dtype
        not in (
            torch.int64,
            torch.int32,
        )
    ):
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be an integer tensor of shape (batch, seq_len); got {shape}")
    batch, seq_len = input_ids.shape
    if seq_len == 0 or batch == 0:
        raise ValueError(f"input_ids has shape {tuple(input_ids.shape)}: need at least one token per row")
    limit = max_input_length(config)
    if seq_len > limit:
        raise ValueError(f"input of {seq_len} tokens exceeds the model's maximum of {limit}; truncate or use windows")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {config.vocab_size - 1}]")
    for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if t is not None and tuple(t.shape) != (batch, seq_len):
            raise ValueError(f"{name} has shape {tuple(t.shape)}; it must match input_ids {(batch, seq_len)}")
    if token_type_ids is not None and (
        int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= config.type_vocab_size
    ):
        raise ValueError(f"token_type_ids must lie in [0, {config.type_vocab_size - 1}]")
