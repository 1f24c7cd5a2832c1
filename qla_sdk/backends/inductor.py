"""int8 through INC (PT2E) and Inductor: the converted graph is compiled with freezing, so oneDNN's int8 kernels
(AMX or VNNI) replace the quantize/dequantize pairs. Without freezing int8 runs no faster than fp32."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import torch

from qla_sdk.backends.base import (
    Backend,
    BuildRequest,
    LockedRunner,
    Runner,
    as_outputs,
    check_calibration,
    example_inputs,
    fp32_metric,
    pad_rows,
    tolerance_baseline,
    tuning_report,
)
from qla_sdk.quantize import inc
from qla_sdk.quantize.int8_state import load_program, load_tensors, save_programs, with_int8_embeddings
from qla_sdk.runtime.inductor_attention import attention_kernel, fuse_pruning_attention_fx


def compile_inductor(module: torch.nn.Module):
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # fold weights into constants: the int8 weight-prepacking passes need it
    return torch.compile(module, backend="inductor")


class Built:
    def __init__(self, programs: dict[int, torch.export.ExportedProgram], report: dict) -> None:
        self.programs, self.report = programs, report


class InductorRunner(LockedRunner):
    """Compiles a bucket's graph on its first input (compilation takes seconds to minutes). Before compiling, the
    pruning layers' attention blocks are rewritten into one fused operation (``qla_sdk.runtime.inductor_attention``:
    the int8 kernel where it builds, else the float32 one; ``QLA_SDK_FUSED_ATTENTION=0`` keeps the graph as saved);
    ``fused_attention`` counts the blocks rewritten so far, ``attention_kernel`` names the kernel."""

    def __init__(self, programs: dict[int, torch.export.ExportedProgram], compile_graphs: bool = True) -> None:
        super().__init__({}, tuple(sorted(programs)))
        self._programs, self._compile = programs, compile_graphs
        self._compile_lock = threading.Lock()
        self.fused_attention = 0
        self.attention_kernel = attention_kernel() if compile_graphs else None

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        seq_len = np.asarray(input_ids).shape[1]
        with self._compile_lock:
            if seq_len not in self._modules and seq_len in self._programs:
                module = self._programs[seq_len].module()
                if self._compile:
                    if self.attention_kernel is not None:
                        self.fused_attention += fuse_pruning_attention_fx(module, self.attention_kernel)
                    module = compile_inductor(module)
                self._modules[seq_len] = module
        return super().run(input_ids, attention_mask, token_type_ids)


def as_served(candidate: torch.nn.Module, kernel: str | None) -> torch.nn.Module:
    """``candidate`` (a converted int8 graph) with the pruning attention the runner serves, for the accuracy check:
    a copy with its attention fused by ``kernel``, or ``candidate`` itself when nothing is fused."""
    if kernel is None or not isinstance(candidate, torch.fx.GraphModule):
        return candidate
    served = copy.deepcopy(candidate)
    return served if fuse_pruning_attention_fx(served, kernel) else candidate


class InductorBackend(Backend):
    name = "inductor"
    precision = "int8"

    def build(self, request: BuildRequest) -> Built:
        check_calibration(request)
        model = request.model.eval().with_length_config(request.length_config)
        if request.config.quantize_embeddings:
            model = with_int8_embeddings(model)
        # Scored with the attention the runner will serve (int8 where its kernel builds): int8 attention is part of
        # the accuracy the tolerance holds.
        kernel = attention_kernel()
        report: dict = {
            "quantizer": "intel-neural-compressor (PT2E static)",
            "activations": "uint8 asymmetric",
            "fused_attention": kernel or "none",
        }
        config = inc.static_config(request.config.act_algo)
        if request.evaluate is not None:
            tuning_len = max(request.seq_lens)
            calibration = pad_rows(
                request.calibration[: request.config.calibration_samples], tuning_len, request.pad_token_id
            )
            fp32 = fp32_metric(request, tuning_len)
            result = inc.tune(
                model,
                example_inputs(tuning_len, pad_token_id=request.pad_token_id),
                calibration,
                lambda run: request.evaluate(as_served(run, kernel), tuning_len),
                request.config.tolerance,
                configs=inc.tuning_configs(request.model.num_layers, request.config.act_algo),
                max_trials=request.config.max_trials,
                baseline=tolerance_baseline(request, tuning_len, fp32),
            )
            config = result.config
            report.update(
                tuning=result.description,
                **tuning_report(request, fp32, result.baseline),
                int8_metric=result.score,
                trials=[{"config": n, "metric": s} for n, s in result.trials],
            )
        programs = {}
        for seq_len in request.seq_lens:
            example = example_inputs(seq_len, pad_token_id=request.pad_token_id)
            calibration = pad_rows(
                request.calibration[: request.config.calibration_samples], seq_len, request.pad_token_id
            )
            programs[seq_len] = inc.to_program(inc.quantize(model, example, calibration, config), example)
        return Built(programs, report)

    def save(self, built: Built, folder: Path) -> dict:
        files = save_programs({f"seq{n}": p for n, p in built.programs.items()}, folder)
        return {"seq_lens": sorted(built.programs), "files": files}

    def load(
        self, folder: Path, entry: dict, threads: int | None = None, *, max_batch_size: int | None = None
    ) -> Runner:
        if threads:
            torch.set_num_threads(threads)
        tensors = load_tensors(folder)
        programs = {int(n): load_program(folder, f"seq{n}", tensors) for n in entry["seq_lens"]}
        return InductorRunner(programs)


def run_program(program: torch.export.ExportedProgram, *inputs) -> list[np.ndarray]:
    """Run a saved program without compiling (slow: qdq ops run as fp32 emulation); for checks and tests."""
    with torch.inference_mode():
        return as_outputs(program.module()(*inputs))
