"""Ways to run the pruned model: ``inductor`` (INC int8 + torch.compile), ``openvino`` (NNCF int8 IR), ``ipex``
(IPEX int8, its own torch 2.8 image), ``fp32`` / ``bf16`` (eager references). One interface: ``Backend``."""

from __future__ import annotations

from qla_sdk.backends.base import Backend, BuildRequest, Runner, example_inputs, pad_rows
from qla_sdk.errors import ConfigError
from qla_sdk.quantize.config import BACKENDS


def get_backend(name: str) -> Backend:
    if name == "inductor":
        from qla_sdk.backends.inductor import InductorBackend

        return InductorBackend()
    if name == "openvino":
        from qla_sdk.backends.openvino import OpenVINOBackend

        return OpenVINOBackend()
    if name == "ipex":
        from qla_sdk.backends.ipex import IPEXBackend

        return IPEXBackend()
    if name in ("fp32", "bf16"):
        from qla_sdk.backends.eager import EagerBackend

        return EagerBackend(name)
    raise ConfigError(f"backend {name!r} is unknown; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "BuildRequest", "Runner", "example_inputs", "get_backend", "pad_rows"]
