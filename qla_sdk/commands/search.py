"""`qla search --model DIR --data DEV --output DIR [--max-macs 55% | --max-latency-ms 8] [--ratio] [--resume]`

Evolutionary search of the per-layer length configuration of a length-adaptively trained model: fitness is the
task metric on a dev set (or a fixed random subset of it), cost is MACs or latency measured on this machine.
Writes front.json/front.csv (every front gene with MACs, latency, metric), scored.csv (every scored gene),
best.json (the best gene within the budget), search.png, and search_state.json, which ``--resume`` continues.
The work is ``qla_sdk.search.job.run_search``; this module maps the flags onto a ``SearchJob``.
"""

from __future__ import annotations

import argparse

from qla_sdk.search.job import LATENCY_FILE, METRICS, STATE_FILE, SearchJob, parse_amount, run_search

__all__ = ["LATENCY_FILE", "METRICS", "STATE_FILE", "parse_amount", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="evolutionary search of per-layer token lengths under a MACs or latency budget",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="length-adaptively trained checkpoint folder")
    p.add_argument("--data", required=True, help="dev set: SQuAD json, GLUE folder/TSV/CSV/JSON, or a datasets name")
    p.add_argument("--output", required=True, help="folder for front.json, best.json, the plot and the search state")
    p.add_argument("--task", choices=["question-answering", "text-classification"], default=None)
    p.add_argument("--split", default="validation", help="split of a GLUE folder or datasets name")
    p.add_argument("--dataset-subset", default=None, help="configuration of a datasets name, e.g. sst2")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or vocab.txt (default: the model folder)")
    p.add_argument("--metric", default=None, help="accuracy|f1 (classification, default accuracy); f1|exact_match (QA)")
    p.add_argument("--subset", type=int, default=None, help="score on this many dev examples, a fixed random subset")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="where the dev set is scored (e.g. cuda); latency is timed on CPU")
    p.add_argument("--seq-len", type=int, default=None, help="padded input length (default 128; 384 for QA)")
    p.add_argument("--doc-stride", type=int, default=128, help="QA window overlap")
    p.add_argument(
        "--ratio",
        action="store_true",
        help="search ratios of each input's real length (unpadded inference) instead of token counts at --seq-len",
    )
    p.add_argument("--ratio-steps", type=int, default=100, help="ratio resolution: 100 searches whole percents")
    budget = p.add_argument_group("budget (absolute, with k/M/G suffixes, or a percentage of the full model)")
    budget.add_argument("--max-macs", default=None, help="e.g. 1.2G or 55%%")
    budget.add_argument("--min-macs", default=None, help="lower end of a MACs band")
    budget.add_argument("--max-latency-ms", default=None, help="e.g. 8 or 60%%; searches on measured latency")
    budget.add_argument("--min-latency-ms", default=None, help="lower end of a latency band")
    latency = p.add_argument_group("latency (measured on this machine, on the target backend)")
    latency.add_argument("--cost", choices=["macs", "latency"], default=None, help="axis of the front (default: MACs)")
    latency.add_argument("--measure-latency", action="store_true", help="with MACs as cost, also time the front")
    latency.add_argument(
        "--latency-backend",
        choices=["eager", "inductor", "openvino"],
        default="eager",
        help="time each gene as this backend runs it (fp32 graph of the pruned model)",
    )
    latency.add_argument("--latency-batch-size", type=int, default=1)
    latency.add_argument("--latency-seq-len", type=int, default=None, help="default: --seq-len, or mean real length")
    latency.add_argument("--threads", type=int, default=None, help="intra-op threads while timing")
    latency.add_argument("--latency-runs", type=int, default=20, help="timed runs; the median counts")
    latency.add_argument("--latency-warmup", type=int, default=5)
    evo = p.add_argument_group("evolution")
    evo.add_argument("--iterations", type=int, default=30)
    evo.add_argument("--mutations", type=int, default=30)
    evo.add_argument("--crossovers", type=int, default=30)
    evo.add_argument("--mutation-prob", type=float, default=0.5)
    evo.add_argument(
        "--length-drop-bound",
        type=float,
        default=None,
        help="the smallest gene drops this share per layer (default: the model's LAT length_drop_prob, else 0.2)",
    )
    evo.add_argument(
        "--constant-rate",
        "--population-size",
        dest="constant_rate",
        type=int,
        default=20,
        help="constant-rate genes in the initial population, besides the full and the smallest gene",
    )
    evo.add_argument("--min-length", type=int, default=1, help="fewest tokens (or ratio steps) a layer keeps")
    evo.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the search saved in --output")
    p.add_argument("--write-to", default=None, help="also save a copy of the model running the best gene here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_search(SearchJob.from_namespace(args))
    return 0
