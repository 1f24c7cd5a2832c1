"""The eager runtime equals the reference encoder: the same tokens chosen at every layer and the same logits, on the
real MiniLM; and it steps aside (runs the reference) wherever its kernels do not apply."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import word_piece_batch as batch

import qla_sdk.modeling.encoder as encoder_module
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.pretrained import minilm_path
from qla_sdk.runtime import EagerRuntime, native_kernels

SEQ = 160
CONFIGS = {
    "full": None,
    "tokens": LengthConfig((112, 106, 101, 84, 44, 14), reference_length=SEQ),
    "ratios": LengthConfig((0.7, 0.66, 0.65, 0.53, 0.27, 0.09)),
}


@pytest.fixture(scope="module", params=["question-answering", "text-classification"])
def minilm(request):
    torch.manual_seed(0)  # the task head is new: seeded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_pretrained(minilm_path(), task=request.param, num_labels=2).eval()


def reference_run(model, inputs, length_config, monkeypatch) -> tuple[object, list[torch.Tensor]]:
    chosen = []
    select = encoder_module.select_tokens

    def recording(score, mask, width, per_sample):
        index, new_mask = select(score, mask, width, per_sample)
        chosen.append(index)
        return index, new_mask

    monkeypatch.setattr(encoder_module, "select_tokens", recording)
    with torch.inference_mode():
        out = model(*inputs, length_config=length_config)
    monkeypatch.setattr(encoder_module, "select_tokens", select)
    return out, chosen


def runtime_run(runtime, inputs, length_config) -> tuple[object, list[torch.Tensor]]:
    chosen = []
    top = runtime.top_tokens
    runtime.top_tokens = lambda received, width, keep_cls: chosen.append(top(received, width, keep_cls)) or chosen[-1]
    try:
        with torch.inference_mode():
            out = runtime(*inputs, length_config=length_config)
    finally:
        del runtime.top_tokens
    return out, chosen


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("native", [True, False], ids=["native-kernels", "aten"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("shape", ["batch1", "batch2", "padded"])
def test_the_runtime_chooses_the_same_tokens_and_logits_as_the_reference(minilm, native, config, shape, monkeypatch):
    if native and native_kernels() is None:
        pytest.skip("native kernels not built here")
    inputs = {"batch1": batch(1, SEQ), "batch2": batch(2, SEQ), "padded": batch(2, SEQ, pad_last_to=97)}[shape]
    length_config = CONFIGS[config]
    runtime = EagerRuntime(minilm, native=native)
    with torch.inference_mode():
        assert runtime.applies(inputs[0], inputs[1]) == (shape != "padded")
    expected, expected_chosen = reference_run(minilm, inputs, length_config, monkeypatch)
    got, got_chosen = runtime_run(runtime, inputs, length_config)
    if shape == "padded":  # the reference ran, selecting with masks
        got_chosen = expected_chosen
    assert len(got_chosen) == len(expected_chosen) == (0 if config == "full" else 6)
    for layer, (a, b) in enumerate(zip(got_chosen, expected_chosen, strict=True)):
        assert torch.equal(a, b), f"layer {layer} kept other tokens"
    for a, b in zip(as_tuple(got), as_tuple(expected), strict=True):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)


def test_a_model_runs_its_own_length_config_unless_told_otherwise(minilm):
    inputs = batch(1, SEQ)
    minilm.length_config = CONFIGS["tokens"]
    try:
        with torch.inference_mode():
            own, given = minilm(*inputs), minilm(*inputs, length_config=CONFIGS["tokens"])
            full, runtime_own = minilm(*inputs, length_config=None), EagerRuntime(minilm)(*inputs)
    finally:
        minilm.length_config = None
    for a, b, c, d in zip(as_tuple(own), as_tuple(given), as_tuple(full), as_tuple(runtime_own), strict=True):
        assert torch.equal(a, b) and not torch.allclose(a, c)
        torch.testing.assert_close(d, a, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "case",
    ["grad", "training", "bf16 weights", "autocast"],
)
def test_the_runtime_runs_the_reference_where_its_kernels_do_not_apply(tiny_checkpoint, case):
    """A bf16 model or autocast used to reach the kernels' float32-only checks (TORCH_CHECK ... CPU tensors)."""
    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval()
    ids = torch.randint(5, 120, (1, 12), generator=torch.Generator().manual_seed(1))
    if case == "training":
        model.train()
        torch.manual_seed(0)
    if case == "bf16 weights":
        model = model.to(torch.bfloat16)
    runtime = EagerRuntime(model)
    grad = torch.enable_grad() if case in ("grad", "training") else torch.inference_mode()
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=case == "autocast")
    with grad, autocast:
        assert not runtime.applies(ids, torch.ones_like(ids))
        got = runtime(ids, torch.ones_like(ids), length_config="9,4")
        if case == "training":
            torch.manual_seed(0)
        expected = model(ids, torch.ones_like(ids), length_config="9,4")
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_constructing_the_runtime_builds_the_kernels(monkeypatch, tiny_checkpoint):
    import qla_sdk.runtime.eager as eager

    built = []
    monkeypatch.setattr(eager, "native_kernels", lambda: built.append(1))
    folder, _ = tiny_checkpoint("bert", "question-answering")
    EagerRuntime(from_pretrained(folder, "question-answering"))
    assert built == [1]
