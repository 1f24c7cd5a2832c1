"""`datasets.load_dataset` for the loaders: a local dataset folder or a Hugging Face Hub name.

A name that is no local file or folder is tried on the hub, so a misspelled file name ends there too; its message
then says both: no such file or folder here, and why the hub lookup failed."""

from __future__ import annotations

from pathlib import Path

from qla_sdk.errors import ConfigError


def load_dataset(name: str, split: str, subset: str | None, cache_dir: str | None, instead: str):
    """``datasets.load_dataset(name, subset, split=split)``; ``instead`` names what else the caller reads (for the
    message). A name that is neither a local path nor a valid hub id fails without a network call."""
    local = Path(name).exists()
    what = f"{name!r}{f' ({subset})' if subset else ''} split {split!r}"
    if not local:
        _check_hub_id(name, instead)
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            f"{name!r} is not a file, and loading a dataset folder or hub dataset needs the `datasets` package: "
            f"pip install 'qla-sdk[train]' (or pass {instead})"
        ) from exc
    try:
        return datasets.load_dataset(name, subset, split=split, cache_dir=cache_dir)
    except Exception as exc:  # datasets raises many types (missing files, unknown split, no network)
        if local:
            raise ConfigError(f"cannot load {what} with datasets.load_dataset: {exc}. Pass {instead}") from exc
        # The hub's own message can run to many lines (and retries): its first line says why.
        why = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise ConfigError(
            f"no such file or folder: {name!r} (in {Path.cwd()}), and loading it as a Hugging Face Hub dataset "
            f"({what}) failed: {type(exc).__name__}: {why}. Check the path, or the dataset name and the network; "
            f"or pass {instead}"
        ) from exc


def _check_hub_id(name: str, instead: str) -> None:
    """A name the hub cannot hold ("my data", "a/b/c") is a missing local path: say so before any network call."""
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # without huggingface_hub the load itself says what to install
        return
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConfigError(
            f"no such file or folder: {name!r} (in {Path.cwd()}), and it is no Hugging Face Hub dataset id "
            f"(name or owner/name): check the path, or pass {instead}"
        ) from None
