"""Training options: one small dataclass shared by fine-tuning, distillation and length-adaptive training."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from qla_sdk.errors import ConfigError
from qla_sdk.options import add_options, option, options_from_args

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True where the CPU has native bf16 matmuls (AMX or AVX512-BF16); elsewhere bf16 autocast only emulates."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in BF16_CPU_FLAGS)
    return False


@dataclass
class TrainConfig:
    """How to train. Steps count optimizer updates (one update = ``grad_accum`` batches on every process).

    Defined once: the training flags of ``qla finetune``/``distill``/``lat-train`` (each command names its own
    output folder flag) and the recipe's ``train`` sections (where the recipe sets ``output_dir`` and ``resume`` for
    each stage) are this dataclass; ``eval_batch_size`` is read by the training verbs from here."""

    output_dir: str | Path | None = field(
        default=None, metadata={"help": "where checkpoints and the final model go (a recipe sets it per stage)"}
    )
    epochs: int = option(3, "training epochs (default %(default)s)")
    max_steps: int | None = option(None, "stop after this many optimizer steps (overrides --epochs)")
    # per process and micro-batch; recorded in the checkpoint to refuse a mismatched resume
    batch_size: int = option(32, "batch size per process (default %(default)s)")
    grad_accum: int = option(1, "batches accumulated per optimizer step (default %(default)s)")
    lr: float = option(5e-5, "peak learning rate of AdamW (default %(default)s)")
    weight_decay: float = option(0.01, "AdamW weight decay, not applied to biases and LayerNorm (default %(default)s)")
    warmup_ratio: float = option(
        0.1, "share of steps with linear warm-up, then linear decay to 0 (default %(default)s)"
    )
    seed: int = option(42, "seed for initialisation, shuffling and dropout (default %(default)s)")
    bf16: bool | None = option(None, "bf16 autocast (default: on where the CPU has AMX or AVX512-BF16)")
    checkpoint_every: int = option(500, "write a resumable checkpoint every N steps, 0 = never (default %(default)s)")
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep (default %(default)s)")
    log_every: int = option(20, "log loss and throughput every N steps (default %(default)s)")
    resume: bool = option(False, "continue from the latest checkpoint in the output folder")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this value, 0 = no clipping (default %(default)s)")
    find_unused_parameters: bool = option(False, "DDP: some parameters get no gradient (LayerDrop)")
    progress: bool = option(True, "progress bar on the main process (in a recipe: false hides this stage's)")
    eval_batch_size: int = option(64, "batch size of the dev-set evaluation (default %(default)s)")

    def __post_init__(self) -> None:
        self.output_dir = None if self.output_dir is None else Path(self.output_dir)
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum}
        positive["eval_batch_size"] = self.eval_batch_size
        positive["log_every"] = self.log_every
        positive["keep_checkpoints"] = self.keep_checkpoints
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ConfigError(f"max_steps={self.max_steps!r}: must be an integer >= 1, or None to train for epochs")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every!r}: must be an integer >= 0 (0 = only final)")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr={self.lr!r}: must be a finite number > 0, e.g. 5e-5")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < 1):
            raise ConfigError(f"weight_decay={self.weight_decay!r}: must lie in [0, 1), e.g. 0.01")
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio < 1):
            raise ConfigError(f"warmup_ratio={self.warmup_ratio!r}: must lie in [0, 1), e.g. 0.1")
        if not (isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm >= 0):
            raise ConfigError(f"max_grad_norm={self.max_grad_norm!r}: must be >= 0 (0 disables clipping)")
        if self.bf16 not in (None, True, False):
            raise ConfigError(f"bf16={self.bf16!r}: must be True, False or None (auto)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r}: must be an integer >= 0")

    def for_run(self, output_dir: str | Path, resume: bool = False, progress: bool = True) -> TrainConfig:
        """This config writing to ``output_dir`` (how a recipe stage or a command runs it)."""
        return dataclasses.replace(self, output_dir=output_dir, resume=resume, progress=progress)

    def resolved_bf16(self, device_type: str = "cpu") -> bool:
        if self.bf16 is not None:
            return self.bf16
        if device_type == "cuda":
            import torch

            return torch.cuda.is_bf16_supported()
        return device_type == "cpu" and cpu_supports_bf16()

    def schedule_fingerprint(self) -> dict:
        """What must not change between a run and its resumption, or the resumed run would differ."""
        keys = (
            "epochs",
            "max_steps",
            "batch_size",
            "grad_accum",
            "lr",
            "weight_decay",
            "warmup_ratio",
            "seed",
            "max_grad_norm",
        )
        return {k: getattr(self, k) for k in keys}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ``TrainConfig`` field (``--epochs``, ``--lr``, ..., ``--bf16/--no-bf16``, ``--resume``,
    ``--no-progress``) to a command's parser; each command names its own output folder flag."""
    add_options(parser.add_argument_group("training"), TrainConfig, exclude=("output_dir",))


def config_from_args(args: argparse.Namespace, output_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig for flags added by ``add_train_arguments``."""
    return options_from_args(TrainConfig, args, output_dir=output_dir, **overrides)
