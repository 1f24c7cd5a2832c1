"""Small helpers the recipe's stages and measurements share."""

from __future__ import annotations

from pathlib import Path


def model_labels(model) -> list[str] | None:
    if model.task == "question-answering":
        return None
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def folder_bytes(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def checkpoint_bytes(path: str | Path) -> int:
    """Size of a checkpoint's weights (model.safetensors), what a deployment would ship."""
    return folder_bytes(Path(path) / "model.safetensors")


__all__ = ["checkpoint_bytes", "folder_bytes", "model_labels"]
