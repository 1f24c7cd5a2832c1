"""The int8 pruning attention extension (``runtime/csrc/openvino_pruning_attention.cpp``, built by
``runtime.openvino_extension``): within int8 error of the float32 reference on awkward shapes, the same outputs on
every instruction set, masked keys get no attention, padding queries do not count, and a machine that cannot build it
is told why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ov = pytest.importorskip("openvino")

from qla_sdk.errors import ConfigError  # noqa: E402
from qla_sdk.runtime import openvino_extension  # noqa: E402
from qla_sdk.runtime.openvino_attention import OP_NAME, attention_with_significance  # noqa: E402


@pytest.fixture(scope="module")
def factory():
    if openvino_extension.unavailable_reason() is not None:
        pytest.skip(f"int8 extension: {openvino_extension.unavailable_reason()}")
    from openvino.utils.node_factory import NodeFactory

    made = NodeFactory()
    made.add_extension(str(openvino_extension.pruning_attention_library()))
    return made


def run_op(factory, q, k, v, heads, mask=None, isa="auto"):
    import openvino.opset13 as ops

    params = [ops.parameter([-1, -1, q.shape[-1]], np.float32) for _ in range(3)]
    if mask is not None:
        params.append(ops.parameter([-1, -1], np.float32))
    scale = 1.0 / np.sqrt(q.shape[-1] // heads)
    node = factory.create(OP_NAME, [p.output(0) for p in params], {"heads": heads, "scale": scale, "isa": isa})
    compiled = ov.Core().compile_model(ov.Model([node.output(0), node.output(1)], params), "CPU")
    out = compiled([q, k, v] if mask is None else [q, k, v, mask])
    return np.array(out[0]), np.array(out[1])


def reference(q, k, v, heads, mask=None):
    b, n, hidden = q.shape
    shaped = (torch.from_numpy(t).view(b, n, heads, hidden // heads) for t in (q, k, v))
    context, significance = attention_with_significance(
        None, *shaped, 1.0 / np.sqrt(hidden // heads), None if mask is None else torch.from_numpy(mask)
    )
    return context.reshape(b, n, hidden).numpy(), significance.numpy()


# Every instruction set of the operation; the vector ones run where the CPU has them.
ISAS = ["portable", "avx512_vnni", "amx_int8"]


def isa_or_skip(isa):
    ran = openvino_extension.extension_isa()
    if isa == "amx_int8" and ran != "amx_int8":
        pytest.skip("this process cannot run AMX tiles (CPU, Linux kernel or compiler)")
    if isa == "avx512_vnni" and ran == "portable":
        pytest.skip("the CPU lacks AVX512-VNNI")


# Lengths off every block size (4 or 16 query rows, 64 keys), head sizes below, at and above 16 lanes and 64 bytes.
SHAPES = [(1, 5, 2, 8), (2, 67, 12, 32), (1, 130, 4, 64), (3, 33, 3, 20), (1, 40, 2, 128)]


def inputs(batch, n, heads, head_dim, padded):
    rng = np.random.default_rng(n)
    q, k, v = (rng.standard_normal((batch, n, heads * head_dim)).astype(np.float32) for _ in range(3))
    mask = None
    if padded:
        mask = np.ones((batch, n), np.float32)
        mask[-1, n // 2 + 1 :] = 0
        mask[0, n - n // 4 :] = 0  # with batch > 1, rows padded at different lengths
    return q, k, v, mask


@pytest.mark.parametrize(("batch", "n", "heads", "head_dim"), SHAPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("isa", ISAS)
def test_int8_attention_is_within_int8_error_of_the_float_reference(factory, batch, n, heads, head_dim, padded, isa):
    isa_or_skip(isa)
    q, k, v, mask = inputs(batch, n, heads, head_dim, padded)
    context, significance = run_op(factory, q, k, v, heads, mask, isa)
    want_context, want_significance = reference(q, k, v, heads, mask)
    real = np.ones((batch, n), bool) if mask is None else mask > 0
    assert np.abs(context - want_context)[real].max() < 0.05 * np.abs(want_context).max()
    assert np.abs(significance - want_significance).max() < 0.03 * want_significance.max()
    if mask is not None:
        assert (significance[mask == 0] == 0).all()  # a masked key receives nothing, as in the reference


@pytest.mark.parametrize(("batch", "n", "heads", "head_dim"), SHAPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("isa", ISAS[1:])
def test_vector_instructions_give_what_portable_code_gives(factory, batch, n, heads, head_dim, padded, isa):
    """The same int32 products and the same float steps in the same order: equal outputs, bit for bit."""
    isa_or_skip(isa)
    q, k, v, mask = inputs(batch, n, heads, head_dim, padded)
    vector, portable = run_op(factory, q, k, v, heads, mask, isa), run_op(factory, q, k, v, heads, mask, "portable")
    for got, want in zip(vector, portable, strict=True):
        assert np.array_equal(got, want)


def test_rows_and_channels_of_negligible_magnitude_quantize_to_zero_on_every_isa(factory):
    """127 / max|x| overflows for a row below ~4e-37, and each path would saturate the infinities its own way: such
    rows (and v channels) count as zeros, with finite outputs and the same bits on every instruction set."""
    q, k, v, mask = inputs(2, 40, 2, 32, True)
    q[0, 3] *= 1e-38  # a query row
    k[1, 5] *= 1e-38  # a key row
    v[:, :, 7] *= 1e-38  # a v channel of the first head
    runs = ISAS[: ISAS.index(openvino_extension.extension_isa()) + 1]
    outputs = [run_op(factory, q, k, v, 2, mask, isa) for isa in runs]
    context, significance = outputs[0]
    assert np.isfinite(context).all() and np.isfinite(significance).all()
    assert (context[..., 7] == 0).all()
    real = mask[0] > 0  # a zero query attends to the real keys uniformly: its context is their mean v
    want = v[0, real, :32].mean(0)
    assert np.abs(context[0, 3, :32] - want).max() < 0.02 * np.abs(v[0, real, :32]).max()
    for other in outputs[1:]:
        for got, want in zip(other, outputs[0], strict=True):
            assert np.array_equal(got, want)


def test_auto_runs_what_the_extension_says_it_runs(factory):
    q, k, v, mask = inputs(2, 67, 12, 32, True)
    ran = openvino_extension.extension_isa()
    assert ran in ISAS
    for got, want in zip(run_op(factory, q, k, v, 12, mask), run_op(factory, q, k, v, 12, mask, ran), strict=True):
        assert np.array_equal(got, want)


def test_an_isa_the_machine_lacks_is_refused_with_what_runs_instead(factory):
    ran = openvino_extension.extension_isa()
    lacking = [] if ran == "amx_int8" else [("amx_int8", "AMX cannot run here.*use isa auto .*or portable")]
    if ran == "portable":
        lacking.append(("avx512_vnni", "built for a CPU without AVX512-VNNI; use isa auto or portable"))
    if not lacking:
        pytest.skip("this machine runs every instruction set")
    q = np.zeros((1, 8, 32), np.float32)
    for isa, message in lacking:
        with pytest.raises(Exception, match=message):
            run_op(factory, q, q, q, 2, isa=isa)


def test_an_unknown_isa_is_refused_with_the_choices(factory):
    q = np.zeros((1, 8, 32), np.float32)
    with pytest.raises(Exception, match="isa is 'amx_bf16'.*auto.*amx_int8, avx512_vnni or portable"):
        run_op(factory, q, q, q, 2, isa="amx_bf16")


def test_what_padding_holds_changes_nothing_for_the_real_tokens(factory):
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((2, 70, 64)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 70), np.float32)
    mask[:, 40:] = 0
    context, significance = run_op(factory, q, k, v, 2, mask)
    for t in (q, k, v):
        t[:, 40:] *= 300.0  # padding with large values must not set the real tokens' int8 scales
    context_2, significance_2 = run_op(factory, q, k, v, 2, mask)
    np.testing.assert_array_equal(context_2[:, :40], context[:, :40])
    np.testing.assert_allclose(significance_2, significance, rtol=1e-6, atol=1e-6)


def test_loading_the_extension_leaves_denormals_alone():
    """A library linked with -ffast-math would turn on flush-to-zero for the whole process that loads it."""
    import subprocess
    import sys

    if openvino_extension.unavailable_reason() is not None:
        pytest.skip(f"int8 extension: {openvino_extension.unavailable_reason()}")
    script = (
        "import numpy as np\n"
        "from openvino.utils.node_factory import NodeFactory\n"
        "from qla_sdk.runtime.openvino_extension import pruning_attention_library\n"
        "NodeFactory().add_extension(str(pruning_attention_library()))\n"
        "print(float(np.float32(1e-30) * np.float32(1e-10)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert float(out) > 0.0


def run_choice(factory, q, k, v, heads, keep, keep_cls, mask, x=None, isa="auto"):
    """The operation with its token choice: context of the chosen tokens, significance, positions, ranks [, the
    rows of x of the chosen tokens]."""
    import openvino.opset13 as ops

    feed = [q, k, v, mask] + ([] if x is None else [x])
    params = [ops.parameter([-1, -1, t.shape[-1]] if t.ndim == 3 else [-1, -1], np.float32) for t in feed]
    attrs = {"heads": heads, "scale": 1.0 / np.sqrt(q.shape[-1] // heads), "isa": isa}
    node = factory.create(OP_NAME, [p.output(0) for p in params], {**attrs, "keep": keep, "keep_cls": keep_cls})
    compiled = ov.Core().compile_model(ov.Model(list(node.outputs()), params), "CPU")
    out = compiled(feed)
    return [np.array(out[i]) for i in range(len(compiled.outputs))]


def select_tokens(significance, mask, keep, keep_cls):
    """``modeling.encoder.select_tokens`` on the operation's significance, ties to the earlier position."""
    score = significance.astype(np.float64).copy()
    if mask is not None:
        score[mask <= 0] = -1.0
    if keep_cls:
        score[:, 0] = np.inf
    by_rank = np.stack([np.lexsort((np.arange(len(row)), -row))[:keep] for row in score])
    order = np.argsort(by_rank, axis=-1, kind="stable")
    return np.take_along_axis(by_rank, order, -1), order


