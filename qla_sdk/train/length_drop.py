"""Length-Adaptive Transformer training (Kim & Cho 2021): LengthDrop, LayerDrop and the sandwich rule.

Each step trains the full model on the task, and the smallest sub-model plus ``num_sandwich`` random sub-models
to match the full model's predictions (in-place distillation), so that after training any per-layer length
configuration the search picks runs well without retraining.

Lengths are sampled as token counts relative to the batch's longest real input and passed to the encoder as a
*ratio* LengthConfig. With dynamic padding that longest row is the padded length, so the longest row keeps exactly
the sampled counts, and every shorter row keeps the same share of its own real length. Integer counts relative to
the padded length would instead let short rows keep all their tokens (padding leaves first), so they would never
see the short lengths the search later gives them.
"""

from __future__ import annotations

import functools
import math
import numbers
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, TaskModel
from qla_sdk.modeling.length import ratio_keep
from qla_sdk.train.config import TrainConfig
from qla_sdk.train.distill import check_compatible, prediction_loss, train_on_features
from qla_sdk.train.loop import LossTerms, TrainResult
from qla_sdk.train.tasks import evaluate, task_loss


@dataclass
class LatConfig:
    """``length_drop_prob``: LengthDrop's bound p, each layer keeps between (1 - p) and all of its input tokens.
    ``layer_drop_prob``: LayerDrop's q, each layer of a random sub-model is skipped with probability q.
    ``num_sandwich``: random sub-models per step, besides the full and the smallest one.
    ``teacher_weight``: with an external teacher, the full model's loss is (1 - w) task + w KD(teacher).
    ``full_length_layers``: the first N layers keep every token in every sub-model, LengthDrop starting after them.
    For extractive QA, where pruning the first layers costs the answer (the search keeps them whole), this spends the
    training on the sub-models the search can choose, and with a larger p reaches shorter later layers."""

    length_drop_prob: float = field(
        default=0.2, metadata={"help": "LengthDrop bound p: each layer keeps between (1-p) and all its tokens (0.2)"}
    )
    layer_drop_prob: float = field(default=0.2, metadata={"help": "LayerDrop: skip each layer with this probability"})
    num_sandwich: int = field(default=2, metadata={"help": "random sub-models per step (default 2)"})
    temperature: float = field(default=1.0, metadata={"help": "in-place distillation temperature (default 1)"})
    teacher_weight: float = field(
        default=0.5, metadata={"help": "with --teacher: full-model loss = (1-w) task + w KD (default 0.5)"}
    )
    full_length_layers: int = field(
        default=0, metadata={"help": "the first N layers keep every token in every sub-model (default 0)"}
    )

    def __post_init__(self) -> None:
        for name in ("length_drop_prob", "layer_drop_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}={value}: must lie in [0, 1), e.g. 0.2")
        if isinstance(self.num_sandwich, bool) or not isinstance(self.num_sandwich, int) or self.num_sandwich < 0:
            raise ConfigError(f"num_sandwich={self.num_sandwich!r}: give a count >= 0 of random sub-models, e.g. 2")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature={self.temperature}: must be a positive number, e.g. 1.0")
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ConfigError(f"teacher_weight={self.teacher_weight}: must lie in [0, 1]")
        layers = self.full_length_layers
        if isinstance(layers, bool) or not isinstance(layers, numbers.Integral) or layers < 0:
            raise ConfigError(
                f"full_length_layers={layers!r}: give a count >= 0 of first layers that keep every token, e.g. 2"
            )
        self.full_length_layers = int(layers)  # numpy integers too

    def smallest_length_config(self, num_layers: int) -> LengthConfig:
        """The smallest sub-model this LengthDrop trains, as the ratio config it is evaluated at."""
        return smallest_ratios(num_layers, self.length_drop_prob, self.full_length_layers)

    def check_depth(self, num_layers: int) -> None:
        """``ConfigError`` unless LengthDrop leaves a layer to drop tokens in."""
        if self.full_length_layers >= num_layers:
            raise ConfigError(
                f"full_length_layers={self.full_length_layers} (--full-length-layers, lat.length_adaptive."
                f"full_length_layers) keeps every layer of this {num_layers}-layer model whole: no sub-model would "
                f"drop a token. Give at most {num_layers - 1}"
            )

    def to_dict(self) -> dict:
        """What qla.json records under "length_adaptive" (the search warns on models without it)."""
        return {
            "length_drop_prob": self.length_drop_prob,
            "layer_drop_prob": self.layer_drop_prob,
            "num_sandwich": self.num_sandwich,
            "temperature": self.temperature,
            "teacher_weight": self.teacher_weight,
            "full_length_layers": self.full_length_layers,
        }


