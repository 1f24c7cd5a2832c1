"""The fused pruning attention of exported torch graphs (``runtime.inductor_attention``) gives the exported graph's
outputs on the real MiniLM, padded and unpadded, as an FX graph and compiled by Inductor; the Inductor runner applies
it unless switched off; graphs without pruning attention are left alone."""

from __future__ import annotations

import pytest
import torch
from conftest import word_piece_batch

from qla_sdk.backends import example_inputs
from qla_sdk.modeling import LengthConfig
from qla_sdk.quantize.inc import batch_dynamic_shapes
from qla_sdk.runtime.inductor_attention import fuse_pruning_attention_fx
from qla_sdk.runtime.native import native_kernels

SEQ = 96
CONFIGS = {
    "tokens": LengthConfig((67, 63, 60, 50, 26, 8), reference_length=SEQ),
    "ratios": LengthConfig((0.7, 0.66, 0.65, 0.53, 0.27, 0.09)),
}
SHAPES = {"batch1": (1, None), "batch2": (2, None), "padded": (2, 61)}


def exported(model, length_config) -> torch.export.ExportedProgram:
    """The graph as the Inductor backend saves it (dynamic batch), before int8."""
    with torch.no_grad():
        return torch.export.export(
            model.with_length_config(length_config),
            example_inputs(SEQ),
            dynamic_shapes=batch_dynamic_shapes(),
            strict=False,
        )


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def programs(request, minilm_qa):
    """(the exported program's module, the same with its attention fused, blocks fused)."""
    program = exported(minilm_qa, CONFIGS[request.param])
    fused = program.module()
    return program.module(), fused, fuse_pruning_attention_fx(fused)


def assert_same_outputs(got, want, atol: float = 1e-4) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert torch.allclose(g, w, atol=atol), float((g - w).abs().max())


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_fused_graph_gives_the_exported_graphs_outputs(programs, shape):
    reference, fused, count = programs
    assert count == 6  # every layer of both configs prunes
    targets = [n.target for n in fused.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.softmax.int not in targets
    assert targets.count(torch.ops.qla_sdk.pruning_attention.default) == 6
    feed = word_piece_batch(SHAPES[shape][0], SEQ, SHAPES[shape][1])
    with torch.inference_mode():
        assert_same_outputs(fused(*feed), reference(*feed))


@pytest.mark.skipif(native_kernels() is None, reason="the native kernels cannot be built here")
def test_inductor_compiles_the_fused_graph(programs):
    from qla_sdk.backends.inductor import compile_inductor

    reference, fused, _ = programs
    feed = word_piece_batch(2, SEQ, 61)
    with torch.inference_mode():
        assert_same_outputs(compile_inductor(fused)(*feed), reference(*feed))


def test_a_graph_without_pruning_attention_is_left_alone(minilm_qa):
    module = exported(minilm_qa, None).module()
    before = [n.target for n in module.graph.nodes]
    assert fuse_pruning_attention_fx(module) == 0
    assert [n.target for n in module.graph.nodes] == before


@pytest.mark.parametrize("switch", [None, "0"])
def test_the_inductor_runner_fuses_unless_switched_off(minilm_qa, monkeypatch, switch):
    import qla_sdk.backends.inductor as inductor

    if switch is None:
        monkeypatch.delenv("QLA_SDK_FUSED_ATTENTION", raising=False)
    else:
        monkeypatch.setenv("QLA_SDK_FUSED_ATTENTION", switch)
    compiled = []
    monkeypatch.setattr(inductor, "compile_inductor", lambda module: compiled.append(module) or module)
    program = exported(minilm_qa, CONFIGS["tokens"])
    runner = inductor.InductorRunner({SEQ: program})
    feed = [t.numpy() for t in word_piece_batch(1, SEQ)]
    got = runner.run(*feed)
    want = 6 if switch is None and native_kernels() is not None else 0
    assert runner.fused_attention == want and len(compiled) == 1
    with torch.inference_mode():
        reference = program.module()(*(torch.from_numpy(x) for x in feed))
    assert_same_outputs([torch.from_numpy(g) for g in got], reference)
