"""Model sources of the rows and the inputs they are timed on.

Latency does not depend on weight values, so a row may use random weights: BERT-base is transformers'
``BertConfig()`` with random weights (no hub access needed), MiniLM is the real pretrained checkpoint at
``qla_sdk.pretrained.minilm_path()`` (its QA head starts random). A user's trained checkpoint replaces either.
``--quick`` swaps in tiny random models of the same families so that a smoke run takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qla_sdk.errors import CheckpointError, ConfigError
from qla_sdk.io import atomic_dir

TINY_SHAPES = {  # quick mode: the same families, a few KB of weights
    "bert-base": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "minilm": dict(hidden_size=32, num_hidden_layers=6, num_attention_heads=4, intermediate_size=64),
}
TINY_VOCAB = 1000


@dataclass(frozen=True)
class Source:
    folder: Path
    weights: str  # what the figures say about the weights: "random", "pretrained, random head", "trained"


def random_checkpoint(folder: Path, task: str, quick: bool, family: str) -> Path:
    """A transformers checkpoint with random weights: BertConfig() defaults (BERT-base) or a tiny shape."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    shape = dict(TINY_SHAPES[family], vocab_size=TINY_VOCAB, max_position_embeddings=512) if quick else {}
    torch.manual_seed(0)
    cls = BertForQuestionAnswering if task == "question-answering" else BertForSequenceClassification
    model = cls(BertConfig(**shape)).eval()
    with atomic_dir(folder, ("config.json",), "a checkpoint") as tmp:
        model.save_pretrained(tmp)
    return folder


def resolve_source(model: str, task: str, cache: Path, overrides: dict[str, str | None], quick: bool) -> Source:
    """The checkpoint folder of a row's ``model`` ("bert-base", "minilm", "quala-minilm" or a folder)."""
    override = overrides.get(model)
    if override:
        return Source(check_checkpoint(override), "trained")
    if model == "quala-minilm":  # without a trained length-adaptive checkpoint: MiniLM's weights, same speed
        return resolve_source("minilm", task, cache, overrides, quick)
    if model == "bert-base":
        suffix = "tiny" if quick else "base"
        return Source(random_checkpoint(cache / f"bert-{suffix}-random-{task}", task, quick, "bert-base"), "random")
    if model == "minilm":
        if quick:
            return Source(random_checkpoint(cache / f"minilm-tiny-random-{task}", task, True, "minilm"), "random")
        from qla_sdk.pretrained import minilm_path

        return Source(minilm_path(), "pretrained, random head")
    return Source(check_checkpoint(model), "trained")


def layer_count(model: str, overrides: dict[str, str | None], quick: bool) -> int:
    """Encoder layers of a row's ``model``, read from its config without building it."""
    from qla_sdk.modeling.checkpoint import load_config

    override = overrides.get(model)
    if override:
        return load_config(check_checkpoint(override)).num_hidden_layers
    if model == "quala-minilm":
        return layer_count("minilm", overrides, quick)
    if model in TINY_SHAPES:
        if quick:
            return TINY_SHAPES[model]["num_hidden_layers"]
        if model == "bert-base":
            from transformers import BertConfig

            return BertConfig().num_hidden_layers
        from qla_sdk.pretrained import minilm_path

        return load_config(minilm_path()).num_hidden_layers
    return load_config(check_checkpoint(model)).num_hidden_layers


def check_checkpoint(path: str | Path) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"model folder {path} does not exist: give a checkpoint folder (config.json + weights)")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} has no config.json: give a Hugging Face checkpoint folder")
    return folder


def random_inputs(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length inputs (no padding: every position is a real token, the worst case for a length config)."""
    if batch < 1 or seq_len < 1:
        raise ConfigError(f"batch {batch} and sequence length {seq_len} must be >= 1")
    generator = np.random.default_rng(seed)
    low = min(1000, vocab_size // 2)  # skip the special tokens at the start of BERT vocabularies
    ids = generator.integers(low, vocab_size, (batch, seq_len), dtype=np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
