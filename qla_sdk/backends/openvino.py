"""int8 OpenVINO IR: the pruned fp32 graph (torch.export, then ``ov.convert_model``) quantized by NNCF with
asymmetric (zero-point) activations and symmetric int8 weights (preset MIXED), run by the OpenVINO CPU runtime.
Every encoder Linear is int8; the task head and the token-significance products stay floating point.

The inference precision of the floating-point operations is always stated (``QuantConfig.inference_precision``,
recorded in the artifact): on CPUs with AMX or AVX512-BF16, OpenVINO's default would silently run them in bf16.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from qla_sdk.backends.base import (
    Backend,
    BuildRequest,
    Runner,
    check_calibration,
    dynamic_batch_shapes,
    example_inputs,
    fp32_metric,
    pad_rows,
    tolerance_baseline,
    tuning_report,
)
from qla_sdk.backends.openvino_ir import read_graph, save_sharing_weights
from qla_sdk.errors import ConfigError
from qla_sdk.machine import usable_cores
from qla_sdk.quantize.config import INFERENCE_PRECISIONS
from qla_sdk.quantize.inc import QuantizationError
from qla_sdk.quantize.int8_state import with_int8_embeddings

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
#: Rows x tokens one graph run takes at most (``OpenVINORunner``): larger batches run in even pieces.
MAX_RUN_TOKENS = 4096


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise QuantizationError("OpenVINO is not installed: pip install 'qla-sdk[quant]' (openvino, nncf)") from None
    return openvino


def convert(model: torch.nn.Module, seq_len: int, pad_token_id: int = 0):
    """fp32 ``ov.Model`` of a ``FixedLengthModel`` at ``seq_len`` tokens (batch free)."""
    ov = require_openvino()
    example = example_inputs(seq_len, pad_token_id=pad_token_id)
    with torch.no_grad():
        program = torch.export.export(model.eval(), example, dynamic_shapes=dynamic_batch_shapes())
    ov_model = ov.convert_model(program)
    # The widths of the length config are constants of this graph: only seq_len inputs are valid.
    ov_model.reshape({port: ov.PartialShape([-1, seq_len]) for port in ov_model.inputs})
    return ov_model


# What accuracy-aware quantization tries, in order (NNCF advanced parameters).
def _trials():
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    no_smooth = AdvancedSmoothQuantParameters(matmul=-1)
    return [
        ("MIXED preset (asymmetric activations), smooth quant", {}),
        (
            "MIXED preset, no smooth quant",
            {"advanced_parameters": AdvancedQuantizationParameters(smooth_quant_alphas=no_smooth)},
        ),
        (
            "MIXED preset, no smooth quant, full bias correction",
            {
                "fast_bias_correction": False,
                "advanced_parameters": AdvancedQuantizationParameters(smooth_quant_alphas=no_smooth),
            },
        ),
    ], nncf


def quantize(ov_model, calibration: list, options: dict | None = None, head_linears: int = 0):
    """NNCF post-training int8 of an ``ov.Model``: asymmetric activations (MIXED), symmetric weights. The token
    significance products stay fp32 (see ``significance_matmuls``), and so do the task head's ``head_linears``
    products (see ``head_matmuls``)."""
    import nncf

    options = dict(options or {})
    keep_fp32 = significance_matmuls(ov_model) + head_matmuls(ov_model, head_linears)
    if keep_fp32 and "ignored_scope" not in options:
        options["ignored_scope"] = nncf.IgnoredScope(names=keep_fp32, validate=False)
    dataset = nncf.Dataset(calibration, lambda batch: [t.numpy() for t in batch])
    return nncf.quantize(
        ov_model,
        dataset,
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),  # NNCF counts dataset items, here batches
        **options,
    )


def significance_matmuls(ov_model) -> list[str]:
    """Names of the (mask row) x (attention probabilities) products that score tokens for pruning: the only
    MatMuls of the graph with one output row. NNCF's transformer scheme would fake-quantize their probability
    input to uint8: an extra pass over every (len x len) map, for a product OpenVINO still runs in fp32, and a
    ranking computed on rounded probabilities instead of the model's own."""
    names = []
    for op in ov_model.get_ops():
        if op.get_type_name() != "MatMul":
            continue
        shape = op.get_output_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() == 3 and shape[1].is_static and shape[1].get_length() == 1:
            names.append(op.get_friendly_name())
    return names


