"""Token pruning: padding goes first, significance counts real queries only, dropped tokens are restored."""

import pytest
import torch
from conftest import padded_batch

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.modeling.encoder import select_tokens, significance


@pytest.fixture(scope="module")
def qa_model(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    return from_pretrained(folder, "question-answering").eval()


def _alone(model, ids, mask, row, length_config=None):
    n = int(mask[row].sum())
    with torch.no_grad():
        start, _end = model(ids[row : row + 1, :n], mask[row : row + 1, :n], length_config=length_config)
    return start[0], n


def test_full_length_config_is_identity(qa_model):
    ids, mask = padded_batch(120, 0)
    with torch.no_grad():
        a = qa_model(ids, mask)
        b = qa_model(ids, mask, length_config="12,12")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_padding_is_dropped_first(qa_model):
    # Keep 8 of 12: row 1 (8 real) and row 2 (5 real) lose only padding, so they equal their unpadded runs.
    ids, mask = padded_batch(120, 0)
    with torch.no_grad():
        start, _ = qa_model(ids, mask, length_config="8,8")
    for row in (1, 2):
        expected, n = _alone(qa_model, ids, mask, row)
        assert torch.allclose(start[row, :n], expected, atol=1e-5)


def test_ratio_config_in_a_padded_batch_equals_unpadded_runs(qa_model):
    ids, mask = padded_batch(120, 0, lengths=(12, 9, 6))
    lc = LengthConfig.parse("0.5,0.25")
    with torch.no_grad():
        start, _ = qa_model(ids, mask, length_config=lc)
    for row in range(3):
        expected, n = _alone(qa_model, ids, mask, row, lc)
        assert torch.allclose(start[row, :n], expected, atol=1e-5)


def test_significance_sums_real_queries_over_heads():
    probs = torch.zeros(1, 2, 3, 3)
    probs[0, 0, 0] = torch.tensor([0.2, 0.5, 0.3])
    probs[0, 1, 1] = torch.tensor([0.1, 0.1, 0.8])
    probs[0, :, 2] = torch.tensor([0.0, 0.0, 1.0])  # query 2 is padding: it must not count
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    score = significance(probs, mask, keep_cls=False)
    assert torch.allclose(score[0, :2], torch.tensor([0.3, 0.6]))
    assert score[0, 2] < 0  # padding key ranks below every real token


def test_keep_cls_and_order():
    score = torch.tensor([[0.0, 5.0, 1.0, 4.0]])
    probs = torch.zeros(1, 1, 4, 4)
    boosted = significance(probs, torch.ones(1, 4), keep_cls=True)
    assert boosted[0, 0] > 4  # [CLS] above everything
    index, new_mask = select_tokens(score, torch.ones(1, 4), width=2, per_sample=None)
    assert index.tolist() == [[1, 3]]  # kept in original order
    assert new_mask.tolist() == [[1.0, 1.0]]


def test_dropped_tokens_keep_their_last_state(qa_model):
    ids, mask = padded_batch(120, 0, lengths=(12,))
    lc = LengthConfig.parse("12,4", keep_cls=False)
    with torch.no_grad():
        _, out = qa_model.run(ids, mask, length_config=lc, output_traces=True)
    layer0_out = out.traces[0].hidden_states
    kept = significance(out.traces[1].attention_probs, mask, keep_cls=False).topk(4).indices[0]
    restored = out.last_hidden_state[0]
    assert restored.shape[0] == 12  # every position is back
    for pos in range(12):
        if pos not in kept:
            assert torch.equal(restored[pos], layer0_out[0, pos])
        else:
            assert not torch.equal(restored[pos], layer0_out[0, pos])


@pytest.mark.parametrize("traces", [True, False], ids=["general path", "unpadded eager path"])
def test_selection_before_the_output_projection_equals_selection_after_the_attention_block(qa_model, traces):
    # The reference method selects after the whole attention block (output projection, residual, norm); the
    # runtime selects before the projection and projects the staying tokens only. Staying tokens must agree.
    ids = torch.randint(5, qa_model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    lc = LengthConfig.parse("12,5", keep_cls=False)
    with torch.no_grad():
        _, full = qa_model.run(ids, mask, output_traces=True)
        _, pruned = qa_model.run(ids, mask, length_config=lc, output_traces=traces)
        x = full.traces[0].hidden_states  # layer 1's input: layer 0 drops nothing
        layer = qa_model.encoder.layers[1]
        context, probs, _ = layer.attend(x, mask.float(), need_probs=True)
        every_token = layer.attention_output(context, x)
        kept = significance(probs, mask.float(), keep_cls=False).topk(5).indices.sort().values[0]
        expected = layer.feed_forward(every_token[:, kept])
    assert torch.allclose(pruned.last_hidden_state[:, kept], expected, atol=1e-5)


def test_layer_drop_skips_a_layer(qa_model):
    ids, mask = padded_batch(120, 0)
    with torch.no_grad():
        _, full = qa_model.run(ids, mask, output_traces=True)
        _, skipped = qa_model.run(ids, mask, layer_config=(True, False), output_traces=True)
    assert skipped.traces[1] is None
    assert torch.equal(skipped.last_hidden_state, full.traces[0].hidden_states)


def test_classification_reads_cls(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "text-classification")
    model = from_pretrained(folder, "text-classification").eval()
    ids, mask = padded_batch(120, 0)
    with torch.no_grad():
        logits = model(ids, mask, length_config="6,3")
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, ids, mask: m(ids, mask, length_config="8,9"), "grows"),
        (lambda m, ids, mask: m(ids, mask, length_config="8,6@10"), "chosen for inputs of 10 tokens"),
        (lambda m, ids, mask: m(ids, mask, length_config="8,8,8"), "2 layers"),
        (lambda m, ids, mask: m(ids, mask, length_config="8,0"), "layer 1 has 0"),
        (lambda m, ids, mask: m(ids + 500, mask), r"token id 6\d\d is outside the vocabulary \[0, 119\]"),
        (lambda m, ids, mask: m(ids - 1000, mask), "outside the vocabulary"),
        (lambda m, ids, mask: m(ids.float(), mask), "integer tensor"),
        (lambda m, ids, mask: m(ids, mask[:, :3]), "attention_mask has shape"),
    ],
)
def test_bad_input_is_named(qa_model, call, match):
    ids, mask = padded_batch(120, 0)
    with pytest.raises((ValueError, ConfigError), match=match):
        call(qa_model, ids, mask)


