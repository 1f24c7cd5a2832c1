"""The exported folder: model files of one backend, tokenizer files, and ``qla.json`` (task, labels, length config,
lengths, backend, package versions, format version, sha256 of every file).

It is written into a temporary folder and renamed into place, so an interrupted export leaves nothing that looks
whole. Reading checks the format version, the type of every field the loaders use, that every recorded path stays
inside the folder, that every recorded file is there, every sha256, and that ``model/`` and ``tokenizer/`` hold no file
the manifest does not list (their loaders read whatever is there), before any model file is opened; model files
are safetensors, JSON graphs or OpenVINO IR, never pickles. See SECURITY.md for what this does and does not protect
against.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import reprlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from qla_sdk import machine
from qla_sdk.data.squad import qa_doc_stride
from qla_sdk.errors import CheckpointError, ConfigError, IntegrityError
from qla_sdk.io import atomic_dir, check_replaceable, sha256_file, write_json_atomic
from qla_sdk.modeling import TASKS, LengthConfig, TaskModel
from qla_sdk.modeling.checkpoint import valid_columns
from qla_sdk.modeling.heads import max_input_length

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FORMAT_VERSION = 1
MANIFEST = "qla.json"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
#: What an existing folder must hold for an export to replace it (``io.atomic_dir``): an earlier artifact.
ARTIFACT_MARKERS = (MANIFEST, MODEL_DIR, TOKENIZER_DIR)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSIONED = ("qla-sdk", "torch", "transformers", "neural-compressor", "openvino", "nncf", "tokenizers")


@dataclass(frozen=True)
class Manifest:
    folder: Path
    data: dict

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def labels(self) -> list[str] | None:
        return self.data.get("labels")

    @property
    def length_config(self) -> LengthConfig | None:
        return LengthConfig.parse(self.data.get("length_config"))

    @property
    def max_length(self) -> int:
        return int(self.data["max_length"])

    @property
    def doc_stride(self) -> int | None:
        """QA: the window overlap recorded at export (None for classification)."""
        return self.data.get("doc_stride")

    @property
    def text_columns(self) -> tuple[str, ...] | None:
        """Classification: the text column(s) training read, as recorded at export (None where the artifact does
        not record them: QA, or a model trained or exported before they were recorded)."""
        columns = self.data.get("text_columns")
        return tuple(columns) if columns is not None else None

    @property
    def label_column(self) -> str | None:
        """Classification: the label column training read (None where not recorded, like ``text_columns``)."""
        return self.data.get("label_column")

    @property
    def backend(self) -> str:
        return self.data["backend"]

    @property
    def model_dir(self) -> Path:
        return self.folder / MODEL_DIR

    @property
    def tokenizer_dir(self) -> Path:
        return self.folder / TOKENIZER_DIR


def package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def export_model(
    model: TaskModel,
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike,
    *,
    config=None,
    length_config: LengthConfig | str | None = "model",
    max_length: int | None = None,
    doc_stride: int | None = None,
    calibration: Sequence[dict] = (),
    evaluate=None,
    reference_model: TaskModel | None = None,
    extra: dict | None = None,
) -> Path:
    """Build ``model`` with ``config.backend`` (int8 quantization when it is an int8 backend) and write the folder.

    ``length_config="model"`` uses ``model.length_config`` (the searched one); ``None`` exports the full model.
    ``doc_stride`` (QA): the overlap of context windows the artifact serves with; default 128, at most half of
    ``max_length``.
    ``tokenizer``: a Hugging Face tokenizer, or the path of a tokenizer folder / ``vocab.txt`` (read with
    ``qla_sdk.data.load_tokenizer``).
    ``calibration``: unpadded feature rows (dicts with ``input_ids``/``token_type_ids``, e.g. the rows of
    ``qla_sdk.deploy.evaluation.task_rows``) for int8 calibration; int8 backends need some.
    ``evaluate(run, seq_len) -> metric`` turns on accuracy-aware tuning (see ``qla_sdk.quantize``).
    ``reference_model``: with ``config.tolerance_from='reference'``, the model whose metric the tolerance counts from.
    ``extra``: more manifest fields, e.g. the columns training read (``modeling.checkpoint.training_columns``), which
    ``qla eval`` then reads from a dev set.
    """
    from qla_sdk.backends import BuildRequest, get_backend
    from qla_sdk.quantize.config import QuantConfig, check_seq_lens, default_seq_lens

    check_replaceable(path, ARTIFACT_MARKERS, "an artifact")  # before minutes of quantization, not after
    config = config or QuantConfig()
    if isinstance(tokenizer, (str, os.PathLike)):
        from qla_sdk.data import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    elif not (hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "save_pretrained")):
        raise TypeError(
            f"tokenizer is a {type(tokenizer).__name__}: pass a Hugging Face tokenizer or the path of a tokenizer "
            "folder / vocab.txt"
        )
    # Rows are checked here, where the message can say what they must be, not deep inside a quantizer.
    if isinstance(calibration, (str, bytes, Mapping)) or not isinstance(calibration, Iterable):
        raise ConfigError(
            f"calibration is a {type(calibration).__name__} ({reprlib.repr(calibration)}): pass a list of feature "
            "rows (dicts of token ids with input_ids and token_type_ids, e.g. the rows of "
            "qla_sdk.deploy.evaluation.task_rows)"
        )
    calibration = list(calibration)
    for i, row in enumerate(calibration[: config.calibration_samples]):  # the rows a build reads
        if not (isinstance(row, Mapping) and _token_ids(row.get("input_ids"))):
            raise ConfigError(
                f"calibration row #{i} is a {type(row).__name__} ({reprlib.repr(row)}): rows must be dicts of token "
                "ids with input_ids (and token_type_ids), e.g. the rows of qla_sdk.deploy.evaluation.task_rows or "
                "qla_sdk.data.classification_features(...).row(i), not texts"
            )
    if config.is_int8 and not calibration:
        raise ConfigError(
            f"backend {config.backend} quantizes to int8 and needs calibration rows: pass calibration= (a few "
            "hundred feature rows of task examples; with qla export / qla quantize, --data)"
        )
    if len(tokenizer) > model.config.vocab_size:  # qla_sdk.load refuses it: not written, rather than unloadable
        raise ConfigError(
            f"the tokenizer has {len(tokenizer)} tokens and the model {model.config.vocab_size} word embeddings: ids "
            "past them have none. Export with the tokenizer the model was trained with"
        )
    lc = model.length_config if isinstance(length_config, str) and length_config == "model" else length_config
    lc = LengthConfig.parse(lc)
    if max_length is None:
        max_length = 384 if model.task == "question-answering" else 128
    limit = max_input_length(model.config)
    if not 2 <= max_length <= limit:
        raise ConfigError(f"max_length {max_length}: must lie in [2, {limit}] (the model's position embeddings)")
    if model.task == "question-answering":
        doc_stride = qa_doc_stride(max_length, tokenizer, doc_stride)
    seq_lens = config.seq_lens or default_seq_lens(max_length, lc is not None and lc.is_ratio)
    check_seq_lens(seq_lens, max_length, config.is_int8)
    if lc is not None:
        for seq_len in seq_lens if config.is_int8 else (max_length,):
            lc.check(model.num_layers, seq_len)
    if config.tolerance_from == "reference" and evaluate is not None and reference_model is None:
        raise ConfigError(
            "tolerance_from 'reference' counts the int8 tolerance from a reference model's metric, and none was "
            "given: pass reference_model (qla quantize --reference-model DIR), or use tolerance_from 'fp32'"
        )
    if reference_model is not None and config.tolerance_from != "reference":
        raise ConfigError(
            "a reference model was given but tolerance_from is 'fp32', so it would be ignored: set "
            "tolerance_from='reference', or give no reference model"
        )
    backend = get_backend(config.backend)
    request = BuildRequest(
        model=model.eval(),
        length_config=lc,
        seq_lens=tuple(seq_lens),
        config=config,
        calibration=list(calibration),
        pad_token_id=tokenizer.pad_token_id or 0,
        evaluate=evaluate,
        reference_model=reference_model.eval() if reference_model is not None else None,
    )
    built = backend.build(request)
    # rows the scales saw (QA: context windows, not questions); a float build reads none
    calibrated = {"calibration_rows": min(len(calibration), config.calibration_samples)} if config.is_int8 else {}
    report = backend.report(built) | calibrated
    if "int8_metric" in report:  # scored here: it holds for CPUs of this one's kernel classes (deploy.accuracy_check)
        report["checked_on"] = machine.kernel_classes()
    labels = None
    if model.task != "question-answering":
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with atomic_dir(path, ARTIFACT_MARKERS, "an artifact") as tmp:
        (tmp / MODEL_DIR).mkdir()
        entry = backend.save(built, tmp / MODEL_DIR)
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        manifest = {
            "format_version": FORMAT_VERSION,
            "task": model.task,
            "labels": labels,
            "length_config": lc.to_dict() if lc is not None else None,
            "max_length": max_length,
            "doc_stride": doc_stride if model.task == "question-answering" else None,
            "backend": backend.name,
            "precision": backend.precision,
            "model": entry,
            "build": report,
            "versions": package_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
            "files": {rel: sha256_file(tmp / rel) for rel in _files(tmp)},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return Path(path)


def _token_ids(ids: object) -> bool:
    """Whether ``ids`` is a non-empty 1-D run of integer token ids (a list, a numpy array or a CPU tensor)."""
    if ids is None or isinstance(ids, (str, bytes)):
        return False
    try:
        values = np.asarray(ids)
    except (TypeError, ValueError, RuntimeError):
        return False
    return values.ndim == 1 and values.size > 0 and values.dtype.kind in "iu"


def _files(folder: Path) -> list[str]:
    paths = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(rel for rel in paths if rel != MANIFEST)


def safe_path(folder: Path, rel: str) -> Path:
    """``folder / rel`` when ``rel`` is a plain relative path that stays inside ``folder`` (links included)."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or "\\" in rel or "\0" in rel or any(part in ("..", "") for part in pure.parts):
        raise CheckpointError(f"{folder / MANIFEST} lists path {rel!r}, which leaves the artifact folder; refused")
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise CheckpointError(f"{folder / MANIFEST}: {rel!r} resolves to {target}, outside the artifact; refused")
    return target


