"""Kernel records: oneDNN verbose parsing and capture, OpenVINO's execution graph."""

import numpy as np
import pytest
import torch

from qla_bench.kernels import (
    amx_line,
    fused_attention_key,
    matrix_isa,
    onednn_kernels,
    openvino_kernels,
    parse_onednn_verbose,
)

VERBOSE = """\
onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71)
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions and Intel AMX
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:u8::blocked:ab::f0 \
wei:s8:a:blocked:AB16b64a4b::f0 dst:f32::blocked:ab::f0,attr-scales:wei:2:f32,,4x64:64x64,0.01
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:u8::blocked:ab::f0 \
wei:s8:a:blocked:AB16b64a4b::f0 dst:f32::blocked:ab::f0,attr-scales:wei:2:f32,,4x64:64x64,0.01
onednn_verbose,v1,primitive,exec,cpu,eltwise,jit:avx512_core,forward_training,data:f32::blocked:ab::f0,,alg:gelu,4x64,0.002
dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core_vnni,forward_inference,src_u8::blocked:ab:f0 \
wei_s8::blocked:AB:f0 dst_f32::blocked:ab:f0,,,mb4ic64oc64,0.01
some unrelated line
"""


def test_parse_onednn_verbose():
    summary = parse_onednn_verbose(VERBOSE.splitlines())
    assert summary["isa"].endswith("Intel AMX")
    assert summary["int8_matmuls"] == {
        "matmul:brg_matmul:avx512_core_amx:u8/s8/f32": 2,
        "inner_product:brgemm:avx512_core_vnni:u8/s8/f32": 1,
    }
    assert summary["primitives"]["eltwise:jit:avx512_core:f32"] == 1
    assert sum(summary["primitives"].values()) == 4  # the legacy dnnl_verbose line is counted too


def test_onednn_kernels_capture_a_real_run():
    x = torch.randn(4, 64)
    summary = onednn_kernels(lambda: torch.nn.functional.gelu(x))  # torch runs GELU through oneDNN on CPU
    assert summary["isa"]
    assert any(key.startswith("eltwise:") for key in summary["primitives"])


def test_openvino_kernels_of_a_compiled_model():
    import openvino as ov
    import openvino.opset13 as ops

    data = ops.parameter([1, 16], np.float32, name="x")
    weights = ops.constant(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32))
    model = ov.Model([ops.matmul(data, weights, False, True)], [data])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1})
    summary = openvino_kernels(compiled)
    assert summary["matmuls"] and all(key.split(":")[0] in ("FullyConnected", "MatMul") for key in summary["matmuls"])
    assert summary["inference_precision_hint"]


@pytest.mark.parametrize("fused_isa", [None, "avx512_vnni", "ref"])
def test_openvino_kernels_name_the_fused_attention_and_its_matrix_instructions(fused_isa):
    """OpenVINO lists an extension's operation as a Reference node; the record names it and the ISA it ran."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.utils.node_factory import NodeFactory

    from qla_sdk.runtime import openvino_extension
    from qla_sdk.runtime.openvino_attention import OP_NAME

    if openvino_extension.unavailable_reason() is not None:
        pytest.skip(f"int8 extension: {openvino_extension.unavailable_reason()}")
    factory = NodeFactory()
    factory.add_extension(str(openvino_extension.pruning_attention_library()))
    params = [ops.parameter([1, 8, 32], np.float32) for _ in range(3)]
    node = factory.create(OP_NAME, [p.output(0) for p in params], {"heads": 2, "scale": 0.25})
    compiled = ov.Core().compile_model(ov.Model([node.output(0), node.output(1)], params), "CPU")
    isa = fused_isa or openvino_extension.extension_isa()
    key = f"{OP_NAME}:{isa}:{'f32' if isa == 'ref' else 'i8'}"
    summary = openvino_kernels(compiled, fused_isa)
    assert summary["matmuls"] == {key: 1} and summary["layers"][key] == 1
    assert matrix_isa(summary) == isa


@pytest.mark.parametrize(
    ("kernels", "isa"),
    [
        ({"matmuls": {"FullyConnected:brgemm_avx512_amx_I8:u8": 34, "MatMul:brgemm_avx512_amx_bf16:bf16": 12}},
         "amx_int8,amx_bf16"),
        ({"matmuls": {"FullyConnected:brgemm_avx512_I8:u8": 34, "FullyConnected:gemm_mlas_f32:f32": 1}},
         "avx512_vnni,mlas_f32"),
        ({"matmuls": {"MatMul:jit_avx2_f32:f32": 2, "MatMul:ref_any_f32:f32": 1}}, "avx2_f32,ref"),
        ({"primitives": {"matmul:brg_matmul:avx10_1_512:u8/s8/f32/f32": 61, "eltwise:jit:avx512_core:f32": 9}},
         "avx512_vnni"),
        ({"primitives": {"inner_product:brgemm:avx512_core_amx:bf16/bf16/f32": 3}}, "amx_bf16"),
        ({"int8_ops": {"DynamicQuantizeLinear": 25, "MatMulInteger": 37}}, "mlas_int8"),
        ({"primitives": {"eltwise:jit:avx512_core:f32": 12}}, None),  # fp32 linears on MKL: not in oneDNN's log
        ({"error": "RuntimeError: boom"}, None),
        (None, None),
    ],
)  # fmt: skip
def test_matrix_isa_names_the_matrix_kernels_that_ran(kernels, isa):
    assert matrix_isa(kernels) == isa


@pytest.mark.parametrize("kernel", ["int8", "float32"])
def test_an_inductor_rows_fused_attention_counts_among_its_matrix_kernels(kernel):
    """oneDNN's log has the int8 linears; the fused pruning attention (an external kernel) is recorded beside them."""
    from qla_sdk.runtime.native import int8_attention_kernels

    summary = parse_onednn_verbose(VERBOSE.splitlines())
    summary["matmuls"] = {fused_attention_key(kernel): 6}
    module = int8_attention_kernels()
    fused = "ref" if kernel == "float32" or module is None else module.isa()
    assert fused_attention_key(kernel) == f"QuaLAPruningAttention:{fused}:{'i8' if fused != 'ref' else 'f32'}"
    assert fused in matrix_isa(summary).split(",")


def test_matrix_isa_of_parsed_verbose_lines():
    assert matrix_isa(parse_onednn_verbose(VERBOSE.splitlines())) == "amx_int8,avx512_vnni"


def test_amx_line_says_which_rows_ran_amx():
    rows = [{"name": "a", "isa": "amx_int8,avx512_f32"}, {"name": "b", "isa": "avx512_vnni"}, {"name": "c"}]
    assert amx_line(rows).startswith("AMX ran: yes, in 1 row(s) (a)")
    assert amx_line(rows[1:]).startswith("AMX ran: no")
    assert amx_line(rows[2:]).startswith("AMX ran: unknown")
