"""One interface for every way of running the pruned model: build it (export, quantize), save it into an artifact
folder, load it back as a thread-safe ``Runner``.

A graph with a length config has static shapes (the per-layer widths are ints), so int8 backends export one
graph per sequence length ("bucket") and inputs are padded to the next bucket. With a ratio length config the
encoder keeps ``ceil(ratio * real length)`` real tokens of each row whatever the padding, so a padded bucket gives
the answer of the unpadded input.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, TaskModel
from qla_sdk.quantize.config import QuantConfig

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# evaluate(run, seq_len) -> metric (higher is better); run(input_ids, attention_mask, token_type_ids) -> outputs.
# seq_len: one length every row is padded to, or an artifact's graph lengths (each row to the smallest holding it).
Evaluate = Callable[[Callable[..., object], "int | tuple[int, ...]"], float]


@dataclass
class BuildRequest:
    """Everything a backend needs to build the deployable model."""

    model: TaskModel
    length_config: LengthConfig | None
    seq_lens: tuple[int, ...]
    config: QuantConfig
    calibration: Sequence[dict] = ()  # unpadded rows: {"input_ids": [...], "token_type_ids": [...]}
    pad_token_id: int = 0
    evaluate: Evaluate | None = None
    # The model whose dev metric the tolerance counts from (scored by ``evaluate`` at full length), e.g. the
    # fine-tuned model the user compresses; None: the fp32 model's own metric.
    reference_model: TaskModel | None = None


class Runner(ABC):
    """Runs the model on int64 arrays already padded to one of ``seq_lens`` (any length when ``seq_lens`` is
    None). Safe to call from several threads."""

    seq_lens: tuple[int, ...] | None = None

    @abstractmethod
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> list[np.ndarray]:
        """Outputs as float32 arrays: ``[logits]`` or ``[start_logits, end_logits]``."""

    def warmup(self) -> None:
        """Compile every graph now rather than on its first input."""
        for seq_len in self.seq_lens or ():
            ids = np.zeros((1, seq_len), dtype=np.int64)
            self.run(ids, np.ones_like(ids), np.zeros_like(ids))


class Backend(ABC):
    name: str
    precision: str  # "int8", "fp32" or "bf16"

    @abstractmethod
    def build(self, request: BuildRequest) -> object:
        """The deployable model(s), in memory; ``save`` writes them."""

    @abstractmethod
    def save(self, built: object, folder: Path) -> dict:
        """Write the model files into ``folder``; return the backend's entry of qla.json (``seq_lens`` etc.)."""

    @abstractmethod
    def load(
        self, folder: Path, entry: dict, threads: int | None = None, *, max_batch_size: int | None = None
    ) -> Runner:
        """A ``Runner`` over the files ``save`` wrote. ``max_batch_size``: the most rows one call will bring (None:
        any number), for backends that compile a copy per batch shape to compile no more than they need."""

    def report(self, built: object) -> dict:
        """What the build decided (e.g. the tuning trials), recorded in qla.json."""
        return getattr(built, "report", {}) or {}


def example_inputs(seq_len: int, batch: int = 2, pad_token_id: int = 0) -> Inputs:
    """Inputs of the right shape for export; a second row half as long keeps padding in the traced graph."""
    ids = torch.full((batch, seq_len), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[1:, max(1, seq_len // 2) :] = 0
        ids[mask == 0] = pad_token_id
    return ids, mask, torch.zeros_like(ids)


def pad_rows(rows: Sequence[dict], seq_len: int, pad_token_id: int, batch_size: int = 8) -> list[Inputs]:
    """Rows padded (or cut, keeping the last special token) to ``seq_len``, in batches."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids = torch.full((len(chunk), seq_len), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        types = torch.zeros_like(ids)
        for i, row in enumerate(chunk):
            tokens = list(row["input_ids"])
            segments = list(row.get("token_type_ids") or [0] * len(tokens))
            if len(tokens) > seq_len:
                tokens = [*tokens[: seq_len - 1], tokens[-1]]
                segments = [*segments[: seq_len - 1], segments[-1]]
            n = len(tokens)
            ids[i, :n] = torch.tensor(tokens)
            types[i, :n] = torch.tensor(segments)
            mask[i, :n] = 1
        out.append((ids, mask, types))
    return out


def dynamic_batch_shapes() -> tuple[dict, dict, dict]:
    batch = torch.export.Dim("batch", min=1, max=1024)
    return ({0: batch}, {0: batch}, {0: batch})


def check_calibration(request: BuildRequest) -> None:
    if request.config.is_int8 and not request.calibration:
        raise ConfigError(
            f"backend {request.config.backend} quantizes to int8 and needs calibration samples: pass --data "
            "(a few hundred task examples)"
        )


def fp32_metric(request: BuildRequest, seq_len: int) -> float:
    """The dev metric of the unmodified model (the reference encoder with its length config; no int8 embedding or
    any other quantizer change), so the tolerance sees every loss."""
    model = request.model.eval().with_length_config(request.length_config)
    with torch.inference_mode():
        return float(request.evaluate(model, seq_len))


def tolerance_baseline(request: BuildRequest, seq_len: int, fp32: float) -> float:
    """What accuracy-aware tuning holds its tolerance against: the reference model's dev metric at full length,
    scored the same way, when the request names one (then the int8 model's whole loss against the model the user
    compresses is bounded, whatever the pruned fp32 model scores); else ``fp32``, the fp32 model's own."""
    if request.reference_model is None:
        return fp32
    model = request.reference_model.eval().with_length_config(None)
    with torch.inference_mode():
        return float(request.evaluate(model, seq_len))


def tuning_report(request: BuildRequest, fp32: float, baseline: float) -> dict:
    """The build report's record of what the tolerance counted from. The metrics are on the evaluator's 0-1 scale
    (accuracy, or SQuAD F1 / 100, where ``qla eval`` prints F1 in points): ``metric`` says which."""
    metric = "f1 / 100" if request.model.task == "question-answering" else "accuracy"
    report = {"metric": metric, "fp32_metric": fp32, "tolerance": request.config.tolerance}
    if request.reference_model is not None:
        report.update(reference_metric=baseline, tolerance_from="reference model")
    else:
        report["tolerance_from"] = "fp32 model"
    return report


def as_outputs(result) -> list[np.ndarray]:
    items = result if isinstance(result, (tuple, list)) else (result,)
    return [np.asarray(r.detach().float().cpu().numpy() if isinstance(r, torch.Tensor) else r) for r in items]


class LockedRunner(Runner):
    """Serialises calls into one runtime object (torch modules compiled or not): a lock, not a copy per thread."""

    def __init__(self, modules: dict[int, Callable] | Callable, seq_lens: tuple[int, ...] | None) -> None:
        self._modules = modules
        self.seq_lens = seq_lens
        self._lock = threading.Lock()

    def _module(self, seq_len: int) -> Callable:
        if self.seq_lens is None:
            return self._modules
        if seq_len not in self._modules:
            raise ConfigError(f"input padded to {seq_len} tokens; this model has graphs for {list(self.seq_lens)}")
        return self._modules[seq_len]

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        tensors = [torch.as_tensor(np.asarray(x, dtype=np.int64)) for x in (input_ids, attention_mask, token_type_ids)]
        with self._lock, torch.inference_mode():
            return as_outputs(self._module(tensors[0].shape[1])(*tensors))
