"""Shared fixtures: tiny random Hugging Face checkpoints of both families, written by transformers itself; the
benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

TINY = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)


def tiny_hf_model(family: str, task: str, seed: int = 0):
    from transformers import (
        BertConfig,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForQuestionAnswering,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    if family == "bert":
        config = BertConfig(**TINY, pad_token_id=0)
        cls = BertForQuestionAnswering if task == "question-answering" else BertForSequenceClassification
    else:
        config = RobertaConfig(**TINY, pad_token_id=1, type_vocab_size=1)
        cls = RobertaForQuestionAnswering if task == "question-answering" else RobertaForSequenceClassification
    return cls(config).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(family, task)`` -> (folder, transformers model)."""
    cache: dict = {}

    def make(family: str = "bert", task: str = "question-answering"):
        if (family, task) not in cache:
            model = tiny_hf_model(family, task)
            folder = tmp_path_factory.mktemp(f"{family}-{task}")
            model.save_pretrained(folder)
            cache[(family, task)] = (folder, model)
        return cache[(family, task)]

    return make


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module, loaded with ``benchmarks/`` on the path (the scripts import the ones beside
    them, as python lets them when they run)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="session")
def minilm_dir():
    from qla_sdk.pretrained import minilm_path

    return minilm_path()


def padded_batch(vocab_size: int, pad_id: int, lengths=(12, 8, 5), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    seq = max(lengths)
    ids = torch.randint(3, vocab_size, (len(lengths), seq), generator=g)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids[mask == 0] = pad_id
    return ids, mask


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy 2-core machine oversubscription slows them ~10x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_head_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*head starts random.*")
        yield


def word_piece_batch(rows: int, length: int, pad_last_to: int | None = None) -> tuple[torch.Tensor, ...]:
    """[CLS] ordinary word pieces [SEP]; with ``pad_last_to`` the last row has that many real tokens, then padding."""
    ids = torch.randint(1000, 29000, (rows, length), generator=torch.Generator().manual_seed(length + rows))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    if pad_last_to is not None:
        ids[-1, pad_last_to - 1] = 102
        ids[-1, pad_last_to:], mask[-1, pad_last_to:] = 0, 0
    types = torch.zeros_like(ids)
    types[:, length // 3 :] = 1
    return ids, mask, types * mask


@pytest.fixture(scope="module")
def minilm_qa():
    """The real all-MiniLM-L6-v2 (shipped as a package) with a new span head, seeded."""
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.pretrained import minilm_path

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_pretrained(minilm_path(), task="question-answering").eval()
