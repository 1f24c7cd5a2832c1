"""Results files: JSON with the figures plus machine, versions, command and date; a markdown table beside it."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path

from qla_sdk.bench.machine import machine_info, package_versions
from qla_sdk.io import write_bytes_atomic, write_json_atomic


def write_results(path: str | Path, figures: dict, markdown: str, command: list[str] | None = None) -> dict:
    """Write ``path`` (.json) and the same name with .md; return what was written."""
    path = Path(path)
    record = {
        **figures,
        "machine": machine_info(),
        "versions": package_versions(),
        "command": shlex.join(command if command is not None else [Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(path, record)
    header = (
        f"_Measured {record['date']} on {record['machine']['cpu_model']} "
        f"({record['machine']['usable_cores']} cores) with `{record['command']}`._\n\n"
    )
    write_bytes_atomic(path.with_suffix(".md"), (header + markdown.rstrip() + "\n").encode())
    return record


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
