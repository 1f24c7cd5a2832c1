"""The fused pruning attention of exported torch graphs (``runtime.inductor_attention``) on the real MiniLM, padded
and unpadded, as an FX graph and compiled by Inductor: its float32 kernel gives the exported graph's outputs, its int8
kernel chooses the exported graph's tokens at every layer with logits within int8 error. The Inductor runner applies
it (int8 where it builds) unless switched off; graphs without pruning attention are left alone."""

from __future__ import annotations

import pytest
import torch
from conftest import word_piece_batch

import qla_sdk.runtime.inductor_attention as inductor_attention
from qla_sdk.backends import example_inputs
from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig
from qla_sdk.quantize.inc import batch_dynamic_shapes
from qla_sdk.runtime.inductor_attention import attention_kernel, fuse_pruning_attention_fx
from qla_sdk.runtime.native import int8_attention_kernels, int8_unavailable_reason, native_kernels

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


def assert_int8_outputs(got, want, feed) -> None:
    """Span logits within int8 error at the real positions (mostly the uint8 probabilities of the context product)."""
    real = feed[1] > 0
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert torch.corrcoef(torch.stack([g[real], w[real]]))[0, 1] > 0.98


def run_with_choices(module, feed) -> tuple[list, list]:
    """The module's outputs and the tokens each layer keeps, as positions in the input (each layer's sort after its
    top-k gives positions among the tokens the layer before kept)."""
    chosen = []

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.op == "call_function" and node.target == torch.ops.aten.sort.default:
                chosen.append(result[0])
            return result

    with torch.inference_mode():
        outputs = Recorder(module).run(*feed)
    kept = [chosen[0]]
    for positions in chosen[1:]:
        kept.append(kept[-1].gather(1, positions))
    return list(outputs), kept


int8_only = pytest.mark.skipif(
    int8_attention_kernels() is None, reason=f"int8 attention kernel: {int8_unavailable_reason() or 'build failed'}"
)


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


