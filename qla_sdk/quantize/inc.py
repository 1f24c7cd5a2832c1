"""Intel Neural Compressor 3.x static int8 on the length-adaptive model (PT2E path).

``torch.export`` -> ``prepare`` (observers) -> calibrate -> ``convert`` (quantize/dequantize pairs) -> fold the
weight quantization into int8 constants. Activations are uint8 with a zero point (asymmetric, per tensor),
weights int8 symmetric per output channel: what oneDNN's AMX/VNNI kernels take once Inductor (freezing on)
fuses the pairs. The token selection (topk/sort/gather/scatter) is in the same graph, so pruning runs in the
int8 model. Accuracy-aware tuning uses INC's ``autotune`` over a short list of configs and keeps the first whose
dev metric is within the relative tolerance of fp32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from qla_sdk.errors import QlaError

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class QuantizationError(QlaError, RuntimeError):
    """Quantization could not run, or no tried config kept the accuracy within tolerance."""


def require_inc():
    """Import INC's PyTorch API, or say what is missing (``neural-compressor`` alone lacks its torch extras)."""
    try:
        import neural_compressor.torch.quantization as inc_quant
        from neural_compressor.torch.export import export  # noqa: F401
    except ImportError as exc:
        raise QuantizationError(
            f"Intel Neural Compressor's PyTorch API cannot be imported ({exc}). INC 3.x needs its 'pt' extras "
            "(py-cpuinfo, pydantic, prettytable, torchao): pip install 'neural-compressor[pt]==3.10' "
            "-c requirements/constraints.txt, or use --backend openvino (NNCF)"
        ) from None
    # INC logs every node it visits at INFO; keep warnings only.
    logging.getLogger("neural_compressor").setLevel(logging.WARNING)
    return inc_quant


def static_config(act_algo: str = "minmax", fp32_modules: Sequence[str] = ()):
    """INC's static config: uint8 asymmetric activations, int8 symmetric per-channel weights; ``fp32_modules``
    (module names of the exported graph, e.g. ``model.encoder.layers.5.ffn_out``) stay fp32."""
    inc_quant = require_inc()
    config = inc_quant.StaticQuantConfig(
        w_dtype="int8",
        w_sym=True,
        w_granularity="per_channel",
        act_dtype="uint8",
        act_sym=False,
        act_granularity="per_tensor",
        act_algo=act_algo,
    )
    for name in fp32_modules:
        config.set_local(name, inc_quant.StaticQuantConfig(w_dtype="fp32", act_dtype="fp32"))
    return config


def tuning_configs(num_layers: int, act_algo: str = "minmax") -> list[tuple[str, object]]:
    """What accuracy-aware tuning tries, in order: the plain config, the other calibration algorithm, then the
    layers known to be sensitive in BERT int8 (the last layers' FFN output, the task head) kept in fp32."""
    other = "kl" if act_algo == "minmax" else "minmax"
    last = num_layers - 1
    head = ["model.head.qa", "model.head.dense", "model.head.out"]
    ffn_out = [f"model.encoder.layers.{i}.ffn_out" for i in range(num_layers)]
    return [
        (f"all Linear int8, {act_algo} calibration", static_config(act_algo)),
        (f"all Linear int8, {other} calibration", static_config(other)),
        (f"task head fp32, layer {last} ffn_out fp32", static_config(act_algo, [*head, ffn_out[last]])),
        ("task head and every ffn_out fp32", static_config(act_algo, [*head, *ffn_out])),
    ]


def batch_dynamic_shapes() -> tuple[dict, ...]:
    """The batch dimension stays free; the sequence length is fixed by the length config's static widths."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    return ({0: batch}, {0: batch}, {0: batch})


def export_for_quantization(model: torch.nn.Module, example: Inputs):
    require_inc()
    from neural_compressor.torch.export import export

    with torch.no_grad():
        exported = export(model.eval(), tuple(example), dynamic_shapes=batch_dynamic_shapes())
    if exported is None:
        raise QuantizationError("torch.export failed on the model (see the log above)")
    return exported


def quantize(model: torch.nn.Module, example: Inputs, calibration: Sequence[Inputs], config=None):
    """Exported, calibrated and converted int8 ``GraphModule`` (qdq form, weights folded to int8)."""
    inc_quant = require_inc()
    if not calibration:
        raise QuantizationError("static quantization needs calibration inputs (at least one batch)")
    prepared = inc_quant.prepare(export_for_quantization(model, example), config or static_config())
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    converted = inc_quant.convert(prepared)
    return fold_int8_weights(converted)


def fold_int8_weights(graph_module):
    """Replace ``quantize(fp32 weight)`` by its int8 result and drop the fp32 weights nothing reads any more."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    constant_fold(graph_module, _quant_node_constraint)
    graph_module.graph.eliminate_dead_code()
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
            delattr(owner, attr)
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


