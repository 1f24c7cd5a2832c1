"""Resident memory of int8 OpenVINO graphs as the runner serves them: where a pruned graph's peak RSS comes from.

    python benchmarks/openvino_memory.py [--seq-len 384] [--length-config 269,253,252,202,104,34] [--batch 32]
        [--precisions f32,bf16]

Builds the int8 graphs the ``openvino`` backend ships for the real all-MiniLM-L6-v2 (as
``benchmarks/openvino_attention.py`` does), saves them as artifacts' IR, and then, for each graph (full length,
pruned) and inference precision, in a fresh process: reads the IR, builds an ``OpenVINORunner`` (every copy
compiled at load), calls it once at batch 1 and once at ``--batch``, and reads the process's resident memory
(VmRSS, VmHWM) after each step. Writes benchmarks/results/openvino_memory.json + .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields["rss_mb" if name == "VmRSS" else "peak_mb"] = round(int(value.split()[0]) / 1024, 1)
    return fields


def measure_one(xml: Path, seq_len: int, batch: int, precision: str, threads: int) -> dict:
    """The memory steps of one graph at one precision (run in its own process)."""
    import openvino as ov

    from qla_sdk.backends.openvino import OpenVINORunner

    steps = {"start": _memory_mb()}
    core = ov.Core()
    model = core.read_model(str(xml))
    steps["read"] = _memory_mb()
    runner = OpenVINORunner(core, {seq_len: model}, precision, threads)
    steps["compiled"] = _memory_mb()
    rng = np.random.default_rng(0)
    for rows in (1, batch):
        ids = rng.integers(1000, 20000, (rows, seq_len)).astype(np.int64)
        runner.run(ids, np.ones_like(ids), np.zeros_like(ids))
        steps[f"after batch {rows}"] = _memory_mb()
    return {"copies": len(runner._compiled), "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--length-config", default="269,253,252,202,104,34")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="f32,bf16")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "openvino_memory.json")
    parser.add_argument("--one", nargs=3, metavar=("XML", "PRECISION", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        xml, precision, result = args.one
        Path(result).write_text(json.dumps(measure_one(Path(xml), args.seq_len, args.batch, precision, args.threads)))
        return 0

    import openvino as ov
    from profile_openvino import minilm_int8_graphs  # benchmarks/ is the script's folder

    from qla_bench.report import publish_table
    from qla_sdk.modeling import LengthConfig

    length_config = LengthConfig.parse(args.length_config)
    graphs, _ = minilm_int8_graphs(args.seq_len, {"full": None, "pruned": length_config})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, graph in graphs.items():
            xml = Path(tmp) / f"{name}.xml"
            ov.save_model(graph, xml)
            for precision in (p.strip() for p in args.precisions.split(",") if p.strip()):
                result = Path(tmp) / f"{name}-{precision}.json"
                command = [sys.executable, __file__, "--one", str(xml), precision, str(result)]
                command += ["--seq-len", str(args.seq_len), "--batch", str(args.batch), "--threads", str(args.threads)]
                subprocess.run(command, check=True)
                results.append({"graph": name, "precision": precision, **json.loads(result.read_text())})
    figures = {
        "seq_len": args.seq_len,
        "length_config": str(length_config),
        "batch_size": args.batch,
        "threads": args.threads,
        "rows": results,
    }
    steps = list(results[0]["steps"])
    table = [[r["graph"], r["precision"], r["copies"], *(r["steps"][s]["rss_mb"] for s in steps)] for r in results]
    headers = ["graph", "precision", "compiled copies", *(f"RSS MB, {s}" for s in steps)]
    publish_table(args.out, figures, headers, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
