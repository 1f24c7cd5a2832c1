"""glibc's thresholds for measurements: set through mallopt in-process."""

import platform

import pytest

from qla_bench.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_sets_both_thresholds():
    assert keep_freed_memory() == "glibc mallopt: M_TRIM_THRESHOLD and M_MMAP_THRESHOLD = 1000000000"