def to_program(graph_module, example: Inputs) -> torch.export.ExportedProgram:
    """The converted graph as an ``ExportedProgram`` (what is saved and what Inductor / eager run)."""
    with torch.no_grad():
        return torch.export.export(graph_module, tuple(example), dynamic_shapes=batch_dynamic_shapes(), strict=False)


def graph_targets(module) -> set[str]:
    graph = module.graph if hasattr(module, "graph") else module.graph_module.graph
    return {str(node.target) for node in graph.nodes if node.op == "call_function"}


@dataclass
class TuningResult:
    description: str
    config: object
    baseline: float
    score: float
    trials: list[tuple[str, float]] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"baseline {self.baseline:.4f}"]
        lines += [f"  {name}: {score:.4f} ({_relative_drop(self.baseline, score):+.2%})" for name, score in self.trials]
        return "\n".join(lines)


def _relative_drop(baseline: float, score: float) -> float:
    return (baseline - score) / baseline if baseline else 0.0


def tune(
    model: torch.nn.Module,
    example: Inputs,
    calibration: Sequence[Inputs],
    evaluate: Callable[[Callable[..., object]], float],
    tolerance: float = 0.01,
    configs: Sequence[tuple[str, object]] | None = None,
    max_trials: int | None = None,
    baseline: float | None = None,
) -> TuningResult:
    """Accuracy-aware config choice with INC's ``autotune``: ``evaluate(run)`` scores a model (higher is better,
    e.g. dev accuracy) where ``run(input_ids, attention_mask, token_type_ids)`` gives its outputs. ``baseline``: the
    fp32 metric to hold the tolerance against, e.g. the unmodified model's when ``model`` already has int8
    embeddings; INC's stopping rule then uses it too, and ``model`` itself is not scored. Default: ``evaluate``'s
    score of ``model`` before quantization (which includes any change already made to it).

    Returns the first config within ``tolerance`` (relative) of fp32, or raises ``QuantizationError`` listing
    every config tried and its score.
    """
    inc_quant = require_inc()
    from neural_compressor.common.base_tuning import TuningConfig

    num_layers = _num_layers(model)
    configs = list(configs or tuning_configs(num_layers))[: max_trials or None]
    scores: list[float] = []

    def eval_fn(candidate) -> float:
        # INC's first call scores ``model`` unquantized and becomes the baseline its stopping rule holds trials
        # against. A caller's baseline must take that place: else a trial within tolerance of an already degraded
        # model (int8 embeddings) stops the search, fails the true tolerance below, and later configs never run.
        if not scores and baseline is not None:
            score = float(baseline)
        else:
            with torch.no_grad():
                score = float(evaluate(candidate))
        scores.append(score)
        return score

    def run_fn(prepared) -> None:
        with torch.no_grad():
            for inputs in calibration:
                prepared(*inputs)

    exported = export_for_quantization(model, example)
    tuning = TuningConfig(config_set=[c for _, c in configs], tolerable_loss=tolerance, max_trials=len(configs))
    inc_quant.autotune(exported, tuning, eval_fn=eval_fn, run_fn=run_fn, example_inputs=tuple(example))
    fp32, trial_scores = scores[0], scores[1 : 1 + len(configs)]
    trials = [(name, score) for (name, _), score in zip(configs, trial_scores, strict=False)]
    for (name, config), score in zip(configs, trial_scores, strict=False):
        if _relative_drop(fp32, score) <= tolerance:
            return TuningResult(name, config, fp32, score, trials)
    result = TuningResult("none", None, fp32, max(trial_scores, default=float("nan")), trials)
    raise QuantizationError(
        f"no int8 config kept the dev metric within {tolerance:.1%} of the baseline ({fp32:.4f}):\n{result.report()}\n"
        "Raise --tolerance, calibrate on more samples (--calibration-samples), or export --backend bf16"
    )


def _num_layers(model: torch.nn.Module) -> int:
    task_model = getattr(model, "model", model)
    return int(task_model.config.num_hidden_layers)
