"""The SDK's one training loop: AdamW, warm-up + linear decay, gradient accumulation, bf16 autocast, atomic
checkpoints and exact resume, on one process or several (accelerate: DDP, gloo on CPU).

Fine-tuning, distillation and length-adaptive training differ only in ``loss_fn``; everything about steps, data
order, randomness and files lives here, so a killed run of any of them resumes to the same weights.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qla_sdk.errors import CheckpointError, ConfigError, TrainingDivergedError
from qla_sdk.train.checkpointing import latest_checkpoint, list_checkpoints, load_checkpoint, prune_checkpoints
from qla_sdk.train.checkpointing import save_checkpoint as write_checkpoint
from qla_sdk.train.config import TrainConfig

logger = logging.getLogger("qla_sdk.train")

Batch = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], "torch.Tensor | tuple[torch.Tensor, dict[str, float]] | LossTerms"]
FINAL_DIR = "final"
# Loss sums kept across a resume: the whole run's (train_loss) and the current logging window's.
RUNNING_SUMS = ("loss_sum", "loss_count", "window_loss", "window_count")


@dataclass
class LossTerms:
    """A loss that ``train`` back-propagates one term at a time, so only one term's autograd graph is alive at once.

    The sandwich rule needs it: back-propagated as one sum, the activations of every sub-model of a step stay in
    memory until its end. ``terms`` are called in order; each runs its forward pass and returns its part of the
    loss (the loss is their sum, gradients are the same either way). ``extras`` (name -> float, logged like a loss
    function's extras) may be filled while they run. Under DDP only the last term's backward synchronises
    gradients (the earlier ones accumulate locally), so the last term must reach every trainable parameter, or set
    ``find_unused_parameters``."""

    terms: Sequence[Callable[[], torch.Tensor]]
    extras: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.terms:
            raise ConfigError("LossTerms has no terms: give at least one callable returning a loss term")


@dataclass
class TrainResult:
    metrics: dict  # eval_fn's metrics (main process) plus train_loss
    steps: int  # optimizer steps done in total (including those before a resume)
    wall_time_s: float  # this session's training time (without evaluation and saving)
    samples_per_s: float  # training samples per second over all processes, this session
    final_dir: Path  # output_dir/final: the trained model (written by the main process)
    bf16: bool
    log_history: list[dict] = field(default_factory=list)
    resumed_from: Path | None = None
    is_main_process: bool = True

    def describe(self) -> str:
        """One line for the console: steps, time, speed, precision and final training loss."""
        return (
            f"{self.steps} steps in {self.wall_time_s:.0f}s ({self.samples_per_s:.1f} samples/s, "
            f"bf16={'on' if self.bf16 else 'off'}); train loss {self.metrics['train_loss']:.4f}"
        )

    def figures(self) -> dict:
        """What a training command reports about its run (metrics.json)."""
        return {
            "train_loss": self.metrics["train_loss"],
            "steps": self.steps,
            "wall_time_s": round(self.wall_time_s, 2),
            "samples_per_s": round(self.samples_per_s, 2),
            "bf16": self.bf16,
            "final_dir": str(self.final_dir),
        }


def train(
    model: nn.Module,
    train_batches: Callable[[int], Iterable[Batch]],
    loss_fn: LossFn,
    config: TrainConfig,
    steps_per_epoch: int | None = None,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    tokenizer=None,
    extra_metadata: dict | None = None,
    resume_context: dict | None = None,
) -> TrainResult:
    """Train ``model`` in place and write it to ``output_dir/final``.

    ``train_batches(epoch)`` yields the batches of one epoch, the same ones every time it is called with the same
    epoch (e.g. ``qla_sdk.data.batches(features, bs, shuffle=True, seed=s, epoch=epoch)``); with several processes
    each takes every n-th batch. ``steps_per_epoch`` is the number of batches it yields (all processes together),
    used to plan the learning-rate schedule; when omitted the loop counts them once. ``loss_fn(model, batch)``
    returns a loss, ``(loss, {name: float})`` to log, or ``LossTerms`` to back-propagate one term at a time;
    ``model`` there may be DDP-wrapped, so call it rather than reach into attributes. ``eval_fn(model)`` runs once
    at the end, on the main process, with the plain model. ``resume_context`` (JSON values: the data's digest, the
    loss's options) must be the same for a resumed run as for the run that wrote the checkpoint, like the schedule.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
    )
    world, rank, is_main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if config.output_dir is None:
        raise ConfigError("TrainConfig.output_dir is not set: give the folder for checkpoints and the final model")
    output_dir = Path(config.output_dir)
    _check_output(output_dir, model)  # before any training, not at the first checkpoint or the end
    existing = latest_checkpoint(output_dir)
    if existing is not None and not config.resume:
        raise ConfigError(
            f"{output_dir} already holds checkpoints of an earlier run ({existing.name}): pass resume=True "
            "(--resume) to continue it, or choose an empty output folder"
        )
    if config.resume and existing is None and is_main:
        logger.warning("resume requested but %s has no checkpoint: starting from step 0", output_dir)

    bf16 = config.resolved_bf16(accelerator.device.type)
    total_steps = _total_steps(config, train_batches, steps_per_epoch, world)
    model.to(accelerator.device)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(total_steps, config.warmup_ratio))
    fingerprint = {**config.schedule_fingerprint(), "world_size": world, "total_steps": total_steps}
    if resume_context:
        fingerprint["context"] = json.loads(json.dumps(resume_context))  # as the checkpoint will read it back

    state = {"epoch": 0, "batch_in_epoch": 0, **dict.fromkeys(RUNNING_SUMS, 0.0), "window_extras": {}}
    state["log_history"] = []
    step = 0
    if existing is not None:
        loaded = load_checkpoint(existing, model, optimizer)
        _check_fingerprint(existing, loaded.get("config", {}), fingerprint)
        scheduler.load_state_dict(loaded["scheduler"])
        step = int(loaded["step"])
        state.update({k: loaded[k] for k in state})
        if not is_main:  # the checkpoint holds the loss sums of all processes: count them once
            state.update({**dict.fromkeys(RUNNING_SUMS, 0.0), "window_extras": {}})
        if is_main:
            logger.info("resuming from %s (step %d, epoch %d)", existing, step, state["epoch"])
    ddp_model = accelerator.prepare_model(model)
    model.train()

    def checkpoint() -> None:
        sums = _sum_over_processes(accelerator, [state[k] for k in RUNNING_SUMS])  # every process calls it
        if is_main:
            extra = {**state, **dict(zip(RUNNING_SUMS, sums, strict=True))}
            extra.update({"scheduler": scheduler.state_dict(), "config": fingerprint})
            write_checkpoint(output_dir, step, model, optimizer, extra)
            prune_checkpoints(output_dir, config.keep_checkpoints)
        accelerator.wait_for_everyone()

    from tqdm.auto import tqdm

    autocast = functools.partial(
        torch.autocast, device_type=accelerator.device.type, dtype=torch.bfloat16, enabled=bf16
    )
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not (is_main and config.progress), mininterval=1.0)
    session_samples, start = 0, time.perf_counter()
    epoch, skip = state["epoch"], state["batch_in_epoch"]
    while step < total_steps and (config.max_steps is not None or epoch < config.epochs):
        shard = _shard(train_batches(epoch), world, rank)
        batch_in_epoch, pending, seen_any = skip, 0, skip > 0
        _seed_step(config.seed, step, rank)
        for batch, is_last in _mark_last(itertools.islice(shard, skip, None)):
            seen_any = True
            batch_in_epoch += 1
            pending += 1
            sync = pending == config.grad_accum or is_last
            with contextlib.nullcontext() if sync else accelerator.no_sync(ddp_model):
                with autocast():
                    loss = _as_terms(loss_fn(ddp_model, _to_device(batch, accelerator.device)))
                value = _backward_terms(loss, accelerator, ddp_model, autocast, config.grad_accum)
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"loss is {value} at step {step} (epoch {epoch}): lower lr (now {config.lr}), "
                    "keep max_grad_norm > 0, or train in fp32 (--no-bf16; bf16=False in Python)"
                )
            extras = loss.extras
            for key, add in (("loss_sum", value), ("loss_count", 1), ("window_loss", value), ("window_count", 1)):
                state[key] += add
            for name, extra in extras.items():
                total = state["window_extras"].setdefault(name, [0.0, 0])
                total[0], total[1] = total[0] + float(extra), total[1] + 1
            session_samples += len(batch["input_ids"]) * world
            if not sync:
                continue
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(ddp_model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, pending = step + 1, 0
            bar.update(1)
            if step % config.log_every == 0 or step == total_steps:
                record = _log_record(accelerator, step, epoch, scheduler, state)
                record["samples_per_s"] = round(session_samples / max(time.perf_counter() - start, 1e-9), 2)
                state["log_history"].append(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.1f}")
                if is_main and bar.disable:
                    terms = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "epoch"))
                    logger.info("step %d/%d (epoch %d): %s", step, total_steps, epoch, terms)
                state.update(window_loss=0.0, window_count=0.0, window_extras={})
            state["epoch"], state["batch_in_epoch"] = (epoch + 1, 0) if is_last else (epoch, batch_in_epoch)
            if config.checkpoint_every and (step % config.checkpoint_every == 0 or step == total_steps):
                checkpoint()
            if step >= total_steps:
                break
            _seed_step(config.seed, step, rank)
        else:
            if not seen_any:
                raise ConfigError(f"train_batches({epoch}) yielded no batches: the training data is empty")
            epoch, skip = epoch + 1, 0
            continue
        break
    bar.close()
    wall = time.perf_counter() - start

    loss_sum, loss_count = _sum_over_processes(accelerator, [state["loss_sum"], state["loss_count"]])
    metrics = {"train_loss": loss_sum / loss_count if loss_count else float("nan")}
    final_dir = output_dir / FINAL_DIR
    model.eval()
    if is_main:
        _save_final(model, final_dir, tokenizer, extra_metadata)
        if eval_fn is not None:
            metrics.update(eval_fn(model))
    accelerator.wait_for_everyone()
    return TrainResult(
        metrics=metrics,
        steps=step,
        wall_time_s=wall,
        samples_per_s=session_samples / wall if wall > 0 else 0.0,
        final_dir=final_dir,
        bf16=bf16,
        log_history=list(state["log_history"]),
        resumed_from=existing,
        is_main_process=is_main,
    )


