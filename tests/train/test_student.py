"""Student initialisation (shape, teacher layers, checkpoint) and the teacher-assistant rule."""

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import TaskModel, from_pretrained, init_weights
from qla_sdk.train.student import (
    StudentShape,
    assistant_shape,
    build_assistant,
    needs_assistant,
    parse_layers,
    student_from_checkpoint,
    student_from_layers,
    student_from_shape,
)


def teacher_model(layers=4, hidden=32, heads=4, task="text-classification"):
    config = BertConfig(
        vocab_size=60,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=64,
        max_position_embeddings=32,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    torch.manual_seed(0)
    return init_weights(TaskModel(config, task)).eval()


def sizes(c):
    return SimpleNamespace(num_hidden_layers=c[0], hidden_size=c[1])


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("layers=4,hidden=256,heads=4", StudentShape(4, 256, 4)),
        ("layers=6, hidden=384, heads=12, intermediate=1536", StudentShape(6, 384, 12, 1536)),
    ],
)
def test_shape_parse(text, shape):
    assert StudentShape.parse(text) == shape
    assert StudentShape(4, 256, 4).intermediate == 1024


def test_shape_parse_config_json(tmp_path):
    config = {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 3, "intermediate_size": 96}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert StudentShape.parse(str(tmp_path)) == StudentShape(3, 48, 3, 96)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layers=4,hidden=256", "lacks heads"),
        ("layers=4,width=256,heads=4", "cannot read 'width=256'"),
        ("layers=4,hidden=100,heads=3", "not divisible by 3 heads"),
        ("layers=0,hidden=64,heads=4", "num_layers=0"),
    ],
)
def test_shape_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        StudentShape.parse(text)


def test_student_from_shape_keeps_vocabulary_and_labels():
    teacher = teacher_model()
    student = student_from_shape(teacher, StudentShape(2, 16, 2), seed=3)
    again = student_from_shape(teacher, StudentShape(2, 16, 2), seed=3)
    c = student.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 16, 2, 64)
    assert c.vocab_size == 60 and c.id2label == teacher.config.id2label and student.task == teacher.task
    assert teacher.config.num_hidden_layers == 4  # the teacher's config is copied, not changed
    assert all(
        torch.equal(a, b) for a, b in zip(student.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_student_from_all_layers_is_the_teacher():
    teacher = teacher_model()
    ids = torch.randint(3, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    copy = student_from_layers(teacher, [0, 1, 2, 3]).eval()
    with torch.no_grad():
        assert torch.equal(copy(ids), teacher(ids))


def test_student_from_layer_subset_copies_those_layers():
    teacher = teacher_model()
    student = student_from_layers(teacher, [0, 2])
    assert student.num_layers == 2 and teacher.num_layers == 4
    for j, i in enumerate([0, 2]):
        for a, b in zip(student.encoder.layers[j].parameters(), teacher.encoder.layers[i].parameters(), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(student.encoder.embeddings.word.weight, teacher.encoder.embeddings.word.weight)
    assert torch.equal(student.head.out.weight, teacher.head.out.weight)
    student.encoder.embeddings.word.weight.data.zero_()  # a copy, not shared storage
    assert teacher.encoder.embeddings.word.weight.abs().sum() > 0


@pytest.mark.parametrize(
    ("layers", "message"),
    [([], "empty"), ([0, 4], r"layers 0\.\.3"), ([2, 1], "strictly increasing"), ([1, 1], "strictly increasing")],
)
def test_layer_subset_errors(layers, message):
    with pytest.raises(ConfigError, match=message):
        student_from_layers(teacher_model(), layers)


def test_parse_layers():
    assert parse_layers("0,2, 4") == [0, 2, 4]
    with pytest.raises(ConfigError, match="0-based layer indices"):
        parse_layers("first,last")


def test_student_from_checkpoint_takes_the_teachers_labels(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "text-classification")
    teacher = from_pretrained(folder, labels=["neg", "pos"])
    student = student_from_checkpoint(folder, teacher)
    assert student.task == "text-classification" and student.config.id2label == {0: "neg", 1: "pos"}


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        ((12, 768), (6, 384), True),  # BERT-base -> MiniLM-L6-H384
        ((12, 768), (4, 256), True),
        ((12, 768), (6, 768), False),  # same width: distil directly
        ((12, 768), (7, 384), False),  # more than half the depth
        ((24, 1024), (12, 384), True),
    ],
)
def test_assistant_rule(teacher, student, expected):
    assert needs_assistant(sizes(teacher), sizes(student)) is expected
    # a pretrained student (or one copied from teacher layers) would learn from a weaker, random assistant
    assert needs_assistant(sizes(teacher), sizes(student), random_student=False) is False


def test_assistant_has_teacher_depth_and_student_width():
    teacher = teacher_model(layers=4, hidden=32, heads=4)
    student = student_from_shape(teacher, StudentShape(2, 16, 2, 48))
    shape = assistant_shape(teacher.config, student.config)
    assert shape == StudentShape(4, 16, 2, 48)
    assistant = build_assistant(teacher, student, seed=0)
    assert (assistant.num_layers, assistant.config.hidden_size) == (4, 16)
    with pytest.raises(ConfigError, match="at most half the teacher's layers and hidden size"):
        build_assistant(teacher, student_from_shape(teacher, StudentShape(3, 16, 2)))
