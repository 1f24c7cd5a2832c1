"""The eager runtime's native kernels for pruning layers: self-attention that also returns each token's
significance, and the choice of the tokens that stay; and the int8 attention kernel for compiled torch graphs.

Compiled from ``csrc/pruning.cpp`` on first use with the machine's C++ compiler (torch's
``cpp_extension``, ninja) for the machine's instruction set, and cached under ``TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions``): about 30 s once, a fraction of a second after. It is optional. Without a compiler,
on a CPU other than x86-64, with a torch build without MKL, or with ``QLA_SDK_NATIVE_KERNELS=0``, the runtime
computes the same thing from ATen ops, about 1 ms slower per MiniLM forward at length 384.

``int8_attention_kernels`` builds ``csrc/torch_pruning_attention.cpp`` the same way: the OpenVINO extension's int8
kernel (``csrc/pruning_attention_int8.h``: AMX tiles, AVX512-VNNI or portable C++) as a torch function, which the
fused attention of Inductor graphs runs (``runtime.inductor_attention``). None where it cannot be built.
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

from qla_sdk.runtime.openvino_extension import KERNEL_HEADERS

ENV_SWITCH = "QLA_SDK_NATIVE_KERNELS"
# The switch of the fused pruning attention in compiled graphs (OpenVINO and Inductor runners).
FUSED_ATTENTION_SWITCH = "QLA_SDK_FUSED_ATTENTION"
OFF = ("0", "false", "no", "off")
SOURCE = Path(__file__).parent / "csrc" / "pruning.cpp"
# -march=native: the kernels are built where they run, and glibc's 16-lane expf needs AVX-512 to be allowed.
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
INT8_SOURCE = SOURCE.parent / "torch_pruning_attention.cpp"
INT8_KERNEL = KERNEL_HEADERS  # the OpenVINO extension's kernel headers: one list for both cache keys
# -fopenmp: ATen's parallel_for is a header template that runs serially without it. No -ffast-math: the kernel's
# float steps are written out (its exp is a polynomial), and the OpenVINO build of the same kernel has none;
# -ffp-contract=off keeps its portable code's steps those of its vector code, as there.
INT8_CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fopenmp"]

logger = logging.getLogger("qla_sdk.runtime")
_lock = threading.Lock()
_kernel: dict[str, ModuleType | None] = {}


def native_kernels() -> ModuleType | None:
    """The compiled module, or None where it is switched off or cannot be built. Built once per process, on first
    call. ``attention_with_significance(q, k, v, scale) -> (context, significance)``: q, k, v (batch, len, heads,
    head_dim) with a contiguous head_dim; significance (batch, len) sums the probabilities over heads and queries.
    ``top_tokens(score, width, keep_cls) -> (batch, width)`` positions of the highest scores, in increasing order."""
    return _once("module", _build)


def int8_attention_kernels() -> ModuleType | None:
    """The compiled int8 attention module, or None where it is switched off (``QLA_SDK_NATIVE_KERNELS=0``) or
    cannot be built (not x86-64, no compiler). ``attention_int8(q, k, v, scale, mask=None, isa="auto") -> (context,
    significance)`` with the shapes of ``attention_with_significance`` (q, k, v sharing their strides); ``isa()``
    names the instructions ``auto`` runs on here (``amx_int8``, ``avx512_vnni`` or ``portable``)."""
    return _once("int8", _build_int8)


def int8_unavailable_reason() -> str | None:
    """Why the int8 attention kernel cannot run on this machine, or None where it can be built."""
    if switch_value(ENV_SWITCH, "1") in OFF:
        return f"{ENV_SWITCH} is off"
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"it needs an x86-64 CPU, this is {platform.machine()}"
    return None


def _once(key: str, build) -> ModuleType | None:
    if key not in _kernel:
        with _lock:
            if key not in _kernel:
                _kernel[key] = build()
    return _kernel[key]


def _build() -> ModuleType | None:
    if switch_value(ENV_SWITCH, "1") in OFF:
        return None
    if platform.machine() not in ("x86_64", "AMD64") or not torch.backends.mkl.is_available():
        logger.info("native kernels skipped: they need x86-64 and a torch build with MKL")
        return None
    return _load(
        "qla_pruning",
        [SOURCE],
        CFLAGS,
        "the native kernels",
        "the eager runtime uses ATen ops instead (same results, about 1 ms slower per MiniLM forward at length 384)",
    )


def _build_int8() -> ModuleType | None:
    reason = int8_unavailable_reason()
    if reason is not None:
        logger.info("int8 attention kernel skipped: %s", reason)
        return None
    return _load(
        "qla_attention_int8",
        [INT8_SOURCE, *INT8_KERNEL],
        INT8_CFLAGS,
        "the int8 attention kernel",
        "compiled torch graphs run the float32 fused attention instead",
    )


def _load(prefix: str, files: list[Path], flags: list[str], what: str, instead: str) -> ModuleType | None:
    try:
        from torch.utils.cpp_extension import load

        logger.info("building %s (once per machine, about 30 s)", what)
        sources = [str(f) for f in files if f.suffix == ".cpp"]
        return load(name=extension_name(prefix, files, flags), sources=sources, extra_cflags=flags, verbose=False)
    except Exception as err:  # no compiler, no ninja, a BLAS symbol missing: run without it
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(
            f"qla-sdk: {what} could not be built ({first_line}); {instead}. Install g++ and ninja to build "
            f"them, or set {ENV_SWITCH}=0 to skip the attempt.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def fused_attention_choice() -> str:
    """``QLA_SDK_FUSED_ATTENTION`` as ``off``, ``auto`` (unset), ``int8`` (also ``1``) or ``float32``, the switch
    both compiled-graph runners read; raises ``ConfigError`` naming the choices for any other value."""
    value = switch_value(FUSED_ATTENTION_SWITCH, "auto")
    if value in OFF:
        return "off"
    if value in ("", "auto"):
        return "auto"
    if value in ("1", "true", "yes", "on", "int8"):
        return "int8"
    if value == "float32":
        return value
    from qla_sdk.errors import ConfigError

    raise ConfigError(f"{FUSED_ATTENTION_SWITCH}={value!r} is not one of auto, 0, 1, int8, float32")


def switch_value(name: str, default: str) -> str:
    """An environment switch's value, trimmed and lower-cased (``OFF`` lists the values that turn one off)."""
    return os.environ.get(name, default).strip().lower()


def extension_name(prefix: str = "qla_pruning", files: list[Path] | None = None, flags: list[str] | None = None) -> str:
    """A name per sources (headers included), flags, torch version and CPU: a cache shared by machines with
    different instruction sets (a home directory on a cluster) must not hand one machine's -march=native build to
    another. Defaults: the eager runtime's kernels."""
    digest = hashlib.sha256()
    for f in files or [SOURCE]:
        digest.update(f.read_bytes())
    for part in (" ".join(flags or CFLAGS), torch.__version__, _cpu_flags()):
        digest.update(part.encode())
    return f"{prefix}_{digest.hexdigest()[:16]}"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()
