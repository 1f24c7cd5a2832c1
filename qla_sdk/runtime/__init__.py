"""Speed work for eager CPU inference, applied explicitly and tested equal to the reference encoder.

``EagerRuntime(model)`` runs a ``TaskModel`` with packed oneDNN linears, native pruning kernels and an unpadded
route; ``native_kernels()`` is the compiled kernel module (or None); ``EagerRuntime(model, native=False)`` runs the
same route on ATen ops.
"""

from qla_sdk.runtime.eager import EagerRuntime
from qla_sdk.runtime.native import native_kernels

__all__ = ["EagerRuntime", "native_kernels"]