def head_matmuls(ov_model, count: int) -> list[str]:
    """Names of the task head's products: the last ``count`` MatMuls with a constant (weight) operand, in execution
    order (the head reads the restored hidden states, after every encoder op). The head is kept fp32: int8 hurts it
    most for a few thousand MACs per token (the final int8 model of ``recipes/sst2.yaml`` went from 87.96% dev
    accuracy with an int8 head to 88.19% with an fp32 one, ``benchmarks/results/sst2_full_recipe.json``)."""
    if count <= 0:
        return []
    weighted = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "MatMul" and any(_is_weight(op.input_value(i).get_node()) for i in range(2)):
            weighted.append(op.get_friendly_name())
    return weighted[-count:]


def _is_weight(node) -> bool:
    # fp32 weights are Constants; compressed ones reach the MatMul through a Convert of a Constant.
    if node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def head_linear_count(model: torch.nn.Module) -> int:
    """Linear layers of a ``TaskModel``'s head (1 for the QA span head, 2 for pooler + classifier)."""
    head = getattr(model, "head", None)
    return 0 if head is None else sum(isinstance(m, torch.nn.Linear) for m in head.modules())


class Built:
    def __init__(self, models: dict, report: dict, precision: str, inference_precision: str = "f32") -> None:
        self.models, self.report, self.precision = models, report, precision
        self.inference_precision = inference_precision


