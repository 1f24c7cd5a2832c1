"""Our rows: the length-adaptive runtime in FP32 eager, and the int8 backends of ``qla_sdk.backends``
(INC/NNCF int8, then Inductor, OpenVINO or IPEX), built and loaded exactly as ``qla export`` / a Predictor do.
"""

from __future__ import annotations

import json
from pathlib import Path

from qla_sdk.bench.builders import BuildContext, Builder, Inputs, LoadContext, MissingDependency
from qla_sdk.bench.kernels import onednn_kernels, openvino_kernels
from qla_sdk.bench.peers import TorchRuntime

ENTRY_FILE = "backend-entry.json"


# FP32 eager: our encoder with the length config baked in ----------------------------------------------------------


def _load_eager(ctx: LoadContext) -> TorchRuntime:
    from qla_sdk.modeling import from_pretrained

    model = from_pretrained(ctx.artifact, task=ctx.spec.task).eval()
    return TorchRuntime(model.with_length_config(ctx.length_config))


# int8 backends ----------------------------------------------------------------------------------------------------


def our_backend(name: str):
    """The ``qla_sdk.backends`` backend called ``name`` (inductor, openvino, ipex)."""
    try:
        from qla_sdk.backends import get_backend
    except ImportError as exc:
        raise MissingDependency(f"qla_sdk.backends cannot provide backend {name!r}: {exc}") from None
    return get_backend(name)


def _calibration_rows(ctx: BuildContext) -> list[dict]:
    return [
        {"input_ids": batch["input_ids"][i].tolist(), "token_type_ids": batch["token_type_ids"][i].tolist()}
        for batch in ctx.calibration
        for i in range(len(batch["input_ids"]))
    ]


def _build_int8(ctx: BuildContext) -> Path:
    from qla_sdk.backends.base import BuildRequest
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.quantize.config import QuantConfig

    backend = our_backend(ctx.spec.backend)
    model = from_pretrained(ctx.source, task=ctx.spec.task).eval()
    rows = _calibration_rows(ctx)
    config = QuantConfig(backend=ctx.spec.backend, calibration_samples=len(rows), seq_lens=(ctx.seq_len,), max_trials=1)
    request = BuildRequest(
        model=model,
        length_config=ctx.length_config,
        seq_lens=(ctx.seq_len,),
        config=config,
        calibration=rows,
        pad_token_id=model.config.pad_token_id or 0,
    )
    built = backend.build(request)
    artifact = ctx.workdir / f"{ctx.spec.backend}-int8"
    artifact.mkdir(parents=True, exist_ok=True)
    entry = backend.save(built, artifact)
    (artifact / ENTRY_FILE).write_text(json.dumps(entry, indent=2, default=str))
    return artifact


class BackendRuntime:
    """A ``qla_sdk.backends`` Runner, called as a deployed model calls it (int64 arrays in, float32 arrays out)."""

    size_bytes = None

    def __init__(self, runner, backend: str) -> None:
        self.runner, self.backend = runner, backend

    def bind(self, inputs: Inputs):
        ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
        return lambda: self.runner.run(ids, mask, types)

    def kernels(self, inputs: Inputs) -> dict:
        if self.backend == "openvino":
            compiled = _compiled_openvino_model(self.runner, inputs["input_ids"].shape[1])
            if compiled is not None:
                return openvino_kernels(compiled)
        return onednn_kernels(self.bind(inputs))


def _compiled_openvino_model(runner, seq_len: int):
    """The OpenVINO CompiledModel an ``OpenVINORunner`` holds for ``seq_len`` (its per-bucket ``_compiled``)."""
    compiled = getattr(runner, "_compiled", None) or {}
    held = compiled.get(seq_len)
    return held if hasattr(held, "get_runtime_model") else None


def _load_int8(ctx: LoadContext) -> BackendRuntime:
    backend = our_backend(ctx.spec.backend)
    entry = json.loads((ctx.artifact / ENTRY_FILE).read_text())
    # The suite loads artifacts it has just built itself, so trusting the IPEX TorchScript file is safe here.
    trust = {"trust_torchscript": True} if ctx.spec.backend == "ipex" else {}
    runner = backend.load(ctx.artifact, entry, threads=ctx.threads, **trust)
    return BackendRuntime(runner, ctx.spec.backend)


_INT8_REQUIRES = {
    "inductor": ("torch", "neural_compressor"),
    "openvino": ("openvino", "nncf"),
    "ipex": ("intel_extension_for_pytorch",),
}

BUILDERS = {
    "eager": Builder(None, _load_eager, requires=("torch",), description="qla length-adaptive FP32 eager"),
    **{
        name: Builder(
            _build_int8,
            _load_int8,
            seq_dependent=True,
            requires=requires,
            description=f"qla int8 on {name}",
        )
        for name, requires in _INT8_REQUIRES.items()
    },
}
