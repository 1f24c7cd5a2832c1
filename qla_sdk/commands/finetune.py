"""`qla finetune --model DIR --task T --train DATA --eval DATA --output DIR`: fine-tune a model (a teacher, or any
BERT/RoBERTa checkpoint) on a task, evaluate it, write ``OUTPUT/final`` and ``OUTPUT/metrics.json``.

Runs on several processes too (DDP; gloo on CPU): ``torchrun --nproc_per_node 2 -m qla_sdk.cli finetune ...`` or
``accelerate launch --multi_gpu --num_processes 2 -m qla_sdk.cli finetune ...`` (on a machine without GPUs this
starts CPU processes; accelerate's ``--cpu`` flag starts only one unless MPI is configured)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from qla_sdk.commands.distill import add_data_arguments
    from qla_sdk.train.config import add_train_arguments

    p = sub.add_parser("finetune", help="fine-tune a model on question answering or text classification")
    p.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors) or hub id")
    add_data_arguments(p, task_required=True)  # the recipe's data section, --task and --tokenizer
    p.add_argument("--output", required=True, help="output folder: checkpoints/, final/, metrics.json")
    add_train_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.train.loop import format_scores

    result, metrics = finetune(args)
    if result.is_main_process:
        print(f"{result.describe()}; eval: {format_scores(metrics['eval'])}")
        print(f"model: {result.final_dir}\nmetrics: {Path(args.output) / 'metrics.json'}")
    return 0


def finetune(args: argparse.Namespace):
    """Load, train, evaluate, write; returns (TrainResult, metrics dict)."""
    from qla_sdk.commands.distill import check_inputs_outlive, check_metrics_file, load_task_data
    from qla_sdk.data import load_tokenizer
    from qla_sdk.io import write_json_atomic
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train import config_from_args
    from qla_sdk.train.finetune import finetune as train_finetune

    check_metrics_file(args.output)
    check_inputs_outlive(args.output, {"--model": args.model, "--tokenizer": args.tokenizer})
    config = config_from_args(args, output_dir=args.output)
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    data = load_task_data(args, tokenizer, args.task, None)
    model = from_pretrained(args.model, task=args.task, labels=data.label_names, seed=config.seed)
    result = train_finetune(
        model,
        data.train_features,
        data.eval_features,
        args.task,
        config,
        eval_examples=data.eval_examples,
        tokenizer=tokenizer,
        extra_metadata=data.metadata(),
    )
    eval_metrics = {k: v for k, v in result.metrics.items() if k != "train_loss"}
    metrics = {
        "task": args.task,
        "model": str(args.model),
        "train": str(args.train),
        "eval": eval_metrics,
        **result.figures(),
        **data.sizes(),
    }
    if result.is_main_process:
        write_json_atomic(Path(args.output) / "metrics.json", metrics)
    return result, metrics