class OpenVINORunner(Runner):
    """Serves one graph per bucket (``seq_len``). A call at one of ``static_batches`` runs a copy compiled for its
    exact input shape: with the batch static, OpenVINO resolves every length after the pruning layers' row gathers
    and picks static kernels, where a dynamic batch leaves everything after the first gather dynamic. Rows
    without padding run the graph's mask-free copy. The pruning attention blocks of both run fused into one operation
    where the int8 extension builds, and with it the full-length layers' attention (``fuse_attention``;
    ``QLA_SDK_FUSED_ATTENTION`` chooses, see ``fused_attention_kernel``; ``fused_attention`` says which kernel runs,
    None for OpenVINO's own nodes). Each graph is compiled with the artifact's inference precision, ``auto`` resolved
    per graph (``graph_precision``).

    Every copy is compiled at construction, so no request pays for a compile: a static copy for each batch size of
    ``static_batches`` (default batch 1, the latency case) and, with ``dynamic_batch``, one dynamic-batch copy for
    any other batch size. Without it (a service that runs one row at a time: half the copies, less load time and
    memory, benchmarks/results/openvino_load.md), a batch of another size runs row by row on the batch-1 copies. One
    infer request per thread and compiled copy.

    A batch of more than ``max_run_tokens`` tokens (rows x ``seq_len``) runs in even pieces under it: the dynamic
    copy keeps memory for every intermediate tensor of the largest batch it has run, in proportion to its rows, and
    keeps it after the call, while rows past a few thousand tokens add no throughput
    (benchmarks/results/openvino_memory.md)."""

    def __init__(
        self,
        core,
        models: dict[int, object],
        precision: str,
        threads: int | None,
        static_batches: tuple[int, ...] = (1,),
        max_run_tokens: int = MAX_RUN_TOKENS,
        dynamic_batch: bool = True,
    ) -> None:
        from qla_sdk.runtime.openvino_attention import sum_significance_directly

        if max_run_tokens < 1:
            raise ConfigError(f"max_run_tokens {max_run_tokens}: must be >= 1 (tokens, rows x length, per graph run)")
        if not dynamic_batch and 1 not in static_batches:
            raise ConfigError(
                f"static_batches {tuple(static_batches)} without a dynamic-batch copy: include batch 1, which runs the "
                "rows of any other batch size one at a time"
            )
        self.max_run_tokens, self.dynamic_batch = max_run_tokens, dynamic_batch
        ov = require_openvino()
        kernel = fused_attention_kernel()
        self._graphs: dict[tuple[int, bool], object] = {}
        fused: dict[tuple[int, bool], int] = {}  # attention blocks fused per graph
        for n, model in models.items():
            variant = without_attention_mask(model)
            if kernel is not None:  # on copies: ``models`` may be what an export then saves
                model = model.clone()
                fused[(int(n), False)] = fuse_attention(model, kernel)
                if variant is not None:
                    fused[(int(n), True)] = fuse_attention(variant, kernel)
            elif variant is not None:
                sum_significance_directly(variant)
            self._graphs[(int(n), False)] = model
            if variant is not None:
                self._graphs[(int(n), True)] = variant
        self.fused_attention = kernel if any(fused.values()) else None
        self.seq_lens = tuple(sorted({n for n, _ in self._graphs}))
        self.static_batches = tuple(sorted({int(b) for b in static_batches}))
        copies: dict[tuple[int, bool, int | None], tuple] = {}  # (graph, hint) to compile
        for key, graph in self._graphs.items():
            seq_len, unpadded = key
            hint = graph_precision(precision, kernel == "int8" and fused.get(key, 0) > 0)
            if dynamic_batch:
                copies[(seq_len, unpadded, None)] = (graph, hint)
            for batch in self.static_batches:
                static = graph.clone()
                static.reshape({port: ov.PartialShape([batch, seq_len]) for port in static.inputs})
                copies[(seq_len, unpadded, batch)] = (static, hint)
        # Compiled side by side: the CPU plugin compiles one model on about one core (and releases the GIL).
        with ThreadPoolExecutor(max(1, min(len(copies), usable_cores()))) as pool:
            jobs = {key: pool.submit(compile_model, core, *copy, threads) for key, copy in copies.items()}
        self._compiled = {key: job.result() for key, job in jobs.items()}
        self._local = threading.local()
        self._ov = ov

    def compiled_model(self, seq_len: int, unpadded: bool = False, batch: int | None = 1):
        """The OpenVINO ``CompiledModel`` that serves ``batch`` rows padded to ``seq_len`` (``unpadded``: rows
        without padding, when the graph has a mask-free copy; ``batch=None``: the dynamic-batch copy), e.g. to read
        which kernels it runs."""
        if seq_len not in self.seq_lens:
            raise ConfigError(f"no graph for {seq_len} tokens; this model has graphs for {list(self.seq_lens)}")
        unpadded = unpadded and (seq_len, True) in self._graphs
        if batch not in self.static_batches and not self.dynamic_batch:
            raise ConfigError(
                f"no copy for batch {batch}: this runner was built without a dynamic-batch copy (load with a "
                f"max_batch_size above 1 for one); it has static batches {list(self.static_batches)}"
            )
        return self._compiled[(seq_len, unpadded, batch if batch in self.static_batches else None)]

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        batch, seq_len = np.asarray(input_ids).shape
        if seq_len not in self.seq_lens:
            raise ConfigError(f"input padded to {seq_len} tokens; this model has graphs for {list(self.seq_lens)}")
        if batch == 0:
            raise ConfigError("run got a batch of 0 rows: pass at least one")
        arrays = [np.ascontiguousarray(x, dtype=np.int64) for x in (input_ids, attention_mask, token_type_ids)]
        most = max(1, self.max_run_tokens // seq_len)  # rows per run; one where a row alone is over the limit
        if batch <= most and (self.dynamic_batch or batch in self.static_batches):
            return self._run(arrays, seq_len)
        # As many runs as the limit needs, of even sizes; without a dynamic-batch copy, one row each.
        size = -(-batch // -(-batch // most)) if self.dynamic_batch else 1
        outputs = [self._run([x[i : i + size] for x in arrays], seq_len) for i in range(0, batch, size)]
        return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]

    def _run(self, arrays: list[np.ndarray], seq_len: int) -> list[np.ndarray]:
        graph = self.compiled_model(seq_len, bool(arrays[1].all()), len(arrays[0]))
        requests = self._local.__dict__.setdefault("requests", {})
        if id(graph) not in requests:
            requests[id(graph)] = graph.create_infer_request()
        request = requests[id(graph)]
        # Input tensors set and outputs read off the request directly: ``infer(arrays)`` dispatches its inputs and
        # wraps its outputs in Python on every call, which costs more (benchmarks/results/openvino_runner_call.md).
        # The tensors copy the arrays: OpenVINO may write into input memory it shares, and the caller's arrays must
        # stay as they are.
        for index, array in enumerate(arrays):
            request.set_input_tensor(index, self._ov.Tensor(array))
        request.infer()
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in range(len(graph.outputs))]


