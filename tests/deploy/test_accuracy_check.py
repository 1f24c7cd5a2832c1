"""An int8 artifact records the kernel classes its accuracy was checked on (``build.checked_on``); ``qla_sdk.load``
warns when the serving CPU's differ (the same graphs round differently there), ``qla eval`` shows both beside the
score it measures, and an artifact with no check (a float export, a build without a dev set, an older artifact)
claims nothing."""

import json
import warnings
from pathlib import Path

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk import machine
from qla_sdk.cli import main
from qla_sdk.deploy import Manifest
from qla_sdk.deploy.accuracy_check import AccuracyCheckedElsewhereWarning, kernels_unlike_check

ZEN4 = {"cpu_model": "AMD EPYC", "int8": "avx512_vnni", "bf16": "avx512_bf16"}
SAPPHIRE_RAPIDS = {"cpu_model": "Intel Xeon", "int8": "amx_int8", "bf16": "amx_bf16"}
CASCADE_LAKE = {"cpu_model": "Intel Xeon", "int8": "avx512_vnni", "bf16": "none"}
ARM = {"cpu_model": "an unnamed CPU", "int8": "unknown", "bf16": "unknown"}


def _manifest(precision, inference_precision=None, checked_on=ZEN4):
    model = {"inference_precision": inference_precision} if inference_precision else {}
    build = {"int8_metric": 0.9, "metric": "accuracy"} | ({"checked_on": checked_on} if checked_on else {})
    return Manifest(Path("art"), {"precision": precision, "model": model, "build": build})


@pytest.mark.parametrize(
    ("manifest", "here", "unlike"),
    [
        (_manifest("int8", "f32"), ZEN4, {}),
        (_manifest("int8", "f32"), SAPPHIRE_RAPIDS, {"int8": ("avx512_vnni", "amx_int8")}),
        # f32 norms: the bf16 kernels do not matter, the int8 ones are the same class
        (_manifest("int8", "f32"), CASCADE_LAKE, {}),
        # bf16 norms and GELU: they do; auto is bf16 where the CPU has it
        (_manifest("int8", "bf16"), CASCADE_LAKE, {"bf16": ("avx512_bf16", "none")}),
        (_manifest("int8", "auto"), CASCADE_LAKE, {"bf16": ("avx512_bf16", "none")}),
        # flags that cannot be read match nothing, not even a record of unknown flags
        (_manifest("int8", "f32"), ARM, {"int8": ("avx512_vnni", "unknown")}),
        (_manifest("int8", "f32", checked_on=ARM), ARM, {"int8": ("unknown", "unknown")}),
        (_manifest("bf16"), SAPPHIRE_RAPIDS, {"bf16": ("avx512_bf16", "amx_bf16")}),
        (_manifest("fp32"), SAPPHIRE_RAPIDS, {}),
        (_manifest("int8", "f32", checked_on=None), SAPPHIRE_RAPIDS, {}),  # exported before the record existed
        (_manifest("int8", "f32", checked_on="zen4"), SAPPHIRE_RAPIDS, {}),  # a hand-edited record claims nothing
    ],
    ids=[
        "same",
        "amx-here",
        "bf16-unused",
        "bf16-used",
        "bf16-auto",
        "unknown-here",
        "unknown-both",
        "bf16-artifact",
        "fp32",
        "no-record",
        "bad-record",
    ],
)
def test_which_kernels_differ_from_the_check(manifest, here, unlike):
    assert kernels_unlike_check(manifest, here) == unlike


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A classifier and its int8 OpenVINO artifact, tuned on a dev set (so scored here), with the dev set."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from qla_sdk.deploy import export_model
    from qla_sdk.deploy.evaluation import evaluator, task_rows
    from qla_sdk.quantize import QuantConfig

    folder, tokenizer = tmp_path_factory.mktemp("kernels"), minilm_tokenizer()
    dev = folder / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"a {w} film\t{i % 2}\n" for i, w in enumerate(["fine", "dull"] * 8)))
    model = tiny_model("text-classification", tokenizer, folder / "hf")
    rows, _ = task_rows(model.task, str(dev), "validation", tokenizer, 64, 32, None, ["negative", "positive"])
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=(32, 64), tolerance=0.9, max_trials=1)
    evaluate = evaluator(model, str(dev), tokenizer, 64, 32)
    artifact = export_model(
        model, folder / "int8", tokenizer, config=config, calibration=rows, evaluate=evaluate, max_length=64
    )
    unchecked = export_model(model, folder / "unchecked", tokenizer, config=config, calibration=rows, max_length=64)
    return {
        "int8": artifact,
        "unchecked": unchecked,
        "fp32": export_fp32(model, tokenizer, folder / "fp32"),
        "dev": dev,
    }


def test_an_int8_build_records_where_its_accuracy_was_checked(built):
    build = json.loads((built["int8"] / "qla.json").read_text())["build"]
    assert "int8_metric" in build
    assert build["checked_on"] == machine.kernel_classes()
    # no dev set, no check: nothing recorded
    assert "checked_on" not in json.loads((built["unchecked"] / "qla.json").read_text())["build"]


def test_loading_on_the_cpu_class_it_was_checked_on_says_nothing(built):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyCheckedElsewhereWarning)
        qla_sdk.load(built["int8"])


@pytest.mark.parametrize("kind", ["int8", "unchecked", "fp32"])
def test_loading_on_other_int8_kernels_warns_only_where_a_check_was_recorded(built, monkeypatch, kind):
    here = machine.kernel_classes()
    other = "avx2_or_less" if here["int8"] != "avx2_or_less" else "amx_int8"
    monkeypatch.setattr(machine, "kernel_classes", lambda: {**here, "int8": other})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qla_sdk.load(built[kind])
    said = [str(w.message) for w in caught if issubclass(w.category, AccuracyCheckedElsewhereWarning)]
    if kind != "int8":
        assert said == []
        return
    (message,) = said
    assert f"checked on {here['cpu_model']}" in message
    assert f"int8 on {here['int8']} there, {other} here" in message
    assert f"qla eval {built['int8']} --data DEV" in message
    assert "(accuracy " in message  # the score the build recorded


def test_qla_eval_shows_the_build_check_beside_this_cpu(built, monkeypatch, capsys):
    here = machine.kernel_classes()
    assert main(["eval", str(built["int8"]), "--data", str(built["dev"])]) == 0
    out = json.loads(capsys.readouterr().out)
    recorded = json.loads((built["int8"] / "qla.json").read_text())["build"]
    assert out["build_check"] == {"metric": "accuracy", "score": recorded["int8_metric"], "checked_on": here}
    assert out["kernels_here"] == {"cpu_model": here["cpu_model"], "int8": here["int8"]}  # f32 norms: no bf16
    assert out["same_kernels_as_build_check"] is True
    monkeypatch.setattr(machine, "kernel_classes", lambda: {**here, "int8": "elsewhere"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(built["int8"]), "--data", str(built["dev"])]) == 0
    assert json.loads(capsys.readouterr().out)["same_kernels_as_build_check"] is False
    # its output says it, beside the score: not also as load's warning, which asks for what it is doing
    assert not [w for w in caught if issubclass(w.category, AccuracyCheckedElsewhereWarning)]
    assert main(["eval", str(built["fp32"]), "--data", str(built["dev"])]) == 0
    assert "build_check" not in json.loads(capsys.readouterr().out)
