"""The native kernels of the eager runtime's pruning layers, against the ATen computation they replace."""

import math
import shutil

import pytest
import torch

import qla_sdk.runtime.native as native
from qla_sdk.modeling import from_pretrained
from qla_sdk.runtime import EagerRuntime


@pytest.fixture(scope="module")
def kernels():
    module = native.native_kernels()
    if module is None and shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the runtime uses its ATen path (tested by the encoder tests)")
    assert module is not None, "a compiler is present, so the kernels must build"
    return module


def _reference(q, k, v, scale):
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, len, head_dim)
    probs = torch.softmax(qh @ kh.transpose(-1, -2) * scale, dim=-1)
    return (probs @ vh).transpose(1, 2), probs.sum(dim=(1, 2))


@pytest.mark.parametrize("peaked", [False, True], ids=["spread", "peaked (exp underflows)"])
def test_attention_with_significance_equals_softmax_attention(kernels, peaked):
    batch, length, heads, head_dim = 2, 13, 3, 8
    g = torch.Generator().manual_seed(0)
    # q, k, v as views of one projection output, as the runtime passes them (row stride 3 * heads * head_dim)
    qkv = torch.randn(batch, length, 3 * heads * head_dim, generator=g) * (12.0 if peaked else 1.0)
    q, k, v = (
        qkv[..., i * heads * head_dim : (i + 1) * heads * head_dim].view(batch, length, heads, head_dim)
        for i in range(3)
    )
    scale = 1.0 / math.sqrt(head_dim)
    context, significance = kernels.attention_with_significance(q, k, v, scale)
    expected_context, expected_significance = _reference(q, k, v, scale)
    assert context.shape == (batch, length, heads, head_dim) and context.is_contiguous()
    assert torch.allclose(context, expected_context, atol=1e-5, rtol=1e-5)
    assert torch.allclose(significance, expected_significance, atol=1e-5, rtol=1e-5)
    # every query row is a distribution: the received attention adds up to heads * queries
    assert torch.allclose(significance.sum(dim=1), torch.full((batch,), float(heads * length)), rtol=1e-5)


def test_attention_rejects_what_it_cannot_read(kernels):
    q = torch.randn(1, 4, 2, 8)
    with pytest.raises(RuntimeError, match="contiguous head_dim"):
        kernels.attention_with_significance(q.transpose(2, 3).contiguous().transpose(2, 3), q, q, 1.0)
    with pytest.raises(RuntimeError, match="float32"):
        kernels.attention_with_significance(q.double(), q.double(), q.double(), 1.0)


def test_top_tokens_equals_topk_then_sort(kernels):
    score = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    for width in (1, 7, 40):
        expected = score.topk(width, dim=-1).indices.sort(dim=-1).values
        assert torch.equal(kernels.top_tokens(score, width, False), expected)


def test_top_tokens_ties_keep_cls_and_nan(kernels):
    score = torch.tensor([[0.5, 2.0, 2.0, 1.0, 2.0]])
    assert kernels.top_tokens(score, 2, False).tolist() == [[1, 2]]  # ties go to the earlier position
    assert kernels.top_tokens(score, 2, True).tolist() == [[0, 1]]  # [CLS] first, whatever its score
    with_nan = torch.tensor([[0.1, float("nan"), -3.0, 0.2]])
    assert kernels.top_tokens(with_nan, 2, False).tolist() == [[1, 3]]  # NaN ranks highest, as in torch.topk
    with pytest.raises(RuntimeError, match="width must be within 1..5"):
        kernels.top_tokens(score, 6, False)


