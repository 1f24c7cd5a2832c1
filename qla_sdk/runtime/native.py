"""The eager runtime's native kernels for pruning layers: self-attention that also returns each token's
significance, and the choice of the tokens that stay.

Compiled from ``csrc/pruning.cpp`` on first use with the machine's C++ compiler (torch's
``cpp_extension``, ninja) for the machine's instruction set, and cached under ``TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions``): about 30 s once, a fraction of a second after. It is optional. Without a compiler,
on a CPU other than x86-64, with a torch build without MKL, or with ``QLA_SDK_NATIVE_KERNELS=0``, the runtime
computes the same thing from ATen ops, about 1 ms slower per MiniLM forward at length 384.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

ENV_SWITCH = "QLA_SDK_NATIVE_KERNELS"
# The switch of the fused pruning attention in compiled graphs (OpenVINO and Inductor runners).
FUSED_ATTENTION_SWITCH = "QLA_SDK_FUSED_ATTENTION"
OFF = ("0", "false", "no", "off")
SOURCE = Path(__file__).parent / "csrc" / "pruning.cpp"
# -march=native: the kernels are built where they run, and glibc's 16-lane expf needs AVX-512 to be allowed.
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]

logger = logging.getLogger("qla_sdk.runtime")
_lock = threading.Lock()
_kernel: dict[str, ModuleType | None] = {}


def native_kernels() -> ModuleType | None:
    """The compiled module, or None where it is switched off or cannot be built. Built once per process, on first
    call. ``attention_with_significance(q, k, v, scale) -> (context, significance)``: q, k, v (batch, len, heads,
    head_dim) with a contiguous head_dim; significance (batch, len) sums the probabilities over heads and queries.
    ``top_tokens(score, width, keep_cls) -> (batch, width)`` positions of the highest scores, in increasing order."""
    if "module" not in _kernel:
        with _lock:
            if "module" not in _kernel:
                _kernel["module"] = _build()
    return _kernel["module"]


def _build() -> ModuleType | None:
    if switch_value(ENV_SWITCH, "1") in OFF:
        return None
    if platform.machine() not in ("x86_64", "AMD64") or not torch.backends.mkl.is_available():
        logger.info("native kernels skipped: they need x86-64 and a torch build with MKL")
        return None
    try:
        from torch.utils.cpp_extension import load

        logger.info("building the native kernels (once per machine, about 30 s)")
        return load(name=extension_name(), sources=[str(SOURCE)], extra_cflags=CFLAGS, verbose=False)
    except Exception as err:  # no compiler, no ninja, a BLAS symbol missing: run on ATen ops instead
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(
            f"qla-sdk: the native kernels could not be built ({first_line}); the eager runtime uses ATen "
            f"ops instead (same results, about 1 ms slower per MiniLM forward at length 384). Install g++ and "
            f"ninja to build them, or set {ENV_SWITCH}=0 to skip the attempt.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def switch_value(name: str, default: str) -> str:
    """An environment switch's value, trimmed and lower-cased (``OFF`` lists the values that turn one off)."""
    return os.environ.get(name, default).strip().lower()


def extension_name() -> str:
    """A name per source, flags, torch version and CPU: a cache shared by machines with different instruction sets
    (a home directory on a cluster) must not hand one machine's -march=native build to another."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), torch.__version__.encode(), _cpu_flags().encode()):
        digest.update(part)
    return f"qla_pruning_{digest.hexdigest()[:16]}"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()
