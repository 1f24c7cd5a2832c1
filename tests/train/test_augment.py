"""Distillation augmentation: which words are replaced and by what, the epoch's batches, and a distillation run on
them (``qla distill --augment-copies``)."""

import json
import math
from pathlib import Path

import pytest
import torch

from qla_sdk.data import load_tokenizer
from qla_sdk.errors import ConfigError
from qla_sdk.train.augment import AugmentConfig, Augmenter, augment_batch, word_neighbors

FIXTURES = Path(__file__).parents[1] / "fixtures"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Two clusters of whole words, pieces that continue a word, and tokens that are no words of letters.
CATS, CARS = ["cat", "dog", "mouse"], ["car", "bus", "train"]
VOCAB = [*SPECIAL, *CATS, *CARS, "##s", "##ing", "1990", ".", "walk"]


def ids_of(tokenizer, tokens: list[str]) -> list[int]:
    return tokenizer.convert_tokens_to_ids(tokens)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    return load_tokenizer(vocab)


@pytest.fixture(scope="module")
def table(tokenizer):
    """Embeddings where each cluster's words lie close together (cat nearest dog, car nearest bus)."""
    embeddings = torch.zeros(len(VOCAB), 4)
    for i, token in enumerate(VOCAB):
        embeddings[i] = torch.tensor([1.0, 0.0, 0.0, 0.0]) if token in CATS else torch.tensor([0.0, 1.0, 0.0, 0.0])
        embeddings[i, 2] = 0.1 * i  # distinct rows; cat-dog and car-bus are the closest pairs
        embeddings[i, 3] = 1.0 if token not in CATS + CARS else 0.0
    return word_neighbors(embeddings, tokenizer, neighbors=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"copies": -1}, "copies=-1"),
        ({"copies": True}, "copies=True"),
        ({"copies": 1.5}, "copies=1.5"),
        ({"replace_prob": 0}, "replace_prob=0"),
        ({"replace_prob": 1.5}, "replace_prob=1.5"),
        ({"replace_prob": float("nan")}, "replace_prob=nan"),
        ({"neighbors": 0}, "neighbors=0"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AugmentConfig(**kwargs)


def test_whole_words_of_letters_are_replaced_by_their_nearest_whole_words(tokenizer, table):
    def neighbors(token):
        return tokenizer.convert_ids_to_tokens(table.candidates[ids_of(tokenizer, [token])[0]].tolist())

    assert neighbors("cat") == ["dog", "mouse"] and neighbors("car") == ["bus", "train"]
    assert neighbors("walk")[0] not in CATS  # "walk" sits with the cars in this space
    kept = [*SPECIAL, "##s", "##ing", "1990", "."]
    assert not table.replaceable[ids_of(tokenizer, kept)].any()
    assert table.replaceable[ids_of(tokenizer, [*CATS, *CARS, "walk"])].all()
    assert table.continues_word[ids_of(tokenizer, ["##s", "##ing"])].all()
    assert not table.continues_word[ids_of(tokenizer, ["cat", "1990"])].any()


def test_too_few_words_for_the_neighbors_is_refused(tokenizer):
    with pytest.raises(ConfigError, match="7 whole words, too few .* 15 neighbours"):
        word_neighbors(torch.randn(len(VOCAB), 4), tokenizer, neighbors=15)


def test_a_tokenizer_that_is_not_word_piece_is_refused():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[])))
    with pytest.raises(ConfigError, match="replaces whole WordPiece words, and this tokenizer is BPE"):
        word_neighbors(torch.randn(2, 4), bpe, neighbors=1)


def batch_of(tokenizer, rows: list[list[str]], **labels) -> dict:
    longest = max(map(len, rows))
    ids = [ids_of(tokenizer, row) + [0] * (longest - len(row)) for row in rows]
    mask = [[1] * len(row) + [0] * (longest - len(row)) for row in rows]
    batch = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    return batch | {key: torch.tensor(value) for key, value in labels.items()}


