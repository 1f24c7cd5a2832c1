"""`qla predict ARTIFACT --text "..."` or `--question "..." --context "..."` (or `--file` with one text per line)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run an exported artifact on texts (classification) or a question (QA)")
    p.add_argument("artifact")
    p.add_argument("--text", action="append", default=None, help="a text to classify (repeatable)")
    p.add_argument("--file", default=None, help="classify each line of this file")
    p.add_argument("--question", default=None)
    p.add_argument("--context", default=None, help="the context text, or @path to read it from a file")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow loading an ipex (TorchScript) artifact: TorchScript can run code, so only for files you built",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.deploy import load

    predictor = load(
        args.artifact, threads=args.threads, max_batch_size=args.batch_size, trust_torchscript=args.trust_torchscript
    )
    if predictor.task == "question-answering":
        if args.question is None or args.context is None:
            raise ValueError("this artifact answers questions: pass --question and --context")
        context = args.context
        if context.startswith("@"):
            context = _read_text(context[1:], "--context @")
        result = predictor.predict(question=args.question, context=context)
    else:
        texts = list(args.text or [])
        if args.file:
            texts += [line for line in _read_text(args.file, "--file ").splitlines() if line.strip()]
        if not texts:
            if args.file:
                raise ValueError(f"--file {args.file} has no text: write one text per line")
            raise ValueError("this artifact classifies texts: pass --text (repeatable) or --file")
        result = predictor.predict(texts)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _read_text(path: str, flag: str) -> str:
    """A text file's content, or a ValueError naming the flag, the file and the fix."""
    file = Path(path)
    if not file.is_file():
        what = "a folder" if file.is_dir() else "not a file"
        raise ValueError(f"{flag}{path}: {what}; give the path of a UTF-8 text file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{flag}{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): save it as "
            "UTF-8"
        ) from exc
