"""The C++ OpenVINO extension that runs the pruning layers' attention in int8 (``csrc/openvino_pruning_attention.cpp``).

Built on first use with the machine's C++ compiler against the headers of the installed ``openvino`` wheel, for
the machine's instruction set (``-march=native``), and cached under ``QLA_SDK_CACHE`` (default
``~/.cache/qla_sdk``), one library per sources, flags, compiler, OpenVINO version and CPU. It needs x86-64 and a C++17
compiler (``CXX``, default ``g++``); where either is missing, or the build fails, ``pruning_attention_library`` says
why (once per process) and ``backends.openvino.fused_attention_kernel`` falls back to the float32 operation of
``runtime.openvino_attention``. The operation's two int8 products run on AMX tiles where the CPU has them (and Linux
grants the process its tile state), else on AVX512-VNNI, else in portable C++: ``extension_isa`` says which; all give
the same outputs, bit for bit.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from qla_sdk.errors import ConfigError
from qla_sdk.machine import cpu_flags

SOURCE = Path(__file__).parent / "csrc" / "openvino_pruning_attention.cpp"
# The kernel, shared with the torch extension: its paths and what they share.
KERNEL_HEADERS = tuple(SOURCE.parent / f"pruning_attention_{part}.h" for part in ("int8", "common", "portable"))
# No -ffast-math: linking a shared library with it turns on flush-to-zero for the whole process that loads it.
# -ffp-contract=off: the portable code's float steps stay the vector code's (no a * b + c fused where they round twice).
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-std=c++17", "-shared", "-fPIC"]
CFLAGS += ["-DOV_THREAD=0"]  # 0: TBB

_lock = threading.Lock()
_built: dict[str, Path | ConfigError] = {}
FIX = "set QLA_SDK_FUSED_ATTENTION=0 (OpenVINO's own nodes) or float32 to serve without the int8 extension"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CXX", "g++")) or ["g++"]


def unavailable_reason() -> str | None:
    """Why the int8 extension cannot be used on this machine, or None where it can be built."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"it needs an x86-64 CPU, this is {platform.machine()}"
    if shutil.which(_compiler()[0]) is None:
        return f"no C++ compiler {_compiler()[0]!r} (install g++ or set CXX)"
    return None


def pruning_attention_library() -> Path:
    """The compiled extension (built once per machine and cached); raises ``ConfigError`` saying why where it
    cannot be built (a failed build is not retried in the same process)."""
    with _lock:
        if "library" not in _built:
            try:
                _built["library"] = _build()
            except ConfigError as error:
                _built["library"] = error
        built = _built["library"]
        if isinstance(built, ConfigError):
            raise built
        return built


def extension_isa() -> str:
    """The instructions the int8 extension's products run on in this process (``isa="auto"``): ``amx_int8``,
    ``avx512_vnni`` or ``portable``; raises ``ConfigError`` where the extension cannot be built."""
    library = ctypes.CDLL(str(pruning_attention_library()))
    library.qla_pruning_attention_isa.restype = ctypes.c_char_p
    return library.qla_pruning_attention_isa().decode()


def _openvino_paths() -> tuple[Path, Path, list[Path]]:
    import openvino

    root = Path(openvino.__file__).parent
    libs = root / "libs"
    core = sorted(libs.glob("libopenvino.so*"))
    tbb = sorted(libs.glob("libtbb.so*"))
    if not (root / "include" / "openvino" / "op" / "op.hpp").exists() or not core or not tbb:
        raise ConfigError(
            f"the openvino package at {root} ships no C++ headers or libraries to build the int8 attention "
            f"extension against; install the openvino wheel from PyPI (it includes them), or {FIX}"
        )
    return root / "include", libs, [core[0], tbb[0]]


def library_path() -> Path:
    """Where the library for this machine's sources (kernel headers included), flags, compiler, OpenVINO version and
    CPU is cached, built or not."""
    import openvino

    digest = hashlib.sha256()
    flags = " ".join(sorted(cpu_flags()))
    compiler = subprocess.run([*_compiler(), "--version"], capture_output=True, text=True).stdout
    sources = [f.read_bytes() for f in (SOURCE, *KERNEL_HEADERS)]
    for part in (*sources, " ".join(CFLAGS), compiler, openvino.__version__, flags):
        digest.update(part if isinstance(part, bytes) else part.encode())
    cache = Path(os.environ.get("QLA_SDK_CACHE", Path.home() / ".cache" / "qla_sdk")) / "openvino_extensions"
    return cache / f"qla_pruning_attention_{digest.hexdigest()[:16]}.so"


def _build() -> Path:
    reason = unavailable_reason()
    if reason is not None:
        raise ConfigError(f"the int8 attention extension cannot be built here: {reason}; {FIX}")
    include, libs, link = _openvino_paths()
    target = library_path()
    if target.exists():
        return target
    cache = target.parent
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # Built to a temporary name and renamed: a process that finds the library finds a whole one.
        handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=cache)
    except OSError as error:  # a read-only home in a service container: serve without it, as without a compiler
        raise ConfigError(
            f"the int8 attention extension cannot be built in {cache} ({error.strerror or error}): set "
            f"QLA_SDK_CACHE to a writable folder, or {FIX}"
        ) from None
    os.close(handle)
    command = [
        *_compiler(),
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
                + f"\nTo serve anyway, {FIX}."
            )
        os.chmod(temporary, 0o755)  # mkstemp's 0600 would keep a shared cache from loading it
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target
