"""The IPEX backend, run where IPEX imports (`make test-ipex`, in .venv-ipex with torch 2.8): static zero-point int8
with the length config inside the TorchScript graph, saved, loaded and served. Skipped in the main environment."""

import pytest
import torch

pytestmark = pytest.mark.ipex
pytest.importorskip("intel_extension_for_pytorch", reason="IPEX runs only in its torch 2.8 environment (make ipex-env)")

from qla_sdk.backends import BuildRequest, get_backend  # noqa: E402
from qla_sdk.modeling import LengthConfig, from_pretrained  # noqa: E402
from qla_sdk.quantize import QuantConfig  # noqa: E402

SEQ = 32


@pytest.fixture(scope="module")
def qa_model(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    return from_pretrained(folder, "question-answering").eval()


def calibration_rows(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, SEQ, (n,), generator=g)
    return [{"input_ids": torch.randint(3, 120, (int(length),), generator=g).tolist()} for length in lengths]


def node_kinds(graph) -> set[str]:
    kinds = set()
    for node in graph.nodes():
        kinds.add(node.kind())
        for block in node.blocks():
            kinds |= node_kinds(block)
        if node.hasAttribute("Subgraph"):
            kinds |= node_kinds(node.g("Subgraph"))
    return kinds


@pytest.fixture(scope="module")
def built(qa_model):
    request = BuildRequest(
        qa_model, LengthConfig((0.6, 0.3)), (SEQ,), QuantConfig(backend="ipex"), calibration=calibration_rows()
    )
    return get_backend("ipex").build(request)


def test_the_int8_graph_holds_int8_linears_and_the_pruning_ops_and_no_eager_fast_path(built):
    module = built.modules[SEQ]
    ids = torch.randint(3, 120, (1, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for _ in range(2):  # the profiling executor specialises the graph on the second call
            module(ids, torch.ones_like(ids), torch.zeros_like(ids))
    kinds = node_kinds(module.graph_for(ids, torch.ones_like(ids), torch.zeros_like(ids)))
    assert "aten::quantize_per_tensor" in kinds  # uint8 activations
    assert "ipex::LlgaFusionGroup" in kinds  # oneDNN graph: int8 matmuls fused with their (de)quantization
    assert {"aten::topk", "aten::sort"} <= kinds  # token selection inside the graph
    assert not any("linear_pointwise" in k or "qla_pruning" in k for k in kinds)  # the eager runtime stays out
    assert built.report["activations"] == "uint8 asymmetric"


def test_int8_logits_follow_the_fp32_model(built, qa_model):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 120, (4, SEQ), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    with torch.no_grad():
        got = built.modules[SEQ](ids, mask, torch.zeros_like(ids))
        want = qa_model(ids, mask, torch.zeros_like(ids), length_config=LengthConfig((0.6, 0.3)))
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=0.05), float((a - b).abs().max())
