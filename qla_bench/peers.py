"""The alternatives a user would reach for instead of the SDK, each given its best documented setup:

- ``transformers``: the Hugging Face model in FP32 eager (the status quo, and the baseline of every speedup);
- ``optimum-intel``: ``OVModelFor...`` exported to OpenVINO and quantized to int8 by ``OVQuantizer`` (NNCF static
  int8 with a calibration set), run through OpenVINO with static shapes; and the same export unquantized at
  OpenVINO's default precision (no hint: bf16 on CPUs with AMX or AVX512-BF16), what a user gets without NNCF;
- ``onnxruntime``: ``torch.onnx.export``, ORT's transformer graph optimizer, ``quantize_dynamic`` (int8 weights,
  dynamic int8 activations);
- ``torch-dynamic``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``.

Every one is timed on its own runtime object directly (no pipeline or tokenizer overhead).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections import Counter
from pathlib import Path

from qla_bench.builders import BuildContext, Builder, Inputs, LoadContext
from qla_bench.kernels import onednn_kernels, openvino_kernels

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def _auto_class(task: str, library: str = "transformers"):
    if library == "optimum-intel":
        from optimum.intel import OVModelForQuestionAnswering, OVModelForSequenceClassification

        return OVModelForQuestionAnswering if task == "question-answering" else OVModelForSequenceClassification
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    return AutoModelForQuestionAnswering if task == "question-answering" else AutoModelForSequenceClassification


def load_hf_model(source: Path, task: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a base checkpoint's task head starts random: fine for a speed row
        return _auto_class(task).from_pretrained(str(source), **kwargs).eval()


def staged_checkpoint(source: Path, workdir: Path) -> Path:
    """config.json + weights only, so that exporters see a plain transformers model (not, e.g., a
    sentence-transformers folder, which optimum would export as that library's model)."""
    stage = workdir / "hf"
    stage.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.name == "config.json" or file.name.endswith(".safetensors") or file.name.endswith(".index.json"):
            target = stage / file.name
            if not target.exists():
                os.symlink(file.resolve(), target)
    return stage


def _torch_inputs(inputs: Inputs) -> dict:
    import torch

    return {k: torch.from_numpy(v) for k, v in inputs.items()}


class TorchRuntime:
    """A transformers model (FP32, or dynamically quantized) called eagerly under ``inference_mode``."""

    def __init__(self, model, size_bytes: int | None = None) -> None:
        self.model, self.size_bytes = model, size_bytes

    def bind(self, inputs: Inputs):
        import torch

        tensors = _torch_inputs(inputs)

        def call():
            with torch.inference_mode():
                return self.model(**tensors)

        return call

    def kernels(self, inputs: Inputs) -> dict:
        import torch

        summary = onednn_kernels(self.bind(inputs))
        summary["quantized_engine"] = torch.backends.quantized.engine
        return summary


# transformers (FP32 eager) --------------------------------------------------------------------------------------


def _load_transformers(ctx: LoadContext) -> TorchRuntime:
    return TorchRuntime(load_hf_model(ctx.artifact, ctx.spec.task))


# torch.ao quantize_dynamic --------------------------------------------------------------------------------------


def _load_torch_dynamic(ctx: LoadContext) -> TorchRuntime:
    import torch

    model = load_hf_model(ctx.artifact, ctx.spec.task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated in recent torch; it still runs
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        buffer = io.BytesIO()
        torch.save(quantized.state_dict(), buffer)  # what the quantized weights take as a file
    return TorchRuntime(quantized, buffer.getbuffer().nbytes)


# ONNX Runtime ---------------------------------------------------------------------------------------------------


class _MaskedForOnnx:
    """The transformers model with its attention mask expanded to 4-D additive form outside the model:
    transformers 5 builds 2-D masks with code the TorchScript-based ONNX exporter cannot trace."""

    def __new__(cls, model):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                additive = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
                out = self.model(input_ids=input_ids, attention_mask=additive, token_type_ids=token_type_ids)
                return tuple(v for v in out.values())

        return Wrapper().eval()


def _build_onnxruntime(ctx: BuildContext) -> Path:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = load_hf_model(ctx.source, ctx.spec.task, attn_implementation="eager")
    config = model.config
    fp32 = ctx.workdir / "model.fp32.onnx"
    example = _torch_inputs({k: v[:1] for k, v in ctx.calibration[0].items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _MaskedForOnnx(model),
            tuple(example[name] for name in INPUT_NAMES),
            str(fp32),
            input_names=list(INPUT_NAMES),
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES},
            opset_version=17,
            dynamo=False,
        )
    notes = {"exporter": "torch.onnx.export (TorchScript)", "optimizer": None}
    to_quantize = fp32
    try:  # ORT's transformer fusions (SkipLayerNorm, BiasGelu, ...), as its BERT int8 guide does before quantizing
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(
            str(fp32), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
        to_quantize = ctx.workdir / "model.opt.onnx"
        optimized.save_model_to_file(str(to_quantize))
        notes["optimizer"] = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    except Exception as exc:  # the plain graph still quantizes; say why fusions are missing
        notes["optimizer"] = f"skipped: {type(exc).__name__}: {exc}"
    artifact = ctx.workdir / "onnxruntime-int8"
    artifact.mkdir()
    quantize_dynamic(
        str(to_quantize),
        str(artifact / "model.onnx"),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops have no inferred output type
    )
    (artifact / "build.json").write_text(json.dumps(notes, indent=2))
    return artifact


class OrtRuntime:
    size_bytes = None

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def bind(self, inputs: Inputs):
        feed = {name: inputs[name] for name in self.names}
        return lambda: self.session.run(None, feed)

    def kernels(self, inputs: Inputs) -> dict:
        import onnx

        ops = Counter(node.op_type for node in onnx.load(str(self.path), load_external_data=False).graph.node)
        build = self.path.parent / "build.json"
        return {
            "source": "ONNX Runtime graph (int8 MatMulInteger runs on MLAS kernels)",
            "providers": self.session.get_providers(),
            "int8_ops": {k: v for k, v in ops.items() if "Integer" in k or "Quant" in k},
            "build": json.loads(build.read_text()) if build.is_file() else None,
        }


def _load_onnxruntime(ctx: LoadContext) -> OrtRuntime:
    return OrtRuntime(ctx.artifact / "model.onnx", ctx.threads)


# optimum-intel (OpenVINO + NNCF) --------------------------------------------------------------------------------


def _build_optimum_intel(ctx: BuildContext) -> Path:
    from datasets import Dataset
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

    model_class = _auto_class(ctx.spec.task, "optimum-intel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model_class.from_pretrained(str(staged_checkpoint(ctx.source, ctx.workdir)), export=True, compile=False)
    if ctx.spec.precision == "default":  # exported as it is: OpenVINO picks the precision when it compiles
        artifact = ctx.workdir / "optimum-intel-default"
        model.save_pretrained(str(artifact))
        return artifact
    rows = [{k: v[i].tolist() for k, v in b.items()} for b in ctx.calibration for i in range(len(b["input_ids"]))]
    dataset = Dataset.from_list(rows)
    artifact = ctx.workdir / "optimum-intel-int8"
    OVQuantizer.from_pretrained(model).quantize(
        calibration_dataset=dataset,
        ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(rows))),
        save_directory=str(artifact),
    )
    return artifact


class OpenVINORuntime:
    """An OpenVINO model compiled for each input shape (static shapes are OpenVINO's fastest setting)."""

    size_bytes = None

    def __init__(self, model, threads: int) -> None:
        import openvino as ov

        self.core, self.model = ov.Core(), model
        self.config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self.compiled = None

    def _compile(self, inputs: Inputs):
        names = [p.get_any_name() for p in self.model.inputs]
        shape = next(iter(inputs.values())).shape
        self.model.reshape({name: list(shape) for name in names})
        self.compiled = self.core.compile_model(self.model, "CPU", self.config)
        return self.compiled, names

    def bind(self, inputs: Inputs):
        compiled, names = self._compile(inputs)
        request = compiled.create_infer_request()
        feed = {name: inputs[name] for name in names}
        return lambda: request.infer(feed)

    def kernels(self, inputs: Inputs) -> dict:
        compiled, _ = self._compile(inputs)
        return openvino_kernels(compiled)


def _load_optimum_intel(ctx: LoadContext) -> OpenVINORuntime:
    import openvino as ov

    return OpenVINORuntime(ov.Core().read_model(str(ctx.artifact / "openvino_model.xml")), ctx.threads)


BUILDERS = {
    "transformers": Builder(
        None, _load_transformers, requires=("transformers",), description="Hugging Face FP32 eager"
    ),
    "torch-dynamic": Builder(
        None, _load_torch_dynamic, requires=("torch",), description="torch.ao quantize_dynamic (nn.Linear)"
    ),
    "onnxruntime": Builder(
        _build_onnxruntime,
        _load_onnxruntime,
        requires=("onnx", "onnxruntime"),
        description="ONNX Runtime quantize_dynamic int8",
    ),
    "optimum-intel": Builder(
        _build_optimum_intel,
        _load_optimum_intel,
        requires=("optimum.intel", "openvino", "nncf", "datasets"),
        description="optimum-intel OVQuantizer int8 (NNCF) on OpenVINO",
    ),
}
