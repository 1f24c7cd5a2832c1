"""MiniLM losses: hand-computed 2-token, 2-head examples; zero for the teacher itself; config and pairing errors."""

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import BertConfig

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import TaskModel, from_pretrained, init_weights
from qla_sdk.train.distill import (
    DistillConfig,
    attention_transfer_loss,
    check_pair,
    distill_loss_fn,
    prediction_loss,
    relation_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy machine spinning OpenMP threads slow them down ~10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def softmax(row):
    exps = [math.exp(x) for x in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def dot_rows(rows, scale):
    """softmax(X Xᵀ / scale) row by row, written out."""
    return [softmax([sum(a * b for a, b in zip(x, y, strict=True)) / scale for y in rows]) for x in rows]


def tiny_model(task="text-classification", layers=2, hidden=32, heads=4, seed=0):
    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=32,
        initializer_range=0.2,  # wide enough that two seeds attend visibly differently
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return init_weights(TaskModel(config, task)).eval()


def test_attention_transfer_by_hand():
    # Two heads over two real tokens; a third position is padding, whose query row must not count.
    teacher = torch.tensor([[[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.3, 0.3, 0.4]],
                            [[0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.3, 0.3, 0.4]]]).unsqueeze(0)  # fmt: skip
    student = torch.tensor([[[0.7, 0.3, 0.0], [0.9, 0.1, 0.0], [0.1, 0.1, 0.8]],
                            [[0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]]).unsqueeze(0)  # fmt: skip
    mask = torch.tensor([[1, 1, 0]])
    rows = [kl([0.5, 0.5], [0.7, 0.3]), 0.0, 0.0, kl([0.6, 0.4], [0.5, 0.5])]
    expected = sum(rows) / 4  # 2 heads x 2 real queries
    assert attention_transfer_loss(teacher, student, mask).item() == pytest.approx(expected, rel=1e-5)
    assert attention_transfer_loss(teacher, teacher, mask).item() == 0.0


def test_value_relation_by_hand_with_different_head_dims():
    # MiniLM v1 value relation: per head softmax(V Vᵀ/√d); the teacher has d=2, the student d=1.
    t_heads = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, -1.0]]]
    s_heads = [[[1.0], [0.0]], [[1.0], [2.0]]]
    teacher = torch.tensor(t_heads).unsqueeze(0)  # (1, 2 heads, 2 tokens, 2)
    student = torch.tensor(s_heads).unsqueeze(0)  # (1, 2 heads, 2 tokens, 1)
    expected = 0.0
    for t, s in zip(t_heads, s_heads, strict=True):
        for p, q in zip(dot_rows(t, math.sqrt(2)), dot_rows(s, 1.0), strict=True):
            expected += kl(p, q) / 4
    mask = torch.ones(1, 2)
    assert relation_loss(teacher, student, mask, num_relation_heads=2).item() == pytest.approx(expected, rel=1e-5)


def test_v2_relation_by_hand_across_head_counts():
    # Teacher: 2 heads of d=1. Concatenated per token: [1, 0] and [0, 2]. Student: 1 head of d=2.
    teacher = torch.tensor([[[1.0], [0.0]], [[0.0], [2.0]]]).unsqueeze(0)
    same = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]).unsqueeze(0)
    other = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]]).unsqueeze(0)
    mask = torch.ones(1, 2)
    assert relation_loss(teacher, same, mask, num_relation_heads=1).item() == pytest.approx(0.0, abs=1e-7)

    t_rel, s_rel = dot_rows([[1, 0], [0, 2]], math.sqrt(2)), dot_rows([[1, 1], [1, 0]], math.sqrt(2))
    one_head = (kl(t_rel[0], s_rel[0]) + kl(t_rel[1], s_rel[1])) / 2
    assert relation_loss(teacher, other, mask, num_relation_heads=1).item() == pytest.approx(one_head, rel=1e-5)

    # Two relation heads split the width 2 into d_r = 1: columns [1, 0] | [0, 2] vs the student's [1, 1] | [1, 0].
    pairs = [(dot_rows([[1], [0]], 1), dot_rows([[1], [1]], 1)), (dot_rows([[0], [2]], 1), dot_rows([[1], [0]], 1))]
    two_heads = sum(kl(p, q) for t, s in pairs for p, q in zip(t, s, strict=True)) / 4
    assert relation_loss(teacher, other, mask, num_relation_heads=2).item() == pytest.approx(two_heads, rel=1e-5)


def test_prediction_loss_by_hand():
    t = 2.0
    logits = prediction_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), t, torch.ones(1, 2))
    assert logits.item() == pytest.approx(kl(softmax([0.5, 0.0]), [0.5, 0.5]) * t * t, rel=1e-5)
    # Span logits: the padding position (huge logits in both) is ignored; the end logits agree.
    mask = torch.tensor([[1, 1, 0]])
    start_t, start_s = torch.tensor([[2.0, 0.0, 9.0]]), torch.tensor([[0.0, 0.0, -5.0]])
    end = torch.tensor([[0.3, 0.1, 7.0]])
    span = prediction_loss((start_t, end), (start_s, end), t, mask)
    assert span.item() == pytest.approx(kl(softmax([1.0, 0.0]), [0.5, 0.5]) * t * t / 2, rel=1e-5)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("task", ["text-classification", "question-answering"])
