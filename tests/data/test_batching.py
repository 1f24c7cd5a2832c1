from pathlib import Path

import pytest
import torch

from qla_sdk.data import (
    ClassificationFeatures,
    batch_indices,
    batches,
    classification_features,
    collate,
    load_classification,
    load_squad,
    load_tokenizer,
    qa_features,
)
from qla_sdk.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return load_tokenizer(minilm_dir)


def toy_features(lengths=(3, 7, 5, 2, 6, 4, 1, 8, 5, 3), pad_token_id=9) -> ClassificationFeatures:
    """Row i holds tokens 100*i+1 .. so every batch row can be traced back to its feature."""
    return ClassificationFeatures(
        input_ids=[[100 * i + k + 1 for k in range(n)] for i, n in enumerate(lengths)],
        token_type_ids=[[k % 2 for k in range(n)] for n in lengths],
        labels=[i % 2 for i in range(len(lengths))],
        pad_token_id=pad_token_id,
    )


def test_collate_pads_to_the_longest_row():
    rows = [
        {"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1], "labels": 1},
        {"input_ids": [8], "token_type_ids": [0], "labels": 0},
    ]
    batch = collate(rows, pad_token_id=4)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 4, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert all(t.dtype == torch.long for t in batch.values())
    assert collate(rows, 4, pad_to_multiple_of=8)["input_ids"].shape == (2, 8)
    no_segments = collate([{"input_ids": [1, 2]}, {"input_ids": [3]}])
    assert set(no_segments) == {"input_ids", "attention_mask"}


def test_batches_cover_each_row_once_padded_per_batch():
    features = toy_features()
    seen = []
    for batch in batches(features, 3, shuffle=True, seed=1, with_index=True):
        index = batch["index"].tolist()
        seen += index
        longest = max(len(features.input_ids[i]) for i in index)
        assert batch["input_ids"].shape == (len(index), longest)
        for row, i in enumerate(index):
            n = len(features.input_ids[i])
            assert batch["input_ids"][row, :n].tolist() == features.input_ids[i]
            assert batch["input_ids"][row, n:].eq(9).all() and batch["attention_mask"][row].sum() == n
            assert batch["token_type_ids"][row, :n].tolist() == features.token_type_ids[i]
            assert batch["labels"][row] == features.labels[i]
    assert sorted(seen) == list(range(10))


def test_order_is_a_function_of_seed_and_epoch():
    features = toy_features()
    order = batch_indices(features, 4, shuffle=True, seed=7, epoch=2)
    assert order == batch_indices(features, 4, shuffle=True, seed=7, epoch=2)
    assert order != batch_indices(features, 4, shuffle=True, seed=7, epoch=3)
    assert order != batch_indices(features, 4, shuffle=True, seed=8, epoch=2)
    assert [len(b) for b in order] == [4, 4, 2]
    assert batch_indices(features, 4, shuffle=True, seed=7, epoch=2, drop_last=True) == order[:2]
    assert batch_indices(features, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # A resumed run that skips the first batch sees exactly the rest.
    first = [b["input_ids"] for b in batches(features, 4, shuffle=True, seed=7, epoch=2)]
    resumed = list(batches(features, 4, shuffle=True, seed=7, epoch=2))[1:]
    assert all(torch.equal(a, b["input_ids"]) for a, b in zip(first[1:], resumed, strict=True))


def test_sort_by_length():
    features = toy_features()
    order = batch_indices(features, 3, sort_by_length=True)
    flat = [i for b in order for i in b]
    assert [len(features.input_ids[i]) for i in flat] == sorted(features.lengths, reverse=True)
    shuffled = batch_indices(features, 3, shuffle=True, seed=0, sort_by_length=True)
    assert sorted(i for b in shuffled for i in b) == list(range(10))
    for b in shuffled:  # one bucket window here: rows of a batch are neighbours in length order
        lengths = [len(features.input_ids[i]) for i in b]
        assert lengths == sorted(lengths, reverse=True)
    padded = sum(b["input_ids"].numel() for b in batches(features, 3, sort_by_length=True))
    assert padded < sum(b["input_ids"].numel() for b in batches(features, 3))


def test_qa_training_batches(tokenizer):
    examples = load_squad(FIXTURES / "squad_tiny.json")
    features = qa_features(examples, tokenizer, 48, 16, training=True)
    batch = next(batches(features, 4))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert batch["start_positions"].tolist() == features.start_positions[:4]
    assert batch["input_ids"].shape[1] == max(features.lengths[:4])
    assert set(next(batches(qa_features(examples, tokenizer), 4))) == {"input_ids", "attention_mask", "token_type_ids"}


def test_classification_batches(tokenizer):
    features = classification_features(load_classification(FIXTURES / "mrpc_tiny.tsv"), tokenizer)
    (batch,) = list(batches(features, 8))
    assert batch["labels"].tolist() == [1, 0, 1, 0]
    assert batch["input_ids"].shape == (4, max(features.lengths))
    assert batch["attention_mask"].sum().item() == sum(features.lengths)


@pytest.mark.parametrize(
    "kwargs, message", [({"batch_size": 0}, "batch_size 0"), ({"batch_size": 2, "seed": -1}, "must be >= 0")]
)
def test_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        batch_indices(toy_features(), **kwargs)
    with pytest.raises(ConfigError, match="no rows"):
        collate([])
