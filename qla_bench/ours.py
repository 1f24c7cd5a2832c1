"""Our rows: the SDK's own artifacts, built with ``qla_sdk.deploy.export_model`` and loaded with ``qla_sdk.load``,
exactly as a user exports and serves them: FP32 eager (the eager runtime) and the int8 backends (INC/NNCF int8, then
Inductor, OpenVINO or IPEX; OpenVINO with ``inference_precision='auto'``: bf16, what OpenVINO picks for the peers,
except for graphs with the fused int8 pruning attention). Only the runner's ``run`` is timed (tokenization is not part
of a row).
"""

from __future__ import annotations

from pathlib import Path

from qla_bench.builders import BuildContext, Builder, Inputs, LoadContext, MissingDependency
from qla_bench.kernels import fused_attention_key, onednn_kernels, openvino_kernels


def _tokenizer(source: Path, vocab_size: int, workdir: Path):
    """The checkpoint's own tokenizer, or for weight-only folders such as the random BERT-base the shipped MiniLM's
    (BERT's uncased WordPiece): an artifact carries a tokenizer, and rows are timed on token ids anyway. A model that
    embeds fewer ids than that gets a placeholder vocabulary of its size (``qla_sdk.load`` refuses a tokenizer that
    writes ids past the embeddings)."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.pretrained import minilm_path

    has_own = any((source / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))
    if has_own:
        return load_tokenizer(source)
    tokenizer = load_tokenizer(minilm_path())
    if len(tokenizer) <= vocab_size:
        return tokenizer
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = workdir / "placeholder-vocab.txt"
    vocab.write_text("\n".join(specials + [f"[unused{i}]" for i in range(vocab_size - len(specials))]) + "\n")
    return load_tokenizer(vocab)


def _calibration_rows(ctx: BuildContext) -> list[dict]:
    return [
        {"input_ids": batch["input_ids"][i].tolist(), "token_type_ids": batch["token_type_ids"][i].tolist()}
        for batch in ctx.calibration
        for i in range(len(batch["input_ids"]))
    ]


def _export(ctx: BuildContext) -> Path:
    try:
        from qla_sdk.deploy import export_model
        from qla_sdk.modeling import from_pretrained
        from qla_sdk.quantize import QuantConfig
    except ImportError as exc:
        raise MissingDependency(f"qla_sdk cannot export backend {ctx.spec.backend!r}: {exc}") from None

    backend = "fp32" if ctx.spec.backend == "eager" else ctx.spec.backend
    model = from_pretrained(ctx.source, task=ctx.spec.task).eval()
    rows = [] if backend == "fp32" else _calibration_rows(ctx)
    # OpenVINO rows run their floating-point operations in bf16 where the CPU has native bf16, as OpenVINO runs the
    # peers' unhinted graphs there (f32 elsewhere), except graphs with the fused int8 pruning attention, which run
    # f32 (``inference_precision='auto'``: bf16 would only add conversions around the op); the row's kernels record
    # which hint ran.
    precision = {"inference_precision": "auto"} if backend == "openvino" else {}
    config = QuantConfig(
        backend=backend, calibration_samples=max(1, len(rows)), seq_lens=(ctx.seq_len,), max_trials=1, **precision
    )
    return export_model(
        model,
        ctx.workdir / f"{backend}-artifact",
        _tokenizer(ctx.source, model.config.vocab_size, ctx.workdir),
        config=config,
        length_config=ctx.length_config,
        max_length=ctx.seq_len,
        calibration=rows,
    )


class ArtifactRuntime:
    """A loaded artifact's runner, called as a deployed model calls it (int64 arrays in, float32 arrays out)."""

    def __init__(self, predictor, backend: str) -> None:
        self.runner, self.backend = predictor.runner, backend
        weights = predictor.manifest.model_dir
        self.size_bytes = sum(p.stat().st_size for p in weights.rglob("*") if p.is_file())

    def bind(self, inputs: Inputs):
        ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
        return lambda: self.runner.run(ids, mask, types)

    def kernels(self, inputs: Inputs) -> dict:
        if self.backend == "openvino":
            unpadded = bool(inputs["attention_mask"].all())
            batch, seq_len = inputs["input_ids"].shape
            compiled = self.runner.compiled_model(seq_len, unpadded=unpadded, batch=batch)
            return openvino_kernels(compiled, "ref" if self.runner.fused_attention == "float32" else None)
        summary = onednn_kernels(self.bind(inputs))
        kernel = getattr(self.runner, "attention_kernel", None)  # Inductor's fused pruning attention
        if kernel is not None and self.runner.fused_attention:
            summary["matmuls"] = {fused_attention_key(kernel): self.runner.fused_attention}
        return summary


def _load(ctx: LoadContext) -> ArtifactRuntime:
    import qla_sdk

    # The suite loads artifacts it has just built itself, so trusting the IPEX TorchScript file is safe here.
    trust = {"trust_torchscript": True} if ctx.spec.backend == "ipex" else {}
    return ArtifactRuntime(qla_sdk.load(ctx.artifact, threads=ctx.threads, **trust), ctx.spec.backend)


_REQUIRES = {
    "eager": ("torch",),
    "inductor": ("torch", "neural_compressor"),
    "openvino": ("openvino", "nncf"),
    "ipex": ("intel_extension_for_pytorch",),
}

BUILDERS = {
    name: Builder(
        _export,
        _load,
        seq_dependent=True,  # the artifact holds the length config at this sequence length (and its graph bucket)
        requires=requires,
        description="qla length-adaptive FP32 eager (the eager runtime)" if name == "eager" else f"qla int8 on {name}",
    )
    for name, requires in _REQUIRES.items()
}