@pytest.mark.parametrize(("batch", "n", "heads", "head_dim"), SHAPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("isa", ISAS)
def test_the_token_choice_keeps_the_reference_tokens_and_their_context_rows(
    factory, batch, n, heads, head_dim, padded, isa
):
    isa_or_skip(isa)
    q, k, v, mask = inputs(batch, n, heads, head_dim, padded)
    if mask is None:
        mask = np.ones((batch, n), np.float32)
    else:
        mask[0, 0] = 0  # a padded first token: keep_cls keeps it all the same
    x = np.random.default_rng(0).standard_normal((batch, n, 24)).astype(np.float32)
    context, significance = run_op(factory, q, k, v, heads, mask, isa)
    for keep, keep_cls, with_x in ((max(1, n * 2 // 3), True, True), (max(1, n // 3), False, False), (n, False, True)):
        out = run_choice(factory, q, k, v, heads, keep, keep_cls, mask, x if with_x else None, isa)
        chosen, got_significance, positions, ranks = out[:4]
        want_positions, want_ranks = select_tokens(significance, mask, keep, keep_cls)
        assert np.array_equal(got_significance, significance)
        assert np.array_equal(positions, want_positions) and np.array_equal(ranks, want_ranks)
        assert chosen.shape == (batch, keep, heads * head_dim)
        rows = positions[..., None].astype(np.int64)
        # bit for bit the context the operation without a choice gives those tokens
        assert np.array_equal(chosen, np.take_along_axis(context, rows, 1))
        assert len(out) == (5 if with_x else 4)
        if with_x:
            assert np.array_equal(out[4], np.take_along_axis(x, rows, 1))


@pytest.mark.parametrize(("batch", "n", "heads", "head_dim"), SHAPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("isa", ISAS)
def test_without_significance_the_context_is_the_same(factory, batch, n, heads, head_dim, padded, isa):
    """A full-length layer chooses nothing: its attention skips the significance and keeps the context bit for bit."""
    import openvino.opset13 as ops

    isa_or_skip(isa)
    q, k, v, mask = inputs(batch, n, heads, head_dim, padded)
    context, _ = run_op(factory, q, k, v, heads, mask, isa)
    feed = [q, k, v] + ([] if mask is None else [mask])
    params = [ops.parameter([-1, -1, t.shape[-1]] if t.ndim == 3 else [-1, -1], np.float32) for t in feed]
    attrs = {"heads": heads, "scale": 1.0 / np.sqrt(head_dim), "isa": isa, "significance": False}
    node = factory.create(OP_NAME, [p.output(0) for p in params], attrs)
    assert node.get_output_size() == 1
    compiled = ov.Core().compile_model(ov.Model([node.output(0)], params), "CPU")
    assert np.array_equal(np.array(compiled(feed)[0]), context)


@pytest.mark.parametrize(
    ("shapes", "attrs", "message"),
    [
        ([(1, 8, 32)] * 3 + [(1, 8)], {"keep": 4, "significance": False}, "nothing to choose by; use it with keep 0"),
        ([(1, 8, 32)] * 3, {"keep": 9}, "keep 9 is above the 8 tokens"),
        ([(1, 8, 32)] * 3 + [(1, 8), (1, 8, 16)], {}, "x .* is only taken with keep > 0"),
        ([(1, 8, 32)] * 3 + [(1, 8), (1, 7, 16)], {"keep": 4}, "x must be .* with q's batch and len"),
    ],
)
def test_a_token_choice_that_cannot_be_made_is_refused(factory, shapes, attrs, message):
    import openvino.opset13 as ops

    params = [ops.parameter(list(shape), np.float32) for shape in shapes]
    with pytest.raises(Exception, match=message):
        factory.create(OP_NAME, [p.output(0) for p in params], {"heads": 2, "scale": 0.25, **attrs})


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ([(1, 8, 32), (1, 9, 32), (1, 8, 32)], "k and v must have q's shape"),
        ([(1, 8, 32), (1, 8, 32), (1, 8, 32), (2, 3)], "the mask must be"),
        ([(1, 70000, 32)] * 3, "above the int8 kernel's 65536 tokens"),
    ],
)
def test_inputs_of_the_wrong_shape_are_refused(factory, shapes, message):
    import openvino.opset13 as ops

    params = [ops.parameter(list(shape), np.float32) for shape in shapes]
    with pytest.raises(Exception, match=message):
        factory.create(OP_NAME, [p.output(0) for p in params], {"heads": 2, "scale": 0.25})


def test_padding_queries_do_not_count_and_a_sequence_without_real_tokens_is_uniform(factory):
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 12, 32)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 12), np.float32)
    mask[1] = 0  # no real token at all: the reference's float32.min bias makes every row uniform
    _, significance = run_op(factory, q, k, v, 2, mask)
    assert np.allclose(significance[0].sum(), 2 * 12, rtol=1e-4)  # every real query spreads 1 per head
    assert (significance[1] == 0).all()  # no real query counts