def fuse_attention(model, kernel: str) -> int:
    """Rewrite ``model``'s attention blocks for ``kernel`` in place; returns how many. Pruning layers' blocks get
    ``kernel``; with ``int8``, the full-length layers' attention runs on the same operation too (faster than
    OpenVINO's own int8 attention, benchmarks/results/openvino_attention*.md). The float32 kernel is there for the
    reference's numerics in the pruning layers and leaves the full-length attention to OpenVINO."""
    from qla_sdk.runtime.openvino_attention import fuse_full_attention, fuse_pruning_attention

    fused = fuse_pruning_attention(model, kernel)
    return fused + (fuse_full_attention(model) if kernel == "int8" else 0)


def fused_attention_kernel() -> str | None:
    """The kernel of the pruning layers' attention (with ``int8``, of the full-length layers' too), from
    ``QLA_SDK_FUSED_ATTENTION``:
    - unset or ``auto`` (the default): ``int8``, the C++ extension, where it builds here and runs on AMX tiles or
      AVX512-VNNI; else None, OpenVINO's own unfused nodes, the same graph as exported;
    - ``0``: None;
    - ``int8`` (or ``1``): the extension on the best instructions it has here (portable C++ on CPUs without
      AVX512-VNNI: the same outputs as on AMX, but slower than OpenVINO's nodes), or the float32 operation with a
      warning where it cannot be built here;
    - ``float32``: the Python operation on the eager runtime's kernel (the reference's numerics, slow).
    The extension beats OpenVINO's unfused int8 nodes on AMX and AVX-512 machines, its portable code does not
    (benchmarks/results/openvino_attention*.md); ``int8``, and ``auto`` on a CPU with AVX512-VNNI, build it here
    (once per machine), so that a build that fails falls back too."""
    from qla_sdk.machine import has_avx512_vnni
    from qla_sdk.runtime.native import fused_attention_choice
    from qla_sdk.runtime.openvino_extension import extension_isa, pruning_attention_library, unavailable_reason

    choice = fused_attention_choice()
    if choice == "off":
        return None
    if choice == "float32":
        return choice
    if choice == "auto" and not has_avx512_vnni():
        return None  # only its portable code would run: not worth building
    reason = unavailable_reason()
    if reason is None:
        try:
            pruning_attention_library()
            if choice == "int8" or extension_isa() != "portable":
                return "int8"
            return None  # auto: its portable code is slower than OpenVINO's own nodes
        except ConfigError as error:
            reason = str(error)
    if choice == "auto":
        return None
    warnings.warn(
        f"qla-sdk: the int8 fused attention cannot run here ({reason}); the float32 one is used instead",
        RuntimeWarning,
        stacklevel=3,
    )
    return "float32"


def without_attention_mask(model):
    """A copy of ``model`` for inputs without padding, or None when there is nothing to drop.

    The pruning attention adds the mask bias ``(1 - mask) * float32.min`` to every (len x len) score map before its
    softmax (the probabilities are materialised for the significance, so OpenVINO cannot fuse the attention). With
    no padding that bias is zero: the copy feeds the scores to the softmax directly. On the QuaLA-MiniLM int8 graph
    at 384 that took a forward from 12.8 to 11.5 ms, with identical outputs. A full-length graph (fused
    scaled-dot-product attention, no Softmax node) has no such Add and gets None."""
    copy = model.clone()
    dropped = 0
    for op in copy.get_ordered_ops():
        if op.get_type_name() != "Add":
            continue
        if not any(t.get_node().get_type_name() == "Softmax" for t in op.output(0).get_target_inputs()):
            continue
        is_bias = [_is_mask_bias(i.get_source_output().get_node()) for i in op.inputs()]
        if is_bias.count(True) == 1:
            op.output(0).replace(op.input_value(is_bias.index(False)))
            dropped += 1
    if not dropped:
        return None
    copy.validate_nodes_and_infer_types()
    return copy


