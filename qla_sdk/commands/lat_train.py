"""`qla lat-train --model DIR --train DATA --eval DATA --output DIR`: Length-Adaptive Transformer training
(LengthDrop + LayerDrop, sandwich rule with in-place distillation), so that the search can later pick per-layer
token lengths. Writes ``OUTPUT/final`` (qla.json records ``length_adaptive``) and ``OUTPUT/metrics.json`` with the
full model's scores and the smallest sub-model's.

Runs on several processes too: ``accelerate launch --num_processes 2 --cpu -m qla_sdk.cli lat-train ...``."""

from __future__ import annotations

import argparse
from pathlib import Path

from qla_sdk.commands.distill import (
    add_data_arguments,
    check_inputs_outlive,
    check_metrics_file,
    describe,
    load_task_data,
    model_labels,
)
from qla_sdk.options import add_options, options_from_args
from qla_sdk.train.length_drop import LatConfig


def register(sub: argparse._SubParsersAction) -> None:
    from qla_sdk.train.config import add_train_arguments

    p = sub.add_parser("lat-train", help="length-adaptive training (LengthDrop, LayerDrop, sandwich rule)")
    p.add_argument("--model", required=True, help="fine-tuned (or distilled) checkpoint folder")
    add_data_arguments(p)
    p.add_argument("--output", required=True, help="output folder: checkpoints, final/, metrics.json")
    g = p.add_argument_group("length-adaptive training")
    add_options(g, LatConfig)  # every LatConfig field is a flag
    g.add_argument("--teacher", default=None, help="external teacher for the full model (default: none)")
    add_train_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.train.loop import format_scores

    result, metrics = lat_train_command(args)
    if result.is_main_process:
        print(
            f"{result.describe()}\nfull model: {format_scores(metrics['eval'])}\n"
            f"smallest sub-model ({metrics['smallest_length_config']}): {format_scores(metrics['smallest_eval'])}"
        )
        print(f"model: {result.final_dir}\nmetrics: {Path(args.output) / 'metrics.json'}")
    return 0


def lat_train_command(args: argparse.Namespace):
    """Load, train, evaluate, write; returns (TrainResult, metrics dict)."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.io import write_json_atomic
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train import config_from_args
    from qla_sdk.train.distill import check_compatible
    from qla_sdk.train.length_drop import lat_train

    check_metrics_file(args.output)
    check_inputs_outlive(args.output, {"--model": args.model, "--teacher": args.teacher, "--tokenizer": args.tokenizer})
    train_config = config_from_args(args, output_dir=args.output)
    lat_config = options_from_args(LatConfig, args)
    model = from_pretrained(args.model, task=args.task, seed=train_config.seed)
    task = model.task
    teacher = None
    if args.teacher:
        teacher = from_pretrained(args.teacher, task=task, labels=model_labels(model), trained_head=True)
        check_compatible(teacher, model)  # before loading data: fail fast
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    data = load_task_data(args, tokenizer, task, model_labels(model))
    result = lat_train(
        model,
        data.train_features,
        data.eval_features,
        task,
        lat_config,
        train_config,
        eval_examples=data.eval_examples,
        teacher=teacher,
        tokenizer=tokenizer,
        extra_metadata=data.metadata(),
    )
    full = {k: v for k, v in result.metrics.items() if k != "train_loss" and not k.startswith("smallest_")}
    smallest = {k.removeprefix("smallest_"): v for k, v in result.metrics.items() if k.startswith("smallest_")}
    metrics = {
        "task": task,
        "model": str(args.model),
        "teacher": str(args.teacher) if args.teacher else None,
        "model_shape": describe(model),
        "length_adaptive": {**lat_config.to_dict(), "temperature": lat_config.temperature},
        "eval": full,
        "smallest_eval": smallest,
        "smallest_length_config": str(lat_config.smallest_length_config(model.num_layers)),
        **result.figures(),
        **data.sizes(),
    }
    if result.is_main_process:
        write_json_atomic(Path(args.output) / "metrics.json", metrics)
    return result, metrics
