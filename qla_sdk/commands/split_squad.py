"""`qla split-squad SRC --train OUT --eval OUT [--train-fraction 0.8] [--seed 0]`"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split-squad",
        help="split a SQuAD v1.1 file by article into train/eval files (deterministic; no article in both)",
    )
    p.add_argument("src", help="SQuAD v1.1 JSON file, e.g. dev-v1.1.json")
    p.add_argument("--train", required=True, help="output JSON for the training part")
    p.add_argument("--eval", required=True, help="output JSON for the evaluation part")
    p.add_argument("--train-fraction", type=float, default=0.8, help="fraction of articles for training")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.data import split_squad_by_article

    counts = split_squad_by_article(args.src, args.train, args.eval, args.train_fraction, args.seed)
    for name, path in (("train", args.train), ("eval", args.eval)):
        part = counts[name]
        print(f"{name}: {part['articles']} articles, {part['questions']} questions -> {path}")
    return 0