def test_every_replaceable_word_is_replaced_at_chance_one_and_nothing_else(tokenizer, table):
    rows = [["[CLS]", "cat", "car", "##s", "walk", "##ing", "1990", ".", "[SEP]"], ["[CLS]", "dog", "[SEP]"]]
    batch = batch_of(tokenizer, rows, labels=[1, 0])
    out = augment_batch(batch, table, 1.0, torch.Generator().manual_seed(0))
    assert "labels" not in out and torch.equal(out["attention_mask"], batch["attention_mask"])
    tokens = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in out["input_ids"]]
    assert tokens[0][1] in ["dog", "mouse"]  # a one-piece word: replaced by a neighbour
    # "car" + "##s" and "walk" + "##ing" are two-piece words: kept whole, like the rest
    assert tokens[0][2:] == ["car", "##s", "walk", "##ing", "1990", ".", "[SEP]"]
    assert tokens[1][0] == "[CLS]" and tokens[1][1] in ["cat", "mouse"] and tokens[1][2] == "[SEP]"
    assert tokens[1][3:] == ["[PAD]"] * 6  # padding stays padding
    assert torch.equal(batch["input_ids"][0, 1], torch.tensor(ids_of(tokenizer, ["cat"])[0]))  # the input is kept


def test_a_question_answering_window_keeps_its_answer_span(tokenizer, table):
    row = ["[CLS]", "cat", "dog", "[SEP]", "car", "bus", "train", "mouse", "[SEP]"]
    # The first window's answer is "bus train" (positions 5-6); the second holds none (0, 0): nothing is kept.
    batch = batch_of(tokenizer, [row, row], start_positions=[5, 0], end_positions=[6, 0])
    out = augment_batch(batch, table, 1.0, torch.Generator().manual_seed(0))
    assert "start_positions" not in out and "end_positions" not in out
    first, second = (tokenizer.convert_ids_to_tokens(r.tolist()) for r in out["input_ids"])
    assert first[5:7] == ["bus", "train"] and first[4] != "car" and first[7] != "mouse"
    assert all(a != b for a, b in zip(second, row, strict=True) if b not in ("[CLS]", "[SEP]"))


def test_an_epoch_holds_each_batch_and_its_copies_in_a_seeded_order(tokenizer, table):
    config = AugmentConfig(copies=2, replace_prob=0.5, neighbors=2)
    augmenter = Augmenter(config, table, seed=3)
    words = [*CATS, *CARS]
    groups = [[0, 1], [2, 3], [4, 5]]

    def make_batch(group):
        return batch_of(tokenizer, [["[CLS]", *words, "[SEP]"] for _ in group], labels=group)

    def epoch(number):
        return list(augmenter.epoch(groups, make_batch, number))

    first = epoch(0)
    assert len(first) == augmenter.batches_per_epoch(len(groups)) == 9
    originals = [b for b in first if "labels" in b]
    assert sorted(b["labels"].tolist() for b in originals) == groups  # each original once, unchanged
    assert all(torch.equal(b["input_ids"], make_batch([0, 1])["input_ids"]) for b in originals)
    copies = [b["input_ids"] for b in first if "labels" not in b]
    assert all(not torch.equal(c, originals[0]["input_ids"]) for c in copies)
    assert len({tuple(c.flatten().tolist()) for c in copies}) == 6  # each copy draws its own words
    again = epoch(0)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again, strict=True))
    other = epoch(1)
    assert any(not torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, other, strict=True))


def test_no_copies_makes_no_augmenter(tokenizer):
    assert Augmenter.for_teacher(AugmentConfig(), teacher=None, tokenizer=tokenizer, seed=0) is None


def distill_args(teacher, tmp_path, vocab, out, *extra):
    data = str(FIXTURES / "sst2_tiny.tsv")
    args = ["distill", "--teacher", str(teacher), "--init-layers", "0", "--train", data, "--eval", data]
    args += ["--tokenizer", str(vocab), "--output", str(out), "--epochs", "1", "--batch-size", "8"]
    return [*args, "--no-progress", "--no-bf16", "--relation-heads", "2", *extra]


def test_distill_command_trains_on_the_copies_and_resumes_only_with_the_same_augmentation(
    tiny_checkpoint, tmp_path, capsys
):
    from qla_sdk.cli import main

    teacher, _ = tiny_checkpoint("bert", "text-classification")
    vocab = tmp_path / "vocab.txt"
    words = "the a of and to is it in that this with for as no not film movie story its about human nature"
    vocab.write_text("\n".join([*SPECIAL, *words.split(), ".", ",", "?", "##s"]) + "\n")
    out = tmp_path / "out"
    args = distill_args(teacher, tmp_path, vocab, out, "--augment-copies", "2", "--augment-neighbors", "3")
    assert main([*args, "--checkpoint-every", "1", "--max-steps", "3"]) == 0
    rows = len((FIXTURES / "sst2_tiny.tsv").read_text().splitlines()) - 1  # less the header
    assert math.ceil(rows / 8) >= 2  # so that the copies make steps of their own
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["augment"] == {"copies": 2, "replace_prob": 0.4, "neighbors": 3} and metrics["steps"] == 3
    fewer = distill_args(teacher, tmp_path, vocab, out, "--augment-copies", "1", "--augment-neighbors", "3")
    assert main([*fewer, "--checkpoint-every", "1", "--max-steps", "3", "--resume"]) == 2
    assert "the run changed (context.augment.copies: 2 -> 1)" in capsys.readouterr().err
    full = tmp_path / "full"
    assert main(distill_args(teacher, tmp_path, vocab, full, "--augment-copies", "2", "--checkpoint-every", "0")) == 0
    assert json.loads((full / "metrics.json").read_text())["steps"] == 3 * math.ceil(rows / 8)


