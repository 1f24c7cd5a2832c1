"""Does int8 pay on this CPU? An int8 OpenVINO artifact's graphs against fp32 OpenVINO graphs of the checkpoint it
was quantized from, with the same length config, at batch 1.

    python benchmarks/openvino_precision.py --checkpoint CKPT --artifact DIR [--seq-lens 192,384] [--rounds 7]

Rows per graph length: the artifact as served, the fp32 graph with the artifact's length config, and the fp32 graph
at full length. Every row runs through ``OpenVINORunner.run`` (unpadded rows: each graph's static batch-1 mask-free
copy), the fp32 graphs with OpenVINO's own attention nodes (no fused int8 operation) in f32; the artifact in the
inference precision it records. Timed in interleaved rounds of ``--calls`` calls on random token ids of the
tokenizer's vocabulary; the median of the rounds is reported. The
machine's ISA flags are in the JSON (``machine.isa_flags``): int8 linears have int8 dot-product instructions only on
CPUs with AVX512-VNNI, AVX-VNNI or AMX. Run nothing else heavy meanwhile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the fp32 checkpoint the artifact was quantized from")
    parser.add_argument("--artifact", required=True, help="an int8 openvino artifact (qla quantize / qla export)")
    parser.add_argument("--seq-lens", default="192,384", help="graph lengths to time (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="calls per row and round (default %(default)s)")
    parser.add_argument("--out", default=str(RESULTS / "openvino_precision.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import openvino as ov

    import qla_sdk
    from qla_bench.report import markdown_table, write_results
    from qla_sdk.backends.openvino import OpenVINORunner, convert
    from qla_sdk.modeling import from_pretrained

    predictor = qla_sdk.load(args.artifact, warmup=True)
    if predictor.manifest.backend != "openvino":
        parser.error(f"{args.artifact} is a {predictor.manifest.backend} artifact; give an openvino one")
    try:
        seq_lens = [int(n) for n in args.seq_lens.split(",")]
    except ValueError:
        parser.error(f"--seq-lens {args.seq_lens!r}: give token counts separated by commas, e.g. 192,384")
    missing = [n for n in seq_lens if n not in (predictor.runner.seq_lens or [])]
    if missing:
        parser.error(f"the artifact has no graph of {missing} tokens; it has {list(predictor.runner.seq_lens or [])}")
    model = from_pretrained(args.checkpoint, task=predictor.task)
    length_config = predictor.manifest.length_config
    core = ov.Core()

    def fp32(config, seq_len: int) -> OpenVINORunner:
        # The runner's rewrites and copies as the artifact gets them, but not the int8 attention operation, which
        # would make an fp32 graph partly int8.
        with mock.patch.dict(os.environ, {"QLA_SDK_FUSED_ATTENTION": "0"}):
            return OpenVINORunner(core, {seq_len: convert(model.with_length_config(config), seq_len)}, "f32", None)

    tokenizer = predictor.tokenizer
    rng = np.random.default_rng(0)
    rows: dict[tuple[str, int], tuple] = {}
    for n in seq_lens:
        ids = rng.integers(tokenizer.vocab_size // 4, tokenizer.vocab_size, size=(1, n))
        ids[0, 0], ids[0, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        x = (ids, np.ones_like(ids), np.zeros_like(ids))
        rows[("int8 artifact as served", n)] = (predictor.runner, x)
        rows[("fp32, same length config", n)] = (fp32(length_config, n), x)
        rows[("fp32, full length", n)] = (fp32(None, n), x)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in rows}
    for _ in range(args.rounds):
        for key, (runner, x) in rows.items():
            runner.run(*x)  # untimed
            start = time.perf_counter()
            for _ in range(args.calls):
                runner.run(*x)
            times[key].append((time.perf_counter() - start) / args.calls * 1000.0)

    medians = {key: statistics.median(values) for key, values in times.items()}
    table = []
    for (name, n), median in medians.items():
        int8 = medians[("int8 artifact as served", n)]
        table.append(
            [n, name, round(median, 2), round(median / int8, 2), " / ".join(f"{t:.1f}" for t in times[(name, n)])]
        )
    figures = {
        "checkpoint": args.checkpoint,
        "artifact": args.artifact,
        "length_config": str(length_config),
        "artifact_inference_precision": predictor.manifest.data["model"].get("inference_precision"),
        "rounds": args.rounds,
        "calls": args.calls,
        "median_ms": {f"{name} @ {n}": round(m, 3) for (name, n), m in medians.items()},
        "fused_attention": getattr(predictor.runner, "fused_attention", None),
    }
    markdown = markdown_table(["tokens", "graph", "median ms", "ms / int8 ms", "ms by round"], table)
    write_results(args.out, figures, markdown, command=[Path(sys.executable).name, *sys.argv])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
