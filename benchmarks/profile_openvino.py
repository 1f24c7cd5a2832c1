"""Where the time goes in an int8 OpenVINO graph: per-node-kind milliseconds from OpenVINO's performance counters.

    python benchmarks/profile_openvino.py --model DIR [--length-config 0.98,0.62,...] [--seq-len 384] [--threads 2]
        [--precision f32|bf16] [--batch 1]

Builds the graph the ``openvino`` backend ships (the pruned model exported at --seq-len, NNCF int8 with the task
head and the significance products fp32), calibrated on random token ids (latency does not depend on the values),
runs one unpadded batch-1 input --runs times, and prints the mean time per node kind and the slowest nodes.
"""

from __future__ import annotations

import argparse
import collections
import sys

import torch

from qla_bench.script import run_script
from qla_sdk.backends.openvino import (
    convert,
    head_linear_count,
    quantize,
    require_openvino,
    without_attention_mask,
)
from qla_sdk.modeling import from_pretrained
from qla_sdk.runtime.openvino_attention import fuse_pruning_attention, sum_significance_directly


def calibration(vocab_size: int, seq_len: int, count: int = 8) -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab_size, (count, 1, seq_len), generator=generator)
    return [(row, torch.ones_like(row), torch.zeros_like(row)) for row in ids]


def minilm_int8_graphs(seq_len: int, length_configs: dict) -> tuple[dict, list]:
    """The int8 graphs the ``openvino`` backend ships for the real all-MiniLM-L6-v2 (random span head: latency does
    not depend on the weights' values), one per ``{name: length config}``, NNCF-calibrated on random token ids;
    and those calibration rows (the first is an input to run)."""
    from qla_sdk.pretrained import minilm_path

    torch.manual_seed(0)
    model = from_pretrained(minilm_path(), task="question-answering").eval()
    rows = calibration(model.config.vocab_size, seq_len)
    head = head_linear_count(model)
    graphs = {
        name: quantize(convert(model.with_length_config(config), seq_len), rows, head_linears=head)
        for name, config in length_configs.items()
    }
    return graphs, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--length-config", default=None, help="token counts or ratios (default: full length)")
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--precision", default="f32", choices=["f32", "bf16"], help="inference precision of the floating-point ops"
    )
    parser.add_argument("--batch", type=int, default=1, help="rows per call (the graph is static at this batch)")
    parser.add_argument("--top", type=int, default=15, help="slowest single nodes to list")
    parser.add_argument("--task", default="question-answering", choices=["question-answering", "text-classification"])
    parser.add_argument(
        "--graph",
        default="served",
        choices=["served", "masked", "fused"],
        help="served: what an unpadded batch-1 row runs with QLA_SDK_FUSED_ATTENTION=0 (mask-free, significance by "
        "one ReduceSum, static batch); masked: the graph as exported, dynamic batch; fused: what it runs by default "
        "(served with the pruning attention fused)",
    )
    parser.add_argument(
        "--kernel", default="int8", choices=["int8", "float32"], help="--graph fused: the fused attention's kernel"
    )
    args = parser.parse_args(argv)
    ov = require_openvino()

    model = from_pretrained(args.model, task=args.task).eval()
    rows = calibration(model.config.vocab_size, args.seq_len)
    batch = [tuple(t.expand(args.batch, -1).contiguous() for t in rows[0])]  # one input, repeated per row
    graph = convert(model.with_length_config(args.length_config), args.seq_len, model.config.pad_token_id or 0)
    int8 = quantize(graph, rows, head_linears=head_linear_count(model))
    config = {"INFERENCE_PRECISION_HINT": args.precision, "INFERENCE_NUM_THREADS": args.threads, "PERF_COUNT": True}
    if args.graph != "masked":
        int8 = without_attention_mask(int8) or int8
        if args.graph == "fused":
            fuse_pruning_attention(int8, args.kernel)
        else:
            sum_significance_directly(int8)
        int8.reshape({port: ov.PartialShape([args.batch, args.seq_len]) for port in int8.inputs})
    request = ov.Core().compile_model(int8, "CPU", config).create_infer_request()
    inputs = [t.numpy() for t in batch[0]]
    for _ in range(10):
        request.infer(inputs)
    by_kind: collections.Counter = collections.Counter()
    by_node: collections.Counter = collections.Counter()
    for _ in range(args.runs):
        request.infer(inputs)
        for node in request.profiling_info:
            ms = node.real_time.total_seconds() * 1e3 / args.runs
            by_kind[(node.node_type, node.exec_type)] += ms
            by_node[(node.node_name, node.node_type, node.exec_type)] += ms
    print(
        f"{args.model}, length config {args.length_config}, seq {args.seq_len}, batch {args.batch}, {args.threads} "
        f"threads, int8, {args.precision} floating point, graph {args.graph}"
    )
    print(f"total of the counters: {sum(by_kind.values()):.2f} ms per inference (mean of {args.runs})\n")
    print("| node kind | kernel | ms |\n|---|---|---|")
    for (kind, kernel), ms in by_kind.most_common():
        if ms >= 0.01:
            print(f"| {kind} | {kernel} | {ms:.3f} |")
    print(f"\nslowest {args.top} nodes:")
    for (name, kind, kernel), ms in by_node.most_common(args.top):
        print(f"{ms:7.3f} ms  {kind:18s} {kernel:22s} {name[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
