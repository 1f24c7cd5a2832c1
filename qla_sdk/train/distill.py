"""MiniLM distillation: self-attention transfer from the teacher's last (or a chosen) layer to the student's last.

MiniLM v1 (Wang et al. 2020): KL between the teacher's and the student's attention distributions, per head, plus
KL between their value relations softmax(V Vᵀ/√d). Both are L x L per head, so the widths may differ but the head
counts must match.

MiniLMv2 (Wang et al. 2021): q-q, k-k and v-v self-attention relations over *relation heads*: concatenate the
attention heads' queries (keys, values) to (B, L, H*d), split that into R relation heads and compare
softmax(Q_r Q_rᵀ/√d_r). Teacher and student only need widths divisible by R.

Every KL runs teacher -> student (the teacher's distribution is the target), over real (non-padding) query rows
and real keys only. Added to these: prediction-layer distillation and the hard-label task loss.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import TaskModel
from qla_sdk.train.augment import AUGMENTED, AugmentConfig, Augmenter
from qla_sdk.train.config import TrainConfig
from qla_sdk.train.loop import TrainResult, train
from qla_sdk.train.tasks import evaluate, task_loss

VERSIONS = ("v1", "v2")


@dataclass
class DistillConfig:
    """What to distil and with which weights.

    ``teacher_layer`` is a 1-based layer number (None: the last layer; MiniLMv2 uses an upper-middle layer, e.g.
    21 of 24, for large teachers). ``relation_heads`` (v2) defaults to the student's attention head count; MiniLMv2
    uses 48 for base-size and 64 for large teachers. The prediction term is KL(teacher || student) at
    ``temperature``, scaled by T²: the soft cross-entropy less the teacher's entropy, a constant, so the gradients
    are the same and a perfect student scores 0.
    """

    version: str = field(default="v2", metadata={"help": "MiniLM version (default v2)", "choices": VERSIONS})
    relation_heads: int | None = field(
        default=None, metadata={"help": "v2 relation heads (default: the student's heads; 48 in MiniLMv2)"}
    )
    teacher_layer: int | None = field(
        default=None, metadata={"help": "1-based teacher layer to distil from (default: the last)"}
    )
    temperature: float = field(default=1.0, metadata={"help": "prediction distillation temperature (default 1)"})
    attention_weight: float = field(default=1.0, metadata={"help": "weight of the v1 attention transfer (default 1)"})
    value_weight: float = field(default=1.0, metadata={"help": "weight of the v1 value relation (default 1)"})
    relation_weight: float = field(
        default=1.0, metadata={"help": "weight of the v2 q-q + k-k + v-v relations (default 1)"}
    )
    prediction_weight: float = field(
        default=1.0, metadata={"help": "weight of the prediction-layer distillation (default 1)"}
    )
    task_weight: float = field(default=1.0, metadata={"help": "weight of the hard-label task loss (default 1)"})

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ConfigError(f"distillation version {self.version!r} is unknown; choose v1 or v2")
        if self.relation_heads is not None and (isinstance(self.relation_heads, bool) or self.relation_heads < 1):
            raise ConfigError(f"relation_heads={self.relation_heads}: give a positive count, e.g. 48 (or None)")
        if self.teacher_layer is not None and self.teacher_layer < 1:
            raise ConfigError(f"teacher_layer={self.teacher_layer}: layers are numbered from 1 (None: the last)")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature={self.temperature}: must be a positive number, e.g. 1.0 or 2.0")
        for name in ("attention_weight", "value_weight", "relation_weight", "prediction_weight", "task_weight"):
            weight = getattr(self, name)  # every field, by its own name (a recipe may switch versions later)
            if not (weight >= 0 and math.isfinite(weight)):
                raise ConfigError(f"{name}={weight}: loss weights must be finite and >= 0")
        if not any(self.weights().values()):
            raise ConfigError(f"every {self.version} loss weight is 0: set at least one weight above 0")

    def weights(self) -> dict[str, float]:
        """The weight of each loss term this version uses."""
        attention = (
            {"attention": self.attention_weight, "value_relation": self.value_weight}
            if self.version == "v1"
            else {"relation": self.relation_weight}
        )
        return {**attention, "prediction": self.prediction_weight, "task": self.task_weight}

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------------- losses


def _masked_log_softmax(scores: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    scores = scores.float()
    if key_mask is not None:
        # A finite fill (not -inf) keeps 0 * (log t - log s) at padding keys from turning into nan.
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def _kl_rows(teacher_log: torch.Tensor, student_log: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """KL(teacher || student) of each row (summed over the last dim), padding keys excluded."""
    terms = teacher_log.exp() * (teacher_log - student_log)
    if key_mask is not None:
        terms = torch.where(key_mask, terms, torch.zeros_like(terms))
    return terms.sum(dim=-1)


def _mean_over_real_queries(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average (B, heads, L) row KLs over heads and the real query positions of each sequence."""
    weights = mask[:, None, :].to(kl.dtype)
    return (kl * weights).sum() / (weights.sum() * kl.shape[1]).clamp(min=1.0)


