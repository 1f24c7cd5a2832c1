"""The recipe file: the task, the data, the teacher, the student, and each stage's options side by side.

Every section is a small dataclass; stage sections hold the library's own configs (``DistillConfig``,
``LatConfig``, ``QuantConfig``; ``search`` is a ``SearchConfig``) next to a ``train`` section (a ``TrainConfig``, whose
output folder and resumption the recipe sets for each stage). The same dataclasses make the flags of the stages'
commands (``qla_sdk.options``), so an option is written once. ``load_recipe`` validates the whole file with
``qla_sdk.config.from_dict`` before any work starts: an unknown key or a bad value raises ``ConfigError`` naming
it (``recipe.yaml.distill.minilm: unknown key 'versoin'; did you mean 'version'?``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qla_sdk.config import from_dict, load_yaml
from qla_sdk.data.columns import check_text_columns
from qla_sdk.errors import ConfigError
from qla_sdk.options import option
from qla_sdk.quantize.config import QuantConfig, check_seq_lens
from qla_sdk.search.config import SearchConfig, check_drop_scale
from qla_sdk.train.augment import AugmentConfig
from qla_sdk.train.config import TrainConfig
from qla_sdk.train.distill import DistillConfig
from qla_sdk.train.length_drop import LatConfig

PRETRAINED_MINILM = "pretrained:minilm"  # the verified MiniLM-L6-H384 shipped with the SDK (qla_sdk.pretrained)
_DATA_SUFFIXES = (".json", ".jsonl", ".tsv", ".csv", ".txt")


@dataclass
class DataSection:
    """Files, folders (GLUE-style, ``dev.tsv`` for eval) or ``datasets`` names; in a recipe, relative paths are read
    from the recipe file's folder first, then from the working directory. Also the data flags of ``qla finetune``,
    ``qla distill`` and ``qla lat-train`` (``qla_sdk.options``)."""

    train: str = option(help="training data: SQuAD JSON, TSV/CSV/JSON file, GLUE-style folder, or a datasets name")
    eval: str = option(help="evaluation data, same kinds as --train")
    text_columns: list[str] | None = field(default=None, metadata={"help": "classification text column(s), 1 or 2"})
    label_column: str = option("label", "classification label column (default %(default)s)")
    max_length: int | None = option(None, "tokens per input (default 384 for QA, 128 otherwise)")
    doc_stride: int = option(128, "QA: overlap of context windows (default %(default)s)")

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"max_length={self.max_length}: must be >= 8")
        if self.doc_stride < 1:
            raise ConfigError(f"doc_stride={self.doc_stride}: must be >= 1 token (default 128)")
        check_text_columns(self.text_columns)


@dataclass
class TeacherSection:
    """``model``: a checkpoint folder, a hub id, or ``pretrained:minilm``. ``finetune``: how to fine-tune it on the
    task first; null when it is fine-tuned already (the stage then only scores it)."""

    model: str
    tokenizer: str | None = None  # default: the model's folder
    finetune: TrainConfig | None = field(default_factory=TrainConfig)

    @property
    def tokenizer_source(self) -> str:
        """Where every stage reads the tokenizer from."""
        return self.tokenizer or self.model


@dataclass
class StudentSection:
    """Exactly one of: ``init_layers`` (teacher embeddings + these 0-based layers + head), ``shape``
    (``layers=4,hidden=256,heads=4``, random) or ``checkpoint`` (a pretrained student such as MiniLM)."""

    init_layers: list[int] | None = None
    shape: str | None = None
    checkpoint: str | None = None
    assistant: bool = False  # distil through a teacher assistant (teacher depth, student width)

    def __post_init__(self) -> None:
        given = [k for k in ("init_layers", "shape", "checkpoint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"give exactly one of init_layers, shape, checkpoint (got {', '.join(given) or 'none'}), "
                "e.g. init_layers: [0, 2, 4]"
            )
        if self.shape is not None:
            from qla_sdk.train.student import StudentShape

            StudentShape.parse(self.shape)
        if self.init_layers is not None and (not self.init_layers or min(self.init_layers) < 0):
            raise ConfigError(f"init_layers={self.init_layers}: give 0-based teacher layers, e.g. [0, 2, 4]")


@dataclass
class DistillSection:
    minilm: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # copies 0: the training data as it is


@dataclass
class LatSection:
    length_adaptive: LatConfig = field(default_factory=LatConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    use_teacher: bool = True  # the full model also distils from the fine-tuned teacher (teacher_weight)


@dataclass
class BenchmarkSection:
    """Batch-1 latency of the teacher (FP32 eager), the final artifact and the students on one dev row of median
    length as each is served (eager models unpadded, the artifact at its graph length); ``seq_len`` pads every
    model's row to that length instead (a fixed-shape comparison). Each model makes ``runs`` timed calls, spread
    over ``rounds`` interleaved rounds (the models in turn, the order rotated per round), so that a slow spell of
    the machine does not fall on one model only; each turn starts with ``round_warmup`` untimed calls, since the
    first calls after another model ran find the caches cold (``timing.interleaved_latency``)."""

    runs: int = 50
    warmup: int = 10
    rounds: int = 5
    round_warmup: int = 3
    threads: int | None = None
    seq_len: int | None = None

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.round_warmup < 0:
            raise ConfigError(
                f"runs={self.runs}, warmup={self.warmup}, round_warmup={self.round_warmup}: need runs >= 1 and "
                "warmup, round_warmup >= 0"
            )
        if self.rounds < 1 or self.rounds > self.runs:
            raise ConfigError(
                f"rounds={self.rounds}, runs={self.runs}: need 1 <= rounds <= runs (every model is timed at least "
                "once per round); lower rounds or raise runs"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads={self.threads}: must be >= 1, or null for torch's default")


@dataclass
class RecipeConfig:
    task: Literal["question-answering", "text-classification"]
    data: DataSection
    teacher: TeacherSection
    # null: no distillation; the fine-tuned teacher itself is the model made length-adaptive, searched and quantized
    # (compressing an already small model such as MiniLM; the ``distill`` section is then unused).
    student: StudentSection | None
    distill: DistillSection = field(default_factory=DistillSection)
    lat: LatSection = field(default_factory=LatSection)
    search: SearchConfig = field(default_factory=SearchConfig)
    quantize: QuantConfig = field(default_factory=QuantConfig)
    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    name: str = "recipe"

    def __post_init__(self) -> None:
        from qla_sdk.search.job import METRICS

        sections = {"teacher.finetune": self.teacher.finetune, "distill.train": self.distill.train}
        sections["lat.train"] = self.lat.train
        for where, train in sections.items():
            if train is not None and (train.output_dir is not None or train.resume):
                raise ConfigError(
                    f"{where}: output_dir and resume are set by the recipe for each stage (its folder in --output, "
                    "resumed when a run was interrupted); remove them"
                )

        if self.search.metric is not None and self.search.metric not in METRICS[self.task]:
            raise ConfigError(
                f"search.metric={self.search.metric!r} is not a {self.task} metric; choose one of "
                f"{', '.join(METRICS[self.task])}"
            )
        # a drop meant in points on a classifier's accuracy (a fraction): refused or warned here, not after training
        check_drop_scale(self.search.max_metric_drop, self.task, self.search.metric or METRICS[self.task][0])
        if self.task == "question-answering" and self.data.doc_stride > self.max_length // 2:
            # the search and the artifact cut windows with at most half the length (qa_doc_stride): refused here,
            # not after hours of training
            raise ConfigError(
                f"data.doc_stride={self.data.doc_stride} is more than half of data.max_length ({self.max_length}): "
                f"give a doc_stride of at most {self.max_length // 2}, or a longer max_length"
            )
        if self.quantize.seq_lens:  # the export checks them too, but only when the quantize stage runs, after hours
            q = self.quantize
            try:
                check_seq_lens(q.seq_lens, self.max_length, q.is_int8, names=("quantize.seq_lens", "data.max_length"))
            except ConfigError as exc:
                unset = "" if self.data.max_length else f"; data.max_length is unset: {self.task}'s default"
                raise ConfigError(
                    f"{exc} (or set quantize.seq_lens to null: graphs up to data.max_length{unset})"
                ) from None

    @property
    def max_length(self) -> int:
        return self.data.max_length or (384 if self.task == "question-answering" else 128)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read and validate a recipe file; ``overrides`` are ``section.key=value`` (value read as YAML), e.g.
    ``data.train=/data/SST-2`` or ``lat.train.epochs=1``. Relative paths are resolved (see ``DataSection``)."""
    path = Path(path)
    data = load_yaml(path)
    for item in overrides:
        apply_override(data, item)
    try:
        recipe = from_dict(RecipeConfig, data, where=path.name)
    except ConfigError as exc:
        raise _blame_override(exc, path.name, overrides) from None
    recipe = resolve_paths(recipe, path.parent)
    _check_against_teacher(recipe)
    return recipe


