"""Kernel records: oneDNN verbose parsing and capture, OpenVINO's execution graph."""

import numpy as np
import torch

from qla_bench.kernels import onednn_kernels, openvino_kernels, parse_onednn_verbose

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