def _is_mask_bias(node) -> bool:
    """``something * float32.min``: how ``Layer.attend`` turns the mask into an additive bias."""
    if node.get_type_name() != "Multiply":
        return False
    for value in (i.get_source_output().get_node() for i in node.inputs()):
        if value.get_type_name() == "Constant":
            data = value.get_data()
            if data.size == 1 and float(data.reshape(-1)[0]) <= -1e38:
                return True
    return False


def resolved_precision(core, precision: str) -> str:
    """What the CPU plugin runs for the hint ``precision``: bf16 needs native bf16 (AMX or AVX512-BF16); elsewhere
    OpenVINO runs f32. ``auto`` reads as what it runs per graph (``graph_precision``)."""
    if precision == "auto":
        return f"{resolved_precision(core, 'bf16')}; f32 for graphs with the fused int8 attention"
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "f32"
    return precision


def graph_precision(precision: str, fused: bool) -> str:
    """The hint one graph is compiled with: ``auto`` is f32 for a graph whose attention runs in the fused int8
    operation (it reads and writes f32: bf16 around it adds conversions and saves nothing inside), else bf16."""
    if precision == "auto":
        return "f32" if fused else "bf16"
    return precision


def compile_model(core, model, precision: str, threads: int | None):
    if precision not in INFERENCE_PRECISIONS or precision == "auto":
        raise ConfigError(f"inference precision {precision!r}: this artifact needs 'f32' or 'bf16' (rebuild it)")
    config = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core.compile_model(model, "CPU", config)


