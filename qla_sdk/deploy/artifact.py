"""The exported folder: model files of one backend, tokenizer files, and ``qla.json`` (task, labels, length config,
lengths, backend, package versions, format version, sha256 of every file).

It is written into a temporary folder and renamed into place, so an interrupted export leaves nothing that looks
whole. Reading checks the format version, that every recorded path stays inside the folder, and every sha256,
before any model file is opened; model files are safetensors, JSON graphs or OpenVINO IR, never pickles.
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

from qla_sdk.errors import CheckpointError, ConfigError, IntegrityError
from qla_sdk.io import atomic_dir, sha256_file, write_json_atomic
from qla_sdk.modeling import LengthConfig, TaskModel

FORMAT_VERSION = 1
MANIFEST = "qla.json"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
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
    def doc_stride(self) -> int:
        return int(self.data.get("doc_stride") or 0)

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
    tokenizer,
    *,
    config=None,
    length_config: LengthConfig | str | None = "model",
    max_length: int | None = None,
    doc_stride: int = 128,
    calibration: Sequence[dict] = (),
    evaluate=None,
    extra: dict | None = None,
) -> Path:
    """Build ``model`` with ``config.backend`` (int8 quantization when it is an int8 backend) and write the folder.

    ``length_config="model"`` uses ``model.length_config`` (the searched one); ``None`` exports the full model.
    ``calibration``: unpadded feature rows (dicts with ``input_ids``/``token_type_ids``) for int8 calibration.
    ``evaluate(run, seq_len) -> metric`` turns on accuracy-aware tuning (see ``qla_sdk.quantize``).
    """
    from qla_sdk.backends import BuildRequest, get_backend
    from qla_sdk.quantize.config import QuantConfig, default_seq_lens

    config = config or QuantConfig()
    lc = model.length_config if isinstance(length_config, str) and length_config == "model" else length_config
    lc = LengthConfig.parse(lc)
    if max_length is None:
        max_length = 384 if model.task == "question-answering" else 128
    limit = model.config.max_position_embeddings - (
        model.config.pad_token_id + 1 if model.config.model_type == "roberta" else 0
    )
    if not 2 <= max_length <= limit:
        raise ConfigError(f"max_length {max_length}: must lie in [2, {limit}] (the model's position embeddings)")
    seq_lens = config.seq_lens or default_seq_lens(max_length, lc is not None and lc.is_ratio)
    if max(seq_lens) > max_length:
        raise ConfigError(f"seq_lens {seq_lens} exceed max_length {max_length}")
    if lc is not None:
        for seq_len in seq_lens if config.is_int8 else (max_length,):
            lc.check(model.num_layers, seq_len)
    backend = get_backend(config.backend)
    request = BuildRequest(
        model=model.eval(),
        length_config=lc,
        seq_lens=tuple(seq_lens),
        config=config,
        calibration=list(calibration),
        pad_token_id=tokenizer.pad_token_id or 0,
        evaluate=evaluate,
    )
    built = backend.build(request)
    labels = None
    if model.task != "question-answering":
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with atomic_dir(path) as tmp:
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
            "build": backend.report(built),
            "versions": package_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
            "files": {rel: sha256_file(tmp / rel) for rel in _files(tmp)},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return Path(path)


def _files(folder: Path) -> list[str]:
    paths = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(rel for rel in paths if rel != MANIFEST)


def safe_path(folder: Path, rel: str) -> Path:
    """``folder / rel`` when ``rel`` is a plain relative path that stays inside ``folder`` (links included)."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or "\\" in rel or any(part in ("..", "") for part in pure.parts):
        raise CheckpointError(f"{folder / MANIFEST} lists path {rel!r}, which leaves the artifact folder; refused")
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise CheckpointError(f"{folder / MANIFEST}: {rel!r} resolves to {target}, outside the artifact; refused")
    return target


def read_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Read ``qla.json``; with ``verify`` check every file's sha256 (``IntegrityError`` naming the file)."""
    folder = Path(path)
    file = folder / MANIFEST
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
    if not isinstance(found, int) or found < 1:
        raise CheckpointError(f"{file}: format_version {found!r} is not a positive integer")
    if found > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has artifact format {found}, newer than this qla-sdk reads ({FORMAT_VERSION}): upgrade qla-sdk"
        )
    missing = [k for k in ("task", "backend", "max_length", "model", "files") if k not in data]
    if missing:
        raise CheckpointError(f"{file} lacks {', '.join(missing)}; export the model again")
    files = data["files"]
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{file}: 'files' must map each file to its sha256")
    for rel in files:
        safe_path(folder, rel)
    for rel in data["model"].get("files", []) or []:
        safe_path(folder / MODEL_DIR, rel)
        if f"{MODEL_DIR}/{rel}" not in files:
            raise CheckpointError(f"{file}: model file {rel!r} has no recorded sha256; refused")
    if verify:
        verify_files(folder, files)
    return Manifest(folder, data)


def verify_files(folder: Path, files: dict[str, str]) -> None:
    for rel, expected in files.items():
        target = safe_path(folder, rel)
        if not target.is_file():
            raise IntegrityError(f"{folder}: {rel} is listed in {MANIFEST} but missing; export the model again")
        digest = sha256_file(target)
        if digest != expected:
            raise IntegrityError(
                f"{folder}: {rel} was modified (sha256 {digest[:12]}..., recorded {str(expected)[:12]}...); "
                "refusing to load it. Export the model again or restore the file"
            )
    extra = sorted(set(_files(folder)) - set(files))
    if extra:
        warnings.warn(f"{folder}: files not recorded in {MANIFEST} are ignored: {extra[:5]}", stacklevel=3)
