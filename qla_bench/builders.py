"""How a row becomes something to time: a backend's ``build`` (export/quantize into an artifact, in its own
process so its memory does not count) and ``load`` (read the artifact, ready to run, in the measuring process).

Our backends live in ``qla_bench.ours``, the peers' in ``qla_bench.peers``; both fill ``Builder``s, which
``qla_bench.registry`` looks up by backend name.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from qla_bench.rows import RowSpec
from qla_sdk.errors import QlaError
from qla_sdk.modeling.length import LengthConfig

Inputs = dict[str, np.ndarray]  # input_ids, attention_mask, token_type_ids: int64 (batch, seq_len)


class MissingDependency(QlaError, ImportError):
    """A backend's package is not installed: the row fails with this message, the run goes on."""


@dataclass(frozen=True)
class BuildContext:
    spec: RowSpec
    source: Path  # Hugging Face checkpoint folder (config.json + model.safetensors)
    seq_len: int
    length_config: LengthConfig | None
    workdir: Path  # an empty folder for the artifact
    calibration: list[Inputs]  # a few batches at seq_len, for static int8 calibration
    threads: int


@dataclass(frozen=True)
class LoadContext:
    spec: RowSpec
    source: Path
    artifact: Path
    seq_len: int
    length_config: LengthConfig | None
    threads: int


class Runtime(Protocol):
    """A loaded model: ``bind(inputs)`` returns a no-argument call that runs one batch (conversions done up
    front so that only inference is timed); ``kernels(inputs)`` says which kernels ran (may be empty);
    ``size_bytes`` is the model's size on disk when the artifact alone does not tell it (else None)."""

    size_bytes: int | None

    def bind(self, inputs: Inputs) -> Callable[[], object]: ...

    def kernels(self, inputs: Inputs) -> dict: ...


@dataclass(frozen=True)
class Builder:
    build: Callable[[BuildContext], Path] | None  # None: the artifact is the source checkpoint itself
    load: Callable[[LoadContext], Runtime]
    seq_dependent: bool = False  # the artifact depends on the sequence length (a baked-in length config)
    requires: tuple[str, ...] = field(default_factory=tuple)  # importable modules the backend needs
    description: str = ""

    def check_installed(self, backend: str) -> None:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependency(
                f"backend {backend!r} needs {', '.join(missing)}, which is not installed in this environment"
            )
