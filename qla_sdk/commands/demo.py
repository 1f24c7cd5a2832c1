"""`qla demo [--output demo_output]`: the whole recipe on the embedded default, offline: the packaged
``qla_sdk/recipes/demo.yaml`` (the SST-2 sample in ``qla_sdk/resources/sst2``, pretrained MiniLM-L6-H384 as the
teacher, a 4-layer student). Same as ``qla run --config <that file> --output demo_output``; the report lands in
``demo_output/report/report.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    from qla_sdk.commands.run import add_run_arguments

    p = sub.add_parser(
        "demo",
        help="run the whole recipe on the embedded default (SST-2 sample, MiniLM-L6-H384)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p, default_output="demo_output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.commands.run import run_loaded
    from qla_sdk.recipe.config import load_recipe

    print(f"qla demo: recipe {DEMO_RECIPE}, output {Path(args.output).resolve()}")
    return run_loaded(load_recipe(DEMO_RECIPE, args.overrides), args)
