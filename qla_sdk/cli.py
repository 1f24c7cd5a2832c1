"""`qla <command>`: parse, validate, call one function, print. Each command lives in qla_sdk/commands/<name>.py
with ``register(subparsers)`` (adds its parser and sets ``func``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator

from qla_sdk.errors import QlaError

# Order is the order of `qla --help`; a module not written yet is skipped. The benchmark suite is its own tool,
# `qla-bench` (package qla_bench, outside the library).
COMMANDS = [
    "finetune",
    "distill",
    "lat_train",
    "search",
    "quantize",
    "export",
    "predict",
    "eval",
    "run",
    "split_squad",
    "macs",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qla", description="Quantized length-adaptive transformers for Xeon CPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module_name = f"qla_sdk.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _training_log_to_stderr(args.command):
            result = args.func(args)
    except (QlaError, ValueError, TypeError, OSError) as exc:  # OSError: a path that is a folder, no permission
        print(f"qla {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qla {args.command}: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return 130
    return int(result or 0)


@contextlib.contextmanager
def _training_log_to_stderr(command: str) -> Iterator[None]:
    """The training loop logs its loss records at INFO when no progress bar is shown (--no-progress, a recipe stage
    with progress false), and where it resumed from: without a handler they would be dropped, and an hours-long run
    would print nothing until it ends. A caller that configured logging keeps its own handlers."""
    logger = logging.getLogger("qla_sdk.train")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"qla {command}: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command kept and how to go on."""
    if hasattr(args, "resume"):
        return "finished work is kept and --resume continues"
    if args.command in ("run", "demo"):  # the staged recipe: finished stages are skipped on the next start
        return "finished stages are kept: the same command continues"
    return "no output was written half-way: run the command again"


if __name__ == "__main__":
    sys.exit(main())
