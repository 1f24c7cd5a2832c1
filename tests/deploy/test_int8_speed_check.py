"""``qla_sdk.load`` warns where an int8 artifact is served on a CPU without int8 dot-product instructions (VNNI or
AMX), where its int8 runs no faster than FP32; float artifacts and CPUs with them get no warning."""

import warnings
from pathlib import Path

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk import machine
from qla_sdk.deploy import Manifest
from qla_sdk.deploy.int8_speed_check import Int8WithoutDotProductWarning, warn_if_int8_does_not_pay


def _said(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, Int8WithoutDotProductWarning)]


@pytest.mark.parametrize(
    ("precision", "kernels", "warns"),
    [
        ("int8", "avx2_or_less", True),
        ("int8", "amx_int8", False),
        ("int8", "avx512_vnni", False),
        ("int8", "avx_vnni", False),
        ("int8", "avx512", False),  # AVX-512 without VNNI: not measured slow, not claimed
        ("int8", machine.UNKNOWN, False),  # another architecture: nothing known
        ("fp32", "avx2_or_less", False),
        ("bf16", "avx2_or_less", False),
    ],
)
def test_only_int8_on_a_cpu_without_dot_products_warns(precision, kernels, warns):
    manifest = Manifest(Path("art"), {"precision": precision})
    said = _said(lambda: warn_if_int8_does_not_pay(manifest, kernels))
    assert len(said) == warns
    if warns:
        assert said[0].startswith("art: an int8 artifact on a CPU without int8 dot-product instructions")
        assert "export the model with --backend fp32" in said[0]  # the fix for this CPU


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    folder, tokenizer = tmp_path_factory.mktemp("int8_speed"), minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, folder / "hf")
    calibration = [{"input_ids": [101, *range(2000, 2000 + n), 102]} for n in (5, 10, 20)]
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=(32,))
    int8 = export_model(model, folder / "int8", tokenizer, config=config, calibration=calibration, max_length=32)
    return {"int8": int8, "fp32": export_fp32(model, tokenizer, folder / "fp32")}


@pytest.mark.parametrize(
    ("kind", "kernels", "warns"),
    [("int8", "avx2_or_less", True), ("int8", "amx_int8", False), ("fp32", "avx2_or_less", False)],
)
def test_load_says_where_int8_does_not_pay(artifacts, monkeypatch, kind, kernels, warns):
    monkeypatch.setattr(machine, "int8_kernels", lambda flags=None: kernels)
    said = _said(lambda: qla_sdk.load(artifacts[kind]))
    assert len(said) == warns
    if warns:
        assert said[0].startswith(f"{artifacts['int8']}: an int8 artifact")
