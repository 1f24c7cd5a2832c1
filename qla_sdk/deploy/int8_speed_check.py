"""Whether int8 can pay on the CPU an artifact is served on.

oneDNN's int8 matrix kernels (what OpenVINO, Inductor and IPEX run) are fast where the CPU multiplies u8 x s8 pairs
with dot-product instructions: AMX tiles, AVX-512 VNNI or AVX-VNNI (Intel Xeon since Cascade Lake, AMD since Zen 4).
Without them (AVX2 only: AMD Zen 2 and 3, older Intel), int8 is summed through int16 with extra steps and runs about
as fast as FP32, so an int8 artifact gains nothing from its int8 there (``benchmarks/results/`` names the runs).
``qla_sdk.load`` warns where that is so.
"""

from __future__ import annotations

import warnings

from qla_sdk import machine
from qla_sdk.deploy.artifact import Manifest

# Kernel classes (``machine.int8_kernels``) where int8 runs no faster than FP32.
SLOW_INT8_KERNELS = ("avx2_or_less",)


class Int8WithoutDotProductWarning(UserWarning):
    """An int8 artifact served on a CPU without int8 dot-product instructions (VNNI or AMX)."""


def warn_if_int8_does_not_pay(manifest: Manifest, kernels: str | None = None) -> None:
    """``Int8WithoutDotProductWarning`` where ``manifest`` is int8 and this CPU's int8 kernels (``kernels``, by
    default ``machine.int8_kernels()``) are of a class where int8 runs no faster than FP32."""
    if manifest.data.get("precision") != "int8":
        return
    kernels = machine.int8_kernels() if kernels is None else kernels
    if kernels not in SLOW_INT8_KERNELS:
        return
    warnings.warn(
        Int8WithoutDotProductWarning(
            f"{manifest.folder}: an int8 artifact on a CPU without int8 dot-product instructions (no AMX, AVX-512 "
            "VNNI or AVX-VNNI): its int8 runs about as fast as FP32 here, so only its token pruning speeds it up. "
            "Serve it on a CPU that has them (Intel Xeon since Cascade Lake, AMD EPYC since Zen 4), or, for this "
            "CPU, export the model with --backend fp32"
        ),
        stacklevel=3,
    )
