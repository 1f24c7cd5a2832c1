"""int8 with Intel Extension for PyTorch: static quantization (uint8 asymmetric activations, int8 per-channel
weights), TorchScript trace and freeze.

IPEX's last release (2.8) runs only on torch 2.8, so this backend works in the project's IPEX docker image
(torch 2.8 + IPEX 2.8) and nowhere else; elsewhere it stops with that explanation.

Its files are TorchScript, and ``torch.jit.load`` runs a TorchScript archive's code, so loading one is trusting
whoever wrote it: ``load`` refuses unless the caller passes ``trust_torchscript=True`` (see SECURITY.md).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from qla_sdk.backends.base import Backend, BuildRequest, Runner, as_outputs, check_calibration, example_inputs, pad_rows
from qla_sdk.errors import CheckpointError, ConfigError
from qla_sdk.quantize.inc import QuantizationError

IPEX_TORCH = "2.8"


def require_ipex():
    try:
        import intel_extension_for_pytorch as ipex
    except ImportError as exc:
        raise QuantizationError(
            f"--backend ipex needs intel-extension-for-pytorch, which is not importable here ({exc}). IPEX's last "
            f"release (2.8) requires torch {IPEX_TORCH}.x (this environment has torch {torch.__version__}); run it "
            "in the IPEX docker image (torch 2.8 + IPEX 2.8), or use --backend inductor / openvino"
        ) from None
    if not torch.__version__.startswith(IPEX_TORCH):
        raise QuantizationError(f"IPEX {ipex.__version__} needs torch {IPEX_TORCH}; found torch {torch.__version__}")
    return ipex


def static_qconfig_mapping():
    """Zero-point int8: uint8 per-tensor affine activations (asymmetric), int8 per-channel symmetric weights."""
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping

    qconfig = QConfig(
        activation=MinMaxObserver.with_args(qscheme=torch.per_tensor_affine, dtype=torch.quint8),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )
    return QConfigMapping().set_global(qconfig)


class Built:
    def __init__(self, modules: dict[int, torch.jit.ScriptModule], report: dict) -> None:
        self.modules, self.report = modules, report


class IPEXRunner(Runner):
    def __init__(self, modules: dict[int, torch.jit.ScriptModule]) -> None:
        self._modules, self.seq_lens = modules, tuple(sorted(modules))
        self._lock = threading.Lock()

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        tensors = [torch.as_tensor(np.asarray(x, dtype=np.int64)) for x in (input_ids, attention_mask, token_type_ids)]
        if tensors[0].shape[1] not in self._modules:
            raise ConfigError(f"input of {tensors[0].shape[1]} tokens; graphs exist for {list(self.seq_lens)}")
        with self._lock, torch.no_grad():
            return as_outputs(self._modules[tensors[0].shape[1]](*tensors))


class IPEXBackend(Backend):
    name = "ipex"
    precision = "int8"

    def build(self, request: BuildRequest) -> Built:
        ipex = require_ipex()
        from intel_extension_for_pytorch.quantization import convert, prepare

        check_calibration(request)
        modules = {}
        for seq_len in request.seq_lens:
            model = request.model.eval().with_length_config(request.length_config)
            example = example_inputs(seq_len, pad_token_id=request.pad_token_id)
            prepared = prepare(model, static_qconfig_mapping(), example_inputs=example, inplace=False)
            with torch.no_grad():
                for batch in pad_rows(
                    request.calibration[: request.config.calibration_samples], seq_len, request.pad_token_id
                ):
                    prepared(*batch)
                converted = convert(prepared).eval()
                traced = torch.jit.trace(converted, example, check_trace=False, strict=False)
                modules[seq_len] = torch.jit.freeze(traced.eval())
        return Built(modules, {"quantizer": f"ipex {ipex.__version__} static", "activations": "uint8 asymmetric"})

    def save(self, built: Built, folder: Path) -> dict:
        files = []
        for seq_len, module in built.modules.items():
            torch.jit.save(module, str(folder / f"seq{seq_len}.torchscript"))
            files.append(f"seq{seq_len}.torchscript")
        return {"seq_lens": sorted(built.modules), "files": files}

    def load(
        self,
        folder: Path,
        entry: dict,
        threads: int | None = None,
        *,
        max_batch_size: int | None = None,
        trust_torchscript: bool = False,
    ) -> Runner:
        if trust_torchscript is not True:
            raise CheckpointError(
                f"{folder} holds TorchScript (ipex backend), which torch.jit.load runs like code: refused unless "
                "trust_torchscript=True, for files you built yourself (see SECURITY.md)"
            )
        require_ipex()
        if threads:
            torch.set_num_threads(threads)
        modules = {int(n): torch.jit.load(str(folder / f"seq{n}.torchscript")) for n in entry["seq_lens"]}
        return IPEXRunner(modules)