def _check_against_teacher(recipe: RecipeConfig) -> None:
    """What the teacher's config.json decides, checked before the teacher stage trains for minutes or hours: the
    layers a student takes from it, the input length its position embeddings cover, the full-length layers LAT keeps
    of the model it trains, and the shapes distillation compares. (A hub id is checked when the stage loads it.)"""
    student = recipe.student
    if student is not None and student.init_layers:
        _check_full_length_layers(recipe, len(student.init_layers))
    if student is not None and student.shape:
        from qla_sdk.train.student import StudentShape

        _check_full_length_layers(recipe, StudentShape.parse(student.shape).num_layers)
    config = _read_config(recipe.teacher.model)
    _check_distill(recipe, config)
    if config is None:
        return
    layers = config.get("num_hidden_layers")
    if student is None and isinstance(layers, int):  # the fine-tuned teacher itself is made length-adaptive
        _check_full_length_layers(recipe, layers)
    if student is not None and student.init_layers and isinstance(layers, int) and max(student.init_layers) >= layers:
        raise ConfigError(
            f"student.init_layers={student.init_layers}: the teacher {recipe.teacher.model} has layers 0..{layers - 1}"
        )
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and config.get("model_type") == "roberta":
        positions -= int(config.get("pad_token_id", 1)) + 1
    if isinstance(positions, int) and recipe.max_length > positions:
        raise ConfigError(
            f"data.max_length={recipe.max_length}: the teacher {recipe.teacher.model} takes at most {positions} "
            f"tokens; set data.max_length to {positions} or less"
        )


