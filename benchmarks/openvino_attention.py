"""The pruning attention in OpenVINO int8 graphs, variant by variant: which graph change pays, at batch 1.

    python benchmarks/openvino_attention.py [--seq-len 384] [--length-config 269,253,252,202,104,34] [--rounds 7]
        [--precisions f32,bf16]

Builds the int8 graphs the ``openvino`` backend ships for the real all-MiniLM-L6-v2 (random span head: latency
does not depend on the weights' values; NNCF calibrated on random token ids) at full length and with the length
config, and times them in interleaved rounds in one process, one unpadded input:
- ``full``: the full-length graph (OpenVINO fuses its attention);
- ``pruned-masked``: the pruned graph with its mask bias, as padded rows run it;
- ``pruned-mask-free``: its copy without the mask bias;
- ``pruned-summed``: that copy with the significance summed by one ReduceSum (what unpadded rows run);
- ``pruned-fused-float32`` / ``pruned-fused-int8-<isa>``: the mask-free copy with ``runtime.openvino_attention``'s
  fused node, computed by its float32 kernel or its int8 C++ extension (only where the extension builds), the
  latter once per instruction set it can run here (``portable``, ``avx512_vnni`` where the CPU has it, and
  ``amx_int8`` where the process can use AMX);
- ``pruned-served``: the pruned graph through ``OpenVINORunner``, as a loaded artifact runs it (its own overhead;
  the fused int8 node where the extension builds, see ``backends.openvino.fused_attention_kernel``);
- ``full-fused-int8-<isa>``: the full-length graph with its attention (OpenVINO's ScaledDotProductAttention) on the
  same int8 node (``fuse_full_attention``), per matrix ISA; ``full-served``: the full-length graph through
  ``OpenVINORunner`` (which does that where the extension builds);
each with the batch dimension left dynamic (as exported) and reshaped to a static batch of 1 (as served; --shapes),
and at each inference precision asked for (what the floating-point operations run in; bf16 where the CPU has it).
Writes benchmarks/results/openvino_attention.json + .md.
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


class _Served:
    """An ``OpenVINORunner`` behind an infer request's ``infer(feed) -> outputs``."""

    def __init__(self, runner) -> None:
        self.runner = runner

    def infer(self, feed) -> dict:
        return dict(enumerate(self.runner.run(*feed)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--length-config", default="269,253,252,202,104,34")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30, help="timed calls per variant per round")
    parser.add_argument("--precisions", default="f32", help="inference precisions to compare, e.g. f32,bf16")
    parser.add_argument("--shapes", default="dynamic,static", help="batch dimensions to compare: dynamic, static")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "openvino_attention.json")
    args = parser.parse_args(argv)

    import openvino as ov
    from profile_openvino import minilm_int8_graphs  # benchmarks/ is the script's folder

    from qla_bench.kernels import matrix_isa, openvino_kernels
    from qla_bench.report import publish_table
    from qla_sdk.backends.openvino import OpenVINORunner, without_attention_mask
    from qla_sdk.modeling import LengthConfig
    from qla_sdk.runtime.openvino_attention import (
        fuse_full_attention,
        fuse_pruning_attention,
        sum_significance_directly,
    )
    from qla_sdk.runtime.openvino_extension import extension_isa, unavailable_reason

    length_config = LengthConfig.parse(args.length_config)
    built, rows = minilm_int8_graphs(args.seq_len, {"full": None, "pruned": length_config})
    full, pruned = built["full"], built["pruned"]
    mask_free = without_attention_mask(pruned)
    summed = mask_free.clone()
    sum_significance_directly(summed)
    graphs = {"full": full, "pruned-masked": pruned, "pruned-mask-free": mask_free, "pruned-summed": summed}
    graphs["pruned-fused-float32"] = mask_free.clone()
    fuse_pruning_attention(graphs["pruned-fused-float32"], "float32")
    if unavailable_reason() is not None:
        print(f"pruned-fused-int8 left out: {unavailable_reason()}", file=sys.stderr)
    else:
        isas = ["portable", "avx512_vnni", "amx_int8"]
        for isa in isas[: isas.index(extension_isa()) + 1]:  # those this machine runs
            graphs[f"pruned-fused-int8-{isa}"] = mask_free.clone()
            fuse_pruning_attention(graphs[f"pruned-fused-int8-{isa}"], "int8", isa=isa)
            graphs[f"full-fused-int8-{isa}"] = full.clone()
            if not fuse_full_attention(graphs[f"full-fused-int8-{isa}"], isa=isa):
                raise SystemExit("the full-length graph's attention did not match the exporter's: nothing fused")
    core = ov.Core()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    feed = [t.numpy() for t in rows[0]]
    requests, kernels = {}, {}
    for precision in precisions:
        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": args.threads}
        suffix = "" if precisions == ["f32"] else f"/{precision}"
        for name, graph in graphs.items():
            for shape in [x.strip() for x in args.shapes.split(",") if x.strip()]:
                variant = graph.clone()
                if shape == "static":
                    variant.reshape({port: ov.PartialShape([1, args.seq_len]) for port in variant.inputs})
                compiled = core.compile_model(variant, "CPU", config)
                requests[f"{name}/{shape}{suffix}"] = compiled.create_infer_request()
                isa = "ref" if name.endswith("float32") else name.split("int8-")[-1] if "int8-" in name else None
                kernels[f"{name}/{shape}{suffix}"] = openvino_kernels(compiled, isa)
        # What an artifact serves: the runner picks the static mask-free summed copy for this unpadded row.
        for name, graph in (("pruned", pruned), ("full", full)):
            runner = OpenVINORunner(core, {args.seq_len: graph}, precision, args.threads)
            requests[f"{name}-served/runner{suffix}"] = _Served(runner)
            served = runner.compiled_model(args.seq_len, True, 1)
            kernels[f"{name}-served/runner{suffix}"] = openvino_kernels(served)
    outputs = {key: [np.array(v) for v in request.infer(feed).values()] for key, request in requests.items()}
    times: dict[str, list[float]] = {key: [] for key in requests}
    for request in requests.values():  # warm-up
        for _ in range(5):
            request.infer(feed)
    keys = list(requests)
    for round_index in range(args.rounds):
        shift = round_index % len(keys)  # each round starts one variant later: none always runs first
        for key in keys[shift:] + keys[:shift]:
            request = requests[key]
            start = time.perf_counter()
            for _ in range(args.calls):
                request.infer(feed)
            times[key].append((time.perf_counter() - start) / args.calls * 1e3)
    reference = outputs[next(k for k in outputs if k.startswith("pruned-masked/"))][0]
    rows_out = []
    for key, series in times.items():
        rows_out.append(
            {
                "graph": key,
                "ms": statistics.median(series),
                "rounds_ms": series,
                "isa": matrix_isa(kernels[key]),
                "max_abs_diff_vs_masked": float(np.abs(outputs[key][0] - reference).max()),
                "ref_kernels": sum(n for k, n in kernels[key]["layers"].items() if ":ref" in k),
                "layers": kernels[key]["layers"],
            }
        )
    for row in rows_out:  # against the full-length static graph at the same precision
        same = row["graph"].split("/")[2:]
        full_ms = next(
            r["ms"]
            for r in rows_out
            if r["graph"].split("/")[:2] == ["full", "static"] and r["graph"].split("/")[2:] == same
        )
        row["speedup_vs_full_static"] = full_ms / row["ms"]
    figures = {
        "seq_len": args.seq_len,
        "batch_size": 1,
        "length_config": str(length_config),
        "threads": args.threads,
        "precisions": precisions,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "rows": rows_out,
    }
    table = [
        [r["graph"], f"{r['ms']:.2f}", f"{r['speedup_vs_full_static']:.2f}x", r["isa"], r["ref_kernels"],
         f"{r['max_abs_diff_vs_masked']:.3g}"]
        for r in rows_out
    ]  # fmt: skip
    headers = ["graph / batch dim [/ precision]", "median ms", "vs full static", "isa", "ref-kernel nodes"]
    headers.append("max |diff| vs masked")
    publish_table(args.out, figures, headers, table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
