"""`qla run --config recipe.yaml --output DIR [--from STAGE] [--until STAGE]`: the whole QuaLA recipe, end to end.

Stages: teacher (fine-tune) -> distill (MiniLM) -> lat (length-adaptive training) -> search (evolutionary) ->
quantize (int8) -> export -> benchmark -> report. Each writes ``DIR/<stage>/`` and a ``done.json`` marker: a re-run
skips finished stages (unless their options or the data and models they read changed, or their output was
deleted: each is named), a killed run resumes inside the stage it stopped in, ``--from STAGE`` redoes from there,
``--until STAGE`` stops after that one.
The recipe is validated before any work starts. Each stage is also its own subcommand (``qla finetune``,
``qla distill``, ``qla lat-train``, ``qla search``, ``qla quantize``, ``qla eval``).

Several processes: ``torchrun --nproc_per_node 2 -m qla_sdk.cli run ...`` or ``accelerate launch --multi_gpu
--num_processes 2 -m qla_sdk.cli run ...`` (DDP for the training stages; the rest runs on the main process)."""

from __future__ import annotations

import argparse

from qla_sdk.recipe.stages import STAGES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole recipe from a YAML file (fine-tune, distil, LAT, search, int8, export, bench, report)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="recipe YAML (see qla_sdk/recipes/*.yaml)")
    add_run_arguments(p, default_output=None)
    p.set_defaults(func=run)


def add_run_arguments(p: argparse.ArgumentParser, default_output: str | None) -> None:
    p.add_argument(
        "--output",
        required=default_output is None,
        default=default_output,
        help="output folder (one subfolder per stage)" + (f"; default {default_output}" if default_output else ""),
    )
    p.add_argument("--from", dest="from_stage", choices=STAGES, default=None, help="redo this stage and the later ones")
    p.add_argument(
        "--until", choices=STAGES, default=None, help="stop after this stage (e.g. distill: look at the student first)"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set data.train=/data/SST-2 --set lat.train.epochs=1",
    )


def run(args: argparse.Namespace) -> int:
    from qla_sdk.recipe.config import load_recipe

    return run_loaded(load_recipe(args.config, args.overrides), args)


def run_loaded(recipe, args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from qla_sdk.recipe.report import shown
    from qla_sdk.recipe.run import run_recipe

    outputs = run_recipe(recipe, args.output, from_stage=args.from_stage, progress=args.progress, until=args.until)
    report = outputs.get("report")
    if report and PartialState().is_main_process:
        metric = report.get("metric", "accuracy")
        teacher, final = (shown(report[f"{k}_dev_acc"], metric) for k in ("teacher", "final"))
        print(
            f"dev {metric}: teacher {teacher} ({report['teacher_latency_ms']:.2f} ms) -> final {final} "
            f"({report['final_latency_ms']:.2f} ms, {report['final_backend']}), {report['speedup']}x faster at batch 1"
            f"\nreport: {report['report_md']}\nartifact: {report['artifact']} (qla_sdk.load(path).predict([...]))"
        )
    elif args.until and PartialState().is_main_process:
        print(
            f"stopped after {args.until}: {args.output}/{args.until}/done.json holds its outputs; run again "
            "without --until to go on from there"
        )
    return 0