@int8_only
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_int8_fused_graph_keeps_the_exported_graphs_tokens(minilm_qa, config, shape):
    """int8 scores move a token's significance by up to about 2% in the deeper layers, where the last kept and the
    first dropped token can be 1% apart: at most one token in 20 (at least one) may differ at any layer, and the logits
    stay within int8 error. The float32 kernel keeps exactly the same tokens (``test_fused_graph_gives_...``)."""
    program = exported(minilm_qa, CONFIGS[config])
    fused = program.module()
    assert fuse_pruning_attention_fx(fused, "int8") == 6
    feed = word_piece_batch(SHAPES[shape][0], SEQ, SHAPES[shape][1])
    want, want_chosen = run_with_choices(program.module(), feed)
    got, got_chosen = run_with_choices(fused, feed)
    assert len(got_chosen) == len(want_chosen) == 6
    for got_layer, want_layer in zip(got_chosen, want_chosen, strict=True):
        width = want_layer.shape[1]
        for g, w in zip(got_layer.tolist(), want_layer.tolist(), strict=True):
            assert width - len(set(g) & set(w)) <= max(1, width // 20), (g, w)
    assert_int8_outputs(got, want, feed)


@pytest.mark.skipif(native_kernels() is None, reason="the native kernels cannot be built here")
def test_inductor_compiles_the_fused_graph(programs):
    from qla_sdk.backends.inductor import compile_inductor

    reference, fused, _ = programs
    feed = word_piece_batch(2, SEQ, 61)
    with torch.inference_mode():
        assert_same_outputs(compile_inductor(fused)(*feed), reference(*feed))


@int8_only
def test_inductor_compiles_the_int8_fused_graph(minilm_qa):
    from qla_sdk.backends.inductor import compile_inductor

    program = exported(minilm_qa, CONFIGS["tokens"])
    fused = program.module()
    fuse_pruning_attention_fx(fused, "int8")
    feed = word_piece_batch(2, SEQ, 61)
    with torch.inference_mode():
        assert_int8_outputs(compile_inductor(fused)(*feed), program.module()(*feed), feed)


def test_a_graph_without_pruning_attention_is_left_alone(minilm_qa):
    module = exported(minilm_qa, None).module()
    before = [n.target for n in module.graph.nodes]
    assert fuse_pruning_attention_fx(module) == 0
    assert [n.target for n in module.graph.nodes] == before


def default_kernel() -> str | None:
    int8 = int8_attention_kernels()
    if int8 is not None and int8.isa() != "portable":  # auto skips the slower portable code
        return "int8"
    return "float32" if native_kernels() is not None else None


@pytest.mark.parametrize(("switch", "kernel"), [(None, default_kernel()), ("float32", "float32"), ("0", None)])
def test_the_inductor_runner_fuses_unless_switched_off(minilm_qa, monkeypatch, switch, kernel):
    import qla_sdk.backends.inductor as inductor

    if kernel == "float32" and native_kernels() is None:
        pytest.skip("the native kernels cannot be built here")
    if switch is None:
        monkeypatch.delenv("QLA_SDK_FUSED_ATTENTION", raising=False)
    else:
        monkeypatch.setenv("QLA_SDK_FUSED_ATTENTION", switch)
    compiled = []
    monkeypatch.setattr(inductor, "compile_inductor", lambda module: compiled.append(module) or module)
    program = exported(minilm_qa, CONFIGS["tokens"])
    runner = inductor.InductorRunner({SEQ: program})
    feed = [t.numpy() for t in word_piece_batch(1, SEQ)]
    got = [torch.from_numpy(g) for g in runner.run(*feed)]
    assert runner.attention_kernel == kernel and len(compiled) == 1
    assert runner.fused_attention == (0 if kernel is None else 6)
    with torch.inference_mode():
        reference = program.module()(*(torch.from_numpy(x) for x in feed))
    if kernel == "int8":
        assert_int8_outputs(got, reference, [torch.from_numpy(x) for x in feed])
    else:
        assert_same_outputs(got, reference)


def test_an_unknown_switch_value_or_kernel_is_refused(minilm_qa, monkeypatch):
    monkeypatch.setenv("QLA_SDK_FUSED_ATTENTION", "fp16")
    with pytest.raises(ConfigError, match="QLA_SDK_FUSED_ATTENTION='fp16' is not one of auto, 0, 1, int8, float32"):
        attention_kernel()
    with pytest.raises(ConfigError, match="unknown attention kernel 'fp16'; choose one of float32, int8"):
        fuse_pruning_attention_fx(exported(minilm_qa, CONFIGS["tokens"]).module(), "fp16")


def test_by_default_the_int8_kernel_runs_only_on_vector_instructions(monkeypatch):
    """Its portable code gives the same outputs, slowly (benchmarks/results/openvino_attention_avx2.md): ``auto`` takes
    it only by name, and on a CPU without AVX512-VNNI does not build it."""
    if native_kernels() is None:
        pytest.skip("the native kernels cannot be built here")

    class Portable:
        @staticmethod
        def isa():
            return "portable"

    built = []
    monkeypatch.setattr(inductor_attention, "int8_attention_kernels", lambda: built.append(1) or Portable)
    monkeypatch.delenv("QLA_SDK_FUSED_ATTENTION", raising=False)
    for vector_cpu in (True, False):  # a CPU without AVX512-VNNI does not even build it
        monkeypatch.setattr(inductor_attention, "has_avx512_vnni", lambda vector_cpu=vector_cpu: vector_cpu)
        built.clear()
        assert attention_kernel() == "float32" and len(built) == int(vector_cpu)
    monkeypatch.setenv("QLA_SDK_FUSED_ATTENTION", "int8")
    assert attention_kernel() == "int8"


@pytest.mark.parametrize(("switch", "warns"), [(None, False), ("int8", True)])
def test_without_the_int8_kernel_the_float32_one_is_used(monkeypatch, switch, warns):
    if native_kernels() is None:
        pytest.skip("the native kernels cannot be built here")
    monkeypatch.setattr(inductor_attention, "int8_attention_kernels", lambda: None)
    monkeypatch.setattr(inductor_attention, "int8_unavailable_reason", lambda: "the CPU lacks avx512_vnni")
    if switch is None:
        monkeypatch.delenv("QLA_SDK_FUSED_ATTENTION", raising=False)
    else:
        monkeypatch.setenv("QLA_SDK_FUSED_ATTENTION", switch)
    if warns:
        with pytest.warns(RuntimeWarning, match="int8 fused attention cannot run here .*avx512_vnni.*float32"):
            assert attention_kernel() == "float32"
    else:
        assert attention_kernel() == "float32"
