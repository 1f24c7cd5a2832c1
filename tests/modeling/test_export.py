"""The pruned model goes through torch.export with the token selection inside the graph."""

import pytest
import torch
from conftest import padded_batch

from qla_sdk.backends.base import dynamic_batch_shapes
from qla_sdk.modeling import from_pretrained


@pytest.mark.parametrize("task", ["question-answering", "text-classification"])
def test_export_with_length_config(tiny_checkpoint, task):
    folder, _ = tiny_checkpoint("bert", task)
    model = from_pretrained(folder, task).eval().with_length_config("9,5")
    ids, mask = padded_batch(120, 0)
    types = torch.zeros_like(ids)
    program = torch.export.export(model, (ids, mask, types))
    targets = {str(node.target) for node in program.graph.nodes}
    assert "aten.topk.default" in targets and "aten.scatter.src" in targets
    ids2, mask2 = padded_batch(120, 0, seed=1)  # other data, same shapes: the graph is not specialised to values
    with torch.no_grad():
        eager, exported = model(ids2, mask2, types), program.module()(ids2, mask2, types)
    eager = eager if isinstance(eager, tuple) else (eager,)
    exported = exported if isinstance(exported, tuple) else (exported,)
    for e, x in zip(eager, exported, strict=False):
        assert torch.allclose(e, x, atol=1e-6)


def test_compile_fullgraph_has_no_breaks(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval().with_length_config("9,5")
    ids, mask = padded_batch(120, 0)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # fullgraph raises on any graph break
    with torch.no_grad():
        assert torch.allclose(compiled(ids, mask)[0], model(ids, mask)[0], atol=1e-6)


def test_exported_pruning_attention_never_expands_the_probabilities(tiny_checkpoint):
    # With a free batch size (as the backends export), a 4-D ``probs @ v`` becomes expand + bmm, and OpenVINO runs
    # that expand as a copy of every (len x len) probability map.
    folder, _ = tiny_checkpoint("bert", "text-classification")
    model = from_pretrained(folder, "text-classification").eval().with_length_config("9,5")
    ids, mask = padded_batch(120, 0)
    program = torch.export.export(model, (ids, mask, torch.zeros_like(ids)), dynamic_shapes=dynamic_batch_shapes())
    program = program.run_decompositions()  # as OpenVINO's converter does
    square_expands = [
        node
        for node in program.graph.nodes
        if node.target == torch.ops.aten.expand.default and node.meta["val"].shape[-1] == node.meta["val"].shape[-2]
    ]
    assert square_expands == []
