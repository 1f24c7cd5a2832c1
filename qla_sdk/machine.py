"""What a result was measured on: CPU model, cores, the ISA flags that decide int8/bf16 kernels, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni")
PACKAGES = (
    "qla-sdk",
    "torch",
    "transformers",
    "neural-compressor",
    "openvino",
    "nncf",
    "optimum-intel",
    "onnxruntime",
    "intel-extension-for-pytorch",
    "accelerate",
    "datasets",
)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    path = Path("/proc/cpuinfo")
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "flags") and key not in info:
                info[key] = value.strip()
    return info


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


# What the int8 attention operation's vector code runs on: vpdpbusd and the AVX-512 around it (AMX CPUs have them).
AVX512_VNNI_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")


def has_avx512_vnni() -> bool:
    """Whether the CPU runs the int8 attention operation's vector code (else only its slower portable code)."""
    return set(AVX512_VNNI_FLAGS) <= cpu_flags()


# A kernel class where the CPU's flags cannot be read: it matches no record, not even another unknown one.
UNKNOWN = "unknown"


def int8_kernels(flags: set[str] | None = None) -> str:
    """The instructions oneDNN's int8 matrix kernels run on here (OpenVINO, Inductor and IPEX all use them), best
    first: AMX tiles, AVX-512 VNNI, AVX VNNI, AVX-512 without VNNI, else AVX2 or less. Each sums and rounds its own
    way (without VNNI, u8 x s8 pairs are summed in saturating int16), so one int8 graph scores differently per class."""
    flags = cpu_flags() if flags is None else flags
    if not flags:  # no x86 flags to read (another architecture, or no /proc/cpuinfo): nothing to compare
        return UNKNOWN
    if "amx_int8" in flags:
        return "amx_int8"
    if set(AVX512_VNNI_FLAGS) <= flags:
        return "avx512_vnni"
    if "avx_vnni" in flags:
        return "avx_vnni"
    if "avx512bw" in flags:
        return "avx512"
    return "avx2_or_less"


def bf16_kernels(flags: set[str] | None = None) -> str:
    """The instructions bf16 math runs on here: AMX tiles, AVX-512 BF16, else none (OpenVINO then computes in f32)."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return UNKNOWN
    if "amx_bf16" in flags:
        return "amx_bf16"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "none"


def kernel_classes() -> dict[str, str]:
    """This CPU and the kernel classes that decide how a quantized model rounds: what an artifact records as the
    machine its accuracy was checked on (``build.checked_on``), and ``qla_sdk.load`` compares with where it serves."""
    flags = cpu_flags()
    return {
        "cpu_model": _cpuinfo().get("model name") or platform.processor() or "an unnamed CPU",
        "int8": int8_kernels(flags),
        "bf16": bf16_kernels(flags),
    }


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    usable = usable_cores()
    return {
        "cpu_model": info.get("model name", platform.processor()),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "isa_flags": {flag: flag in flags for flag in ISA_FLAGS},
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