@pytest.mark.parametrize("padded", [True, False])
def test_in_place_softmax_matches_the_autograd_path(qa_model, padded):
    # Eager inference reuses the scores buffer (and skips the mask when nothing is padded); it must give the same
    # pruned outputs as the out-of-place softmax that training and tracing use.
    ids, mask = padded_batch(120, 0)
    if not padded:
        mask = torch.ones_like(mask)
    with torch.inference_mode():
        fast = qa_model(ids, mask, length_config="9,5")
    with torch.enable_grad():
        reference = qa_model(ids, mask, length_config="9,5")
    for a, b in zip(fast, reference, strict=True):
        assert torch.allclose(a, b.detach(), atol=1e-6)


@pytest.mark.parametrize("task", ["question-answering", "text-classification"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize(
    "length_config, layer_config",
    [("9,5", None), ("12,4", None), ("0.6,0.3", None), ("7,3", (False, True)), ("0.5,0.5", None)],
)
def test_the_unpadded_eager_path_equals_the_general_path(tiny_checkpoint, task, batch, length_config, layer_config):
    # Under no_grad, rows without padding take the lean path (no masks, in-place restore); with autograd on, the
    # general path runs. Same significance products, same choices: the outputs agree to float rounding.
    folder, _ = tiny_checkpoint("bert", task)
    model = from_pretrained(folder, task).eval()
    ids = torch.randint(5, 120, (batch, 12), generator=torch.Generator().manual_seed(batch))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        lean = model(ids, mask, length_config=length_config, layer_config=layer_config)
    general = model(ids, mask, length_config=length_config, layer_config=layer_config)
    for a, b in zip(_outputs(lean), _outputs(general), strict=True):
        assert torch.allclose(a, b.detach(), atol=1e-5)


def _outputs(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def test_the_unpadded_path_leaves_dropped_tokens_at_their_last_state(qa_model):
    ids = torch.randint(5, 120, (1, 12), generator=torch.Generator().manual_seed(3))
    lc = LengthConfig.parse("12,4", keep_cls=False)
    with torch.no_grad():
        _, traced = qa_model.run(ids, torch.ones_like(ids), length_config=lc, output_traces=True)  # general path
        _, lean = qa_model.run(ids, torch.ones_like(ids), length_config=lc)
    assert torch.allclose(lean.last_hidden_state, traced.last_hidden_state, atol=1e-6)