def _lowest(prev: int, drop_prob: float) -> int:
    # ceil(prev * (1 - p)); the epsilon keeps float noise (0.8 * 10 = 8.000000000000002) from costing a token.
    return max(1, math.ceil(prev * (1.0 - drop_prob) - 1e-9))


def sample_layers(num_layers: int, drop_prob: float, rng: random.Random) -> tuple[bool, ...]:
    """LayerDrop: keep each layer with probability 1 - q; if every layer fell, one chosen at random stays."""
    kept = [rng.random() >= drop_prob for _ in range(num_layers)]
    if not any(kept):
        kept[rng.randrange(num_layers)] = True
    return tuple(kept)


def sample_lengths(
    seq_len: int,
    num_layers: int,
    drop_prob: float,
    rng: random.Random | None = None,
    layers: tuple[bool, ...] | None = None,
    full_length_layers: int = 0,
) -> tuple[int, ...]:
    """LengthDrop: layer i keeps a count drawn uniformly from [ceil(prev (1 - p)), prev], prev starting at
    ``seq_len``; a skipped layer (``layers[i]`` False) and the first ``full_length_layers`` keep prev. Without
    ``rng``, the smallest sub-model: the lower bound at every layer after those."""
    prev, counts = seq_len, []
    for i in range(num_layers):
        if i >= full_length_layers and (layers is None or layers[i]):
            low = _lowest(prev, drop_prob)
            prev = low if rng is None else rng.randint(low, prev)
        counts.append(prev)
    return tuple(counts)


def _ratio(count: int, total: int) -> float:
    """The largest float32 r with ``ratio_keep(r, total) == count``, so the encoder (which rounds in float32)
    resolves r back to exactly ``count``."""
    r = np.float32(count / total)
    while ratio_keep(float(r), total) > count:
        r = np.nextafter(r, np.float32(0.0))
    return float(r)


def ratio_config(counts: tuple[int, ...], seq_len: int) -> LengthConfig:
    """Token counts for the batch's longest row -> ratios each row applies to its own real length."""
    return LengthConfig(tuple(_ratio(c, seq_len) for c in counts))


def smallest_ratios(num_layers: int, drop_prob: float, full_length_layers: int = 0) -> LengthConfig:
    """The smallest sub-model as one ratio config for every input: 1 in the first ``full_length_layers``, then
    (1 - p)^k at the k-th layer after them (for evaluation; training rounds up at each layer, so it keeps up to a token
    more per layer)."""
    return LengthConfig(
        tuple(max(1e-4, round((1.0 - drop_prob) ** max(0, i + 1 - full_length_layers), 4)) for i in range(num_layers))
    )


def _detach(outputs):
    if isinstance(outputs, (tuple, list)):
        return tuple(o.detach() for o in outputs)
    return outputs.detach()


