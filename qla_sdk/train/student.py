"""Where a student starts: a random model of a given shape, a subset of its teacher's layers, or a checkpoint.

And the teacher-assistant rule (MiniLM): a student with at most half the teacher's depth *and* width learns better
through an assistant of the teacher's depth and the student's width, distilled from the teacher first.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import TaskModel, from_pretrained, init_weights

_KEYS = {"layers": "num_layers", "hidden": "hidden_size", "heads": "num_heads", "intermediate": "intermediate_size"}


@dataclass(frozen=True)
class StudentShape:
    """Depth and width of a model built from a config; ``intermediate_size`` defaults to 4 x hidden."""

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
            value = getattr(self, name)
            if value is None and name == "intermediate_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"student {name}={value!r}: must be a positive integer")
        if self.hidden_size % self.num_heads:
            # The largest head count up to 12 that divides the hidden size (1 always does).
            heads = max(h for h in range(1, 13) if self.hidden_size % h == 0)
            raise ConfigError(
                f"student hidden size {self.hidden_size} is not divisible by {self.num_heads} heads: choose heads "
                f"that divide it (e.g. {heads} heads of {self.hidden_size // heads})"
            )

    @property
    def intermediate(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @classmethod
    def parse(cls, text: str) -> StudentShape:
        """``"layers=4,hidden=256,heads=4[,intermediate=1024]"``, or a config.json file (or its folder)."""
        path = Path(text)
        if path.is_dir():
            path = path / "config.json"
        if path.is_file():
            config = json.loads(path.read_text())
            return cls(
                config["num_hidden_layers"],
                config["hidden_size"],
                config["num_attention_heads"],
                config.get("intermediate_size"),
            )
        values: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in _KEYS or not value.strip().isdigit():
                raise ConfigError(
                    f"student config {text!r}: cannot read {item!r}; write e.g. layers=4,hidden=256,heads=4"
                    ",intermediate=1024 or give a config.json path"
                )
            values[_KEYS[key.strip()]] = int(value)
        missing = [k for k, v in _KEYS.items() if v not in values and k != "intermediate"]
        if missing:
            raise ConfigError(f"student config {text!r} lacks {', '.join(missing)}; e.g. layers=4,hidden=256,heads=4")
        return cls(**values)

    def apply(self, base_config):
        """A copy of ``base_config`` (vocabulary, positions, labels, family) with this depth and width."""
        config = copy.deepcopy(base_config)
        config.num_hidden_layers = self.num_layers
        config.hidden_size = self.hidden_size
        config.num_attention_heads = self.num_heads
        config.intermediate_size = self.intermediate
        return config


def student_from_shape(teacher: TaskModel, shape: StudentShape, seed: int | None = None) -> TaskModel:
    """A randomly initialised model of ``shape`` sharing the teacher's vocabulary, task and labels."""
    return init_weights(TaskModel(shape.apply(teacher.config), teacher.task), seed=seed)


def student_from_layers(source: TaskModel, layers: Sequence[int]) -> TaskModel:
    """A shallower copy of ``source``: its embeddings, the layers at the given 0-based indices, and its head.

    Copying keeps the width, so the source must be as wide as the student is meant to be: the teacher, or with a
    teacher assistant the assistant (teacher depth, student width).
    """
    layers = list(layers)
    n = source.num_layers
    if not layers:
        raise ConfigError("init layers are empty: give the 0-based teacher layers to copy, e.g. 0,2,4")
    if any(not 0 <= i < n for i in layers):
        raise ConfigError(f"init layers {layers}: the source has layers 0..{n - 1}")
    if any(b <= a for a, b in itertools.pairwise(layers)):
        raise ConfigError(f"init layers {layers} must be strictly increasing (each layer once, in order)")
    config = copy.deepcopy(source.config)
    config.num_hidden_layers = len(layers)
    student = TaskModel(config, source.task)
    student.encoder.embeddings.load_state_dict(source.encoder.embeddings.state_dict())
    for j, i in enumerate(layers):
        student.encoder.layers[j].load_state_dict(source.encoder.layers[i].state_dict())
    student.head.load_state_dict(source.head.state_dict())
    return student


def parse_layers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"init layers {text!r}: write 0-based layer indices, e.g. 0,2,4") from None


def student_from_checkpoint(path: str | Path, teacher: TaskModel, seed: int | None = None) -> TaskModel:
    """A pretrained student (e.g. MiniLM) with the teacher's task and labels; a missing head starts random, drawn
    from ``seed``."""
    labels = None
    if teacher.task != "question-answering":
        labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    return from_pretrained(path, task=teacher.task, labels=labels, seed=seed)


def needs_assistant(teacher_config, student_config, random_student: bool = True) -> bool:
    """MiniLM's rule: use a teacher assistant when the student has at most half the teacher's layers and hidden size.
    Only for a randomly initialised student (``random_student``): the SDK's assistant starts random and learns from
    task data only, so it would be a much weaker teacher than the teacher itself for a pretrained student or one
    copied from the teacher's layers."""
    return (
        random_student
        and 2 * student_config.num_hidden_layers <= teacher_config.num_hidden_layers
        and 2 * student_config.hidden_size <= teacher_config.hidden_size
    )


def assistant_shape(teacher_config, student_config) -> StudentShape:
    """The assistant: the teacher's depth, the student's width (hidden size, heads, feed-forward size)."""
    return StudentShape(
        teacher_config.num_hidden_layers,
        student_config.hidden_size,
        student_config.num_attention_heads,
        student_config.intermediate_size,
    )


def build_assistant(teacher: TaskModel, student: TaskModel, seed: int | None = None) -> TaskModel:
    """A random assistant for distilling ``teacher`` into ``student``; raises unless the MiniLM rule holds."""
    tc, sc = teacher.config, student.config
    if not needs_assistant(tc, sc):
        raise ConfigError(
            f"a teacher assistant helps only a student with at most half the teacher's layers and hidden size; "
            f"teacher {tc.num_hidden_layers} layers x {tc.hidden_size}, student {sc.num_hidden_layers} x "
            f"{sc.hidden_size}. Drop --assistant and distil directly"
        )
    return student_from_shape(teacher, assistant_shape(tc, sc), seed)
