"""LengthDrop / LayerDrop sampling bounds, ratio configs, and the sandwich rule on a tiny learnable task."""

import json
import math
import random
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, TaskModel, init_weights
from qla_sdk.train.length_drop import (
    LatConfig,
    ratio_config,
    sample_layers,
    sample_lengths,
    sandwich_loss_fn,
    smallest_ratios,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy machine spinning OpenMP threads slow them down ~10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("drop_prob", [0.0, 0.2, 0.5, 0.9])
def test_sampled_lengths_respect_the_bounds(drop_prob):
    for seed in range(300):
        rng = random.Random(seed)
        seq_len, num_layers = rng.randint(1, 400), rng.randint(1, 12)
        layers = sample_layers(num_layers, 0.3, rng)
        counts = sample_lengths(seq_len, num_layers, drop_prob, rng, layers)
        prev = seq_len
        for kept, count in zip(layers, counts, strict=True):
            assert isinstance(count, int) and 1 <= count <= prev
            if kept:
                assert count >= prev * (1 - drop_prob) - 1e-9 or count == 1
            else:
                assert count == prev  # a skipped layer drops nothing
            prev = count
        # The ratio form resolves back to exactly these counts for the batch's longest row.
        config = ratio_config(counts, seq_len)
        config.check(num_layers, seq_len)
        assert config.resolve(seq_len) == counts


def test_lengths_cover_the_whole_interval():
    seen = {sample_lengths(10, 1, 0.2, random.Random(seed))[0] for seed in range(200)}
    assert seen == {8, 9, 10}


def test_smallest_sub_model_takes_the_lower_bound_at_every_layer():
    # ceil(100 * 0.8) = 80, ceil(80 * 0.8) = 64, ceil(64 * 0.8) = ceil(51.2) = 52, then 42, ...
    assert sample_lengths(100, 4, 0.2) == (80, 64, 52, 42)
    assert sample_lengths(10, 3, 0.2) == (8, 7, 6)
    assert sample_lengths(2, 5, 0.9) == (1, 1, 1, 1, 1)  # never below one token
    assert smallest_ratios(3, 0.5).lengths == (0.5, 0.25, 0.125)


@pytest.mark.parametrize("whole", [1, 2, 3])
def test_full_length_layers_keep_every_token_and_length_drop_starts_after_them(whole):
    for seed in range(200):
        rng = random.Random(seed)
        layers = sample_layers(4, 0.3, rng)
        counts = sample_lengths(100, 4, 0.6, rng, layers, full_length_layers=whole)
        assert counts[:whole] == (100,) * whole
        prev = 100
        for kept, count in zip(layers[whole:], counts[whole:], strict=True):
            assert (count == prev) if not kept else (math.ceil(prev * 0.4) <= count <= prev)
            prev = count
    assert sample_lengths(100, 4, 0.5, full_length_layers=whole) == (100,) * whole + (50, 25, 13)[: 4 - whole]
    assert (
        LatConfig(length_drop_prob=0.5, full_length_layers=whole).smallest_length_config(4).lengths
        == (1.0,) * whole
        + (
            0.5,
            0.25,
            0.125,
        )[: 4 - whole]
    )


def test_full_length_layers_must_leave_a_layer_to_drop_tokens_in():
    message = r"full_length_layers=2 .*lat.length_adaptive.full_length_layers. keeps every layer of this 2-layer"
    with pytest.raises(ConfigError, match=message + r" model.*at most 1"):
        sandwich_loss_fn(2, "text-classification", LatConfig(full_length_layers=2))


def test_sandwich_sub_models_keep_the_full_length_layers_whole():
    model, batch = tiny_classifier(0), synthetic_batch(torch.Generator().manual_seed(0))
    seen = []
    forward = model.forward

    def recording(*args, length_config=None, **kwargs):
        if length_config is not None:
            seen.append(length_config.lengths)
        return forward(*args, length_config=length_config, **kwargs)

    model.forward = recording
    lat = LatConfig(length_drop_prob=0.6, layer_drop_prob=0.0, num_sandwich=3, full_length_layers=1)
    loss_fn = sandwich_loss_fn(model.num_layers, "text-classification", lat, rng=random.Random(0))
    with torch.no_grad():
        for term in loss_fn(model, batch).terms:
            term()
    seq_len = batch["input_ids"].shape[1]
    assert len(seen) == 4 and all(lengths[0] == 1.0 for lengths in seen)  # 3 random and the smallest
    assert seen[-1] == (1.0, ratio_config((seq_len, math.ceil(seq_len * 0.4)), seq_len).lengths[1])


def test_layer_drop_never_drops_every_layer():
    assert all(any(sample_layers(3, 0.99, random.Random(seed))) for seed in range(500))
    assert all(sample_layers(6, 0.0, random.Random(0)))
    rng = random.Random(0)
    kept = [k for _ in range(1000) for k in sample_layers(6, 0.2, rng)]
    assert 0.77 < sum(kept) / len(kept) < 0.83


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(length_drop_prob=1.0), "length_drop_prob=1.0"),
        (dict(layer_drop_prob=-0.1), "layer_drop_prob=-0.1"),
        (dict(num_sandwich=-1), "num_sandwich=-1"),
        (dict(temperature=0.0), "temperature=0.0"),
        (dict(teacher_weight=2.0), "teacher_weight=2.0"),
        (dict(full_length_layers=-1), "full_length_layers=-1"),
        (dict(full_length_layers=True), "full_length_layers=True"),
        (dict(full_length_layers=1.5), "full_length_layers=1.5"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LatConfig(**kwargs)


VOCAB, MARK = 20, 7


def synthetic_batch(generator: torch.Generator, size: int = 32) -> dict:
    """Label 1 iff the token MARK occurs; rows of 6-12 real tokens, dynamically padded."""
    lengths = torch.randint(6, 13, (size,), generator=generator)
    ids = torch.randint(3, VOCAB, (size, int(lengths.max())), generator=generator)
    ids[ids == MARK] = MARK + 1
    labels = torch.randint(0, 2, (size,), generator=generator)
    for row in range(size):
        if labels[row]:
            ids[row, int(torch.randint(1, int(lengths[row]), (1,), generator=generator))] = MARK
    ids[:, 0] = 2  # [CLS]
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


def task_losses(model: TaskModel, batch: dict, smallest: LengthConfig) -> tuple[float, float]:
    with torch.no_grad():
        full = model(batch["input_ids"], batch["attention_mask"])
        small = model(batch["input_ids"], batch["attention_mask"], length_config=smallest)
    return F.cross_entropy(full, batch["labels"]).item(), F.cross_entropy(small, batch["labels"]).item()


def tiny_classifier(seed: int = 0) -> TaskModel:
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return init_weights(TaskModel(config, "text-classification"))


@pytest.mark.parametrize("num_sandwich", [0, 2])
def test_sandwich_training_lowers_full_and_smallest_losses(num_sandwich):
    model = tiny_classifier()
    lat = LatConfig(length_drop_prob=0.3, layer_drop_prob=0.2, num_sandwich=num_sandwich)
    loss_fn = sandwich_loss_fn(model.num_layers, "text-classification", lat, rng=random.Random(0))
    generator = torch.Generator().manual_seed(0)
    held_out = synthetic_batch(generator, 64)
    smallest = smallest_ratios(model.num_layers, lat.length_drop_prob)
    full_before, small_before = task_losses(model, held_out, smallest)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        loss = loss_fn(model, synthetic_batch(generator))
        for term in loss.terms:
            term().backward()
        optimizer.step()
        parts = loss.extras
    expected = {"full", "smallest"} | ({"random"} if num_sandwich else set())
    assert set(parts) == expected and all(v > -1e-6 for v in parts.values())
    full_after, small_after = task_losses(model, held_out, smallest)
    assert full_after < 0.6 * full_before
    assert small_after < 0.6 * small_before


class SavedBytes:
    """Bytes of tensors autograd holds for backward, now and at most (``saved_tensors_hooks``)."""

    def __init__(self) -> None:
        self.live = self.peak = 0

    def pack(self, tensor: torch.Tensor) -> "_Held":
        held, size = _Held(tensor), tensor.numel() * tensor.element_size()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(held, self._release, size)  # runs when backward frees the graph
        return held

    def _release(self, size: int) -> None:
        self.live -= size

    def __enter__(self) -> "SavedBytes":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda held: held.tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class _Held:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def gradients(model: TaskModel) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def test_sandwich_terms_back_propagated_in_turn_give_the_summed_gradients_with_one_graph_held():
    """The terms' gradients add up to those of their sum, while only one sub-model's activations are held at a
    time; the smallest sub-model, which runs every layer, comes last (it synchronises gradients under DDP)."""
    model, batch = tiny_classifier(0), synthetic_batch(torch.Generator().manual_seed(0), 32)
    lat = LatConfig(length_drop_prob=0.3, layer_drop_prob=0.5, num_sandwich=2)
    loss_fn = sandwich_loss_fn(model.num_layers, "text-classification", lat, teacher=tiny_classifier(1))

    random.seed(3)
    with SavedBytes() as in_turn:
        loss = loss_fn(model, batch)
        for term in loss.terms:
            term().backward()
    assert len(loss.terms) == 4 and set(loss.extras) == {"full", "teacher_kd", "random", "smallest"}
    separate = gradients(model)

    random.seed(3)  # the same sub-models
    with SavedBytes() as summed:
        total = sum(term() for term in loss_fn(model, batch).terms)
        total.backward()
    together = gradients(model)

    assert in_turn.live == summed.live == 0
    assert in_turn.peak < 0.5 * summed.peak  # four graphs at once against one
    for name, grad in together.items():
        torch.testing.assert_close(separate[name], grad, atol=1e-6, rtol=1e-5, msg=name)

    random.seed(3)
    loss = loss_fn(model, batch)
    loss.terms[0]()  # the full model's predictions, the sub-models' target
    loss.terms[-1]().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_external_teacher_mixes_into_the_full_model_loss():
    model, batch = tiny_classifier(0), synthetic_batch(torch.Generator().manual_seed(0))
    lat = LatConfig(num_sandwich=0, teacher_weight=0.25)
    confident = tiny_classifier(0)
    confident.head.out.bias.data = torch.tensor([2.0, -2.0])  # prefers class 0; the student is near uniform
    for teacher, distance in ((tiny_classifier(0), "zero"), (confident, "positive")):
        loss_fn = sandwich_loss_fn(2, "text-classification", lat, teacher=teacher, rng=random.Random(0))
        with torch.no_grad():
            loss = loss_fn(model, batch)
            total, parts = sum(term() for term in loss.terms), loss.extras
        assert set(parts) == {"full", "teacher_kd", "smallest"}
        if distance == "zero":
            assert parts["teacher_kd"] == pytest.approx(0.0, abs=1e-6)
        else:
            assert parts["teacher_kd"] > 0.1
        full = 0.75 * parts["full"] + 0.25 * parts["teacher_kd"]
        assert total.item() == pytest.approx((full + parts["smallest"]) / 2, rel=1e-5)


def test_lat_train_command_records_length_adaptive_training(tiny_checkpoint, tmp_path):
    from qla_sdk.cli import main

    model, _ = tiny_checkpoint("bert", "question-answering")
    vocab = tmp_path / "vocab.txt"
    words = "the of and in was who what which year did to a is".split()
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, ".", ",", "?"]) + "\n")
    data = str(Path(__file__).parents[1] / "fixtures" / "squad_tiny.json")
    out = tmp_path / "lat"
    args = ["lat-train", "--model", str(model), "--train", data, "--eval", data, "--tokenizer", str(vocab)]
    args += ["--output", str(out), "--max-length", "48", "--doc-stride", "16", "--max-steps", "2"]
    args += ["--batch-size", "4", "--checkpoint-every", "0", "--no-progress", "--no-bf16"]
    args += ["--length-drop-prob", "0.3", "--layer-drop-prob", "0.1", "--num-sandwich", "1"]
    assert main(args) == 0
    meta = json.loads((out / "final" / "qla.json").read_text())
    assert meta["length_adaptive"] == {
        "length_drop_prob": 0.3,
        "layer_drop_prob": 0.1,
        "num_sandwich": 1,
        "temperature": 1.0,
        "teacher_weight": 0.5,
        "full_length_layers": 0,
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["eval"]) == set(metrics["smallest_eval"]) == {"exact_match", "f1"}
    assert metrics["smallest_length_config"] == "0.7,0.49" and metrics["steps"] == 2
    assert "text_columns" not in meta and "label_column" not in meta  # classification only


def test_lat_train_from_a_fine_tuned_model_records_the_columns_of_its_own_training(tiny_checkpoint, tmp_path):
    from qla_sdk.cli import main
    from qla_sdk.modeling import from_pretrained, save_pretrained

    model, _ = tiny_checkpoint("bert", "text-classification")
    tuned = tmp_path / "tuned"
    save_pretrained(from_pretrained(model), tuned, extra={"text_columns": ["title"], "label_column": "verdict"})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film", "."]) + "\n")
    data = tmp_path / "reviews.tsv"
    data.write_text("title\tcontent\tstars\n" + "".join(f"a film\tfilm {i}\t{i % 2}\n" for i in range(8)))
    args = ["lat-train", "--model", str(tuned), "--train", str(data), "--eval", str(data), "--tokenizer", str(vocab)]
    args += ["--text-columns", "content", "--label-column", "stars", "--output", str(tmp_path / "lat")]
    args += ["--max-steps", "1", "--batch-size", "4", "--checkpoint-every", "0", "--no-progress", "--no-bf16"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "lat" / "final" / "qla.json").read_text())
    assert (meta["text_columns"], meta["label_column"]) == (["content"], "stars")