def attention_transfer_loss(
    teacher_probs: torch.Tensor, student_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """MiniLM v1 attention transfer: KL between (B, H, L, L) attention distributions, per head, averaged over heads
    and real query positions. ``mask`` (B, L) is 1 for real tokens."""
    if teacher_probs.shape != student_probs.shape:
        raise ConfigError(
            f"attention transfer needs equal shapes; teacher {tuple(teacher_probs.shape)}, student "
            f"{tuple(student_probs.shape)}. Different head counts need MiniLMv2 (version='v2')"
        )
    keys = mask[:, None, None, :] > 0
    tiny = torch.finfo(torch.float32).tiny
    teacher_log = teacher_probs.float().clamp(min=tiny).log()
    student_log = student_probs.float().clamp(min=tiny).log()
    return _mean_over_real_queries(_kl_rows(teacher_log, student_log, keys), mask)


def self_relation(x: torch.Tensor, num_relation_heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Log of softmax(X_r X_rᵀ/√d_r) over real keys, for ``x`` (B, H, L, d) regrouped into R relation heads."""
    batch, heads, length, head_dim = x.shape
    width = heads * head_dim
    if width % num_relation_heads:
        raise ConfigError(
            f"{num_relation_heads} relation heads do not divide the width {width}; choose a divisor of both the "
            "teacher's and the student's hidden size"
        )
    rel_dim = width // num_relation_heads
    grouped = x.transpose(1, 2).reshape(batch, length, num_relation_heads, rel_dim).transpose(1, 2).float()
    scores = grouped @ grouped.transpose(-1, -2) / math.sqrt(rel_dim)
    return _masked_log_softmax(scores, mask[:, None, None, :] > 0)


def relation_loss(
    teacher_x: torch.Tensor, student_x: torch.Tensor, mask: torch.Tensor, num_relation_heads: int
) -> torch.Tensor:
    """KL between teacher and student self-relations of q, k or v (B, H, L, d), averaged over relation heads and
    real query positions. With ``num_relation_heads`` equal to the attention heads this is MiniLM v1's value
    relation."""
    teacher_log = self_relation(teacher_x, num_relation_heads, mask)
    student_log = self_relation(student_x, num_relation_heads, mask)
    kl = _kl_rows(teacher_log, student_log, mask[:, None, None, :] > 0)
    return _mean_over_real_queries(kl, mask)


def soft_kl(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) · T² over the last dim, averaged over rows; ``mask`` drops classes
    (here: padding positions of span logits)."""
    keys = None if mask is None else mask > 0
    teacher_log = _masked_log_softmax(teacher_logits.detach() / temperature, keys)
    student_log = _masked_log_softmax(student_logits / temperature, keys)
    return _kl_rows(teacher_log, student_log, keys).mean() * temperature**2


def prediction_loss(teacher_outputs, student_outputs, temperature: float, attention_mask: torch.Tensor):
    """Prediction-layer distillation: logits for classification, the mean of the start and end terms for QA
    (span logits over real positions only)."""
    if isinstance(teacher_outputs, (tuple, list)):
        terms = [
            soft_kl(t, s, temperature, attention_mask) for t, s in zip(teacher_outputs, student_outputs, strict=True)
        ]
        return sum(terms) / len(terms)
    return soft_kl(teacher_outputs, student_outputs, temperature)


# ------------------------------------------------------------------------------------------- teacher/student


def check_compatible(teacher: TaskModel, student: TaskModel) -> None:
    """Raise unless both models read the same token ids and predict the same things (any distillation needs it)."""
    tc, sc = teacher.config, student.config
    if teacher.task != student.task:
        raise ConfigError(f"teacher task {teacher.task!r} differs from student task {student.task!r}")
    if teacher.task != "question-answering" and tc.num_labels != sc.num_labels:
        raise ConfigError(f"teacher has {tc.num_labels} labels, student {sc.num_labels}: they must match")
    if tc.vocab_size != sc.vocab_size:
        raise ConfigError(
            f"teacher vocabulary {tc.vocab_size} != student vocabulary {sc.vocab_size}: both read the same "
            "token ids, so the student must use the teacher's tokenizer"
        )


def check_pair(teacher: TaskModel, student: TaskModel, config: DistillConfig) -> None:
    """Raise if ``student`` cannot be distilled from ``teacher`` with ``config``."""
    check_compatible(teacher, student)
    tc, sc = teacher.config, student.config
    check_shapes(config, Dims(tc.num_hidden_layers, tc.hidden_size, tc.num_attention_heads), Dims.of(sc))


@dataclass(frozen=True)
class Dims:
    """What distillation compares of a model's shape; a field None where it is not known yet (a recipe checks a
    hub model's when its stage loads it)."""

    layers: int | None
    hidden: int | None
    heads: int | None

    @classmethod
    def of(cls, config: object) -> Dims:
        """From a transformers config or a config.json mapping; unknown or non-integer values are None."""

        def get(name: str) -> int | None:
            value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(get("num_hidden_layers"), get("hidden_size"), get("num_attention_heads"))


def check_shapes(config: DistillConfig, teacher: Dims, student: Dims) -> None:
    """Raise if ``config`` cannot distil a model of ``teacher``'s shape into one of ``student``'s (the flag and the
    recipe key named for each): a teacher layer it lacks, v1's head-by-head maps across other head counts, or v2
    relation heads that do not divide both widths."""
    if config.teacher_layer is not None and teacher.layers is not None and config.teacher_layer > teacher.layers:
        raise ConfigError(
            f"teacher_layer={config.teacher_layer} (--teacher-layer, distill.minilm.teacher_layer) but the teacher "
            f"has {teacher.layers} layers (numbered from 1)"
        )
    if config.version == "v1" and None not in (teacher.heads, student.heads) and teacher.heads != student.heads:
        raise ConfigError(
            f"MiniLM v1 compares attention maps head by head: the teacher has {teacher.heads} heads, the "
            f"student {student.heads}. Use version v2 (--version v2, distill.minilm.version), whose relation heads "
            "allow this"
        )
    if config.version == "v2":
        relation_heads = config.relation_heads or student.heads
        if relation_heads is None:
            return
        for name, hidden in (("teacher", teacher.hidden), ("student", student.hidden)):
            if hidden is not None and hidden % relation_heads:
                default = "" if config.relation_heads else " (by default the student's heads)"
                widths = [str(h) for h in dict.fromkeys((teacher.hidden, student.hidden)) if h is not None]
                divisor = f"a common divisor of {' and '.join(widths)}" if len(widths) > 1 else f"a divisor of {hidden}"
                raise ConfigError(
                    f"{relation_heads} relation heads{default} do not divide the {name}'s hidden size {hidden}: "
                    f"choose {divisor} (--relation-heads, distill.minilm.relation_heads)"
                )


def _inputs(batch: dict) -> tuple:
    return batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")


def distill_loss_fn(
    teacher: TaskModel, task: str, config: DistillConfig
) -> Callable[[nn.Module, dict], tuple[torch.Tensor, dict]]:
    """The loss for ``qla_sdk.train.loop.train``: the weighted sum of this version's terms, and each term.

    The teacher runs in eval mode without gradients, on the batch's device.
    """
    teacher.eval().requires_grad_(False)
    teacher_index = (config.teacher_layer or teacher.num_layers) - 1
    weights = config.weights()

    def loss_fn(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        input_ids, attention_mask, token_type_ids = _inputs(batch)
        if next(teacher.parameters()).device != input_ids.device:
            teacher.to(input_ids.device)
        with torch.no_grad():
            teacher_out, teacher_enc = teacher(input_ids, attention_mask, token_type_ids, output_traces=True)
        student_out, student_enc = model(input_ids, attention_mask, token_type_ids, output_traces=True)
        t, s = teacher_enc.traces[teacher_index], student_enc.traces[-1]
        mask = attention_mask
        parts: dict[str, torch.Tensor] = {}
        if config.version == "v1":
            if weights["attention"]:
                parts["attention"] = attention_transfer_loss(t.attention_probs, s.attention_probs, mask)
            if weights["value_relation"]:
                parts["value_relation"] = relation_loss(t.value, s.value, mask, s.value.shape[1])
        elif weights["relation"]:
            heads = config.relation_heads or s.query.shape[1]
            parts["relation"] = sum(
                relation_loss(getattr(t, name), getattr(s, name), mask, heads) for name in ("query", "key", "value")
            )
        if weights["prediction"]:
            parts["prediction"] = prediction_loss(teacher_out, student_out, config.temperature, mask)
        if weights["task"] and not batch.get(AUGMENTED):  # a copy's labels may not hold for its words
            parts["task"] = task_loss(student_out, batch, task)
        total = sum(weights[name] * value for name, value in parts.items())
        return total, {name: float(value.detach()) for name, value in parts.items()}

    return loss_fn


def check_augment(augment: AugmentConfig, config: DistillConfig) -> None:
    """Augmented copies teach through the teacher's outputs alone (their labels are not used): refuse copies where
    the prediction-layer term, which carries those outputs to the student's head, has weight 0."""
    if augment.enabled and not config.prediction_weight:
        raise ConfigError(
            f"augmented copies ({augment.copies} per batch) teach the student through the teacher's predictions, "
            "and prediction_weight is 0: give it a weight (--prediction-weight, distill.minilm.prediction_weight), "
            "or switch augmentation off (--augment-copies 0, distill.augment.copies: 0)"
        )


# ------------------------------------------------------------------------------------------------ entry point


def train_on_features(
    model: TaskModel,
    loss_fn: Callable,
    train_features,
    train_config: TrainConfig,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    tokenizer=None,
    extra_metadata: dict | None = None,
    teacher: nn.Module | None = None,
    augmenter: Augmenter | None = None,
) -> TrainResult:
    """``loop.train`` over shuffled, length-bucketed, dynamically padded batches of ``train_features``. ``teacher``:
    the model ``loss_fn`` distils from, whose weights a resumed run must share. ``augmenter``: mixes augmented
    copies of each batch into every epoch (``train.augment``)."""
    from qla_sdk.data.batching import batch_indices, collate_rows
    from qla_sdk.data.rows import rows_digest
    from qla_sdk.modeling.checkpoint import DATA_COLUMN_KEYS, weights_digest
    from qla_sdk.modeling.heads import max_input_length

    longest, limit = max(train_features.lengths, default=0), max_input_length(model.config)
    if longest > limit:  # else the first batch holding such a row fails, after training up to it
        raise ConfigError(
            f"training rows of up to {longest} tokens, and the model takes at most {limit}: set max_length "
            f"(--max-length) to {limit} or less"
        )
    recorded = (extra_metadata or {}).get("max_length")
    if isinstance(recorded, int) and recorded > limit:
        # Short rows fit, but qla.json would record a length the model cannot take, which qla export then refuses
        # (a default of 128 / 384 meets small models too): what the model takes is recorded.
        warnings.warn(
            f"max_length {recorded} is past the {limit} tokens the model takes (its position embeddings): its rows "
            f"are shorter, and qla.json records max_length {limit}",
            stacklevel=2,
        )
        extra_metadata = {**extra_metadata, "max_length": limit}

    originals = math.ceil(len(train_features) / train_config.batch_size)
    make_batch = functools.partial(collate_rows, train_features)

    def train_batches(epoch: int):
        shuffled = dict(shuffle=True, seed=train_config.seed, epoch=epoch, sort_by_length=True)
        groups = batch_indices(train_features, train_config.batch_size, **shuffled)
        return map(make_batch, groups) if augmenter is None else augmenter.epoch(groups, make_batch, epoch)

    return train(
        model,
        train_batches,
        loss_fn,
        train_config,
        steps_per_epoch=originals if augmenter is None else augmenter.batches_per_epoch(originals),
        eval_fn=eval_fn,
        tokenizer=tokenizer,
        extra_metadata=extra_metadata,
        # A resumed run on other data, or with other loss options or lengths (all in the metadata), is refused.
        # The columns read are left out: the data's digest covers them, and checkpoints written before they were
        # recorded stay resumable.
        resume_context={
            "data": rows_digest(train_features),
            "teacher": None if teacher is None else weights_digest(teacher),
            **{k: v for k, v in (extra_metadata or {}).items() if k not in DATA_COLUMN_KEYS},
        },
    )


def distill(
    teacher: TaskModel,
    student: TaskModel,
    train_features,
    eval_features,
    task: str,
    distill_config: DistillConfig,
    train_config: TrainConfig,
    *,
    eval_examples=None,
    assistant: TaskModel | None = None,
    tokenizer=None,
    eval_batch_size: int | None = None,  # default: train_config.eval_batch_size
    extra_metadata: dict | None = None,
    augment: AugmentConfig | None = None,
) -> TrainResult:
    """Distil ``teacher`` into ``student`` (trained in place, written to ``train_config.output_dir/final``).

    ``augment`` (with copies > 0) mixes augmented copies of the training batches into each epoch, with words
    replaced by their neighbours in ``teacher``'s embedding space (``train.augment``; needs ``tokenizer``).

    With ``assistant`` (see ``student.build_assistant``), the teacher is first distilled into the assistant under
    ``output_dir/assistant`` (its final model in ``output_dir/assistant/final``), which then teaches the student.
    The result's metrics are the student's, with the assistant's under ``assistant_*`` keys. ``eval_features``
    may be None (no evaluation); QA needs ``eval_examples``.
    """
    if teacher.task != task:
        raise ConfigError(f"the teacher's task is {teacher.task!r}, not {task!r}")
    if assistant is not None:
        check_pair(teacher, assistant, distill_config)
    check_pair(assistant or teacher, student, distill_config)  # before any training: fail fast
    augment = augment or AugmentConfig()
    check_augment(augment, distill_config)
    extra = {"distillation": distill_config.to_dict(), **(extra_metadata or {})}
    if augment.enabled:  # recorded only where it makes copies: older checkpoints resume unchanged
        extra["augment"] = augment.to_dict()
    augmenter = Augmenter.for_teacher(augment, teacher, tokenizer, train_config.seed)
    eval_batch_size = eval_batch_size or train_config.eval_batch_size

    def eval_fn(model: nn.Module) -> dict:
        return evaluate(model, eval_features, task, examples=eval_examples, batch_size=eval_batch_size)

    evaluation = eval_fn if eval_features is not None else None
    assistant_metrics = {}
    if assistant is not None:
        stage = replace(train_config, output_dir=Path(train_config.output_dir) / "assistant")
        result = train_on_features(
            assistant,
            distill_loss_fn(teacher, task, distill_config),
            train_features,
            stage,
            evaluation,
            tokenizer,
            {**extra, "role": "teacher assistant"},
            teacher,
            augmenter,
        )
        assistant_metrics = {f"assistant_{k}": v for k, v in result.metrics.items()}
        teacher = assistant
    result = train_on_features(
        student,
        distill_loss_fn(teacher, task, distill_config),
        train_features,
        train_config,
        evaluation,
        tokenizer,
        extra,
        teacher,
        augmenter,
    )
    result.metrics.update(assistant_metrics)
    return result
