"""Return freed training memory to the system (glibc's malloc on Linux).

CPU training on batches of changing length (dynamic padding) allocates and frees large tensors of ever-changing
sizes. By default glibc raises its mmap threshold each time a large mmapped block is freed, so later blocks of that
size come from the heap instead, where they fragment it and are never given back: a long QA run can grow until the
OOM killer ends it. A fixed threshold (what the ``MALLOC_MMAP_THRESHOLD_`` environment variable sets) keeps every
block above it an mmap of its own, unmapped when freed. The training loop fixes it once per process unless the user
set that variable; other C libraries (musl, macOS, Windows) are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
THRESHOLD_BYTES = 4 * 1024 * 1024
ENV = "MALLOC_MMAP_THRESHOLD_"


def glibc():
    """glibc as a ctypes library, or None where this process does not run on it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def fix_mmap_threshold(threshold: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; True when this call set it, False where the user set
    ``MALLOC_MMAP_THRESHOLD_`` or the C library is not glibc."""
    libc = glibc()
    if libc is None or ENV in os.environ:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
