"""`qla distill --teacher DIR (--student-config SPEC | --init-layers 0,2,4 | --student DIR) --train DATA --eval DATA
--output DIR`: MiniLM (v1/v2) distillation of a fine-tuned teacher into a smaller student; writes ``OUTPUT/final``
and ``OUTPUT/metrics.json`` (with ``--assistant`` also ``OUTPUT/assistant/final``).

Runs on several processes too: ``accelerate launch --num_processes 2 --cpu -m qla_sdk.cli distill ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qla_sdk.data.task_data import DEFAULT_MAX_LENGTH, TaskData
from qla_sdk.options import add_options, options_from_args
from qla_sdk.recipe.config import DataSection
from qla_sdk.train.augment import AugmentConfig
from qla_sdk.train.distill import DistillConfig

TASK_CHOICES = tuple(DEFAULT_MAX_LENGTH)


def register(sub: argparse._SubParsersAction) -> None:
    from qla_sdk.train.config import add_train_arguments

    p = sub.add_parser("distill", help="distil a fine-tuned teacher into a smaller student (MiniLM v1/v2)")
    p.add_argument("--teacher", required=True, help="fine-tuned teacher checkpoint folder")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--student-config",
        help="random student of this shape: layers=4,hidden=256,heads=4[,intermediate=1024] or a config.json",
    )
    start.add_argument("--init-layers", help="student = teacher embeddings + these 0-based layers + head, e.g. 0,2,4")
    start.add_argument("--student", help="pretrained student checkpoint folder (e.g. MiniLM-L6-H384)")
    add_data_arguments(p)
    p.add_argument("--output", required=True, help="output folder: checkpoints, final/, metrics.json")
    g = p.add_argument_group("distillation")
    add_options(g, DistillConfig)  # every DistillConfig field is a flag
    g.add_argument(
        "--assistant",
        action="store_true",
        help="distil through a teacher assistant (teacher depth, student width); for randomly initialised students "
        "with at most half the teacher's layers and hidden size",
    )
    g.add_argument("--eval-teacher", action="store_true", help="also evaluate the teacher, for comparison")
    a = p.add_argument_group("augmentation (TinyBERT-style: words replaced by their embedding neighbours)")
    add_options(a, AugmentConfig, prefix="augment")
    add_train_arguments(p)
    p.set_defaults(func=run)


def add_data_arguments(p: argparse.ArgumentParser, task_required: bool = False) -> None:
    """Data flags of ``qla finetune``, ``qla distill`` and ``qla lat-train``: the recipe's ``data`` section
    (``DataSection``), plus the task and the tokenizer."""
    g = p.add_argument_group("data")
    add_options(g, DataSection)
    if task_required:
        g.add_argument("--task", required=True, choices=TASK_CHOICES, help="the task to train the model for")
    else:
        g.add_argument("--task", choices=TASK_CHOICES, default=None, help="default: the model's (its qla.json)")
    g.add_argument("--tokenizer", default=None, help="tokenizer folder or vocab.txt (default: the model's folder)")


def load_task_data(args: argparse.Namespace, tokenizer, task: str, label_names: list[str] | None) -> TaskData:
    """``qla_sdk.data.task_data.load_task_data`` with the flags of ``add_data_arguments``."""
    from qla_sdk.data.task_data import load_task_data as load

    d = options_from_args(DataSection, args)  # validated like a recipe's data section
    data = load(
        d.train,
        d.eval,
        tokenizer,
        task,
        label_names,
        text_columns=d.text_columns,
        label_column=d.label_column,
        max_length=d.max_length,
        doc_stride=d.doc_stride,
    )
    note = data.detection_note("to train on others, pass them with --text-columns")
    if note:
        print(f"qla {args.command}: {note}", file=sys.stderr)
    return data


def check_metrics_file(output: str | Path) -> None:
    """Refuse, before training, an ``OUTPUT/metrics.json`` that an earlier run of ours did not write (it writes one
    beside ``final/``): the run would overwrite it at its end."""
    from qla_sdk.io import OutputError

    folder = Path(output)
    if (folder / "metrics.json").exists() and not (folder / "final" / "config.json").is_file():
        raise OutputError(
            f"{folder / 'metrics.json'} exists and no earlier run wrote it (there is no {folder / 'final'}): this "
            "run would overwrite it. Move it, or choose another --output"
        )


def check_inputs_outlive(output: str | Path, inputs: dict[str, str | None]) -> None:
    """Refuse, before training, an ``--output`` whose ``final/`` (replaced by the trained model at the end) is an
    input checkpoint or holds one: ``inputs`` maps each flag to its path (None: not given)."""
    from qla_sdk.io import OutputError

    # final/, and assistant/final/ where distillation goes through a teacher assistant
    finals = [(Path(output) / "final").resolve(), (Path(output) / "assistant" / "final").resolve()]
    for flag, path in inputs.items():
        if path is None or not Path(path).exists():  # a hub id, or an option left out
            continue
        given = Path(path).resolve()
        for final in finals:
            if given == final or final in given.parents:
                raise OutputError(
                    f"--output {output}: this run replaces {final} with a model it trains, and {flag} {path} is "
                    "in it, so the input would be lost. Choose another --output"
                )


def model_labels(model) -> list[str] | None:
    if model.task == "question-answering":
        return None
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def describe(model) -> dict:
    c = model.config
    return {
        "layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run(args: argparse.Namespace) -> int:
    from qla_sdk.train.loop import format_scores

    result, metrics = distill_command(args)
    if result.is_main_process:
        print(f"{result.describe()}; student eval: {format_scores(metrics['eval'])}")
        if "teacher_eval" in metrics:
            print("teacher eval: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics["teacher_eval"].items()))
        print(f"model: {result.final_dir}\nmetrics: {Path(args.output) / 'metrics.json'}")
    return 0


def distill_command(args: argparse.Namespace):
    """Build teacher, student (and assistant), distil, evaluate, write; returns (TrainResult, metrics dict)."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.io import write_json_atomic
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train import config_from_args, evaluate
    from qla_sdk.train.distill import check_pair, distill
    from qla_sdk.train.student import (
        StudentShape,
        build_assistant,
        needs_assistant,
        parse_layers,
        student_from_checkpoint,
        student_from_layers,
        student_from_shape,
    )

    check_metrics_file(args.output)
    inputs = {"--teacher": args.teacher, "--student": args.student, "--tokenizer": args.tokenizer}
    check_inputs_outlive(args.output, inputs)
    train_config = config_from_args(args, output_dir=args.output)
    distill_config = options_from_args(DistillConfig, args)
    augment = options_from_args(AugmentConfig, args, prefix="augment")
    teacher = from_pretrained(args.teacher, task=args.task, trained_head=True)
    task = teacher.task
    if args.student_config:
        student = student_from_shape(teacher, StudentShape.parse(args.student_config), seed=args.seed)
        source = {"config": args.student_config}
    elif args.init_layers:
        layers = parse_layers(args.init_layers)
        student = student_from_layers(teacher, layers)
        source = {"teacher_layers": layers}
    else:
        student = student_from_checkpoint(args.student, teacher, seed=args.seed)
        source = {"checkpoint": str(args.student)}
    assistant = build_assistant(teacher, student, seed=args.seed) if args.assistant else None
    check_pair(assistant or teacher, student, distill_config)  # before loading data: fail fast
    if assistant is None and needs_assistant(teacher.config, student.config, random_student="config" in source):
        print(
            "note: the student is randomly initialised with at most half the teacher's layers and hidden size; "
            "MiniLM distils such students through a teacher assistant (--assistant)"
        )
    tokenizer = load_tokenizer(args.tokenizer or args.teacher)
    data = load_task_data(args, tokenizer, task, model_labels(teacher))
    teacher_eval = None
    if args.eval_teacher:
        teacher_eval = evaluate(
            teacher, data.eval_features, task, examples=data.eval_examples, batch_size=train_config.eval_batch_size
        )
    result = distill(
        teacher,
        student,
        data.train_features,
        data.eval_features,
        task,
        distill_config,
        train_config,
        eval_examples=data.eval_examples,
        assistant=assistant,
        tokenizer=tokenizer,
        extra_metadata={**data.metadata(), "student_init": source},
        augment=augment,
    )
    metrics = {
        "task": task,
        "teacher": str(args.teacher),
        "student_init": source,
        "student": describe(student),
        "distillation": distill_config.to_dict(),
        **({"augment": augment.to_dict()} if augment.enabled else {}),
        "eval": {k: v for k, v in result.metrics.items() if k != "train_loss" and not k.startswith("assistant_")},
        **result.figures(),
        **data.sizes(),
    }
    if teacher_eval is not None:
        metrics["teacher_eval"] = teacher_eval
    if assistant is not None:
        metrics["assistant"] = describe(assistant)
        metrics["assistant_eval"] = {
            k.removeprefix("assistant_"): v for k, v in result.metrics.items() if k.startswith("assistant_")
        }
    if result.is_main_process:
        write_json_atomic(Path(args.output) / "metrics.json", metrics)
    return result, metrics
