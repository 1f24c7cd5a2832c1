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
