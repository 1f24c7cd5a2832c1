"""Several graphs of one model saved with one shared weights file: each weight stored once, every graph reads back
as it was saved, and artifacts with a weights file per graph still load."""

import numpy as np
import pytest
import torch

from qla_sdk.backends import BuildRequest, get_backend, pad_rows
from qla_sdk.backends.openvino import Built
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.quantize import QuantConfig

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def built(tiny_checkpoint):
    """A tiny QA model's int8 graphs at 16 and 32 tokens, quantized without smooth quant (which scales each graph's
    weights by its own activation ranges, so that they differ between graphs); their fp32 graphs; the calibration
    rows."""
    from qla_sdk.backends.openvino import _quantized_graphs, _trials, convert

    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval()
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, 120, (int(n),), generator=g).tolist()} for n in (6, 11, 17, 23, 30, 9)]
    request = BuildRequest(
        model, LengthConfig.parse("0.8,0.5"), (16, 32), QuantConfig(backend="openvino"), calibration=rows
    )
    fp32 = {n: convert(model.with_length_config("0.8,0.5"), n) for n in (16, 32)}
    name, options = _trials()[0][1]
    assert name == "MIXED preset, no smooth quant"
    return Built(_quantized_graphs(fp32, request, options, head=1), {}, "int8"), fp32, rows


def _outputs(runner, rows, seq_len):
    ids, mask, types = pad_rows(rows, seq_len, 0)[0]
    return runner.run(ids.numpy(), mask.numpy(), types.numpy())


def _weights(xml):
    """(offset, size) in the weights file of each weight matrix of an IR (its 2-D constants, no row vectors)."""
    import xml.etree.ElementTree as ET

    found = set()
    for layer in ET.parse(xml).getroot().iter("layer"):
        data = layer.find("data")
        shape = [int(d) for d in data.get("shape", "").split(",") if d.strip()] if layer.get("type") == "Const" else []
        if len(shape) == 2 and min(shape) > 1:
            found.add((int(data.get("offset")), int(data.get("size"))))
    return found


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_graphs_share_one_weights_file(built, tmp_path, precision):
    import openvino as ov

    from qla_sdk.backends.openvino_ir import WEIGHTS_FILE, save_sharing_weights

    int8, fp32, _ = built
    graphs = fp32 if precision == "fp32" else int8.models
    files = save_sharing_weights({f"seq{n}": graphs[n] for n in (16, 32)}, tmp_path)
    assert sorted(files) == ["seq16.xml", "seq32.xml", WEIGHTS_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # no temp folder or .bin left
    # each weight matrix is stored once and both graphs point at it
    weights = _weights(tmp_path / "seq16.xml")
    assert len(weights) >= 12 and weights == _weights(tmp_path / "seq32.xml")
    apart = tmp_path / "apart"
    apart.mkdir()
    for n, graph in graphs.items():
        ov.save_model(graph, str(apart / f"seq{n}.xml"), compress_to_fp16=False)
    one_each = sum((apart / f"seq{n}.bin").stat().st_size for n in graphs)
    assert (tmp_path / WEIGHTS_FILE).stat().st_size <= one_each - sum(size for _, size in weights)


def test_each_graph_reads_back_as_it_was_saved(built, tmp_path):
    import openvino as ov

    from qla_sdk.backends.openvino import OpenVINORunner

    built, _, rows = built
    backend = get_backend("openvino")
    runner = backend.load(tmp_path, backend.save(built, tmp_path), threads=1)
    in_memory = OpenVINORunner(ov.Core(), built.models, "f32", 1)
    for seq_len, graph_rows in ((16, rows[:2]), (32, rows)):
        saved, built_outputs = _outputs(runner, graph_rows, seq_len), _outputs(in_memory, graph_rows, seq_len)
        for got, want in zip(saved, built_outputs, strict=True):
            assert np.array_equal(got, want)


def test_an_artifact_with_a_weights_file_per_graph_still_loads(built, tmp_path):
    """Artifacts written before the weights were shared hold seq<n>.xml + seq<n>.bin per graph."""
    import openvino as ov

    built, _, rows = built
    files = []
    for n, model in built.models.items():
        ov.save_model(model, str(tmp_path / f"seq{n}.xml"), compress_to_fp16=False)
        files += [f"seq{n}.xml", f"seq{n}.bin"]
    backend = get_backend("openvino")
    old = backend.load(tmp_path, {"seq_lens": sorted(built.models), "files": files}, threads=1)
    new_folder = tmp_path / "new"
    new_folder.mkdir()
    new = backend.load(new_folder, backend.save(built, new_folder), threads=1)
    for got, want in zip(_outputs(old, rows, 32), _outputs(new, rows, 32), strict=True):
        assert np.array_equal(got, want)
