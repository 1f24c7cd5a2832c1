"""What the padding to a graph length costs, and whether one graph with a dynamic input length would pay instead.

    python benchmarks/openvino_graph_length.py --checkpoint CKPT [--tokens 25] [--bucket 32] [--rounds 5]

An artifact holds a graph per input length (``quantize.seq_lens``); an input runs the smallest that holds it, padded
to it (the demo's median 25-token sentence runs its 32-token graph). With a ratio length config the graph's widths
are the ratios of the graph length, so the padded graph also carries more tokens after each pruning layer than the
input keeps. Rows, fp32 OpenVINO graphs of one checkpoint with its length config, batch 1, one input of ``--tokens``
real tokens:

- the graph of ``--bucket`` tokens, the input padded to it (as an artifact serves it);
- a graph of exactly ``--tokens`` tokens (what a graph per length would give, at that many graphs' size);
- one graph with a dynamic input length, run at ``--tokens``.

The dynamic graph is exported here, not by the SDK: its widths are computed from the symbolic length as
ceil(length * ratio) in integers, and the first token's significance is a constant above any real one instead of
heads x length + 1 (a float of the length fixes it). Every row's output is checked against the eager model on the
same input before timing. Timed in interleaved rounds of ``--calls`` calls; the median of the rounds is reported.
fp32 throughout: the question is the shapes, not int8. Run nothing else heavy meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path
from unittest import mock

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def dynamic_length_graph(model, example):
    """fp32 ``ov.Model`` of ``model`` (a ``FixedLengthModel`` with a ratio config) with batch and length dynamic."""
    import openvino as ov
    import torch

    import qla_sdk.modeling.encoder as encoder
    from qla_sdk.modeling.length import LengthConfig

    resolve = LengthConfig.resolve

    def symbolic_resolve(self, seq_len):
        if isinstance(seq_len, int):
            return resolve(self, seq_len)
        ratios = [Fraction(r).limit_denominator(10_000) for r in self.lengths]
        return tuple((seq_len * r.numerator + r.denominator - 1) // r.denominator for r in ratios)

    ranked = encoder.significance

    def significance(probs, mask, keep_cls):
        score = ranked(probs, mask, False)
        if keep_cls:
            first = torch.arange(score.shape[1], device=score.device) == 0
            score = torch.where(first.unsqueeze(0), torch.full_like(score, 1.0e7), score)
        return score

    batch = torch.export.Dim("batch", min=1, max=1024)
    shapes = ({0: batch, 1: torch.export.Dim.AUTO},) * 3
    with (
        mock.patch.object(LengthConfig, "resolve", symbolic_resolve),
        mock.patch.object(LengthConfig, "drops_at", lambda self, layer, width, n: self.lengths[layer] < 1.0),
        mock.patch.object(encoder, "significance", significance),
        torch.no_grad(),
    ):
        program = torch.export.export(model.eval(), example, dynamic_shapes=shapes)
    return ov.convert_model(program)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint with a ratio length config (qla search)")
    parser.add_argument("--tokens", type=int, default=25, help="real tokens of the input (default %(default)s)")
    parser.add_argument("--bucket", type=int, default=32, help="the graph length it is padded to (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="calls per row and round (default %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "openvino_graph_length.json"))
    args = parser.parse_args(argv)
    if not 2 <= args.tokens <= args.bucket:
        parser.error(f"--tokens {args.tokens} must lie in [2, --bucket {args.bucket}]")

    import numpy as np
    import openvino as ov
    import torch

    from qla_bench.report import markdown_table, write_results
    from qla_sdk.backends.base import example_inputs
    from qla_sdk.backends.openvino import convert
    from qla_sdk.modeling import from_pretrained

    torch.set_num_threads(args.threads)
    model = from_pretrained(args.checkpoint).eval()
    if model.length_config is None or not model.length_config.is_ratio:
        parser.error(f"{args.checkpoint} has no ratio length config; give a searched checkpoint (--ratio)")
    fixed = model.with_length_config()
    n, bucket = args.tokens, args.bucket
    ids = np.random.default_rng(0).integers(1000, 5000, size=(1, n))
    ids[0, 0], ids[0, -1] = 101, 102

    def padded(length: int) -> list:
        x = np.zeros((3, 1, length), np.int64)
        x[0, 0, :n], x[1, 0, :n] = ids[0], 1
        return list(x)

    with torch.no_grad():
        want = fixed(*(torch.from_numpy(a) for a in padded(n)))
    want = (want if isinstance(want, tuple) else (want,))[0].numpy()
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}

    def compiled(graph, shape):
        graph = graph.clone()
        graph.reshape({port: ov.PartialShape(shape) for port in graph.inputs})
        return core.compile_model(graph, "CPU", config).create_infer_request()

    dynamic = dynamic_length_graph(fixed, example_inputs(bucket))
    rows = {
        f"graph of {bucket} tokens, input padded to it": (
            compiled(convert(fixed, bucket), [1, bucket]),
            padded(bucket),
        ),
        f"graph of exactly {n} tokens": (compiled(convert(fixed, n), [1, n]), padded(n)),
        f"dynamic-length graph, run at {n}": (compiled(dynamic, [1, -1]), padded(n)),
    }
    error = {}
    for name, (request, x) in rows.items():
        got = request.infer(x)[0][..., : want.shape[-1]]  # a QA graph's padded positions are no output
        error[name] = float(np.abs(got - want).max())
        if error[name] > 1e-3:
            raise SystemExit(f"{name}: output differs from the eager model by {error[name]:.2e}; not timed")
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (request, x) in rows.items():
            for _ in range(10):
                request.infer(x)  # untimed
            start = time.perf_counter()
            for _ in range(args.calls):
                request.infer(x)
            times[name].append((time.perf_counter() - start) / args.calls * 1000.0)
    medians = {name: statistics.median(values) for name, values in times.items()}
    first = next(iter(medians.values()))
    table = [
        [name, round(m, 3), round(m / first, 2), " / ".join(f"{t:.2f}" for t in times[name])]
        for name, m in medians.items()
    ]
    figures = {
        "checkpoint": args.checkpoint,
        "length_config": str(model.length_config),
        "tokens": n,
        "bucket": bucket,
        "widths": {"bucket": list(model.length_config.resolve(bucket)), "exact": list(model.length_config.resolve(n))},
        "threads": args.threads,
        "rounds": args.rounds,
        "calls": args.calls,
        "max_abs_error_vs_eager": error,
        "median_ms": {name: round(m, 3) for name, m in medians.items()},
    }
    markdown = markdown_table(["graph", "median ms", "ms / padded ms", "ms by round"], table)
    write_results(args.out, figures, markdown, command=[Path(sys.executable).name, *sys.argv])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
