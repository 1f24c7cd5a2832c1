"""fp32 and bf16 references: the task model run eagerly, at any input length (no padding to a bucket)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from qla_sdk.backends.base import Backend, BuildRequest, LockedRunner, Runner, as_outputs
from qla_sdk.modeling import LengthConfig, from_pretrained, save_pretrained


class EagerRunner(LockedRunner):
    def __init__(self, model, length_config: LengthConfig | None, bf16: bool) -> None:
        super().__init__(model, None)
        self.length_config, self.bf16 = length_config, bf16

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        tensors = [torch.as_tensor(np.asarray(x, dtype=np.int64)) for x in (input_ids, attention_mask, token_type_ids)]
        with self._lock, torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.bf16):
            return as_outputs(self._modules(*tensors, length_config=self.length_config))


class EagerBackend(Backend):
    def __init__(self, precision: str = "fp32") -> None:
        self.name = self.precision = precision

    def build(self, request: BuildRequest):
        model = copy.copy(request.model)  # shares the weights; only the length config it is saved with differs
        model.length_config = request.length_config
        return model

    def save(self, built, folder: Path) -> dict:
        save_pretrained(built, folder)
        return {"seq_lens": None, "files": ["config.json", "model.safetensors"]}

    def load(self, folder: Path, entry: dict, threads: int | None = None) -> Runner:
        if threads:
            torch.set_num_threads(threads)
        model = from_pretrained(folder).eval()
        return EagerRunner(model, model.length_config, bf16=self.precision == "bf16")
