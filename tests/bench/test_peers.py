"""The peers, built and loaded in-process on a tiny checkpoint: each gives the FP32 model's answer within int8
error, and reports its size and kernels."""

import numpy as np
import pytest
import torch

from qla_bench.builders import BuildContext, LoadContext
from qla_bench.registry import get_builder
from qla_bench.rows import RowSpec
from qla_bench.sources import random_inputs

SEQ = 16


def start_logits(output) -> np.ndarray:
    if hasattr(output, "to_tuple"):  # transformers ModelOutput, OpenVINO OVDict
        output = output.to_tuple()
    first = output[0] if isinstance(output, (list, tuple)) else output
    return np.asarray(first.detach() if isinstance(first, torch.Tensor) else first)


@pytest.mark.parametrize("backend", ["torch-dynamic", "onnxruntime", "optimum-intel"])
def test_peer_matches_fp32(backend, tiny_checkpoint, tmp_path):
    folder, hf_model = tiny_checkpoint("bert", "question-answering")
    spec = RowSpec(f"{backend}-tiny", "peer", backend, "int8", str(folder))
    builder = get_builder(backend)
    calibration = [random_inputs(120, 1, SEQ, seed=s) for s in range(4)]
    artifact = folder
    if builder.build is not None:
        artifact = builder.build(BuildContext(spec, folder, SEQ, None, tmp_path, calibration, 1))
    runtime = builder.load(LoadContext(spec, folder, artifact, SEQ, None, 1))
    inputs = random_inputs(120, 2, SEQ, seed=9)
    got = start_logits(runtime.bind(inputs)())
    with torch.inference_mode():
        want = hf_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).start_logits.numpy()
    assert got.shape == want.shape == (2, SEQ)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max() + 0.02  # int8 error, not a different model
    assert runtime.kernels(inputs)  # what ran is recorded


def test_optimum_intel_at_default_precision_is_the_unquantized_export(tiny_checkpoint, tmp_path):
    """The peer a user gets without NNCF: no FakeQuantize in the graph, and FP32-close answers."""
    folder, hf_model = tiny_checkpoint("bert", "question-answering")
    spec = RowSpec("optimum-intel-default-tiny", "peer", "optimum-intel", "default", str(folder))
    builder = get_builder("optimum-intel")
    calibration = [random_inputs(120, 1, SEQ, seed=s) for s in range(4)]
    artifact = builder.build(BuildContext(spec, folder, SEQ, None, tmp_path, calibration, 1))
    runtime = builder.load(LoadContext(spec, folder, artifact, SEQ, None, 1))
    assert not [op for op in runtime.model.get_ops() if op.get_type_name() == "FakeQuantize"]
    inputs = random_inputs(120, 2, SEQ, seed=9)
    got = start_logits(runtime.bind(inputs)())
    with torch.inference_mode():
        want = hf_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).start_logits.numpy()
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max() + 0.02  # bf16 at worst, never int8 error