def sandwich_loss_fn(
    num_layers: int,
    task: str,
    config: LatConfig,
    teacher: TaskModel | None = None,
    rng: random.Random | None = None,
) -> Callable[[nn.Module, dict], LossTerms]:
    """The loss for ``qla_sdk.train.loop.train``: the sandwich rule with in-place distillation.

    Per batch: the full model with the task loss; ``num_sandwich`` random sub-models (LengthDrop + LayerDrop) and
    the smallest one (drop p at every layer, all layers), each with KL(p_full || p_sub) at ``temperature`` toward
    the full model's detached predictions (the teacher's distribution is the target; the reference code,
    clovaai/length-adaptive-transformer, passed the arguments of ``KLDivLoss`` the other way round, which
    computes KL(p_sub || p_full)). The loss is the mean of the terms. With ``teacher``, the full model also distils
    from that external model: (1 - w) task + w KL(p_teacher || p_full).

    The terms are back-propagated one at a time (``LossTerms``), as the reference code does: summed first, all
    sub-models' activations would be held at once. The smallest sub-model comes last: it runs every layer, so its
    backward, the one that synchronises gradients under DDP, reaches every parameter and LayerDrop needs no
    ``find_unused_parameters``.

    Sub-models are drawn from ``rng``, by default Python's global ``random``, which ``loop.train`` seeds from
    (seed, step, process) before every step: a resumed run draws the same sub-models it would have drawn.
    """
    rng = rng or random
    config.check_depth(num_layers)
    full_layers = config.full_length_layers
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    count = 2 + config.num_sandwich

    def loss_fn(model: nn.Module, batch: dict) -> LossTerms:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        token_type_ids = batch.get("token_type_ids")
        seq_len = int(attention_mask.sum(dim=1).max())
        randoms = []
        for _ in range(config.num_sandwich):
            layers = sample_layers(num_layers, config.layer_drop_prob, rng)
            lengths = sample_lengths(seq_len, num_layers, config.length_drop_prob, rng, layers, full_layers)
            randoms.append((lengths, layers))
        smallest = (sample_lengths(seq_len, num_layers, config.length_drop_prob, full_length_layers=full_layers), None)
        target = []  # the full model's detached predictions, set by the first term
        extras: dict[str, float] = {}  # filled as the terms run

        def full_term() -> torch.Tensor:
            full = model(input_ids, attention_mask, token_type_ids)
            full_loss = task_loss(full, batch, task)
            extras["full"] = float(full_loss.detach())
            if teacher is not None:
                if next(teacher.parameters()).device != input_ids.device:
                    teacher.to(input_ids.device)
                with torch.no_grad():
                    teacher_out = teacher(input_ids, attention_mask, token_type_ids)
                teacher_kd = prediction_loss(teacher_out, full, config.temperature, attention_mask)
                extras["teacher_kd"] = float(teacher_kd.detach())
                full_loss = (1.0 - config.teacher_weight) * full_loss + config.teacher_weight * teacher_kd
            target.append(_detach(full))
            return full_loss / count

        def sub_model_term(name: str, lengths: tuple[int, ...], layers: tuple[bool, ...] | None) -> torch.Tensor:
            out = model(
                input_ids,
                attention_mask,
                token_type_ids,
                length_config=ratio_config(lengths, seq_len),
                layer_config=None if layers is None or all(layers) else layers,
            )
            value = prediction_loss(target[0], out, config.temperature, attention_mask)
            if name == "random":  # logged as the mean over the random sub-models
                extras["random"] = extras.get("random", 0.0) + float(value.detach()) / len(randoms)
            else:
                extras[name] = float(value.detach())
            return value / count

        terms = [full_term]
        terms += [functools.partial(sub_model_term, "random", *sub_model) for sub_model in randoms]
        terms.append(functools.partial(sub_model_term, "smallest", *smallest))
        return LossTerms(terms, extras)

    return loss_fn


def lat_train(
    model: TaskModel,
    train_features,
    eval_features,
    task: str,
    lat_config: LatConfig,
    train_config: TrainConfig,
    *,
    eval_examples=None,
    teacher: TaskModel | None = None,
    tokenizer=None,
    eval_batch_size: int | None = None,  # default: train_config.eval_batch_size
    extra_metadata: dict | None = None,
) -> TrainResult:
    """Length-adaptive training of ``model`` (in place), written to ``train_config.output_dir/final`` with
    ``{"length_adaptive": lat_config.to_dict()}`` in its qla.json.

    Metrics: the full model's, and under ``smallest_*`` keys those of the smallest sub-model, run as the ratio
    config ``smallest_ratios(num_layers, length_drop_prob, full_length_layers)``. ``eval_features`` may be None; QA
    needs ``eval_examples``."""
    if model.task != task:
        raise ConfigError(f"the model's task is {model.task!r}, not {task!r}")
    lat_config.check_depth(model.num_layers)
    if teacher is not None:
        check_compatible(teacher, model)
    smallest = lat_config.smallest_length_config(model.num_layers)
    eval_batch_size = eval_batch_size or train_config.eval_batch_size

    def eval_fn(trained: nn.Module) -> dict:
        full = evaluate(trained, eval_features, task, examples=eval_examples, batch_size=eval_batch_size)
        small = evaluate(
            trained, eval_features, task, examples=eval_examples, batch_size=eval_batch_size, length_config=smallest
        )
        return {**full, **{f"smallest_{k}": v for k, v in small.items()}}

    loss_fn = sandwich_loss_fn(model.num_layers, task, lat_config, teacher)
    extra = {"length_adaptive": lat_config.to_dict(), **(extra_metadata or {})}
    evaluation = eval_fn if eval_features is not None else None
    return train_on_features(model, loss_fn, train_features, train_config, evaluation, tokenizer, extra, teacher)
