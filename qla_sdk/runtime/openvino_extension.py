"""The C++ OpenVINO extension that runs the pruning layers' attention in int8 (``csrc/openvino_pruning_attention.cpp``).

Built on first use with the machine's C++ compiler against the headers of the installed ``openvino`` wheel, for
the machine's instruction set (``-march=native``), and cached under ``QLA_SDK_CACHE`` (default
``~/.cache/qla_sdk``), one library per source, flags, OpenVINO version and CPU. It needs x86-64 with AVX512-VNNI
(``vpdpbusd``) and ``g++``; where either is missing ``pruning_attention_library`` says why and the caller falls
back to the float32 operation of ``runtime.openvino_attention``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from qla_sdk.errors import ConfigError
from qla_sdk.machine import cpu_flags

SOURCE = Path(__file__).parent / "csrc" / "openvino_pruning_attention.cpp"
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-std=c++17", "-shared", "-fPIC", "-DOV_THREAD=0"]  # 0: TBB
# The kernel's instructions: AVX-512 F/BW/VL and VNNI's vpdpbusd.
REQUIRED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")

_lock = threading.Lock()
_built: dict[str, Path] = {}


def unavailable_reason() -> str | None:
    """Why the int8 extension cannot be used on this machine, or None where it can be built."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"it needs an x86-64 CPU, this is {platform.machine()}"
    missing = [f for f in REQUIRED_FLAGS if f not in cpu_flags()]
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (install g++ or set CXX)"
    return None


def pruning_attention_library() -> Path:
    """The compiled extension (built once per machine and cached); raises ``ConfigError`` saying why where it
    cannot be built."""
    with _lock:
        if "library" not in _built:
            _built["library"] = _build()
        return _built["library"]


def _openvino_paths() -> tuple[Path, Path, list[Path]]:
    import openvino

    root = Path(openvino.__file__).parent
    libs = root / "libs"
    core = sorted(libs.glob("libopenvino.so*"))
    tbb = sorted(libs.glob("libtbb.so*"))
    if not (root / "include" / "openvino" / "op" / "op.hpp").exists() or not core or not tbb:
        raise ConfigError(
            f"the openvino package at {root} ships no C++ headers or libraries to build the int8 attention "
            "extension against; install the openvino wheel from PyPI (it includes them)"
        )
    return root / "include", libs, [core[0], tbb[0]]


def _build() -> Path:
    import openvino

    reason = unavailable_reason()
    if reason is not None:
        raise ConfigError(f"the int8 attention extension cannot be built here: {reason}")
    include, libs, link = _openvino_paths()
    digest = hashlib.sha256()
    flags = " ".join(sorted(cpu_flags()))
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), openvino.__version__.encode(), flags.encode()):
        digest.update(part)
    cache = Path(os.environ.get("QLA_SDK_CACHE", Path.home() / ".cache" / "qla_sdk")) / "openvino_extensions"
    target = cache / f"qla_pruning_attention_{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Built to a temporary name and renamed: a process that finds the library finds a whole one.
    handle, temporary = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(handle)
    command = [
        os.environ.get("CXX", "g++"),
        *CFLAGS,
        f"-I{include}",
        str(SOURCE),
        "-o",
        temporary,
        *map(str, link),
        f"-Wl,-rpath,{libs}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(
                "the int8 attention extension failed to build:\n"
                + done.stderr.strip()[-2000:]
                + "\nUnset QLA_SDK_FUSED_ATTENTION to serve without it."
            )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target