def _read_config(folder: str | None) -> dict | None:
    """A local checkpoint's config.json; None for a hub id or an unreadable file (the stage that loads it names the
    problem)."""
    import json

    file = Path(folder) / "config.json" if folder else None
    if file is None or not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) else None


def _check_distill(recipe: RecipeConfig, teacher: dict | None) -> None:
    """What the distill stage refuses when it starts, after the teacher's fine-tuning, decided here from the
    shapes: the teacher layer to distil from, MiniLM v1's equal head counts, v2's relation heads dividing both
    widths, and a teacher assistant only for a student it helps; augmented copies only with a student, the
    prediction term and a WordPiece tokenizer."""
    from qla_sdk.train.distill import Dims, check_augment, check_shapes

    student = recipe.student
    if student is None:
        if recipe.distill.augment.enabled:
            raise ConfigError(
                f"distill.augment.copies={recipe.distill.augment.copies} but student: null, so no distillation "
                "runs: drop distill.augment, or give a student"
            )
        return
    if recipe.distill.augment.enabled:
        check_augment(recipe.distill.augment, recipe.distill.minilm)
        _check_augment_tokenizer(recipe.teacher.tokenizer_source)
    teacher_dims = Dims.of(teacher or {})
    if student.shape:
        from qla_sdk.train.student import StudentShape

        shape = StudentShape.parse(student.shape)
        student_dims = Dims(shape.num_layers, shape.hidden_size, shape.num_heads)
    elif student.init_layers:  # the teacher's own layers: its width and heads
        student_dims = Dims(len(student.init_layers), teacher_dims.hidden, teacher_dims.heads)
    else:
        student_dims = Dims.of(_read_config(student.checkpoint) or {})
    check_shapes(recipe.distill.minilm, teacher_dims, student_dims)
    if not student.assistant or student.checkpoint:
        return
    if student.init_layers:
        raise ConfigError(
            "student.assistant: a teacher assistant has the teacher's depth and the student's width, which for "
            "student.init_layers is the teacher itself; drop assistant, or give the student a narrower shape"
        )
    from types import SimpleNamespace

    from qla_sdk.train.student import needs_assistant

    shapes = [SimpleNamespace(num_hidden_layers=d.layers, hidden_size=d.hidden) for d in (teacher_dims, student_dims)]
    if None not in (teacher_dims.layers, teacher_dims.hidden) and not needs_assistant(*shapes):
        raise ConfigError(
            f"student.assistant: a teacher assistant helps only a student with at most half the teacher's layers "
            f"and hidden size; teacher {teacher_dims.layers} x {teacher_dims.hidden}, student {student.shape}. "
            "Drop assistant and distil directly"
        )