def test_a_hidden_size_that_does_not_split_into_heads_is_refused(factory):
    import openvino.opset13 as ops

    params = [ops.parameter([1, 8, 30], np.float32) for _ in range(3)]
    with pytest.raises(Exception, match="is not heads"):
        factory.create(OP_NAME, [p.output(0) for p in params], {"heads": 4, "scale": 0.25})


def test_a_machine_that_cannot_build_it_is_told_why(monkeypatch):
    monkeypatch.setattr(openvino_extension.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(openvino_extension, "_built", {})
    assert openvino_extension.unavailable_reason() == "it needs an x86-64 CPU, this is aarch64"
    with pytest.raises(ConfigError, match="cannot be built here: it needs an x86-64 CPU.*QLA_SDK_FUSED_ATTENTION=0"):
        openvino_extension.pruning_attention_library()


def test_the_library_is_cached_per_machine_and_written_whole(factory, tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("QLA_SDK_CACHE", str(tmp_path))
    monkeypatch.setattr(openvino_extension, "_built", {})
    library = openvino_extension.pruning_attention_library()
    assert library.parent == tmp_path / "openvino_extensions" and library.stat().st_size > 0
    assert [p.name for p in library.parent.iterdir()] == [library.name]  # no temporary file left behind
    assert library.stat().st_mode & 0o044 == 0o044  # readable by others: a shared cache can load it
    built = library.stat().st_mtime_ns
    compiled = []
    real_run = openvino_extension.subprocess.run
    monkeypatch.setattr(
        openvino_extension.subprocess,
        "run",
        lambda command, **kw: compiled.append(command) if "-shared" in command else real_run(command, **kw),
    )
    monkeypatch.setattr(openvino_extension, "_built", {})
    assert openvino_extension.pruning_attention_library() == library
    assert compiled == [] and library.stat().st_mtime_ns == built and os.access(library, os.R_OK)  # not rebuilt


@pytest.mark.parametrize(
    "changed", ["openvino_pruning_attention.cpp", *(p.name for p in openvino_extension.KERNEL_HEADERS)]
)
def test_a_change_to_any_source_file_names_another_library(tmp_path, monkeypatch, changed):
    """The cache key reads every file the build includes: an edited header must not load the old library."""
    import shutil

    copies = tmp_path / "csrc"
    shutil.copytree(openvino_extension.SOURCE.parent, copies)
    monkeypatch.setattr(openvino_extension, "SOURCE", copies / openvino_extension.SOURCE.name)
    monkeypatch.setattr(
        openvino_extension, "KERNEL_HEADERS", tuple(copies / p.name for p in openvino_extension.KERNEL_HEADERS)
    )
    before = openvino_extension.library_path()
    with open(copies / changed, "a") as source:
        source.write("\n// edited\n")
    assert openvino_extension.library_path() != before


def test_a_failed_build_is_reported_once_per_process_with_the_fix(monkeypatch):
    calls = []

    def broken_build():
        calls.append(1)
        raise ConfigError("the int8 attention extension failed to build: error")

    monkeypatch.setattr(openvino_extension, "_built", {})
    monkeypatch.setattr(openvino_extension, "_build", broken_build)
    for _ in range(2):
        with pytest.raises(ConfigError, match="failed to build"):
            openvino_extension.pruning_attention_library()
    assert len(calls) == 1
    assert "QLA_SDK_FUSED_ATTENTION=0" in openvino_extension.FIX
