"""`qla search --model DIR --data DEV --output DIR [--max-macs 55% | --max-latency-ms 8] [--ratio] [--resume]`

Evolutionary search of the per-layer length configuration of a length-adaptively trained model: fitness is the
task metric on a dev set (or a fixed random subset of it), cost is MACs or latency measured on this machine.
Writes front.json/front.csv (every front gene with MACs, latency, metric), scored.csv (every scored gene),
best.json (the best gene within the budget), search.png, and search_state.json, which ``--resume`` continues.
The work is ``qla_sdk.search.job.run_search``; the flags are generated from ``SearchJob`` and ``SearchConfig``.
"""

from __future__ import annotations

import argparse

from qla_sdk.commands.eval import add_column_arguments
from qla_sdk.options import add_options, options_from_args
from qla_sdk.search.config import SearchConfig, parse_amount
from qla_sdk.search.evolution import EvolutionConfig
from qla_sdk.search.job import LATENCY_FILE, METRICS, STATE_FILE, SearchJob, run_search

__all__ = ["LATENCY_FILE", "METRICS", "STATE_FILE", "job_from_args", "parse_amount", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="evolutionary search of per-layer token lengths under a MACs or latency budget",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Every flag comes from a dataclass: the wiring from SearchJob, the search itself from SearchConfig (the same
    # dataclass the recipe's search section is) and its EvolutionConfig; SearchJob's dev-set columns as qla eval's.
    add_options(p, SearchJob, exclude=("config", "text_columns", "label_column"))
    add_column_arguments(p, "the model's qla.json")
    add_options(p.add_argument_group("search (fitness, cost, budget, latency)"), SearchConfig, exclude=("evolution",))
    add_options(p.add_argument_group("evolution"), EvolutionConfig)
    p.set_defaults(func=run)


def job_from_args(args: argparse.Namespace) -> SearchJob:
    config = options_from_args(SearchConfig, args, evolution=options_from_args(EvolutionConfig, args))
    return options_from_args(SearchJob, args, config=config)


def run(args: argparse.Namespace) -> int:
    run_search(job_from_args(args))
    return 0
