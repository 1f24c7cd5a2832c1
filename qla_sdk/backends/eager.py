"""fp32 and bf16 references: the task model run eagerly, at any input length (no padding to a bucket).

fp32 runs through the eager runtime (``qla_sdk.runtime.EagerRuntime``: packed linears, native pruning kernels,
built at load), which equals the reference encoder. bf16 runs the reference encoder under bf16 autocast: linears
and attention products in bf16 (AMX or AVX512-BF16 where the CPU has them), norms and softmax in float32.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from qla_sdk.backends.base import Backend, BuildRequest, LockedRunner, Runner, as_outputs
from qla_sdk.modeling import from_pretrained, save_pretrained
from qla_sdk.modeling.heads import max_input_length
from qla_sdk.runtime import EagerRuntime


class EagerRunner(LockedRunner):
    def __init__(self, model, bf16: bool) -> None:
        # bf16 autocast bypasses the runtime's float32 kernels by its own guard; building them would be wasted
        super().__init__(model if bf16 else EagerRuntime(model), None)
        self.model, self.bf16 = model, bf16

    @property
    def length_config(self):
        return self.model.length_config

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        tensors = [torch.as_tensor(np.asarray(x, dtype=np.int64)) for x in (input_ids, attention_mask, token_type_ids)]
        with self._lock, torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.bf16):
            return as_outputs(self._modules(*tensors))  # the model's own (searched) length config

    def warmup(self) -> None:
        """One short and one long forward: packs the linear weights and touches every code path once."""
        longest = max_input_length(self.model.config)
        for seq_len in sorted({min(8, longest), min(128, longest)}):
            ids = np.zeros((1, seq_len), dtype=np.int64)
            self.run(ids, np.ones_like(ids), np.zeros_like(ids))


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

    def load(
        self, folder: Path, entry: dict, threads: int | None = None, *, max_batch_size: int | None = None
    ) -> Runner:
        if threads:
            torch.set_num_threads(threads)
        model = from_pretrained(folder).eval()
        return EagerRunner(model, bf16=self.precision == "bf16")