class OpenVINOBackend(Backend):
    name = "openvino"
    precision = "int8"

    def build(self, request: BuildRequest) -> Built:
        ov = require_openvino()
        check_calibration(request)
        model = request.model.eval().with_length_config(request.length_config)
        if request.config.quantize_embeddings:
            model = with_int8_embeddings(model)
        trials, _ = _trials()
        head = head_linear_count(request.model)
        precision = request.config.inference_precision
        report: dict = {
            "quantizer": f"nncf {_version('nncf')}",
            "activations": "uint8 asymmetric (preset MIXED)",
            "fp32": f"task head ({head} Linear), token-significance products",
            "inference_precision": precision,
            "inference_precision_here": resolved_precision(ov.Core(), precision),
        }
        fp32 = {n: convert(model, n, request.pad_token_id) for n in request.seq_lens}
        if request.evaluate is not None:
            chosen, models = self._tune(ov, fp32, request, trials, report, head)
        else:
            chosen = trials[0]
            models = _quantized_graphs(fp32, request, chosen[1], head)
        report["config"] = chosen[0]
        return Built(models, report, "int8", precision)

    def _tune(self, ov, fp32: dict, request: BuildRequest, trials, report: dict, head: int):
        """The NNCF config whose dev metric, as the artifact serves it (every graph, each row on the smallest that
        holds it), is within the relative tolerance of fp32, or of the reference model where the request names one
        (both at the longest graph): the first such config, or with ``keep='best'`` the most accurate of all tried
        (on a tie, one without smooth quant: see ``_better``); with its int8 graphs. Otherwise ``QuantizationError``
        listing every config tried."""
        seq_len, served = max(request.seq_lens), tuple(sorted(request.seq_lens))
        core = ov.Core()
        fp32_score = fp32_metric(request, seq_len)  # the unmodified model: int8 embeddings count as int8 loss
        baseline = tolerance_baseline(request, seq_len, fp32_score)
        scores, kept = [], None
        for name, options in trials[: request.config.max_trials]:
            int8 = _quantized_graphs(fp32, request, options, head)
            runner = OpenVINORunner(core, int8, request.config.inference_precision, None)
            # As served: a check at the longest graph alone missed what the shorter graphs (calibrated apart) lose.
            score = request.evaluate(_runner_callable(runner), served if len(served) > 1 else seq_len)
            scores.append({"config": name, "metric": score})
            drop = (baseline - score) / baseline if baseline else 0.0
            if drop <= request.config.tolerance and (kept is None or _better(score, options, kept)):
                kept = (score, (name, options), int8)
                if request.config.keep == "first":
                    break
        if kept is not None:
            report.update(tuning_report(request, fp32_score, baseline))
            report.update(int8_metric=kept[0], trials=scores, keep=request.config.keep, int8_metric_graphs=list(served))
            return kept[1], kept[2]
        lines = "\n".join(f"  {s['config']}: {s['metric']:.4f}" for s in scores)
        raise QuantizationError(
            f"no NNCF config kept the dev metric within {request.config.tolerance:.1%} of "
            f"{'the reference model' if request.reference_model is not None else 'fp32'} ({baseline:.4f}; fp32 "
            f"{fp32_score:.4f}):\n"
            f"{lines}\nRaise --tolerance, calibrate on more samples, or export --backend bf16"
        )

    def save(self, built: Built, folder: Path) -> dict:
        """``seq<n>.xml`` per graph and one ``weights.bin`` that they share (``openvino_ir``)."""
        require_openvino()
        files = save_sharing_weights({f"seq{n}": built.models[n] for n in sorted(built.models)}, folder)
        return {"seq_lens": sorted(built.models), "files": files, "inference_precision": built.inference_precision}

    def load(
        self, folder: Path, entry: dict, threads: int | None = None, *, max_batch_size: int | None = None
    ) -> Runner:
        """With ``max_batch_size`` 1, no dynamic-batch copies (``OpenVINORunner``'s ``dynamic_batch``)."""
        ov = require_openvino()
        core = ov.Core()
        models = {int(n): read_graph(core, folder / f"seq{n}.xml") for n in entry["seq_lens"]}
        dynamic = max_batch_size is None or max_batch_size > 1
        return OpenVINORunner(core, models, entry.get("inference_precision", "f32"), threads, dynamic_batch=dynamic)


def _quantized_graphs(fp32: dict, request: BuildRequest, options: dict, head: int) -> dict[int, object]:
    """An int8 copy of each fp32 graph (by length), calibrated on the calibration rows padded (or cut) to it."""
    rows = request.calibration[: request.config.calibration_samples]
    return {
        n: quantize(graph.clone(), pad_rows(rows, n, request.pad_token_id), options, head) for n, graph in fp32.items()
    }


def _smooth_quant(options: dict) -> bool:
    """Whether an NNCF config of ``_trials`` smooths MatMul activations (NNCF's default)."""
    advanced = options.get("advanced_parameters")
    return advanced is None or advanced.smooth_quant_alphas.matmul >= 0


def _better(score: float, options: dict, kept: tuple) -> bool:
    """``keep='best'``: a config replaces the kept one when it scores higher, or the same without smooth quant where
    the kept one smooths. Smooth quant scales each graph's weights by that graph's own calibration activations, so
    graphs of several lengths no longer share their int8 weights (the artifact stores each copy), and it adds a
    Multiply that scales the activations feeding the smoothed MatMuls; at equal accuracy the plain config makes the
    smaller artifact."""
    kept_score, (_, kept_options), _ = kept
    return score > kept_score or (score == kept_score and _smooth_quant(kept_options) and not _smooth_quant(options))


def _runner_callable(runner: OpenVINORunner):
    """``runner`` as a model-like callable for dev-set evaluation: the graphs a loaded artifact serves, chosen per
    call as at serving time (rows without padding run the fused mask-free copy)."""

    def run(*inputs):
        outs = [torch.from_numpy(o) for o in runner.run(*(np.asarray(x, dtype=np.int64) for x in inputs))]
        return outs[0] if len(outs) == 1 else tuple(outs)

    return run


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
