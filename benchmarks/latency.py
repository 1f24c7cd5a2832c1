"""FP32 eager latency of the length-adaptive runtime: full length vs a length config (batch 1).

    python benchmarks/latency.py [--seq-len 384] [--length-config 269,253,252,202,104,34] [--threads N]
                                 [--default-allocator] [--no-ablation]

Runs the two settings interleaved in rounds, so load from other processes hits both alike, and reports the
median of per-round medians. The headline is the runtime as it ships. The ablation runs the same rounds with the
oneDNN linears (``qla_sdk/runtime/dense.py``) and/or the native pruning kernels (``qla_sdk/runtime/native.py``)
switched off, and the reference encoder (``qla_sdk/modeling/encoder.py``, what training and export run) without the
runtime, so each one's share is measured under the same conditions. glibc is told to keep freed memory
(``qla_bench.allocator``), as the README recommends for deployment; otherwise the full-length forward pays page
faults in some rounds and not in others. Writes benchmarks/results/runtime_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import torch

from qla_bench import measure_latency, write_results
from qla_bench.allocator import keep_freed_memory
from qla_bench.script import run_script
from qla_sdk.io import markdown_table
from qla_sdk.modeling import count_macs, from_pretrained
from qla_sdk.pretrained import minilm_path
from qla_sdk.runtime import EagerRuntime, native_kernels

# variant -> (oneDNN linears, native kernels, eager runtime); the first is the headline
VARIANTS = {
    "as shipped": (True, True, True),
    "without native kernels": (True, False, True),
    "without oneDNN linears": (False, True, True),
    "ATen only": (False, False, True),
    "reference encoder (no runtime)": (True, False, False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--length-config", default="269,253,252,202,104,34")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--default-allocator", action="store_true", help="leave glibc's thresholds as they are")
    parser.add_argument("--no-ablation", action="store_true", help="time the runtime as shipped only")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "runtime_latency.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator = "default" if args.default_allocator else (keep_freed_memory() or "default (not glibc)")

    model = from_pretrained(minilm_path(), task="question-answering").eval()  # MiniLM-L6-H384 weights and shape
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, model.config.vocab_size, (1, args.seq_len), generator=generator)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    settings = {"full": None, "length_config": args.length_config}
    native = native_kernels() is not None
    variants = dict(VARIANTS)
    if args.no_ablation:
        variants = {"as shipped": VARIANTS["as shipped"]}
    elif not native:  # the shipped runtime already runs the ATen path: only the linears can be switched
        variants = {n: VARIANTS[n] for n in ("as shipped", "without oneDNN linears", "reference encoder (no runtime)")}
    runtimes = {True: EagerRuntime(model), False: EagerRuntime(model, native=False)}
    per_round = {(v, s): [] for v in variants for s in settings}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for variant, (onednn, kernels, use_runtime) in variants.items():
                run = runtimes[kernels and native] if use_runtime else model
                with ExitStack() as switches:
                    switches.enter_context(torch.backends.mkldnn.flags(enabled=onednn))
                    for name, lc in settings.items():
                        stats = measure_latency(
                            lambda run=run, lc=lc: run(ids, mask, types, length_config=lc), args.runs, 3
                        )
                        per_round[variant, name].append(stats.p50_ms)
    ms = {key: statistics.median(values) for key, values in per_round.items()}
    macs = {name: count_macs(model.config, args.seq_len, lc) for name, lc in settings.items()}
    full, pruned = ms["as shipped", "full"], ms["as shipped", "length_config"]
    figures = {
        "model": "MiniLM-L6-H384 (all-MiniLM-L6-v2 weights), FP32 eager, batch 1",
        "seq_len": args.seq_len,
        "threads": args.threads,
        "allocator": allocator,
        "native_kernels_built": native,
        "length_config": args.length_config,
        "full_ms": full,
        "length_config_ms": pruned,
        "speedup": full / pruned,
        "full_macs": macs["full"],
        "length_config_macs": macs["length_config"],
        "macs_ratio": macs["full"] / macs["length_config"],
        "per_round_p50_ms": {f"{v}/{s}": values for (v, s), values in per_round.items()},
        "per_round_speedup": [
            f / p
            for f, p in zip(per_round["as shipped", "full"], per_round["as shipped", "length_config"], strict=True)
        ],
        "ablation": {
            v: {
                "full_ms": ms[v, "full"],
                "length_config_ms": ms[v, "length_config"],
                "speedup": ms[v, "full"] / ms[v, "length_config"],
            }
            for v in variants
        },
    }
    rows = [
        ["full length", "-", f"{macs['full']:,}", full, 1.0],
        ["length config", args.length_config, f"{macs['length_config']:,}", pruned, full / pruned],
    ]
    table = markdown_table(["setting", "length config", "MACs", "p50 ms (median of rounds)", "speed-up"], rows)
    if len(variants) > 1:
        ablation = [
            [v, ms[v, "full"], ms[v, "length_config"], ms[v, "full"] / ms[v, "length_config"]] for v in variants
        ]
        table += "\n\n" + markdown_table(["runtime (same rounds)", "full ms", "length config ms", "speed-up"], ablation)
    write_results(args.out, figures, table, [Path(sys.executable).name, *sys.argv])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