def test_losses_vanish_for_the_teacher_itself_and_not_otherwise(version, task):
    teacher, other = tiny_model(task, seed=0), tiny_model(task, seed=1)
    ids = torch.randint(3, 50, (3, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    config = DistillConfig(version=version, relation_heads=2, task_weight=0.0, temperature=2.0)
    loss_fn = distill_loss_fn(teacher, task, config)
    with torch.no_grad():
        total_same, parts_same = loss_fn(teacher, batch)
        _, parts_other = loss_fn(other, batch)
    expected_parts = {"attention", "value_relation", "prediction"} if version == "v1" else {"relation", "prediction"}
    assert set(parts_same) == set(parts_other) == expected_parts
    assert total_same.item() == pytest.approx(0.0, abs=1e-6)
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in parts_same.values())
    assert all(value > 1e-4 for value in parts_other.values())


def test_v2_distillation_trains_a_narrower_student_with_fewer_heads():
    teacher = tiny_model(layers=2, hidden=32, heads=4, seed=0)
    student = tiny_model(layers=1, hidden=16, heads=2, seed=1).train()
    config = DistillConfig(version="v2", relation_heads=2, teacher_layer=1, task_weight=0.0)
    check_pair(teacher, student, config)
    loss_fn = distill_loss_fn(teacher, "text-classification", config)
    ids = torch.randint(3, 50, (8, 12), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _parts = loss_fn(student, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(version="v3"), "choose v1 or v2"),
        (dict(relation_heads=0), "positive count"),
        (dict(teacher_layer=0), "numbered from 1"),
        (dict(temperature=0.0), "positive number"),
        (dict(prediction_weight=-1.0), "prediction_weight=-1.0"),
        (dict(relation_weight=0.0, prediction_weight=0.0, task_weight=0.0), "every v2 loss weight is 0"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**kwargs)


def test_pairing_errors():
    teacher, fewer_heads = tiny_model(heads=4), tiny_model(hidden=24, heads=2)
    with pytest.raises(ConfigError, match="Use version v2"):
        check_pair(teacher, fewer_heads, DistillConfig(version="v1"))
    with pytest.raises(ConfigError, match="do not divide the student's hidden size 24"):
        check_pair(teacher, fewer_heads, DistillConfig(version="v2", relation_heads=16))
    with pytest.raises(ConfigError, match="the teacher has 2 layers"):
        check_pair(teacher, fewer_heads, DistillConfig(version="v2", teacher_layer=3))
    with pytest.raises(ConfigError, match="differs from student task"):
        check_pair(teacher, tiny_model("question-answering"), DistillConfig())


FIXTURES = Path(__file__).parents[1] / "fixtures"
WORDS = "the a of and to is it in that this with for as no not film movie story its about human nature".split()


def tiny_vocab(folder: Path) -> Path:
    """A WordPiece vocab.txt inside the tiny checkpoints' 120 ids; other words read as [UNK]."""
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ",", "?"]) + "\n")
    return vocab


@pytest.mark.parametrize("assistant", [False, True])
def test_distill_command_writes_student_and_metrics(tiny_checkpoint, tmp_path, assistant):
    from qla_sdk.cli import main

    teacher, _ = tiny_checkpoint("bert", "text-classification")
    data = FIXTURES / "sst2_tiny.tsv"
    out = tmp_path / "out"
    args = ["distill", "--teacher", str(teacher), "--student-config", "layers=1,hidden=16,heads=2"]
    args += ["--train", str(data), "--eval", str(data), "--tokenizer", str(tiny_vocab(tmp_path))]
    args += ["--output", str(out), "--max-steps", "2", "--batch-size", "4", "--checkpoint-every", "0"]
    args += ["--no-progress", "--no-bf16", "--relation-heads", "2", "--eval-teacher"]
    assert main(args + (["--assistant"] if assistant else [])) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["eval"]) == {"accuracy", "f1"} and set(metrics["teacher_eval"]) == {"accuracy", "f1"}
    assert metrics["student"]["layers"] == 1 and metrics["steps"] == 2
    student = from_pretrained(out / "final")
    assert (student.num_layers, student.config.hidden_size) == (1, 16)
    meta = json.loads((out / "final" / "qla.json").read_text())
    assert meta["distillation"]["version"] == "v2" and "length_adaptive" not in meta
    if assistant:
        assert metrics["assistant"]["layers"] == 2 and metrics["assistant"]["hidden_size"] == 16
        assert set(metrics["assistant_eval"]) == {"accuracy", "f1", "train_loss"}
        assert from_pretrained(out / "assistant" / "final").num_layers == 2