def _check_augment_tokenizer(source: str) -> None:
    """Distillation augmentation tells words apart by WordPiece's ``##`` pieces: a local tokenizer of another kind
    is refused here, not after the teacher's fine-tuning (a hub id, when the stage loads it). Like the stage, it
    reads ``teacher.tokenizer``, else the teacher's folder."""
    if not Path(source).exists():
        return
    from qla_sdk.data import load_tokenizer
    from qla_sdk.train.augment import continuing_prefix

    continuing_prefix(load_tokenizer(source))


def _check_full_length_layers(recipe: RecipeConfig, layers: int) -> None:
    for name, value in (
        ("lat.length_adaptive.full_length_layers", recipe.lat.length_adaptive.full_length_layers),
        ("search.evolution.full_length_layers", recipe.search.evolution.full_length_layers),
    ):
        if value is not None and value >= layers:
            raise ConfigError(
                f"{name}={value}: the model the lat stage trains has {layers} layers, and keeping all of them whole "
                f"drops no token; give at most {layers - 1}"
            )


def _blame_override(exc: ConfigError, file: str, overrides: Sequence[str]) -> ConfigError:
    """``exc`` naming the ``--set`` that gave the bad key or value instead of the recipe file, which never held it
    (``from_dict`` gives the key an error concerns as ``exc.key``, under ``<file>.``)."""
    key = getattr(exc, "key", None) or ""
    if not key.startswith(f"{file}."):
        return exc
    key = key[len(file) + 1 :]
    message = str(exc)
    for item in reversed(overrides):  # the last --set of a key is the one in effect
        given = item.partition("=")[0].strip()
        field = given[len(key) + 1 :] if given.startswith(f"{key}.") else ""
        if (
            key == given
            or key.startswith(f"{given}.")  # a key inside a section the --set gave whole
            or (field.isidentifier() and re.search(rf"\b{field}\b", message))  # the section's check names its field
        ):
            place = message[len(file) :].lstrip(".:").lstrip()
            return ConfigError(f"--set {item!r}: {place}")
    return exc


def apply_override(data: dict, item: str) -> None:
    """Set ``section.key=value`` in ``data`` (a loaded recipe) in place; only the sections on that path change,
    even where the file shares them with others through a YAML anchor."""
    import yaml

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: write section.key=value, e.g. data.train=/data/SST-2")
    *parents, last = key.strip().split(".")
    node = data
    for name in parents:
        child = node.get(name)
        if child is None:  # a section the file leaves out (or as null, student: null) is filled in by the override
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {name!r} holds a value, not a section")
        # A copy: sections sharing a YAML anchor (`distill: {train: *train}`) are one dict in what yaml loaded, and
        # writing into it would change every section that names the anchor, not only the one given.
        node[name] = child = dict(child)
        node = child
    try:
        node[last] = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from None


def resolve_paths(recipe: RecipeConfig, base: Path) -> RecipeConfig:
    """Relative paths that exist beside the recipe file point there; ``pretrained:minilm`` to the shipped model.
    A local-looking path that exists nowhere is an error now, not after an hour of training."""

    def resolve(value: str | None, key: str) -> str | None:
        if value is None:
            return None
        if not value.strip():  # Path("") is the current folder, which exists
            raise ConfigError(f"{key}: empty path: give a file, folder or name, or leave the key out")
        if value == PRETRAINED_MINILM:
            from qla_sdk.pretrained import minilm_path

            return str(minilm_path())
        candidate = Path(value).expanduser()
        if not candidate.is_absolute() and (base / candidate).exists():
            return str((base / candidate).resolve())
        if candidate.exists():
            return str(candidate.resolve())
        if candidate.suffix in _DATA_SUFFIXES or value.startswith((".", "/", "~")) or value.count("/") > 1:
            raise ConfigError(f"{key}: {value!r} does not exist (relative paths are read from {base} or the cwd)")
        return value  # a hub id or a datasets name

    recipe.data.train = resolve(recipe.data.train, "data.train")
    recipe.data.eval = resolve(recipe.data.eval, "data.eval")
    recipe.teacher.model = resolve(recipe.teacher.model, "teacher.model")
    recipe.teacher.tokenizer = resolve(recipe.teacher.tokenizer, "teacher.tokenizer")
    if recipe.student is not None:
        recipe.student.checkpoint = resolve(recipe.student.checkpoint, "student.checkpoint")
    return recipe
