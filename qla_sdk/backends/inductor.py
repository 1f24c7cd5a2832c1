"""int8 through INC (PT2E) and Inductor: the converted graph is compiled with freezing, so oneDNN's int8 kernels
(AMX or VNNI) replace the quantize/dequantize pairs. Without freezing int8 runs no faster than fp32."""

from __future__ import annotations

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
from qla_sdk.runtime.inductor_attention import fuse_pruning_attention_fx
from qla_sdk.runtime.native import FUSED_ATTENTION_SWITCH, OFF, native_kernels, switch_value


def compile_inductor(module: torch.nn.Module):
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # fold weights into constants: the int8 weight-prepacking passes need it
    return torch.compile(module, backend="inductor")


class Built:
    def __init__(self, programs: dict[int, torch.export.ExportedProgram], report: dict) -> None:
        self.programs, self.report = programs, report


class InductorRunner(LockedRunner):
    """Compiles a bucket's graph on its first input (compilation takes seconds to minutes). Before compiling, the
    pruning layers' attention blocks are rewritten into the native fused kernel where it builds
    (``qla_sdk.runtime.inductor_attention``; ``QLA_SDK_FUSED_ATTENTION=0`` keeps the graph as saved);
    ``fused_attention`` counts the blocks rewritten so far."""

    def __init__(self, programs: dict[int, torch.export.ExportedProgram], compile_graphs: bool = True) -> None:
        super().__init__({}, tuple(sorted(programs)))
        self._programs, self._compile = programs, compile_graphs
        self._compile_lock = threading.Lock()
        self.fused_attention = 0

    def run(self, input_ids, attention_mask, token_type_ids) -> list[np.ndarray]:
        seq_len = np.asarray(input_ids).shape[1]
        with self._compile_lock:
            if seq_len not in self._modules and seq_len in self._programs:
                module = self._programs[seq_len].module()
                if self._compile:
                    if fuses_attention():
                        self.fused_attention += fuse_pruning_attention_fx(module)
                    module = compile_inductor(module)
                self._modules[seq_len] = module
        return super().run(input_ids, attention_mask, token_type_ids)


def fuses_attention() -> bool:
    """Whether compiled graphs get the fused pruning attention: where the native kernels build, unless
    ``QLA_SDK_FUSED_ATTENTION`` is ``0`` (the switch the OpenVINO backend reads too)."""
    if switch_value(FUSED_ATTENTION_SWITCH, "auto") in OFF:
        return False
    return native_kernels() is not None


class InductorBackend(Backend):
    name = "inductor"
    precision = "int8"

    def build(self, request: BuildRequest) -> Built:
        check_calibration(request)
        model = request.model.eval().with_length_config(request.length_config)
        if request.config.quantize_embeddings:
            model = with_int8_embeddings(model)
        report: dict = {"quantizer": "intel-neural-compressor (PT2E static)", "activations": "uint8 asymmetric"}
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
                lambda run: request.evaluate(run, tuning_len),
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

    def load(self, folder: Path, entry: dict, threads: int | None = None) -> Runner:
        if threads:
            torch.set_num_threads(threads)
        tensors = load_tensors(folder)
        programs = {int(n): load_program(folder, f"seq{n}", tensors) for n in entry["seq_lens"]}
        return InductorRunner(programs)


def run_program(program: torch.export.ExportedProgram, *inputs) -> list[np.ndarray]:
    """Run a saved program without compiling (slow: qdq ops run as fp32 emulation); for checks and tests."""
    with torch.inference_mode():
        return as_outputs(program.module()(*inputs))
