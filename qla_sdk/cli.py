"""`qla <command>`: parse, validate, call one function, print. Each command lives in qla_sdk/commands/<name>.py
with ``register(subparsers)`` (adds its parser and sets ``func``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

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
        result = args.func(args)
    except (QlaError, ValueError, TypeError, OSError) as exc:  # OSError: a path that is a folder, no permission
        print(f"qla {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qla {args.command}: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return 130
    return int(result or 0)


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command kept and how to go on."""
    if hasattr(args, "resume"):
        return "finished work is kept and --resume continues"
    if args.command in ("run", "demo"):  # the staged recipe: finished stages are skipped on the next start
        return "finished stages are kept: the same command continues"
    return "no output was written half-way: run the command again"


if __name__ == "__main__":
    sys.exit(main())
