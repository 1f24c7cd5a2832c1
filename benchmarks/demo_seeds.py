"""`make demo` with 3 seeds: does the demo recipe hold its bars (final int8 student within 2 points of the teacher's
SST-2 dev accuracy, at least 5x faster at batch 1) whatever the seed?

    python benchmarks/demo_seeds.py --work /path/outside/the/repo [--seeds 42,1,2]

Each seed runs the packaged demo recipe (`qla demo`) with every training stage's seed and the search's seed set to
it, in its own folder (finished stages are skipped, an interrupted run resumes). `--from STAGE` redoes that stage and
the later ones of each seed (e.g. `quantize` after a change to int8 builds); `--rebenchmark` (= `--from benchmark`)
re-times the finished runs only (run it on a quiet machine); `--collect` only reads finished reports.
Writes benchmarks/results/demo_seeds.json + .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
MAX_DROP_POINTS, MIN_SPEEDUP = 2.0, 5.0


def seed_overrides(seed: int) -> list[str]:
    keys = ("teacher.finetune.seed", "distill.train.seed", "lat.train.seed", "search.evolution.seed")
    return [f"{key}={seed}" for key in keys]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="one demo output folder per seed goes here")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--from", dest="from_stage", default=None, help="redo this stage and the later ones")
    parser.add_argument("--rebenchmark", action="store_true", help="redo only the benchmark and report stages")
    parser.add_argument("--collect", action="store_true", help="run nothing: read the reports of finished runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_seeds.json")
    parser.add_argument("--provenance", default=None, help="how the runs were made, recorded with the figures")
    args = parser.parse_args(argv)

    from qla_bench.report import markdown_table, write_results
    from qla_sdk.cli import main as qla

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = []
    for seed in seeds:
        output = args.work / f"seed{seed}"
        from_stage = "benchmark" if args.rebenchmark else args.from_stage
        command = ["demo", "--output", str(output)] + (["--from", from_stage] if from_stage else [])
        for item in seed_overrides(seed):
            command += ["--set", item]
        if not args.collect and qla(command):
            return 1
        report = json.loads((output / "report" / "report.json").read_text())
        rows.append(
            {
                "seed": seed,
                "teacher_dev_acc": round(100 * report["teacher_dev_acc"], 2),
                "final_dev_acc": round(100 * report["final_dev_acc"], 2),
                "drop_points": report["dev_acc_drop_points"],
                "speedup": report["speedup"],
                "teacher_latency_ms": report["teacher_latency_ms"],
                "final_latency_ms": report["final_latency_ms"],
                # timed as served: the eager teacher at the row's real tokens, the artifact at its graph length
                "teacher_tokens": report["latency_seq_len"],
                "final_graph_tokens": report.get("final_latency_seq_len", report["latency_seq_len"]),
                "length_config": report["length_config"],
                "wall_time_s": report["wall_time_s"],
            }
        )
    figures = {
        "seeds": rows,
        "bars": {"max_drop_points": MAX_DROP_POINTS, "min_speedup": MIN_SPEEDUP},
        "all_within_drop": all(r["drop_points"] <= MAX_DROP_POINTS for r in rows),
        "all_fast_enough": all(r["speedup"] >= MIN_SPEEDUP for r in rows),
        "worst_drop_points": max(r["drop_points"] for r in rows),
        "provenance": args.provenance,
    }
    table = markdown_table(
        ["seed", "teacher %", "final int8 %", "points lost", "speed-up (b=1)", "teacher ms", "final ms", "wall s"],
        [
            [r["seed"], r["teacher_dev_acc"], r["final_dev_acc"], r["drop_points"], r["speedup"],
             r["teacher_latency_ms"], r["final_latency_ms"], r["wall_time_s"]]
            for r in rows
        ],
    )  # fmt: skip
    write_results(args.out, figures, table, [Path(sys.executable).name, *sys.argv])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
