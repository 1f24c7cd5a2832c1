"""The embedded demo end to end (`make demo`), with its report kept as a benchmark result.

    python benchmarks/demo.py [--output demo_output] [--from STAGE] [--set KEY=VALUE ...]

Runs `qla demo` (the packaged qla_sdk/recipes/demo.yaml: SST-2 sample, MiniLM-L6-H384 teacher, 4-layer student;
finished stages in --output are skipped, an interrupted run resumes), then writes the report JSON to
benchmarks/results/demo_report.json (plus machine, versions, command, date) and a markdown summary beside it, with
the bar the demo is held to: the final int8 length-adaptive student within 2 points of the teacher's dev accuracy
and at least 5x faster than the teacher at batch 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qla_bench import write_results
from qla_bench.script import run_script
from qla_sdk.cli import main as qla
from qla_sdk.io import markdown_table

RESULTS = Path(__file__).parent / "results"
MAX_DROP_POINTS = 2.0
MIN_SPEEDUP = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output", help="the demo's output folder (default %(default)s)")
    parser.add_argument("--config", default=None, help="another recipe instead of the packaged demo.yaml")
    parser.add_argument("--from", dest="from_stage", default=None, help="redo this stage and the later ones")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", default=str(RESULTS / "demo_report.json"), help="where the report JSON goes")
    parser.add_argument("--max-drop-points", type=float, default=MAX_DROP_POINTS, help="accuracy bar (default 2)")
    parser.add_argument("--min-speedup", type=float, default=MIN_SPEEDUP, help="speed bar (default 5)")
    args = parser.parse_args(argv)

    command = ["run", "--config", args.config] if args.config else ["demo"]
    command += ["--output", args.output]
    command += ["--from", args.from_stage] if args.from_stage else []
    for item in args.overrides:
        command += ["--set", item]
    start = time.perf_counter()
    code = qla(command)
    if code:
        return code
    report = json.loads((Path(args.output) / "report" / "report.json").read_text())
    drop = report["dev_acc_drop_points"]
    speedup = report["speedup"]
    figures = {
        **report,
        "this_session_s": round(time.perf_counter() - start, 1),
        "bar": {
            "max_drop_points": args.max_drop_points,
            "min_speedup": args.min_speedup,
            "accuracy_met": drop <= args.max_drop_points,
            "speed_met": speedup is not None and speedup >= args.min_speedup,
        },
    }
    rows = [
        [r["stage"], r["model"], r["dev_metric"], r["macs"] / 1e9, r["latency_ms"], r["size_bytes"] / 1e6]
        for r in report["stages"]
    ]
    table = markdown_table(["stage", "model", report["metric"], "GMACs", "ms (batch 1)", "MB"], rows)
    lengths = report["latency_seq_len"], report.get("final_latency_seq_len", report["latency_seq_len"])
    summary = (
        f"{table}\n\nTeacher {report['teacher_dev_acc']:.4f} -> final {report['final_dev_acc']:.4f} ({drop:+.2f} "
        f"points lost; bar: <= {args.max_drop_points}), {speedup}x faster at batch 1 (the teacher at {lengths[0]} "
        f"tokens, the artifact at {lengths[1]}) "
        f"(bar: >= {args.min_speedup}x), backend {report['final_backend']}, length config "
        f"{report['length_config']['lengths']}; wall time of the recipe {report['wall_time_s']:.0f} s.\n"
    )
    write_results(args.results, figures, summary, [Path(sys.executable).name, *sys.argv])
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
