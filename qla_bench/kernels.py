"""Which kernels actually ran: oneDNN's verbose log (torch, Inductor, IPEX) and OpenVINO's execution graph.

A CPU flag says what the machine could do; these records say whether the int8 matmuls used it (e.g. an
``avx512_core_amx_int8`` brgemm rather than a plain AVX2 kernel).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable

MATMUL_KINDS = ("matmul", "inner_product", "convolution")
OV_MATMUL_LAYERS = ("FullyConnected", "MatMul", "Convolution", "ScaledDotProductAttention")


def _dtype(descriptor: str) -> str:
    """``src:u8::blocked:ab::f0`` (v1 format) or ``src_u8::blocked:ab:f0`` (older) -> ``u8``."""
    fields = descriptor.split(":")
    if fields[1] == "" and "_" in fields[0]:
        return fields[0].split("_", 1)[1]
    return fields[1]


def parse_onednn_verbose(lines: Iterable[str]) -> dict:
    """Summarise ``ONEDNN_VERBOSE`` lines: the ISA oneDNN chose and a count per (primitive, implementation, data
    types) of the executed primitives, with the int8 matmul-like ones listed apart."""
    isa = None
    executed: Counter[str] = Counter()
    int8: Counter[str] = Counter()
    for line in lines:
        fields = line.strip().split(",")
        if not fields or fields[0] not in ("onednn_verbose", "dnnl_verbose"):
            continue
        if "info" in fields[:3] and ",isa:" in line:
            isa = line.split(",isa:", 1)[1].strip()  # the ISA description itself may hold commas
            continue
        if "exec" not in fields:
            continue
        at = fields.index("exec")
        # onednn_verbose,[v1,][primitive,]exec,cpu,<kind>,<implementation>,<prop>,<memory descriptors>,...
        if len(fields) < at + 6 or fields[at + 1] != "cpu":
            continue
        kind, impl, descriptors = fields[at + 2], fields[at + 3], fields[at + 5]
        dtypes = "/".join(_dtype(part) for part in descriptors.split() if part.count(":") >= 2)
        key = f"{kind}:{impl}:{dtypes}"
        executed[key] += 1
        if kind in MATMUL_KINDS and any(t in ("u8", "s8") for t in dtypes.split("/")):
            int8[key] += 1
    return {"isa": isa, "primitives": dict(executed.most_common()), "int8_matmuls": dict(int8.most_common())}


@contextlib.contextmanager
def _captured_stdout() -> Iterable[list[str]]:
    """Capture what C libraries write to file descriptor 1 (oneDNN prints its verbose log there)."""
    lines: list[str] = []
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield lines
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def onednn_kernels(call: Callable[[], object]) -> dict:
    """Run ``call`` once with oneDNN's verbose log on (torch's switch) and summarise it."""
    import torch

    with _captured_stdout() as lines, torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        call()
    summary = parse_onednn_verbose(lines)
    summary["source"] = "oneDNN verbose (torch.backends.mkldnn.verbose)"
    return summary


FUSED_ATTENTION = "QuaLAPruningAttention"  # qla_sdk.runtime.openvino_attention.OP_NAME


def _extension_isa() -> str:
    """The instructions the int8 attention extension picks in this process (``amx_int8``, ``avx512_vnni`` or
    ``portable``), or ``ref`` where it cannot be built."""
    from qla_sdk.errors import ConfigError
    from qla_sdk.runtime.openvino_extension import extension_isa

    try:
        return extension_isa()
    except ConfigError:
        return "ref"


def fused_attention_key(kernel: str) -> str:
    """The record of a compiled torch graph's fused pruning attention (``kernel``: ``int8`` or ``float32``), in the
    ``layer:primitive:precision`` form of OpenVINO's nodes: the int8 kernel's matrix instructions, or ``ref``."""
    from qla_sdk.runtime.native import int8_attention_kernels

    module = int8_attention_kernels() if kernel == "int8" else None
    return f"{FUSED_ATTENTION}:{module.isa()}:i8" if module is not None else f"{FUSED_ATTENTION}:ref:f32"


def openvino_kernels(compiled_model, fused_isa: str | None = None) -> dict:
    """Layer type, primitive (kernel) and runtime precision of each node of OpenVINO's execution graph.
    ``fused_isa``: the matrix instructions of any fused pruning attention node (``ref`` for the float32 operation);
    None: what the int8 extension picks here."""
    layers: Counter[str] = Counter()
    matmuls: Counter[str] = Counter()
    for op in compiled_model.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()

        def text(key: str, info=info) -> str:
            return str(info[key].astype(str)) if key in info else "?"

        layer, primitive, precision = text("layerType"), text("primitiveType"), text("runtimePrecision")
        if layer in ("Const", "Input", "Output", "Parameter", "Result"):
            continue
        if op.get_friendly_name().startswith(FUSED_ATTENTION):
            # OpenVINO lists an extension's operation as a "Reference" node; name it and its matrix instructions.
            layer, primitive = FUSED_ATTENTION, fused_isa or _extension_isa()
            precision = "f32" if primitive == "ref" else "i8"
        key = f"{layer}:{primitive}:{precision}"
        layers[key] += 1
        if layer in OV_MATMUL_LAYERS or layer == FUSED_ATTENTION:
            matmuls[key] += 1
    try:
        value = compiled_model.get_property("INFERENCE_PRECISION_HINT")
        hint = value.to_string() if hasattr(value, "to_string") else str(value)
    except Exception:  # older/other plugins do not expose it
        hint = None
    return {
        "source": "OpenVINO get_runtime_model()",
        "inference_precision_hint": hint,
        "matmuls": dict(matmuls.most_common()),
        "layers": dict(layers.most_common()),
    }


def _isa_tag(implementation: str, dtypes: str) -> str:
    """One matrix kernel as a short ISA tag: ``amx_int8``, ``amx_bf16``, ``avx512_vnni`` (int8 on AVX-512),
    ``avx512_bf16``, ``avx512_f32``, ``avx2_int8``, ``avx2_f32``, ``mlas_f32``, ``portable`` (the fused attention's
    plain C++), ``ref`` or ``unknown``."""
    impl, kinds = implementation.lower(), dtypes.lower()
    if impl == "portable":
        return impl
    int8 = any(t in kinds.replace("/", ":").split(":") for t in ("u8", "s8", "i8")) or "i8" in impl.split("_")
    bf16 = "bf16" in kinds or "bf16" in impl
    if "amx" in impl:
        return "amx_int8" if int8 else "amx_bf16" if bf16 else "amx"
    if "avx512" in impl or "avx10" in impl:
        return "avx512_vnni" if int8 else "avx512_bf16" if bf16 else "avx512_f32"
    if "avx2" in impl or "uni" in impl:
        return "avx2_int8" if int8 else "avx2_f32"
    if "mlas" in impl:
        return "mlas_int8" if int8 else "mlas_f32"
    if "ref" in impl:
        return "ref"
    return "unknown"


def matrix_isa(kernels: dict | None) -> str | None:
    """The matrix kernels a row ran, as ISA tags by how many nodes used each (most first), e.g.
    ``amx_int8,avx512_f32``; None where no matmul kernel was recorded (MKL's fp32 GEMM is not in oneDNN's log)."""
    if not kernels or kernels.get("error"):
        return None
    counts: Counter[str] = Counter()
    for key, n in (kernels.get("matmuls") or {}).items():  # OpenVINO: layer:primitive:precision
        _, primitive, precision = [*key.split(":"), "", ""][:3]
        counts[_isa_tag(primitive, precision)] += n
    for key, n in (kernels.get("primitives") or {}).items():  # oneDNN: kind:implementation:isa:dtypes
        kind, _, rest = key.partition(":")
        if kind in MATMUL_KINDS:
            implementation, _, dtypes = rest.rpartition(":")
            counts[_isa_tag(implementation, dtypes)] += n
    for op, n in (kernels.get("int8_ops") or {}).items():  # ONNX Runtime: int8 MatMulInteger on MLAS
        if op == "MatMulInteger":
            counts["mlas_int8"] += n
    return ",".join(tag for tag, _ in counts.most_common()) or None


def amx_line(records: list[dict]) -> str:
    """One line for a results header: did any row run an AMX matrix kernel (from the kernel names)?"""
    amx = sorted({r["name"] for r in records if "amx" in (r.get("isa") or "")})
    if amx:
        return f"AMX ran: yes, in {len(amx)} row(s) ({', '.join(amx)}), read from the kernel names."
    if any(r.get("isa") for r in records):
        return "AMX ran: no (no row's matrix kernels are AMX kernels; see each row's `isa`)."
    return "AMX ran: unknown (no kernels were recorded: run without --no-kernels)."
