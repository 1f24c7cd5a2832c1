"""Hugging Face checkpoint folders <-> our modules.

A folder holds ``config.json`` and ``model.safetensors`` (or a sharded safetensors index) in the layout of
transformers' BERT/RoBERTa models; ours adds ``qla.json`` (task, labels, length config). Weights are read only
from safetensors: a pickled ``pytorch_model.bin`` can run code when loaded, so it is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from qla_sdk.errors import CheckpointError, ConfigError
from qla_sdk.io import atomic_dir, write_json_atomic
from qla_sdk.modeling.heads import TASKS, TaskModel

SUPPORTED_MODEL_TYPES = ("bert", "roberta")
QLA_FILE = "qla.json"
#: The classification columns training read (``TaskData.metadata``), in a checkpoint's qla.json and an artifact's.
DATA_COLUMN_KEYS = ("text_columns", "label_column")
#: What an existing folder must hold for ``save_pretrained`` to replace it (``io.atomic_dir``): a checkpoint.
CHECKPOINT_MARKERS = ("config.json", "model.safetensors")
# A tokenizer's files: a model saved back into its own folder keeps them (save_pretrained without tokenizer=).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)

# (Hugging Face name, our name); {i} is a layer index, {p} weight or bias.
_ENCODER_NAMES = [
    ("embeddings.word_embeddings.{p}", "encoder.embeddings.word.{p}"),
    ("embeddings.position_embeddings.{p}", "encoder.embeddings.position.{p}"),
    ("embeddings.token_type_embeddings.{p}", "encoder.embeddings.token_type.{p}"),
    ("embeddings.LayerNorm.{p}", "encoder.embeddings.norm.{p}"),
    ("encoder.layer.{i}.attention.self.query.{p}", "encoder.layers.{i}.query.{p}"),
    ("encoder.layer.{i}.attention.self.key.{p}", "encoder.layers.{i}.key.{p}"),
    ("encoder.layer.{i}.attention.self.value.{p}", "encoder.layers.{i}.value.{p}"),
    ("encoder.layer.{i}.attention.output.dense.{p}", "encoder.layers.{i}.attn_out.{p}"),
    ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "encoder.layers.{i}.attn_norm.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "encoder.layers.{i}.ffn_in.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "encoder.layers.{i}.ffn_out.{p}"),
    ("encoder.layer.{i}.output.LayerNorm.{p}", "encoder.layers.{i}.ffn_norm.{p}"),
]
_HEAD_NAMES = {
    ("bert", "question-answering"): [("qa_outputs.{p}", "head.qa.{p}")],
    ("roberta", "question-answering"): [("qa_outputs.{p}", "head.qa.{p}")],
    ("bert", "text-classification"): [
        ("{base}.pooler.dense.{p}", "head.dense.{p}"),
        ("classifier.{p}", "head.out.{p}"),
    ],
    ("roberta", "text-classification"): [
        ("classifier.dense.{p}", "head.dense.{p}"),
        ("classifier.out_proj.{p}", "head.out.{p}"),
    ],
}
_ARCHITECTURES = {
    ("bert", "question-answering"): "BertForQuestionAnswering",
    ("bert", "text-classification"): "BertForSequenceClassification",
    ("roberta", "question-answering"): "RobertaForQuestionAnswering",
    ("roberta", "text-classification"): "RobertaForSequenceClassification",
}


def _pattern(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(escaped.replace(r"\{base\}", r"(?:bert|roberta)") + "$")


def _name_pairs(model_type: str, task: str) -> list[tuple[str, str]]:
    base = [(f"{model_type}.{hf}", ours) for hf, ours in _ENCODER_NAMES]
    heads = [(hf.replace("{base}", model_type), ours) for hf, ours in _HEAD_NAMES[(model_type, task)]]
    return base + heads


def hf_to_ours(state: dict[str, torch.Tensor], model_type: str, task: str) -> dict[str, torch.Tensor]:
    """Rename a transformers state dict (with or without the ``bert.``/``roberta.`` prefix) to ours."""
    pairs = [(_pattern(hf), ours) for hf, ours in _name_pairs(model_type, task)]
    # Base-model checkpoints (BertModel) have no prefix: accept both.
    pairs += [(_pattern(hf), ours) for hf, ours in _ENCODER_NAMES]
    pairs += [(_pattern(hf.replace("{base}.", "")), ours) for hf, ours in _HEAD_NAMES[(model_type, task)]]
    out = {}
    for name, tensor in state.items():
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        for pattern, ours in pairs:
            m = pattern.match(name)
            if m:
                out[ours.format(**m.groupdict())] = tensor
                break
    return out


def ours_to_hf(state: dict[str, torch.Tensor], model_type: str, task: str) -> dict[str, torch.Tensor]:
    pairs = [(_pattern(ours), hf) for hf, ours in _name_pairs(model_type, task)]
    out = {}
    for name, tensor in state.items():
        for pattern, hf in pairs:
            m = pattern.match(name)
            if m:
                out[hf.format(**m.groupdict())] = tensor.contiguous()
                break
        else:
            raise CheckpointError(f"no Hugging Face name for parameter {name!r}")
    return out


def load_config(path: str | Path):
    """The transformers config of a local folder, or of a hub id when the network allows."""
    from transformers import AutoConfig

    folder = Path(path)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                f"{folder} has no config.json: point to a Hugging Face checkpoint folder "
                "(config.json + model.safetensors), e.g. one written by save_pretrained"
            )
    elif folder.exists() or str(path).startswith((".", "/", "~")) or str(path).count("/") > 1:
        raise CheckpointError(f"checkpoint folder {path} does not exist (or is not a folder)")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except OSError as exc:
        raise CheckpointError(
            f"cannot load {path!r}: it is no local folder and the Hugging Face hub did not answer ({exc}). "
            "Download the checkpoint and give its local path"
        ) from None
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            f"{path}: model_type {config.model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return config


def _weights_file(path: str | Path) -> list[Path]:
    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    if (folder / "pytorch_model.bin").exists():
        raise CheckpointError(
            f"{folder} holds only pytorch_model.bin (a pickle, which can run code when loaded); convert it to "
            "safetensors first, e.g. transformers' model.save_pretrained(dir, safe_serialization=True)"
        )
    raise CheckpointError(f"{folder} has no model.safetensors")


def read_qla_metadata(path: str | Path) -> dict:
    file = Path(path) / QLA_FILE
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file} is not valid JSON ({exc}); restore it or delete it") from None


def recorded_task(path: str | Path) -> str | None:
    """The task the checkpoint at ``path`` was trained for, as its qla.json records it (None: a bare pretrained
    encoder, a hub id, or a checkpoint of elsewhere)."""
    task = read_qla_metadata(path).get("task") if Path(path).is_dir() else None
    return task if isinstance(task, str) else None


def training_columns(path: str | Path) -> dict:
    """The classification columns the training of the checkpoint at ``path`` read, as its qla.json records them
    (``{"text_columns": [...], "label_column": ...}``, written by the training commands and the recipe); ``{}``
    where it records none (QA, a checkpoint trained before they were recorded, or trained elsewhere)."""
    meta = read_qla_metadata(path) if Path(path).is_dir() else {}
    columns = {k: meta[k] for k in DATA_COLUMN_KEYS if meta.get(k) is not None}
    if columns and not valid_columns(columns.get("text_columns"), columns.get("label_column")):
        raise CheckpointError(
            f"{Path(path) / QLA_FILE} records text_columns {columns.get('text_columns')!r} and label_column "
            f"{columns.get('label_column')!r}: expected a list of 1 or 2 column names and a column name; fix them, or "
            "remove both (the columns are then detected by name, as before they were recorded)"
        )
    return columns


def valid_columns(text_columns: object, label_column: object) -> bool:
    """Whether a recorded column pair has the form training writes: 1 or 2 text column names, a label column name."""
    return (
        isinstance(text_columns, list)
        and 1 <= len(text_columns) <= 2
        and all(isinstance(c, str) for c in text_columns)
        and isinstance(label_column, str)
    )


def from_pretrained(
    path: str | Path,
    task: str | None = None,
    num_labels: int | None = None,
    labels: list[str] | None = None,
    *,
    trained_head: bool = False,
    seed: int | None = None,
) -> TaskModel:
    """Load a BERT/RoBERTa checkpoint as a ``TaskModel`` for ``task`` (question-answering or text-classification).

    Head weights missing from the checkpoint (a base model, or another task's head) start random, with a warning,
    drawn from ``seed`` (None: torch's global generator); with ``trained_head`` (a teacher), ``CheckpointError``
    instead.
    """
    config = load_config(path)
    meta = read_qla_metadata(path) if Path(path).is_dir() else {}
    task = task or meta.get("task") or _task_from_architectures(config)
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(TASKS)}")
    if labels is None and meta.get("labels"):
        labels = list(meta["labels"])
    if labels is not None:
        config.id2label = {i: str(label) for i, label in enumerate(labels)}
        config.label2id = {str(label): i for i, label in enumerate(labels)}
    elif num_labels is not None:
        config.num_labels = num_labels
    model = TaskModel(config, task)
    state = {}
    for file in _weights_file(path):
        state.update(load_file(str(file)))
    ours = hf_to_ours(state, config.model_type, task)
    expected = model.state_dict()
    wrong = [k for k, v in ours.items() if k in expected and tuple(expected[k].shape) != tuple(v.shape)]
    if wrong:
        if all(k.startswith("head.") for k in wrong):
            first = next((k for k in wrong if k.endswith("weight")), wrong[0])
            raise CheckpointError(
                f"{path}: its {task} head has weights of shape {tuple(ours[first].shape)}, and {config.num_labels} "
                f"labels need {tuple(expected[first].shape)}: start from a checkpoint without this head (its base "
                "model), or use data with the checkpoint's labels"
            )
        raise CheckpointError(f"{path}: weights {wrong[:3]} do not have the shapes its config.json gives")
    missing, _unexpected = model.load_state_dict(ours, strict=False)
    encoder_missing = [k for k in missing if k.startswith("encoder.")]
    if encoder_missing:
        raise CheckpointError(f"{path}: encoder weights missing from the checkpoint: {encoder_missing[:5]}")
    if missing and trained_head:
        raise CheckpointError(
            f"{path} has no trained {task} head ({meta.get('task') or 'no task'} in its qla.json): a teacher or a "
            f"model to compress must be fine-tuned for {task} first (qla finetune)"
        )
    if missing:
        _init_head(model, seed)
        model.load_state_dict(ours, strict=False)
        warnings.warn(f"{path}: no {task} head weights; the head starts random and needs training", stacklevel=2)
    # Where it came from: saving back into this folder keeps what the save does not write (save_pretrained).
    model.source_folder = Path(path).resolve() if Path(path).is_dir() else None
    if meta.get("length_config"):
        try:
            model.length_config = meta["length_config"]
        except ConfigError as err:
            raise CheckpointError(
                f"{path}: the length config in its qla.json does not fit this model: {err}. Fix or remove "
                "'length_config' in qla.json"
            ) from None
    return model


def _init_head(model: TaskModel, seed: int | None) -> None:
    """BERT's initialisation of the task head; from ``seed`` where given, so that a training run's ``--seed``
    decides its random head as it decides its shuffling and dropout."""
    std = getattr(model.config, "initializer_range", 0.02)
    with _seeded(seed):
        for module in model.head.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=std)
                torch.nn.init.zeros_(module.bias)


def init_weights(model: TaskModel, seed: int | None = None) -> TaskModel:
    """BERT's initialisation, for models built from a config rather than a checkpoint: from ``seed`` where given,
    leaving the global generator as it was; from (and advancing) the global generator otherwise."""
    std = getattr(model.config, "initializer_range", 0.02)
    with _seeded(seed) if seed is not None else contextlib.nullcontext():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(module.weight, std=std)
                if isinstance(module, torch.nn.Linear):
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.LayerNorm):
                torch.nn.init.ones_(module.weight)
                torch.nn.init.zeros_(module.bias)
    return model


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Draws inside the block leave the global CPU generator as it was; they come from ``seed`` where given."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _task_from_architectures(config) -> str:
    for arch in config.architectures or []:
        if arch.endswith("ForQuestionAnswering"):
            return "question-answering"
        if arch.endswith("ForSequenceClassification"):
            return "text-classification"
    raise ConfigError(
        "the checkpoint does not say its task (no qla.json, no *ForQuestionAnswering/*ForSequenceClassification "
        "architecture): pass task='question-answering' or task='text-classification'"
    )


def save_pretrained(model: TaskModel, path: str | Path, tokenizer=None, extra: dict | None = None) -> Path:
    """Write config.json, model.safetensors (transformers layout), tokenizer files and qla.json, atomically.

    Saved back into the folder the model was loaded from, the folder keeps its tokenizer files (without
    ``tokenizer``) and its qla.json records (e.g. ``length_adaptive``; a ``search`` record only while the length
    config is the one it chose): that is an update of the model, which should not cost the folder its tokenizer or
    its history. Anything else there, which the new folder would not hold, is refused (``CheckpointError``)."""
    config = model.config
    source = getattr(model, "source_folder", None)
    kept_files: list[Path] = []
    kept_meta: dict = {}
    if source is not None and Path(path).resolve() == source and source.is_dir():
        old = read_qla_metadata(source)
        kept_meta = {k: v for k, v in old.items() if k not in ("task", "labels", "length_config")}
        if old.get("length_config") != (model.length_config.to_dict() if model.length_config else None):
            kept_meta.pop("search", None)  # it describes the config it chose, which this save replaces
        # the folder's tokenizer, unless a new one is given (whose files then replace it)
        kept_files = [source / n for n in TOKENIZER_FILES if tokenizer is None and (source / n).exists()]
        written = {*CHECKPOINT_MARKERS, QLA_FILE, *TOKENIZER_FILES}
        others = sorted(p.name for p in source.iterdir() if p.name not in written)
        if others:
            raise CheckpointError(
                f"{path} is the folder this model was loaded from, and a save would replace it without "
                f"{', '.join(others[:5])}{', ...' if len(others) > 5 else ''}: save to a new folder, or move those "
                "out first"
            )
    with atomic_dir(path, CHECKPOINT_MARKERS, "a checkpoint") as tmp:
        for file in kept_files:
            shutil.copy2(file, tmp / file.name, follow_symlinks=False)  # a cache's links stay links
        config.architectures = [_ARCHITECTURES[(config.model_type, model.task)]]
        config.save_pretrained(tmp)
        state = ours_to_hf({k: v.detach().cpu() for k, v in model.state_dict().items()}, config.model_type, model.task)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        meta = {
            **kept_meta,
            "task": model.task,
            "labels": [config.id2label[i] for i in range(config.num_labels)]
            if model.task != "question-answering"
            else None,
            "length_config": model.length_config.to_dict() if model.length_config else None,
            **(extra or {}),
        }
        write_json_atomic(tmp / QLA_FILE, meta)
    return Path(path)


def weights_digest(model: torch.nn.Module) -> str:
    """A short sha256 of every tensor of ``model``'s state dict, in order (names, shapes and bytes): whether two
    models hold the same weights, e.g. the teacher a resumed distillation continues from."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