class Interrupted(Exception):
    pass


def test_an_interrupted_augmented_distillation_resumes_to_the_uninterrupted_weights(tmp_path, tokenizer, monkeypatch):
    """Stopped after a checkpoint inside an epoch, the resumed run must see the same copies in the same order."""
    from transformers import BertConfig

    from qla_sdk.data import ClassificationFeatures
    from qla_sdk.modeling import TaskModel, init_weights
    from qla_sdk.train import TrainConfig
    from qla_sdk.train import distill as distill_module
    from qla_sdk.train.distill import DistillConfig, distill
    from qla_sdk.train.student import student_from_layers

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    teacher = init_weights(TaskModel(config, "text-classification")).eval()
    g = torch.Generator().manual_seed(1)
    words = ids_of(tokenizer, [*CATS, *CARS, "walk", "1990"])
    ids = [[2, *(words[int(i)] for i in torch.randint(0, 8, (5,), generator=g)), 3] for _ in range(24)]
    data = ClassificationFeatures(ids, None, [i % 2 for i in range(24)])
    original = distill_module.distill_loss_fn

    def run(output: Path, stop_at_call: int | None = None, resume: bool = False) -> dict:
        calls = [0]

        def stopping(*args):
            loss_fn = original(*args)

            def wrapped(model, batch):
                calls[0] += 1
                if calls[0] == stop_at_call:
                    raise Interrupted
                return loss_fn(model, batch)

            return wrapped

        monkeypatch.setattr(distill_module, "distill_loss_fn", stopping)
        student = student_from_layers(teacher, [0])
        train = TrainConfig(output, epochs=2, batch_size=4, lr=1e-2, checkpoint_every=4, bf16=False, progress=False)
        augment = AugmentConfig(copies=2, neighbors=2)
        distill(
            teacher, student, data, None, "text-classification", DistillConfig(relation_heads=2),
            TrainConfig(**{**train.__dict__, "resume": resume}), tokenizer=tokenizer, augment=augment,
        )  # fmt: skip
        return student.state_dict()

    whole = run(tmp_path / "whole")  # 6 batches x 3 = 18 steps per epoch
    with pytest.raises(Interrupted):
        run(tmp_path / "stopped", stop_at_call=23)  # epoch 1, after the checkpoint of step 20
    resumed = run(tmp_path / "stopped", resume=True)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    meta = json.loads((tmp_path / "whole" / "final" / "qla.json").read_text())
    assert meta["augment"] == {"copies": 2, "replace_prob": 0.4, "neighbors": 2}


def test_a_copy_skips_the_task_loss_and_an_unlabelled_original_is_still_refused(tokenizer, table):
    from transformers import BertConfig

    from qla_sdk.modeling import TaskModel, init_weights
    from qla_sdk.train.distill import DistillConfig, distill_loss_fn

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    teacher = init_weights(TaskModel(config, "text-classification")).eval()
    loss_fn = distill_loss_fn(teacher, "text-classification", DistillConfig(relation_heads=2))
    batch = batch_of(tokenizer, [["[CLS]", "cat", "car", "[SEP]"]], labels=[1])
    _, terms = loss_fn(teacher, batch)
    assert set(terms) == {"relation", "prediction", "task"}
    _, terms = loss_fn(teacher, augment_batch(batch, table, 1.0, torch.Generator().manual_seed(0)))
    assert set(terms) == {"relation", "prediction"}
    with pytest.raises(ConfigError, match="classification batch has no labels"):
        loss_fn(teacher, {k: v for k, v in batch.items() if k != "labels"})


def test_copies_need_the_prediction_term():
    from qla_sdk.train.distill import DistillConfig, check_augment

    with pytest.raises(ConfigError, match="prediction_weight is 0: give it a weight .* or switch augmentation off"):
        check_augment(AugmentConfig(copies=1), DistillConfig(prediction_weight=0))
    check_augment(AugmentConfig(copies=0), DistillConfig(prediction_weight=0))  # no copies: any weights
