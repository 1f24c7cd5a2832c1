"""What a call of the OpenVINO runner costs around the graph: ``OpenVINORunner.run`` against the same compiled graph
called through a second infer request as ``request.infer([ids, mask, types])``, with the outputs copied from its
result (how the runner called it before), at batch 1. That second way skips ``run``'s own checks and copy lookup, so
the saving it shows is a lower bound.

    python benchmarks/openvino_runner_call.py [--seq-len 384] [--length-config 269,253,252,202,104,34] [--rounds 15]

Builds the int8 graphs the ``openvino`` backend ships for the real all-MiniLM-L6-v2 (random span head; NNCF
calibrated on random token ids) at full length and with the length config, serves each through ``OpenVINORunner``,
and times both ways of calling it in interleaved rounds in one process, one unpadded input. Writes
benchmarks/results/openvino_runner_call.json + .md. Run nothing else heavy meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--length-config", default="269,253,252,202,104,34")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="timed calls per way per round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "openvino_runner_call.json")
    args = parser.parse_args(argv)

    import openvino as ov
    from profile_openvino import minilm_int8_graphs  # benchmarks/ is the script's folder

    from qla_bench.report import publish_table
    from qla_sdk.backends.openvino import OpenVINORunner
    from qla_sdk.modeling import LengthConfig

    built, rows = minilm_int8_graphs(args.seq_len, {"full": None, "quala": LengthConfig.parse(args.length_config)})
    ids, mask, types = (t.numpy() for t in rows[0])
    calls = {}
    for name, graph in built.items():
        runner = OpenVINORunner(ov.Core(), {args.seq_len: graph}, "f32", args.threads)
        compiled = runner.compiled_model(args.seq_len, bool(mask.all()), 1)
        request = compiled.create_infer_request()

        def dict_call(request=request, compiled=compiled):
            result = request.infer([ids, mask, types])
            return [np.array(result[out], dtype=np.float32) for out in compiled.outputs]

        calls[f"{name}/runner.run"] = lambda runner=runner: runner.run(ids, mask, types)
        calls[f"{name}/request.infer(arrays)"] = dict_call
    for name in built:  # the same outputs either way
        a, b = calls[f"{name}/runner.run"](), calls[f"{name}/request.infer(arrays)"]()
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), name
    times: dict[str, list[float]] = {key: [] for key in calls}
    keys = list(calls)
    for round_index in range(args.rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            for _ in range(5):
                calls[key]()
            start = time.perf_counter()
            for _ in range(args.calls):
                calls[key]()
            times[key].append((time.perf_counter() - start) / args.calls * 1e3)
    medians = {key: statistics.median(series) for key, series in times.items()}
    table = []
    for name in built:
        ours, before = medians[f"{name}/runner.run"], medians[f"{name}/request.infer(arrays)"]
        pairs = zip(times[f"{name}/runner.run"], times[f"{name}/request.infer(arrays)"], strict=True)
        paired = [before_ms - ours_ms for ours_ms, before_ms in pairs]
        table.append([name, f"{ours:.3f}", f"{before:.3f}", f"{statistics.median(paired):.3f}"])
    figures = {
        "seq_len": args.seq_len,
        "batch_size": 1,
        "length_config": args.length_config,
        "threads": args.threads,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "median_ms": medians,
        "rounds_ms": times,
    }
    headers = ["graph", "runner.run ms", "request.infer(arrays) ms", "saved per call, median of rounds (ms)"]
    publish_table(args.out, figures, headers, table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
