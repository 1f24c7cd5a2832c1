"""The fused pruning attention of OpenVINO graphs (``runtime.openvino_attention``) chooses the reference encoder's
tokens at every layer, on the real MiniLM, padded and unpadded: its float32 kernel with the reference's logits, its
int8 kernel with logits within int8 error; and it leaves graphs without pruning attention alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import word_piece_batch

from qla_sdk.modeling import LengthConfig

ov = pytest.importorskip("openvino")

from qla_sdk.backends.openvino import convert, without_attention_mask  # noqa: E402
from qla_sdk.errors import ConfigError  # noqa: E402
from qla_sdk.runtime.native import native_kernels  # noqa: E402
from qla_sdk.runtime.openvino_attention import attention_with_significance, fuse_pruning_attention  # noqa: E402
from qla_sdk.runtime.openvino_extension import unavailable_reason  # noqa: E402

SEQ = 96
CONFIGS = {
    "tokens": LengthConfig((67, 63, 60, 50, 26, 8), reference_length=SEQ),
    "ratios": LengthConfig((0.7, 0.66, 0.65, 0.53, 0.27, 0.09)),
}
F32 = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}


def inputs(rows: int = 1, pad_last_to: int | None = None) -> list[np.ndarray]:
    return [t.numpy() for t in word_piece_batch(rows, SEQ, pad_last_to)]


def with_choices(model):
    """The graph with each layer's chosen positions (the sort after TopK) as extra outputs."""
    sorts = [op for op in model.get_ordered_ops() if op.get_type_name() == "TopK" and "sort" in op.get_friendly_name()]
    model.add_outputs([op.output(1) for op in sorts])
    return model


def run(model, feed):
    compiled = ov.Core().compile_model(model, "CPU", F32)
    result = compiled.create_infer_request().infer(feed)
    return [np.array(result[out]) for out in compiled.outputs]


SHAPES = {"batch1": (1, None), "batch2": (2, None), "padded": (2, 61)}


CASES = [("tokens", "batch1"), ("tokens", "padded"), ("ratios", "batch2"), ("ratios", "padded")]


@pytest.mark.parametrize("kernel", ["float32", "int8"])
@pytest.mark.parametrize(("config", "shape"), CASES)
def test_fused_graph_chooses_the_reference_tokens_and_logits(minilm_qa, config, shape, kernel):
    if kernel == "int8" and unavailable_reason() is not None:
        pytest.skip(f"int8 extension: {unavailable_reason()}")
    length_config = CONFIGS[config]
    rows, pad_last_to = SHAPES[shape]
    graph = convert(minilm_qa.with_length_config(length_config), SEQ)
    if pad_last_to is None:  # rows without padding run the mask-free copy
        graph = without_attention_mask(graph)
    fused = graph.clone()
    assert fuse_pruning_attention(fused, kernel) == sum(op.get_type_name() == "Softmax" for op in graph.get_ops()) == 6
    assert not [op for op in fused.get_ops() if op.get_type_name() == "Softmax"]
    feed = inputs(rows, pad_last_to)
    plain_out, fused_out = run(with_choices(graph), feed), run(with_choices(fused), feed)
    with torch.inference_mode():
        reference = [t.numpy() for t in minilm_qa(*(torch.from_numpy(x) for x in feed), length_config=length_config)]
    for got, plain in zip(fused_out[2:], plain_out[2:], strict=True):
        if kernel == "float32":
            assert np.array_equal(got, plain)  # the same positions at every layer, in the same order
        else:  # the same positions; their order in the sort follows scores that moved by int8 error
            assert np.array_equal(np.sort(got, axis=-1), np.sort(plain, axis=-1))
    real = feed[1] > 0
    for got, want in zip(fused_out[:2], reference, strict=True):  # span logits at real positions
        if kernel == "float32":
            assert np.abs(got - want)[real].max() < 2e-4
        else:  # int8 error, mostly from the uint8 probabilities of the context product (as in NNCF's graph)
            assert np.corrcoef(got[real], want[real])[0, 1] > 0.98


@pytest.mark.parametrize(
    ("kernel", "isa", "message"),
    [("fp16", "auto", "unknown attention kernel 'fp16'"), ("int8", "amx", "unknown isa 'amx'.*auto, amx_int8")],
)
def test_an_unknown_kernel_or_isa_is_refused(minilm_qa, kernel, isa, message):
    graph = convert(minilm_qa.with_length_config(CONFIGS["tokens"]), SEQ)
    with pytest.raises(ConfigError, match=message):
        fuse_pruning_attention(graph, kernel, isa=isa)


def test_graphs_without_pruning_attention_are_left_as_they_are(minilm_qa):
    graph = convert(minilm_qa.with_length_config(None), SEQ)  # full length: no significance, no block to fuse
    before = sorted(op.get_type_name() for op in graph.get_ops())
    assert fuse_pruning_attention(graph) == 0
    assert sorted(op.get_type_name() for op in graph.get_ops()) == before


def test_the_aten_fallback_computes_what_the_native_kernel_does():
    kernels = native_kernels()
    if kernels is None:
        pytest.skip("native kernels cannot be built here")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 40, 4, 16, generator=g) for _ in range(3))
    mask = torch.ones(2, 40)
    mask[1, 25:] = 0
    for rows in (None, mask):
        native = attention_with_significance(kernels, q, k, v, 0.25, rows)
        aten = attention_with_significance(None, q, k, v, 0.25, rows)
        for a, b in zip(native, aten, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
