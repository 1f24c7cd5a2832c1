"""FP32 eager latency of the length-adaptive runtime: full length vs a length config (batch 1).

    python benchmarks/latency.py [--seq-len 384] [--length-config 269,253,252,202,104,34] [--threads N]

Runs the two settings interleaved in rounds, so load from other processes hits both alike, and reports the
median of per-round medians. Writes benchmarks/results/runtime_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from qla_sdk.bench import measure_latency, write_results
from qla_sdk.bench.report import markdown_table
from qla_sdk.modeling import count_macs, from_pretrained
from qla_sdk.pretrained import minilm_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--length-config", default="269,253,252,202,104,34")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "runtime_latency.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = from_pretrained(minilm_path(), task="question-answering").eval()  # MiniLM-L6-H384 weights and shape
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, model.config.vocab_size, (1, args.seq_len), generator=generator)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    settings = {"full": None, "length_config": args.length_config}
    per_round: dict[str, list[float]] = {name: [] for name in settings}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, lc in settings.items():
                stats = measure_latency(lambda lc=lc: model(ids, mask, types, length_config=lc), args.runs, 3)
                per_round[name].append(stats.p50_ms)
    ms = {name: statistics.median(values) for name, values in per_round.items()}
    macs = {name: count_macs(model.config, args.seq_len, lc) for name, lc in settings.items()}
    figures = {
        "model": "MiniLM-L6-H384 (all-MiniLM-L6-v2 weights), FP32 eager, batch 1",
        "seq_len": args.seq_len,
        "threads": args.threads,
        "length_config": args.length_config,
        "full_ms": ms["full"],
        "length_config_ms": ms["length_config"],
        "speedup": ms["full"] / ms["length_config"],
        "full_macs": macs["full"],
        "length_config_macs": macs["length_config"],
        "macs_ratio": macs["full"] / macs["length_config"],
        "per_round_p50_ms": per_round,
    }
    table = markdown_table(
        ["setting", "length config", "MACs", "p50 ms (median of rounds)", "speed-up"],
        [
            ["full length", "-", f"{macs['full']:,}", ms["full"], 1.0],
            [
                "length config",
                args.length_config,
                f"{macs['length_config']:,}",
                ms["length_config"],
                figures["speedup"],
            ],
        ],
    )
    write_results(args.out, figures, table, [Path(sys.executable).name, *sys.argv])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
