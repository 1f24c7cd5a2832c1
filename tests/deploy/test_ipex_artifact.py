"""An IPEX int8 artifact (`make test-ipex`): exported with the length config, loaded only with trust_torchscript=True,
and serving the same answers as the graph it was built from. Skipped where IPEX does not import."""

import pytest
import torch
from deploy_helpers import minilm_tokenizer, tiny_model

pytestmark = pytest.mark.ipex
pytest.importorskip("intel_extension_for_pytorch", reason="IPEX runs only in its torch 2.8 environment (make ipex-env)")

import qla_sdk  # noqa: E402
from qla_sdk.deploy import export_model  # noqa: E402
from qla_sdk.errors import CheckpointError  # noqa: E402
from qla_sdk.modeling import LengthConfig  # noqa: E402
from qla_sdk.quantize import QuantConfig  # noqa: E402

TEXTS = ["a gorgeous, witty, seductive movie.", "bad", "the plot is thin but the acting holds it together " * 2]


def test_ipex_artifact_round_trip(tmp_path):
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path / "m", length_config=LengthConfig((0.7, 0.4)))
    rows = [{"input_ids": tokenizer(t)["input_ids"]} for t in TEXTS * 4]
    art = export_model(
        model,
        tmp_path / "art",
        tokenizer,
        config=QuantConfig(backend="ipex", seq_lens=(64,)),
        max_length=64,
        calibration=rows,
    )
    with pytest.raises(CheckpointError, match="trust_torchscript=True"):
        qla_sdk.load(art)
    predictor = qla_sdk.load(art, trust_torchscript=True)
    assert predictor.manifest.backend == "ipex"
    got = predictor.predict(TEXTS)
    with torch.no_grad():
        enc = tokenizer(TEXTS, padding="max_length", max_length=64, return_tensors="pt")
        want = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).argmax(-1).tolist()
    assert [model.config.id2label[i] for i in want] == [p["label"] for p in got]
