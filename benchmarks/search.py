"""Evolutionary length search on SST-2: the front against constant-rate genes, and the best gene at <= 55% MACs.

    python benchmarks/search.py MODEL_DIR [--data /work/shared/data/glue/SST-2] [--threads N] [--ratio]

MODEL_DIR is a length-adaptively trained SST-2 checkpoint (`qla lat_train`). Runs `qla search` with the LAT
paper's settings (30 iterations of 30 mutations and 30 crossovers, inputs padded to 128 tokens, MACs as the cost,
no budget, latency of the front measured at batch 1), resuming a search left in --work, then reads the best gene
within --budget (55% of full-length MACs) off the front. Writes
benchmarks/results/search.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from qla_bench import write_results
from qla_bench.script import run_script
from qla_sdk.cli import main as qla
from qla_sdk.io import markdown_table
from qla_sdk.search.job import STATE_FILE

RESULTS = Path(__file__).parent / "results"
DEFAULT_BUDGET = 0.55  # of full-length MACs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="LAT-trained SST-2 checkpoint folder")
    parser.add_argument("--data", default="/work/shared/data/glue/SST-2", help="GLUE SST-2 folder or dev file")
    parser.add_argument("--tokenizer", default=None, help="default: the model folder")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--ratio", action="store_true", help="ratio genes (unpadded inference) instead of tokens")
    parser.add_argument("--threads", type=int, default=None, help="threads for the latency measurements")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--mutations", type=int, default=30)
    parser.add_argument("--crossovers", type=int, default=30)
    parser.add_argument("--constant-rate", type=int, default=20)
    parser.add_argument("--subset", type=int, default=None, help="score on a fixed random subset of the dev set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="share of full-length MACs")
    parser.add_argument("--work", default="runs/search-sst2", help="the search's output folder (resumed if present)")
    parser.add_argument("--out", default=str(RESULTS / "search.json"))
    args = parser.parse_args(argv)

    work = Path(args.work)
    command = ["search", "--model", args.model, "--data", args.data, "--output", str(work)]
    # No budget: the search covers every budget (as LAT's), so the front can be compared at each constant-rate
    # gene's MACs; the best gene within the budget is read off the front afterwards.
    command += ["--seq-len", str(args.seq_len), "--measure-latency"]
    command += ["--latency-runs", str(args.latency_runs), "--seed", str(args.seed)]
    for flag in ("iterations", "mutations", "crossovers", "constant_rate"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for flag in ("tokenizer", "threads", "subset"):
        if getattr(args, flag) is not None:
            command += [f"--{flag}", str(getattr(args, flag))]
    if args.ratio:
        command.append("--ratio")
    if (work / STATE_FILE).exists():
        command.append("--resume")
    started = time.perf_counter()
    status = qla(command)
    if status != 0:
        return status
    wall = time.perf_counter() - started

    figures, table = summarize(json.loads((work / "front.json").read_text()), args.budget)
    figures["wall_time_s"] = round(wall, 1)
    figures["search_command"] = "qla " + " ".join(command)
    out = Path(args.out)
    write_results(out, figures, table, [Path(sys.executable).name, *sys.argv])
    shutil.copyfile(work / "search.png", out.with_suffix(".png"))
    print(table)
    return 0


def summarize(report: dict, budget: float = DEFAULT_BUDGET) -> tuple[dict, str]:
    """The figures of search.json and the markdown table, from the search's front.json."""

    def row(r: dict) -> dict:
        return {
            "length_config": r["length_config"],
            "macs": r["macs"],
            "macs_ratio": r["macs_ratio"],
            "accuracy": r["metric"],
            "latency_ms": r["latency_ms"],
        }

    full, front = row(report["full"]), [row(r) for r in report["front"]]
    constant = [row(r) for r in report["constant_rate"]]
    gains = [best_at(front, c["macs"])["accuracy"] - c["accuracy"] for c in constant]
    best = best_at(front, budget * full["macs"])
    figures = {
        "model": report["model"],
        "data": report["data"],
        "dev_rows": report["dev_rows"],
        "dev_mean_length": report.get("dev_mean_length"),
        "genes": report["genes"],
        "seq_len": report["seq_len"],
        "metric": report["metric"],
        "full_macs": full["macs"],
        "full_accuracy": full["accuracy"],
        "full_latency_ms": full["latency_ms"],
        "front": front,
        "constant_rate": constant,
        # At every budget, the best front gene affordable scores at least what any constant-rate gene does.
        "front_dominates_constant_rate": all(g >= 0 for g in gains),
        "constant_rate_beaten": sum(g > 0 for g in gains),
        "mean_gain_at_constant_rate_macs": sum(gains) / len(gains) if gains else None,
        "budget_macs_ratio": budget,
        "best_within_budget": None
        if best is None
        else {**best, "accuracy_loss": full["accuracy"] - best["accuracy"], "speedup": _speedup(full, best)},
        "latency": report["latency"],
        "search": report["search"],
    }
    rows = [["full length", _lengths(full), full["macs"] / 1e9, "100%", 100 * full["accuracy"], _ms(full)]]
    rows += [
        ["front", _lengths(r), r["macs"] / 1e9, f"{r['macs_ratio']:.1%}", 100 * r["accuracy"], _ms(r)] for r in front
    ]
    rows += [
        ["constant rate", _lengths(r), r["macs"] / 1e9, f"{r['macs_ratio']:.1%}", 100 * r["accuracy"], _ms(r)]
        for r in constant
    ]
    table = markdown_table(["gene", "length config", "GMACs", "of full", "accuracy %", "latency ms"], rows)
    if best is not None:
        table += (
            f"\n\nBest gene within {budget:.0%} of full-length MACs: {_lengths(best)} at {best['macs_ratio']:.1%} "
            f"MACs, accuracy {100 * best['accuracy']:.2f}% (loss {100 * (full['accuracy'] - best['accuracy']):.2f} "
            "points against full length)."
        )
    table += (
        f"\nThe front dominates the constant-rate genes: {figures['front_dominates_constant_rate']} "
        f"(strictly better at {figures['constant_rate_beaten']} of {len(constant)} of their MACs)."
    )
    if report["genes"] == "tokens":
        table += (
            f"\nMACs are counted at the padded length {report['seq_len']}, as LAT reports them; dev sentences "
            f"average {report.get('dev_mean_length')} tokens, so the first drops remove padding."
        )
    return figures, table


def best_at(front: list[dict], macs: float) -> dict | None:
    affordable = [r for r in front if r["macs"] <= macs]
    return max(affordable, key=lambda r: (r["accuracy"], -r["macs"])) if affordable else None


def _speedup(full: dict, best: dict) -> float | None:
    if full["latency_ms"] and best["latency_ms"]:
        return full["latency_ms"] / best["latency_ms"]
    return None


def _lengths(r: dict) -> str:
    return ",".join(str(v) for v in r["length_config"])


def _ms(r: dict) -> float | str:
    return r["latency_ms"] if r["latency_ms"] is not None else "-"


if __name__ == "__main__":
    sys.exit(run_script(main))