def test_without_a_progress_bar_the_command_prints_its_loss_records(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """--no-progress used to print nothing until the end of an hours-long run: the records went to a logger no
    command had given a handler."""
    import logging

    from qla_sdk.cli import main

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a shell; pytest gives the root logger its own
    teacher, _ = tiny_checkpoint("bert", "text-classification")
    data = str(FIXTURES / "sst2_tiny.tsv")
    args = ["distill", "--teacher", str(teacher), "--student-config", "layers=1,hidden=16,heads=2"]
    args += ["--train", data, "--eval", data, "--tokenizer", str(tiny_vocab(tmp_path)), "--no-progress"]
    args += ["--max-steps", "2", "--batch-size", "4", "--checkpoint-every", "0", "--no-bf16", "--relation-heads", "2"]
    assert main([*args, "--output", str(tmp_path / "o"), "--log-every", "1"]) == 0
    err = capsys.readouterr().err
    assert "qla distill: step 1/2 (epoch 0): loss " in err and "qla distill: step 2/2" in err
    assert not logging.getLogger("qla_sdk.train").handlers  # the command's handler is gone after it
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])  # a caller's logging is its own
    assert main([*args, "--output", str(tmp_path / "p"), "--log-every", "1"]) == 0
    assert "step 2/2" not in capsys.readouterr().err


@pytest.mark.parametrize("student_kind", ["random", "pretrained"])
def test_the_assistant_is_suggested_for_random_students_only(tiny_checkpoint, tmp_path, capsys, student_kind):
    """A random assistant trained on task data only would be a weaker teacher than the teacher for a pretrained
    student; the hint used to appear for every student of at most half the teacher's size."""
    from qla_sdk.cli import main
    from qla_sdk.modeling import save_pretrained
    from qla_sdk.train.student import StudentShape, student_from_shape

    teacher, _ = tiny_checkpoint("bert", "text-classification")
    data = FIXTURES / "sst2_tiny.tsv"
    args = ["distill", "--teacher", str(teacher), "--train", str(data), "--eval", str(data)]
    args += ["--tokenizer", str(tiny_vocab(tmp_path)), "--output", str(tmp_path / "out"), "--max-steps", "1"]
    args += ["--batch-size", "4", "--checkpoint-every", "0", "--no-progress", "--no-bf16", "--relation-heads", "2"]
    if student_kind == "random":
        args += ["--student-config", "layers=1,hidden=16,heads=2"]
    else:
        pretrained = student_from_shape(from_pretrained(teacher), StudentShape(1, 16, 2, 32), seed=0)
        save_pretrained(pretrained, tmp_path / "pretrained")
        args += ["--student", str(tmp_path / "pretrained")]
    assert main(args) == 0
    assert ("teacher assistant (--assistant)" in capsys.readouterr().out) is (student_kind == "random")


def test_a_student_from_a_checkpoint_records_the_columns_of_its_own_training(tiny_checkpoint, tmp_path):
    """The columns a student's qla.json records are those distillation read, not its initial checkpoint's."""
    from qla_sdk.cli import main
    from qla_sdk.modeling import save_pretrained
    from qla_sdk.train.student import StudentShape, student_from_shape

    teacher, _ = tiny_checkpoint("bert", "text-classification")
    pretrained = student_from_shape(from_pretrained(teacher), StudentShape(1, 16, 2, 32), seed=0)
    save_pretrained(pretrained, tmp_path / "pretrained", extra={"text_columns": ["title"], "label_column": "verdict"})
    data = str(FIXTURES / "sst2_tiny.tsv")
    args = ["distill", "--teacher", str(teacher), "--student", str(tmp_path / "pretrained"), "--train", data]
    args += ["--eval", data, "--tokenizer", str(tiny_vocab(tmp_path)), "--output", str(tmp_path / "out")]
    args += ["--max-steps", "1", "--batch-size", "4", "--checkpoint-every", "0", "--no-progress", "--no-bf16"]
    assert main([*args, "--relation-heads", "2"]) == 0
    meta = json.loads((tmp_path / "out" / "final" / "qla.json").read_text())
    assert (meta["text_columns"], meta["label_column"]) == (["sentence"], "label")


def test_distill_command_refuses_v1_across_head_counts(tiny_checkpoint, tmp_path, capsys):
    from qla_sdk.cli import main

    teacher, _ = tiny_checkpoint("bert", "text-classification")
    data = str(FIXTURES / "sst2_tiny.tsv")
    args = ["distill", "--teacher", str(teacher), "--student-config", "layers=1,hidden=16,heads=2", "--version", "v1"]
    args += ["--train", data, "--eval", data, "--output", str(tmp_path / "out")]
    assert main(args) == 2
    assert "Use version v2 (--version v2, distill.minilm.version)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
