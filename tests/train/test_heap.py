"""The training loop fixes glibc's mmap threshold, so large freed blocks go back to the system."""

import subprocess
import sys
import textwrap

import pytest

from qla_sdk.train.heap import glibc

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from qla_sdk.train.heap import fix_mmap_threshold, glibc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = glibc()
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else None
    size = 16 << 20
    libc.free(libc.malloc(size))  # by default this raises the threshold above 16 MB
    before = libc.mallinfo2().hblks  # hblks: blocks held as mmaps of their own
    block = libc.malloc(size)
    print(fixed, libc.mallinfo2().hblks - before)
    libc.free(block)
    """
)


def probe(mode: str, env: dict | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    fixed, blocks = out.stdout.split()
    return fixed, int(blocks)


@pytest.mark.skipif(glibc() is None or not hasattr(glibc(), "mallinfo2"), reason="needs glibc >= 2.33")
def test_a_fixed_threshold_keeps_a_large_block_out_of_the_heap(monkeypatch):
    import os

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    assert probe("default", env) == ("None", 0)  # glibc's own rule: the second 16 MB block came from the heap
    assert probe("fix", env) == ("True", 1)
    # a threshold the user chose is left as it is
    assert probe("fix", {**env, "MALLOC_MMAP_THRESHOLD_": str(64 << 20)}) == ("False", 0)
