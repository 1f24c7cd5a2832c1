"""Keep glibc's allocator from returning freed memory to the kernel during a measurement.

By default glibc serves large blocks with mmap and trims the heap top, so a forward that allocates the same
multi-megabyte buffers every call page-faults on them every call. How often depends on the process's history: in
``benchmarks/latency.py`` the full-length MiniLM forward measured 40.9 ms in its first round and 43.9-44.6 ms in the
next six, while the pruned forward stayed at 24.3-25.1 ms. Raising both thresholds (what
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` do, and what the README recommends for deployment) takes the
allocator out of the comparison; it helps the full-length forward, with its larger buffers, the most.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1_000_000_000
# The same setting for a child process, through glibc's environment tunables.
GLIBC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(THRESHOLD_BYTES), "MALLOC_MMAP_THRESHOLD_": str(THRESHOLD_BYTES)}


def keep_freed_memory() -> str | None:
    """Set glibc's trim and mmap thresholds to 1 GB for this process; a description of what was set, or None where
    the C library is not glibc (nothing changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return None
    if not (mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES) and mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)):
        return None
    return f"glibc mallopt: M_TRIM_THRESHOLD and M_MMAP_THRESHOLD = {THRESHOLD_BYTES}"
