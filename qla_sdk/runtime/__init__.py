"""Speed work for eager CPU inference, applied explicitly and tested equal to the reference encoder.

``EagerRuntime(model)`` runs a ``TaskModel`` with packed oneDNN linears, native pruning kernels and an unpadded
route; ``native_kernels()`` is the compiled kernel module (or None), ``native_kernels_disabled()`` switches it off
inside a block.
"""

from qla_sdk.runtime.eager import EagerRuntime
from qla_sdk.runtime.native import native_kernels, native_kernels_disabled

__all__ = ["EagerRuntime", "native_kernels", "native_kernels_disabled"]
