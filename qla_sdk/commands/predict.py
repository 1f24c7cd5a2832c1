"""`qla predict ARTIFACT --text "..."` or `--question "..." --context "..."` (or `--file` with one text per line).

Prints a JSON list, one record per text: ``{"label", "score"}``. With ``--file`` each line of the file gives one
record, in order, and its record carries ``"line"``, the 1-based line number, so that results join back to their
input lines even after a tool sorts or filters them. An empty or whitespace-only line is not sent to the model:
its record is ``{"line": N, "label": null, "score": null, "skipped": "empty line"}``, so the records still line up
one to one with the lines. A file of any size is sent in chunks that stay within one predict call's bounds; the
results are those of one call. QA prints ``{"answer", "score", "start", "end"}``.

``--top-k N`` adds to each classification record ``"top_k"``, its N best ``{"label", "score"}``, best first (``null``
for a skipped line); QA then prints a list of the N best answers.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

# Texts per predict call: a file of any size stays under the Predictor's bounds of one call (as in `qla eval`).
CHUNK = 256


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run an exported artifact on texts (classification) or a question (QA)")
    p.add_argument("artifact")
    p.add_argument("--text", action="append", default=None, help="classification: a text to classify (repeatable)")
    p.add_argument(
        "--file",
        default=None,
        help='classification: classify each line of this UTF-8 file (any size); each record gets its 1-based "line", '
        'and an empty line gives {"line": N, "label": null, "score": null, "skipped": "empty line"}',
    )
    p.add_argument("--question", default=None, help="question answering: the question (with --context)")
    p.add_argument("--context", default=None, help="question answering: the context text, or @path to read it from")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="allow loading an ipex (TorchScript) artifact: TorchScript can run code, so only for files you built",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--top-k",
        type=int,
        default=1,
        help='the N best labels or answers: a classification record gets "top_k", a list of {"label", "score"}, '
        "best first; QA prints a list of answers",
    )
    p.add_argument(
        "--max-answer-length", type=int, default=None, help="question answering: longest answer in tokens (default 30)"
    )
    p.add_argument(
        "--align-to-words",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="question answering: answers start and end on whole words (default; --no-align-to-words: run_qa's "
        "token spans, the rule SQuAD figures use)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.deploy import load

    predictor = load(
        args.artifact, threads=args.threads, max_batch_size=args.batch_size, trust_torchscript=args.trust_torchscript
    )
    if predictor.task == "question-answering":
        if args.text or args.file:  # they would be ignored: say so rather than answer something else
            given = "--text" if args.text else "--file"
            raise ValueError(
                f"{args.artifact} is a question-answering artifact: it takes --question and --context, not {given} "
                "(which classification artifacts take)"
            )
        if args.question is None or args.context is None:
            raise ValueError("this artifact answers questions: pass --question and --context")
        context = args.context
        if context.startswith("@"):
            context = _read_text(context[1:], "--context @")
        result = predictor.predict(
            question=args.question,
            context=context,
            top_k=args.top_k,
            max_answer_length=args.max_answer_length,
            align_to_words=args.align_to_words,
        )
    else:
        if args.question is not None or args.context is not None:
            given = "--question" if args.question is not None else "--context"
            raise ValueError(
                f"{args.artifact} is a {predictor.task} artifact: it takes --text (repeatable) or --file, not {given} "
                "(which question-answering artifacts take)"
            )
        for flag, value in (("--max-answer-length", args.max_answer_length), ("--align-to-words", args.align_to_words)):
            if value is not None:
                raise ValueError(
                    f"{args.artifact} is a {predictor.task} artifact: {flag} is a question-answering option"
                )
        result = _classify(predictor, args)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _classify(predictor, args: argparse.Namespace) -> list[dict]:
    """One record per --text, then one per line of --file (see the module docstring), predicted in chunks."""
    from qla_sdk.deploy.predictor import check_text

    records: list[dict] = []  # in input order; an empty line's record is complete already
    pending: list[tuple[int, str, str]] = []  # (its record, what names it in a message, the text)
    for i, text in enumerate(args.text or []):
        records.append({})
        pending.append((len(records) - 1, f"--text #{i + 1}", text))
    if args.file:
        for number, line in enumerate(_lines(_read_text(args.file, "--file ")), start=1):
            if line.strip():
                records.append({"line": number})
                pending.append((len(records) - 1, f"--file {args.file} line {number}", line))
            else:  # the model would refuse it; a record keeps the output one to one with the lines
                skipped = {"line": number, "label": None, "score": None, "skipped": "empty line"}
                records.append(skipped if args.top_k == 1 else {**skipped, "top_k": None})
    if not pending:
        if args.file:
            raise ValueError(f"--file {args.file} has no text: write one text per line")
        raise ValueError("this artifact classifies texts: pass --text (repeatable) or --file")
    for _, name, text in pending:  # all checked before the first call, each named so that the user can find it
        check_text(text, name, predictor.max_chars)
    predicted: list[dict] = []
    for chunk in _chunks(pending, CHUNK, predictor.max_total_chars):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predicted += predictor.predict([text for _, _, text in chunk], top_k=args.top_k)
        for w in caught:
            warnings.warn(_rename_inputs(str(w.message), [name for _, name, _ in chunk]), w.category, stacklevel=2)
    for (index, _, _), result in zip(pending, predicted, strict=True):
        records[index].update(result if args.top_k == 1 else {**result[0], "top_k": result})
    return records


def _lines(text: str) -> list[str]:
    """The lines as editors, `wc -l` and `sed -n Np` number them: split at \\n only (\\r\\n too), not at the other
    characters str.splitlines() breaks at (form feed, U+2028, ...), so that line numbers match the file's."""
    lines = text.split("\n")
    if lines[-1] == "":  # the newline that ends the last line starts no line
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _chunks(items: list[tuple[int, str, str]], size: int, max_chars: int) -> list[list[tuple[int, str, str]]]:
    """``items`` in order, cut into runs of at most ``size`` texts and ``max_chars`` characters (one call's bounds)."""
    chunks: list[list[tuple[int, str, str]]] = []
    chars = 0
    for item in items:
        if not chunks or len(chunks[-1]) == size or chars + len(item[2]) > max_chars:
            chunks.append([])
            chars = 0
        chunks[-1].append(item)
        chars += len(item[2])
    return chunks


def _rename_inputs(message: str, names: list[str]) -> str:
    """The predictor's warning with its "#i" (an index into one chunk) replaced by the input's name."""

    def name(match: re.Match) -> str:
        i = int(match.group(1))
        return names[i] if i < len(names) else match.group(0)

    return re.sub(r"#(\d+)", name, message)


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
