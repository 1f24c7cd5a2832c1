"""Resumable training checkpoints, one folder per step, each written atomically.

``checkpoints/step-00000500/`` holds ``model.safetensors`` (the module's own parameter names), ``optimizer.pt``
(AdamW moments; ``torch.save`` of tensors and numbers only, read back with ``torch.load(weights_only=True)``) and
``state.json`` (step, epoch, batch in epoch, scheduler, loss sums, log history, and the options that must match on
resume). No pickle is ever loaded. Random state needs no file: the loop reseeds every step from (seed, step,
process), so a resumed run draws the same dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qla_sdk.errors import CheckpointError
from qla_sdk.io import atomic_dir, write_json_atomic

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"step-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (a run killed mid-write leaves only a hidden ``.partial`` folder)."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def save_checkpoint(
    output_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> Path:
    """Write ``checkpoints/step-N`` in one rename; a crash leaves the previous checkpoints untouched."""
    folder = checkpoint_dir(output_dir, step)
    with atomic_dir(folder, ("model.safetensors", "state.json"), "a training checkpoint") as tmp:
        weights = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt", "step": str(step)})
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json_atomic(tmp / "state.json", {"format": FORMAT_VERSION, "step": step, **state})
    return folder


def load_checkpoint(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore weights and optimizer in place; return the JSON state."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{folder}/state.json cannot be read ({exc}); delete {folder} to resume from an older one"
        ) from None
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has checkpoint format {state.get('format')!r}; this SDK reads {FORMAT_VERSION}"
        )
    weights = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "resume with the same model, or start a fresh output folder"
        )
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    return state


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints; also remove what a run killed mid-write left (hidden ``.partial``
    folders: this run writes one checkpoint at a time, and only after the last one has been renamed)."""
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    root = Path(output_dir) / CHECKPOINTS
    for partial in root.glob(".step-*.partial") if root.is_dir() else ():
        shutil.rmtree(partial, ignore_errors=True)
