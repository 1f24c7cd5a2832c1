"""Results files: JSON with the figures plus machine, versions, command and date; a markdown table beside it."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from pathlib import Path

from qla_sdk.io import markdown_table, write_bytes_atomic, write_json_atomic
from qla_sdk.machine import machine_info, package_versions

__all__ = ["markdown_table", "publish_table", "runs_with", "write_results"]


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


def publish_table(path: str | Path, figures: dict, headers: list[str], rows: list[list]) -> str:
    """``write_results`` with ``rows`` as the markdown table, for the command that is running; print the table."""
    markdown = markdown_table(headers, rows)
    write_results(path, figures, markdown)
    print(markdown)
    return markdown


def runs_with(path: str | Path, name: str, run: dict) -> dict:
    """The runs of the results file ``path`` (its ``runs`` mapping) with ``run`` added under ``name`` (replacing one
    of that name), for a script whose runs with other options land beside each other; each run carries its own
    machine, command and date (``run_stamp``). A file of another layout is refused, not dropped."""
    path = Path(path)
    earlier = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    if not isinstance(earlier, dict) or not isinstance(earlier.get("runs"), dict):
        raise ValueError(
            f"{path} holds no 'runs' mapping (results of another layout): its figures would be lost; move it away, or "
            "give another --out"
        )
    return {**earlier["runs"], name: {**run, **run_stamp()}}


def run_stamp() -> dict:
    """The machine, command and date of this process, as one run of a results file records them."""
    return {
        "machine": machine_info(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
