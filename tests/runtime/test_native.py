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
