"""Our rows are artifacts: built with export_model and served by qla_sdk.load, as a user does."""

import numpy as np
import torch

from qla_bench.builders import BuildContext, LoadContext
from qla_bench.registry import get_builder
from qla_bench.rows import RowSpec
from qla_bench.sources import random_inputs
from qla_sdk.modeling import from_pretrained

SEQ = 16


def test_openvino_int8_row_matches_the_fp32_model(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    spec = RowSpec(
        "quala-tiny", "ours", "openvino", "int8", str(folder), length_config="9,5", length_config_seq_len=SEQ
    )
    length_config = spec.length_config_at(SEQ)
    builder = get_builder("openvino")
    calibration = [random_inputs(120, 1, SEQ, seed=s) for s in range(4)]
    artifact = builder.build(BuildContext(spec, folder, SEQ, length_config, tmp_path, calibration, 1))
    runtime = builder.load(LoadContext(spec, folder, artifact, SEQ, length_config, 1))
    inputs = random_inputs(120, 2, SEQ, seed=9)
    start, _end = runtime.bind(inputs)()
    model = from_pretrained(folder, task="question-answering").eval()
    with torch.inference_mode():
        want = model(*(torch.from_numpy(inputs[k]) for k in ("input_ids", "attention_mask", "token_type_ids")), "9,5")
    assert start.shape == (2, SEQ)
    assert np.abs(start - want[0].numpy()).max() < 0.1 * np.abs(want[0].numpy()).max() + 0.02
    kernels = runtime.kernels(inputs)
    assert kernels["source"].startswith("OpenVINO") and kernels["matmuls"]


def test_eager_row_is_an_fp32_artifact_served_by_the_eager_runtime(tiny_checkpoint, tmp_path):
    from qla_sdk.runtime import EagerRuntime

    folder, _ = tiny_checkpoint("bert", "question-answering")
    spec = RowSpec(
        "lat-tiny", "reference", "eager", "fp32", str(folder), length_config="9,5", length_config_seq_len=SEQ
    )
    builder = get_builder("eager")
    artifact = builder.build(BuildContext(spec, folder, SEQ, spec.length_config_at(SEQ), tmp_path, [], 1))
    runtime = builder.load(LoadContext(spec, folder, artifact, SEQ, spec.length_config_at(SEQ), 1))
    assert runtime.runner.length_config.lengths == (9, 5)
    assert isinstance(runtime.runner._modules, EagerRuntime)  # what qla_sdk.load serves fp32 with
    inputs = random_inputs(120, 1, SEQ)
    start, _end = runtime.bind(inputs)()
    model = from_pretrained(folder, task="question-answering").eval()
    with torch.inference_mode():
        want = model(*(torch.from_numpy(inputs[k]) for k in ("input_ids", "attention_mask", "token_type_ids")), "9,5")
    assert np.allclose(start, want[0].numpy(), atol=1e-5)
