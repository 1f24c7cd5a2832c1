"""Resident memory of int8 OpenVINO graphs as the runner serves them: where a pruned graph's peak RSS comes from.

    python benchmarks/openvino_memory.py [--seq-len 384] [--length-config 269,253,252,202,104,34] [--batch 32]
        [--precisions f32,bf16] [--rounds 7]

Builds the int8 graphs the ``openvino`` backend ships for the real all-MiniLM-L6-v2 (as
``benchmarks/openvino_attention.py`` does), saves them as artifacts' IR, and then, for each graph (full length,
pruned), inference precision and token limit per graph run (``OpenVINORunner.max_run_tokens``: the default, and the
whole batch in one run), in a fresh process: reads the IR, builds an ``OpenVINORunner`` (every copy compiled at
load), calls it once at batch 1 and once at ``--batch``, and reads the process's resident memory (VmRSS, VmHWM)
after each step. Then, per graph and precision in one process, the ``--batch`` call's time per row with both limits,
in interleaved rounds. Writes benchmarks/results/openvino_memory.json + .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent


def memory_mb() -> dict[str, float]:
    """This process's resident memory now (``rss_mb``) and at its peak (``peak_mb``), from /proc/self/status."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields["rss_mb" if name == "VmRSS" else "peak_mb"] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _inputs(rows: int, seq_len: int) -> list[np.ndarray]:
    ids = np.random.default_rng(0).integers(1000, 20000, (rows, seq_len)).astype(np.int64)
    return [ids, np.ones_like(ids), np.zeros_like(ids)]


def _runner(core, model, seq_len: int, precision: str, threads: int, max_run_tokens: int):
    from qla_sdk.backends.openvino import OpenVINORunner

    return OpenVINORunner(core, {seq_len: model}, precision, threads, max_run_tokens=max_run_tokens)


def measure_one(xml: Path, seq_len: int, batch: int, precision: str, threads: int, max_run_tokens: int) -> dict:
    """The memory steps of one graph at one precision and token limit (run in its own process)."""
    import openvino as ov

    import qla_sdk.backends.openvino  # noqa: F401  (imported before the first step, as a server has it)
    from qla_sdk.backends.openvino_ir import read_graph

    steps = {"start": memory_mb()}
    core = ov.Core()
    model = read_graph(core, xml)
    steps["read"] = memory_mb()
    runner = _runner(core, model, seq_len, precision, threads, max_run_tokens)
    steps["compiled"] = memory_mb()
    for rows in (1, batch):
        runner.run(*_inputs(rows, seq_len))
        steps[f"after batch {rows}"] = memory_mb()
    return {"copies": len(runner._compiled), "steps": steps}


def time_limits(xml: Path, seq_len: int, batch: int, precision: str, threads: int, limits: list[int], rounds: int):
    """Median ms per row of one ``batch`` call under each token limit, the limits interleaved in every round."""
    import openvino as ov

    from qla_sdk.backends.openvino_ir import read_graph

    core = ov.Core()
    model = read_graph(core, xml)
    runners = [_runner(core, model, seq_len, precision, threads, limit) for limit in limits]
    inputs = _inputs(batch, seq_len)
    for runner in runners:
        runner.run(*inputs)  # untimed: each copy's first call
    seconds: list[list[float]] = [[] for _ in limits]
    for _ in range(rounds):
        for runner, times in zip(runners, seconds, strict=True):
            start = time.perf_counter()
            runner.run(*inputs)
            times.append(time.perf_counter() - start)
    return [round(statistics.median(times) * 1000 / batch, 2) for times in seconds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--length-config", default="269,253,252,202,104,34")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="f32,bf16")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the time per row")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "openvino_memory.json")
    parser.add_argument("--one", nargs=4, metavar=("XML", "PRECISION", "LIMIT", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--time", nargs=4, metavar=("XML", "PRECISION", "LIMITS", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = (args.seq_len, args.batch)
    if args.one:
        xml, precision, limit, result = args.one
        figures = measure_one(Path(xml), *shape, precision, args.threads, int(limit))
        Path(result).write_text(json.dumps(figures))
        return 0
    if args.time:
        xml, precision, limits, result = args.time
        limits = [int(n) for n in limits.split(",")]
        figures = time_limits(Path(xml), *shape, precision, args.threads, limits, args.rounds)
        Path(result).write_text(json.dumps(figures))
        return 0

    import openvino as ov
    from profile_openvino import minilm_int8_graphs  # benchmarks/ is the script's folder

    from qla_bench.report import publish_table
    from qla_sdk.backends.openvino import MAX_RUN_TOKENS
    from qla_sdk.modeling import LengthConfig

    length_config = LengthConfig.parse(args.length_config)
    graphs, _ = minilm_int8_graphs(args.seq_len, {"full": None, "pruned": length_config})
    limits = [MAX_RUN_TOKENS, args.batch * args.seq_len]  # as served; the whole batch in one run
    options = ["--seq-len", str(args.seq_len), "--batch", str(args.batch), "--threads", str(args.threads)]
    options += ["--rounds", str(args.rounds)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, graph in graphs.items():
            xml = Path(tmp) / f"{name}.xml"
            ov.save_model(graph, xml)
            for precision in (p.strip() for p in args.precisions.split(",") if p.strip()):
                rows = []
                for limit in limits:
                    result = Path(tmp) / f"{name}-{precision}-{limit}.json"
                    command = [sys.executable, __file__, "--one", str(xml), precision, str(limit), str(result)]
                    subprocess.run([*command, *options], check=True)
                    rows.append({"graph": name, "precision": precision, "max_run_tokens": limit})
                    rows[-1].update(json.loads(result.read_text()))
                result = Path(tmp) / f"{name}-{precision}-time.json"
                command = [sys.executable, __file__, "--time", str(xml), precision, ",".join(map(str, limits))]
                subprocess.run([*command, str(result), *options], check=True)
                for row, ms in zip(rows, json.loads(result.read_text()), strict=True):
                    row["ms_per_row"] = ms
                results += rows
    figures = {
        "seq_len": args.seq_len,
        "length_config": str(length_config),
        "batch_size": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "rows": results,
    }
    steps = list(results[0]["steps"])
    table = [
        [r["graph"], r["precision"], r["max_run_tokens"], r["copies"], *(r["steps"][s]["rss_mb"] for s in steps)]
        for r in results
    ]
    for line, r in zip(table, results, strict=True):
        line += [r["steps"][steps[-1]]["peak_mb"], r["ms_per_row"]]
    headers = ["graph", "precision", "tokens per run, at most", "compiled copies"]
    headers += [f"RSS MB, {s}" for s in steps] + [f"peak RSS MB, {steps[-1]}", f"ms per row at batch {args.batch}"]
    publish_table(args.out, figures, headers, table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
