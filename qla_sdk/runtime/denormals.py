"""Flush denormal floats to zero while the eager runtime infers.

Attention of a trained checkpoint is peaked: with all-MiniLM-L6-v2 at length 384, 0.6% of the first layer's
attention probabilities fall below 1.2e-38, the smallest normal float. x86 cores compute with such denormals in
microcode, far slower, and the softmax that writes them and the products that read them slow down with them: at
seq 384 the first layer's softmax and context product took 2.7 ms instead of 1.2 ms, and the pruned forward of
``benchmarks/latency.py`` went from 31.4 to 29.6 ms once they were flushed. Values that small change no logit.

``torch.set_flush_denormal`` sets the FTZ/DAZ bits of the calling thread only. The guard sets them for the
duration of one forward and clears them after, unless the caller had them on already, so the process's floating
point mode is what it was. Intra-op worker threads keep their own mode (they inherit the creator's mode when the
pool starts), which is why the gain is largest when a process sets the mode before its first forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_SMALLEST_DENORMAL_PROBE = 1e-39  # a float32 denormal: DAZ reads it as zero


def flushing_denormals() -> bool:
    """Whether the calling thread flushes denormals already (a denormal times one reads as zero under DAZ)."""
    return torch.tensor(_SMALLEST_DENORMAL_PROBE, dtype=torch.float32).mul(1.0).item() == 0.0


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormals to zero on this thread inside the block; leave the mode as found on exit."""
    if not enabled or flushing_denormals() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
