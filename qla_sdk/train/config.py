"""Training options: one small dataclass shared by fine-tuning, distillation and length-adaptive training."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from qla_sdk.errors import ConfigError

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

    Defined once: the training flags of ``qla finetune``/``distill``/``lat-train`` and the recipe's ``train``
    sections are this dataclass (a recipe sets ``output_dir``, ``resume`` and ``progress`` per stage)."""

    output_dir: str | Path | None = None  # where checkpoints and the final model go; required to train
    epochs: int = 3
    max_steps: int | None = None  # when set, overrides epochs (runs as many epochs as it takes)
    batch_size: int = 32  # per process, per micro-batch; recorded in the checkpoint to refuse a mismatched resume
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 42
    bf16: bool | None = None  # None: bf16 autocast where the CPU has AMX or AVX512-BF16
    checkpoint_every: int = 500  # steps; 0 disables intermediate checkpoints
    keep_checkpoints: int = 2
    log_every: int = 20
    resume: bool = False
    max_grad_norm: float = 1.0  # 0 disables clipping
    find_unused_parameters: bool = False  # DDP: needed when some parameters get no gradient (LayerDrop)
    progress: bool = True  # tqdm bar on the main process
    eval_batch_size: int = 64  # batch size of the dev-set evaluation after training

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
        keys = ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio", "seed")
        return {k: getattr(self, k) for k in keys}


# Command-line flags for every TrainConfig field except output_dir (each command names its own output flag).
_HELP = {
    "epochs": "training epochs (default %(default)s)",
    "max_steps": "stop after this many optimizer steps (overrides --epochs)",
    "batch_size": "batch size per process (default %(default)s)",
    "grad_accum": "batches accumulated per optimizer step (default %(default)s)",
    "lr": "peak learning rate of AdamW (default %(default)s)",
    "weight_decay": "AdamW weight decay, not applied to biases and LayerNorm (default %(default)s)",
    "warmup_ratio": "share of steps with linear warm-up, then linear decay to 0 (default %(default)s)",
    "seed": "seed for initialisation, shuffling and dropout (default %(default)s)",
    "checkpoint_every": "write a resumable checkpoint every N steps, 0 = never (default %(default)s)",
    "keep_checkpoints": "how many recent checkpoints to keep (default %(default)s)",
    "log_every": "log loss and throughput every N steps (default %(default)s)",
    "max_grad_norm": "clip the gradient norm to this value, 0 = no clipping (default %(default)s)",
    "eval_batch_size": "batch size of the dev-set evaluation (default %(default)s)",
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--epochs``, ``--lr``, ..., ``--bf16/--no-bf16`` and ``--resume`` to a command's parser."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    group = parser.add_argument_group("training")
    for name, help_text in _HELP.items():
        kind = float if isinstance(defaults[name], float) else int
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=defaults[name], help=help_text)
    group.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on where the CPU has AMX or AVX512-BF16)",
    )
    group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args: argparse.Namespace, output_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig for flags added by ``add_train_arguments``."""
    names = [*_HELP, "bf16", "resume", "progress"]
    values = {name: getattr(args, name) for name in names}
    values.update(overrides)
    return TrainConfig(output_dir=output_dir, **values)
