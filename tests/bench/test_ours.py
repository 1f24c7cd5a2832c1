"""Our rows go through qla_sdk.backends exactly as an export does: build, save, load, run."""

import numpy as np
import torch

from qla_sdk.bench.builders import BuildContext, LoadContext, get_builder
from qla_sdk.bench.rows import RowSpec
from qla_sdk.bench.sources import random_inputs
from qla_sdk.modeling import from_pretrained

SEQ = 16


def test_openvino_int8_row_matches_the_fp32_model(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    spec = RowSpec("qula-tiny", "ours", "openvino", "int8", str(folder), length_config="9,5", length_config_seq_len=SEQ)
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


def test_eager_row_runs_the_length_config(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    spec = RowSpec(
        "lat-tiny", "reference", "eager", "fp32", str(folder), length_config="9,5", length_config_seq_len=SEQ
    )
    runtime = get_builder("eager").load(LoadContext(spec, folder, folder, SEQ, spec.length_config_at(SEQ), 1))
    assert runtime.model.length_config.lengths == (9, 5)
    start, _end = runtime.bind(random_inputs(120, 1, SEQ))()
    assert start.shape == (1, SEQ)
