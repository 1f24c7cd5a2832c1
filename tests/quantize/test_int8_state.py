"""Int8 embeddings and pickle-free program files."""

import json
from pathlib import Path

import torch
from conftest import padded_batch

from qla_sdk.modeling import from_pretrained
from qla_sdk.quantize.int8_state import (
    TENSORS_FILE,
    Int8Embedding,
    load_program,
    save_programs,
    with_int8_embeddings,
)


def test_int8_embedding_is_close_and_int8():
    weight = torch.randn(50, 16)
    emb = Int8Embedding(weight)
    ids = torch.randint(0, 50, (3, 7))
    assert emb.qweight.dtype == torch.int8
    assert torch.allclose(emb(ids), torch.nn.functional.embedding(ids, weight), atol=weight.abs().max() / 127)


def test_with_int8_embeddings_copies(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "text-classification")
    model = from_pretrained(folder, "text-classification").eval()
    quantized = with_int8_embeddings(model.with_length_config("9,5"))
    assert isinstance(model.encoder.embeddings.word, torch.nn.Embedding)  # the original is untouched
    ids, mask = padded_batch(120, 0)
    with torch.no_grad():
        assert torch.allclose(quantized(ids, mask), model(ids, mask, length_config="9,5"), atol=1e-3)


def test_programs_round_trip_without_pickle(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval().with_length_config("9,5")
    ids, mask = padded_batch(120, 0)
    types = torch.zeros_like(ids)
    with torch.no_grad():
        program = torch.export.export(model, (ids, mask, types))
    files = save_programs({"a": program, "b": program}, tmp_path)
    assert sorted(files) == sorted(["a.program.json", "b.program.json", TENSORS_FILE])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # nothing else (no .pt pickles)
    text = (tmp_path / "a.program.json").read_text()
    json.loads(text)
    assert "stack_trace" not in text and str(Path(__file__).parent.parent.parent) not in text  # no builder paths
    from safetensors import safe_open

    with safe_open(str(tmp_path / TENSORS_FILE), "pt") as f:  # both programs share one copy of each weight
        assert len(list(f.keys())) <= len(program.state_dict)  # identical tensors (LayerNorm ones) too
    loaded = load_program(tmp_path, "b")
    with torch.no_grad():
        for got, want in zip(loaded.module()(ids, mask, types), model(ids, mask, types), strict=True):
            assert torch.equal(got, want)
    assert "aten.topk.default" in {str(n.target) for n in loaded.graph.nodes}