def test_the_runtime_gives_the_same_answer_with_and_without_the_kernels(kernels, tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval()
    ids = torch.randint(5, 120, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        fused = EagerRuntime(model)(ids, torch.ones_like(ids), length_config="9,4")
        plain = EagerRuntime(model, native=False)(ids, torch.ones_like(ids), length_config="9,4")
    for a, b in zip(fused, plain, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_column_sums_are_exact_with_several_threads(kernels):
    """Each thread keeps its own column sums; with one thread (the test session's default) their merge never runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(7)
        q, k, v = (torch.randn(3, 50, 4, 8, generator=g) for _ in range(3))
        context, received = kernels.attention_with_significance(q, k, v, 0.35)
    finally:
        torch.set_num_threads(before)
    probs = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) * 0.35, dim=-1)
    assert torch.allclose(received, probs.sum(dim=(1, 2)), atol=1e-4)
    assert torch.allclose(context, torch.einsum("bhqk,bkhd->bqhd", probs, v), atol=1e-5)


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native._build() is None


def test_a_failed_build_warns_and_falls_back(monkeypatch):
    def no_compiler(**kwargs):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
    monkeypatch.setattr(native.torch.backends.mkl, "is_available", lambda: True)
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    with pytest.warns(RuntimeWarning, match="could not be built .*command not found.*QLA_SDK_NATIVE_KERNELS=0"):
        assert native._build() is None


# The int8 attention kernel of compiled torch graphs (csrc/torch_pruning_attention.cpp, the OpenVINO extension's
# kernel): within int8 error of the float reference, AMX and AVX512-VNNI equal to the portable code, any strides of one
# layout.


@pytest.fixture(scope="module")
def int8():
    if native.int8_unavailable_reason() is not None:
        pytest.skip(f"int8 attention kernel: {native.int8_unavailable_reason()}")
    module = native.int8_attention_kernels()
    assert module is not None, "the machine can build it, so it must build"
    return module


# Lengths off every block size (4 or 16 query rows, 64 keys), head sizes below, at and above 16 lanes and 64 bytes.
INT8_SHAPES = [(1, 5, 2, 8), (2, 67, 12, 32), (1, 130, 4, 64), (3, 33, 3, 20), (1, 40, 2, 128)]


def _int8_inputs(batch, n, heads, head_dim, padded):
    g = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(batch, n, heads, head_dim, generator=g) for _ in range(3))
    mask = None
    if padded:
        mask = torch.ones(batch, n)
        mask[-1, n // 2 + 1 :] = 0
        mask[0, n - n // 4 :] = 0  # with batch > 1, rows padded at different lengths
    return q, k, v, mask


INT8_ISAS = ["portable", "avx512_vnni", "amx_int8"]  # the vector ones run where the CPU has them


def _isa_or_skip(int8, isa):
    if isa == "amx_int8" and int8.isa() != "amx_int8":
        pytest.skip("this process cannot run AMX tiles (CPU, Linux kernel or compiler)")
    if isa == "avx512_vnni" and int8.isa() == "portable":
        pytest.skip("the CPU lacks AVX512-VNNI")


@pytest.mark.parametrize(("batch", "n", "heads", "head_dim"), INT8_SHAPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("isa", INT8_ISAS)
def test_int8_attention_is_within_int8_error_of_the_float_reference(
    kernels, int8, batch, n, heads, head_dim, padded, isa
):
    _isa_or_skip(int8, isa)
    q, k, v, mask = _int8_inputs(batch, n, heads, head_dim, padded)
    scale = 1.0 / math.sqrt(head_dim)
    context, significance = int8.attention_int8(q, k, v, scale, mask, isa)
    want_context, want_significance = kernels.attention_with_significance(q, k, v, scale, mask)
    real = torch.ones(batch, n, dtype=torch.bool) if mask is None else mask > 0
    assert (context - want_context).abs()[real].max() < 0.05 * want_context.abs().max()
    assert (significance - want_significance).abs().max() < 0.03 * want_significance.max()
    if mask is not None:
        assert (significance[mask == 0] == 0).all()  # a masked key receives nothing, as in the reference


@pytest.mark.parametrize(("batch", "n", "heads", "head_dim"), INT8_SHAPES)
@pytest.mark.parametrize("isa", INT8_ISAS[1:])
def test_int8_attention_on_vector_instructions_gives_what_portable_code_gives(int8, batch, n, heads, head_dim, isa):
    _isa_or_skip(int8, isa)
    q, k, v, mask = _int8_inputs(batch, n, heads, head_dim, padded=True)
    vector, portable = (
        int8.attention_int8(q, k, v, 0.3, mask, isa),
        int8.attention_int8(q, k, v, 0.3, mask, "portable"),
    )
    for got, want in zip(vector, portable, strict=True):
        assert torch.equal(got, want)


def test_int8_attention_does_not_depend_on_what_the_thread_ran_before(kernels, int8):
    """Each thread keeps its buffers between calls (grown, never cleared): a short head after a long one must not
    see the long one's leftovers (column sums, packed keys and values, probabilities past its own keys)."""
    isas = INT8_ISAS[: INT8_ISAS.index(int8.isa()) + 1]  # those that run here
    q, k, v, mask = _int8_inputs(1, 37, 2, 32, padded=True)
    want_context, want_significance = kernels.attention_with_significance(q, k, v, 0.2, mask)
    long = _int8_inputs(2, 200, 2, 32, padded=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same buffers for every call
    try:
        got = []
        for isa in isas:
            int8.attention_int8(*long[:3], 0.2, long[3], isa)
            got.append(int8.attention_int8(q, k, v, 0.2, mask, isa))
    finally:
        torch.set_num_threads(threads)
    real = mask > 0
    for context, significance in got:
        assert (context - want_context).abs()[real].max() < 0.05 * want_context.abs().max()
        assert (significance - want_significance).abs().max() < 0.03 * want_significance.max()
    for a, b in zip(got[0], got[-1], strict=True):
        assert torch.equal(a, b)


def test_int8_attention_reads_views_of_another_layout(int8):
    """(batch * heads, len, head_dim) buffers seen as (batch, len, heads, head_dim), as exported graphs hold them."""
    batch, heads, n, head_dim = 2, 4, 37, 32
    g = torch.Generator().manual_seed(1)
    views = [
        t.view(batch, heads, n, head_dim).transpose(1, 2)
        for t in torch.randn(3, batch * heads, n, head_dim, generator=g)
    ]
    got = int8.attention_int8(*views, 0.2)
    want = int8.attention_int8(*(t.contiguous() for t in views), 0.2)
    assert got[0].is_contiguous() and got[0].shape == (batch, n, heads, head_dim)
    for g_, w in zip(got, want, strict=True):
        assert torch.equal(g_, w)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q, k, v: (q, k[:, :-1], v), "share one .* shape"),
        (lambda q, k, v: (q.double(), k, v), "float32 CPU"),
        (lambda q, k, v: (q, k.transpose(1, 2).contiguous().transpose(1, 2), v), "share their strides"),
    ],
    ids=["shape", "dtype", "strides"],
)
def test_int8_attention_refuses_inputs_it_cannot_read(int8, change, message):
    q, k, v, _ = _int8_inputs(1, 8, 2, 16, padded=False)
    with pytest.raises(RuntimeError, match=message):
        int8.attention_int8(*change(q, k, v), 0.25)


def test_int8_attention_refuses_an_unknown_isa_with_the_choices(int8):
    q, k, v, _ = _int8_inputs(1, 8, 2, 16, padded=False)
    with pytest.raises(RuntimeError, match="isa is 'amx'.*auto .*amx_int8, avx512_vnni or portable"):
        int8.attention_int8(q, k, v, 0.25, None, "amx")


def test_int8_attention_is_not_built_off_x86(monkeypatch):
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    monkeypatch.setattr(native.platform, "machine", lambda: "aarch64")
    assert native.int8_unavailable_reason() == "it needs an x86-64 CPU, this is aarch64"
    assert native._build_int8() is None


def test_int8_attention_refuses_instructions_the_machine_lacks(int8):
    q, k, v, _ = _int8_inputs(1, 8, 2, 16, padded=False)
    runs = INT8_ISAS[: INT8_ISAS.index(int8.isa()) + 1]
    if runs == INT8_ISAS:
        pytest.skip("this machine runs every instruction set")
    for isa in INT8_ISAS[len(runs) :]:
        with pytest.raises(RuntimeError, match=f"isa {isa} asked for, but .*use isa auto"):
            int8.attention_int8(q, k, v, 0.25, None, isa)