def _total_steps(
    config: TrainConfig, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int | None, world: int
) -> int:
    if config.max_steps is not None:
        return config.max_steps
    if steps_per_epoch is None:
        epoch0 = train_batches(0)
        steps_per_epoch = len(epoch0) if hasattr(epoch0, "__len__") else sum(1 for _ in epoch0)
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch={steps_per_epoch}: the training data yields no batches")
    per_process = math.ceil(steps_per_epoch / world)  # the shard repeats early batches to even out the count
    return config.epochs * math.ceil(per_process / config.grad_accum)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (1-d tensors), as in BERT."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (all have requires_grad=False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _warmup_linear(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _seed_step(seed: int, step: int, rank: int) -> None:
    """Seed every generator from (seed, step, process): the randomness of a step never depends on history."""
    value = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _shard(batches: Iterable[Batch], world: int, rank: int) -> Iterable[Batch]:
    """Process ``rank`` takes batches rank, rank + world, ...; accelerate's shard repeats the first batches so every
    process gets the same count (otherwise DDP would wait forever for the process that ran out)."""
    if world == 1:
        return batches
    from accelerate.data_loader import IterableDatasetShard

    return IterableDatasetShard(_IterableBatches(batches), batch_size=1, num_processes=world, process_index=rank)


class _IterableBatches(torch.utils.data.IterableDataset):
    def __init__(self, batches: Iterable[Batch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)


def _mark_last(items: Iterable) -> Iterator[tuple[object, bool]]:
    """(item, is_last): the final partial accumulation of an epoch must sync gradients too."""
    it = iter(items)
    try:
        previous = next(it)
    except StopIteration:
        return
    for item in it:
        yield previous, False
        previous = item
    yield previous, True


def _as_terms(output: torch.Tensor | tuple | LossTerms) -> LossTerms:
    if isinstance(output, LossTerms):
        return output
    loss, extras = _split_loss(output)
    return LossTerms([lambda: loss], extras)


def _backward_terms(loss: LossTerms, accelerator, ddp_model: nn.Module, autocast: Callable, grad_accum: int) -> float:
    """Run and back-propagate each term in turn (only the last may synchronise gradients under DDP); their sum.

    A term that is not finite stops before its backward, so no NaN reaches the weights' gradients."""
    total = 0.0
    for index, term in enumerate(loss.terms):
        last = index == len(loss.terms) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(ddp_model):
            with autocast():
                value = term()
            total += value.item()
            if not math.isfinite(total):
                return total
            accelerator.backward(value / grad_accum)
    return total


def _split_loss(output) -> tuple[torch.Tensor, dict]:
    if isinstance(output, tuple):
        loss, extras = output
        return loss, dict(extras)
    return output, {}


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _sum_over_processes(accelerator, values: list[float]) -> list[float]:
    totals = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(totals, reduction="sum").cpu().tolist()


def _log_record(accelerator, step: int, epoch: int, scheduler, state: dict) -> dict:
    """Mean loss since the last record over all processes; extra terms as the main process saw them."""
    loss, count = _sum_over_processes(accelerator, [state["window_loss"], state["window_count"]])
    record = {"step": step, "epoch": epoch, "loss": loss / max(count, 1.0), "lr": scheduler.get_last_lr()[0]}
    record.update({name: total / max(n, 1) for name, (total, n) in state["window_extras"].items()})
    return record


# Fingerprint keys checkpoints of earlier versions lack (every other key must match both ways).
RECORDED_LATER = (
    "max_grad_norm",
    "context.length_adaptive.temperature",
    "context.length_adaptive.teacher_weight",
)
# Options added since, with the value under which a checkpoint without them was written: it resumes under that value.
ADDED_OPTIONS = {"context.length_adaptive.full_length_layers": 0}


def _check_fingerprint(folder: Path, saved: dict, current: dict) -> None:
    if "context" not in saved:  # a checkpoint written before the context was recorded: the schedule only
        current = {k: v for k, v in current.items() if k != "context"}
    saved, current = _flat(saved), _flat(current)
    # Options recorded since a checkpoint was written: it stays resumable, on the options given now.
    current = {k: v for k, v in current.items() if k in saved or k not in RECORDED_LATER}
    current = {k: v for k, v in current.items() if k in saved or k not in ADDED_OPTIONS or v != ADDED_OPTIONS[k]}
    changed = {k: (saved.get(k), current.get(k)) for k in {*saved, *current} if saved.get(k) != current.get(k)}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise CheckpointError(
            f"cannot resume from {folder}: the run changed ({detail}); a resumed run must use the same options, "
            "data and number of processes. Restore them, or start a fresh output folder"
        )


def _check_output(output_dir: Path, model: nn.Module) -> None:
    from qla_sdk.io import check_replaceable
    from qla_sdk.modeling import TaskModel
    from qla_sdk.modeling.checkpoint import CHECKPOINT_MARKERS

    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output {output_dir} is a file: give a folder for the checkpoints and the final model")
    markers = CHECKPOINT_MARKERS if isinstance(model, TaskModel) else ("model.safetensors",)
    check_replaceable(output_dir / "final", markers, "a checkpoint")


def _flat(values: dict, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys (``context.length_adaptive.length_drop_prob``)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _save_final(model: nn.Module, folder: Path, tokenizer, extra_metadata: dict | None) -> None:
    from qla_sdk.modeling import TaskModel, save_pretrained

    if isinstance(model, TaskModel):
        save_pretrained(model, folder, tokenizer=tokenizer, extra=extra_metadata)
        return
    from safetensors.torch import save_file

    from qla_sdk.io import atomic_dir

    with atomic_dir(folder, ("model.safetensors",), "saved weights") as tmp:
        weights = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})


__all__ = ["TrainResult", "list_checkpoints", "train"]


def format_scores(scores: dict) -> str:
    """``accuracy 0.8876, f1 0.8912`` for console lines."""
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