def read_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Read ``qla.json``; with ``verify`` check every file's sha256, without only that each is there
    (``IntegrityError`` naming the file)."""
    folder = Path(path)
    file = folder / MANIFEST
    if not folder.exists():
        raise CheckpointError(f"{folder} does not exist: give the folder `qla export` or `qla quantize` wrote")
    if folder.is_file():
        where = f"its folder, {folder.parent}" if folder.name == MANIFEST else f"the folder holding {MANIFEST}"
        raise CheckpointError(f"{folder} is a file: give {where}, which `qla export` or `qla quantize` wrote")
    if not file.is_file():
        raise CheckpointError(
            f"{folder} is not an exported artifact (no {MANIFEST}); create one with `qla export` or `qla quantize`"
        )
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON ({exc}); export the model again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} holds {type(data).__name__}, not an object; export the model again")
    found = data.get("format_version")
    if found is None and (folder / "config.json").is_file() and not (folder / MODEL_DIR).is_dir():
        raise CheckpointError(
            f"{folder} is a model checkpoint (config.json, weights and its own {MANIFEST}), not an exported "
            "artifact: export it first with `qla export` or `qla quantize`"
        )
    if not isinstance(found, int) or found < 1:
        raise CheckpointError(f"{file}: format_version {found!r} is not a positive integer")
    if found > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has artifact format {found}, newer than this qla-sdk reads ({FORMAT_VERSION}): upgrade qla-sdk"
        )
    missing = [k for k in ("task", "backend", "max_length", "model", "files") if k not in data]
    if missing:
        raise CheckpointError(f"{file} lacks {', '.join(missing)}; export the model again")
    _check_fields(file, data)
    files = data["files"]
    for rel in files:
        safe_path(folder, rel)
    model_files = data["model"].get("files") or []
    for rel in model_files:
        safe_path(folder / MODEL_DIR, rel)
        if f"{MODEL_DIR}/{rel}" not in files:
            raise CheckpointError(f"{file}: model file {rel!r} has no recorded sha256; refused")
    for n in data["model"].get("seq_lens") or []:  # graph loaders open seq{n}.*, whatever model.files lists
        if model_files and not any(rel.startswith(f"seq{n}.") for rel in model_files):
            raise CheckpointError(
                f"{file}: model.seq_lens lists {n}, and model.files has no graph for it (seq{n}.*); restore the "
                f"{MANIFEST} written at export, or export the model again"
            )
    if verify:
        verify_files(folder, files)
    else:  # cheap, unlike hashing; a loader would read a folder with a file missing as something else
        for rel in files:
            if not safe_path(folder, rel).is_file():
                raise _missing(folder, rel)
    return Manifest(folder, data)


def _check_fields(file: Path, data: dict) -> None:
    """Every field a loader reads has the type it expects, so an edited qla.json fails here and not deep inside."""
    from qla_sdk.quantize.config import BACKENDS

    def bad(key: str, value: object, expected: str) -> CheckpointError:
        return CheckpointError(f"{file}: {key} is {value!r}, expected {expected}; export the model again")

    def is_int(value: object, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if data["task"] not in TASKS:
        raise bad("task", data["task"], f"one of {', '.join(TASKS)}")
    if not isinstance(data["backend"], str) or data["backend"] not in BACKENDS:
        raise bad("backend", data["backend"], f"one of {', '.join(BACKENDS)}")
    if not is_int(data["max_length"], 2):
        raise bad("max_length", data["max_length"], "an integer >= 2")
    if data.get("doc_stride") is not None and not is_int(data["doc_stride"], 0):
        raise bad("doc_stride", data["doc_stride"], "an integer >= 0 or null")
    labels = data.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise bad("labels", labels, "a list of strings or null")
    text_columns, label_column = data.get("text_columns"), data.get("label_column")
    if (text_columns, label_column) != (None, None) and not valid_columns(text_columns, label_column):
        raise CheckpointError(
            f"{file}: text_columns {text_columns!r} and label_column {label_column!r} are not 1 or 2 column names "
            "and a column name; export the model again"
        )
    try:
        LengthConfig.parse(data.get("length_config"))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{file}: length_config {data.get('length_config')!r} is invalid ({exc})") from None
    files = data["files"]
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{file}: 'files' must map each file to its sha256")
    for rel, digest in files.items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise bad(f"the sha256 of {rel!r}", digest, "64 lower-case hex digits")
    model = data["model"]
    if not isinstance(model, dict):
        raise bad("model", model, "an object")
    listed = model.get("files")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(x, str) for x in listed)):
        raise bad("model.files", listed, "a list of file names")
    seq_lens = model.get("seq_lens")  # loaders build file names from these: integers only
    if seq_lens is not None and not (isinstance(seq_lens, list) and seq_lens and all(is_int(n, 1) for n in seq_lens)):
        raise bad("model.seq_lens", seq_lens, "a non-empty list of positive integers or null")


def verify_files(folder: Path, files: dict[str, str]) -> None:
    for rel, expected in files.items():
        target = safe_path(folder, rel)
        if not target.is_file():
            raise _missing(folder, rel)
        digest = sha256_file(target)
        if digest != expected:
            raise IntegrityError(
                f"{folder}: {rel} was modified (sha256 {digest[:12]}..., recorded {str(expected)[:12]}...); "
                "refusing to load it. Export the model again or restore the file"
            )
    extra = sorted(set(_files(folder)) - set(files))
    # The model and tokenizer loaders read whatever their folder holds, so an unlisted file there could change what
    # runs; elsewhere (a README beside qla.json) nothing reads it.
    read_by_loaders = [rel for rel in extra if rel.startswith((f"{MODEL_DIR}/", f"{TOKENIZER_DIR}/"))]
    if read_by_loaders:
        raise IntegrityError(
            f"{folder}: {read_by_loaders[0]} is not recorded in {MANIFEST} (unlisted files: {read_by_loaders[:5]}); "
            "refusing to load files that were added after export. Remove them or export the model again"
        )
    if extra:
        warnings.warn(f"{folder}: files not recorded in {MANIFEST} are ignored: {extra[:5]}", stacklevel=3)


def _missing(folder: Path, rel: str) -> IntegrityError:
    return IntegrityError(f"{folder}: {rel} is listed in {MANIFEST} but missing; export the model again")
