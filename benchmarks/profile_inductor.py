"""Where the time goes in an int8 Inductor graph: per-kernel milliseconds from torch's profiler.

    python benchmarks/profile_inductor.py --model DIR [--length-config 269,253,...] [--seq-len 384] [--threads 2]

Builds what the ``inductor`` backend ships (INC PT2E int8 of the model exported at --seq-len, compiled by Inductor
with freezing), calibrated on random token ids (latency does not depend on the values), runs one unpadded batch-1
input --runs times under ``torch.profiler`` with Inductor's kernel profiling on, and prints the mean time per kernel:
Inductor's generated C++ kernels (``cpp_fused_*``) and the library calls it makes (oneDNN int8 linears, ``bmm``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from qla_bench.script import run_script
from qla_sdk.backends import BuildRequest, get_backend
from qla_sdk.backends.inductor import InductorRunner
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.quantize import QuantConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--length-config", default=None, help="token counts or ratios (default: full length)")
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--top", type=int, default=20, help="kernels to list")
    parser.add_argument("--task", default="question-answering", choices=["question-answering", "text-classification"])
    args = parser.parse_args(argv)
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True  # each generated kernel shows up by name in the profiler
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = from_pretrained(args.model, task=args.task).eval()
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(1000, model.config.vocab_size, (args.seq_len,), generator=generator).tolist()}]
    rows *= 8
    length_config = LengthConfig.parse(args.length_config) if args.length_config else None
    config = QuantConfig(backend="inductor", calibration_samples=len(rows), max_trials=1)
    request = BuildRequest(model, length_config, (args.seq_len,), config, calibration=rows)
    runner = InductorRunner(get_backend("inductor").build(request).programs)
    ids = np.asarray(rows[0]["input_ids"], dtype=np.int64)[None, :]
    inputs = (ids, np.ones_like(ids), np.zeros_like(ids))
    for _ in range(10):  # the first call compiles
        runner.run(*inputs)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(args.runs):
            runner.run(*inputs)
    events = [e for e in profile.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / args.runs
    print(
        f"{args.model}, length config {args.length_config}, seq {args.seq_len}, batch 1, {args.threads} threads, "
        f"int8 Inductor; profiled total {total:.2f} ms per inference (mean of {args.runs})\n"
    )
    print("| kernel | calls per inference | ms |\n|---|---|---|")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        ms = event.self_cpu_time_total / 1e3 / args.runs
        print(f"| {event.key[:80]} | {event.count / args.runs:g} | {ms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
