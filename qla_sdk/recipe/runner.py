"""Run named stages in order, each in its own folder, with a done marker so a re-run skips finished work.

A stage is finished when ``<out>/<stage>/done.json`` exists and records the same options hash; a stage whose
options changed runs again, and so does every stage after it. A folder without a marker means the stage was
interrupted: it runs again with ``resume=True`` so long stages (training, search) continue from their last
checkpoint, unless an earlier stage ran in this call (its partial work was built on the old outputs: it starts
afresh); the marker's ``seconds`` count every attempt (``qla_sdk.recipe.clock``). ``from_stage``
redoes that stage and the ones after it; ``until`` stops after a stage, and where a stage ran in that call, the later
stages' folders (built on its old outputs) are moved aside to ``<stage>.stale``, so the next call runs them afresh
instead of skipping or resuming them. Stage folders this runner did not make (no marker, no clock file) are refused
before any work, never resumed, deleted or moved; paths are absolute in the markers, so a run goes on from any
working directory.

Under several processes (``torchrun``, ``accelerate launch``) every process calls ``run_stages``: stages marked
``all_processes`` (training) run everywhere; the others run on the main process while the rest wait at
``barrier`` and read the outputs from the marker the main process wrote.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qla_sdk.errors import ConfigError
from qla_sdk.io import write_json_atomic
from qla_sdk.recipe.clock import CLOCK, StageClock

MARKER = "done.json"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Path, dict, bool], dict]  # (stage folder, outputs of earlier stages, resume) -> outputs
    options: object = None  # hashed: a change re-runs this stage and the later ones
    all_processes: bool = False  # True for training stages (DDP); others run on the main process only


def options_hash(options: object) -> str:
    from qla_sdk.config import to_dict

    return hashlib.sha256(json.dumps(to_dict(options), sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def stage_seconds(out_dir: Path, names: list[str] | None = None) -> tuple[dict[str, float | None], list[str]]:
    """Each finished stage's seconds as its marker recorded them (over every attempt of a resumed stage; None for a
    stage of ``names`` without a marker), for ``names`` or every stage folder of ``out_dir``; and the stages whose
    marker predates ``StageClock`` (no ``attempts``), which count only their last attempt."""
    if names is None:
        folders = [marker.parent for marker in sorted(out_dir.glob(f"*/{MARKER}"))]
    else:
        folders = [out_dir / name for name in names]
    seconds: dict[str, float | None] = {}
    unclocked = []
    for folder in folders:
        marker = read_marker(folder)
        seconds[folder.name] = round(float(marker.get("seconds", 0.0)), 1) if marker else None
        if marker and "attempts" not in marker:
            unclocked.append(folder.name)
    return seconds, unclocked


def run_stages(
    stages: list[Stage],
    out_dir: str | Path,
    from_stage: str | None = None,
    log: Callable[[str], None] = print,
    is_main: bool = True,
    barrier: Callable[[], None] | None = None,
    until: str | None = None,
) -> dict[str, dict]:
    """Run ``stages``, or those up to ``until`` included; return each stage's outputs (read back from markers for
    skipped ones)."""
    names = [s.name for s in stages]
    for flag, name in (("--from", from_stage), ("--until", until)):
        if name is not None and name not in names:
            raise ConfigError(f"{flag} {name!r} is not a stage; stages: {', '.join(names)}")
    if from_stage is not None and until is not None and names.index(until) < names.index(from_stage):
        raise ConfigError(f"--until {until!r} comes before --from {from_stage!r}: nothing would run; swap them")
    out_dir = Path(out_dir).resolve()  # the stages record paths under it in their markers
    _check_stage_folders(out_dir, names)
    outputs: dict[str, dict] = {}
    wait = barrier or (lambda: None)
    redo = False
    last = names.index(until) + 1 if until is not None else len(stages)
    for stage in stages[:last]:
        folder = out_dir / stage.name
        digest = options_hash(stage.options)
        marker = read_marker(folder)
        wait()  # every process has read the marker before the main process changes the folder
        redo = redo or stage.name == from_stage
        upstream_ran = redo  # this stage is --from, or an earlier stage ran: its partial work is built on old outputs
        if marker and not redo and marker.get("options_hash") == digest:
            if is_main:
                log(f"[{stage.name}] done earlier, skipped ({folder})")
            outputs[stage.name] = marker["outputs"]
            continue
        if marker and not redo and is_main:
            log(f"[{stage.name}] options changed since it ran: running it and the later stages again")
        redo = True  # the stages after one that runs (fresh or resumed) were built on its old outputs
        resume = folder.exists() and marker is None and not upstream_ran
        if is_main:
            if folder.exists() and not resume:
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            log(f"[{stage.name}] {'resuming' if resume else 'running'} -> {folder}")
        wait()
        if is_main:
            with StageClock(folder) as clock:  # the seconds of every attempt, a resumed stage's earlier ones too
                result = stage.run(folder, outputs, resume)
            marker = {"options_hash": digest, "outputs": result, "seconds": clock.seconds, "attempts": clock.attempts}
            write_json_atomic(folder / MARKER, marker)
            runs = f" over {clock.attempts} runs" if clock.attempts > 1 else ""
            log(f"[{stage.name}] finished in {clock.seconds:.0f} s{runs}")
        else:
            result = stage.run(folder, outputs, resume) if stage.all_processes else None
        wait()
        outputs[stage.name] = result if is_main else read_marker(folder)["outputs"]
    if redo and last < len(stages):  # a stage ran: the ones after `until` were built on its old outputs
        if is_main:
            _set_aside(out_dir, names[last:], log)
        wait()
    return outputs


def _written_here(folder: Path) -> bool:
    """Whether ``folder`` is a stage folder this runner made (its marker or clock file; or empty), so that it may
    resume, replace or set it aside."""
    if not folder.exists():
        return True
    return folder.is_dir() and ((folder / MARKER).exists() or (folder / CLOCK).exists() or not any(folder.iterdir()))


def _check_stage_folders(out_dir: Path, names: list[str]) -> None:
    """Refuse, before any work, an output that is a file, or stage folders (and set-aside ones) this runner did not
    make: it resumes, deletes or moves those, and must not do so to a user's own files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output {out_dir} is a file: give a folder for the recipe's stages")
    for name in names:
        for folder in (out_dir / name, out_dir / f"{name}.stale"):
            if not _written_here(folder):
                raise ConfigError(
                    f"{folder} was not made by a recipe run (no {MARKER} or {CLOCK}) and this run would resume, "
                    "replace or move it: move it away, or choose another output folder"
                )


def _set_aside(out_dir: Path, later: list[str], log: Callable[[str], None]) -> None:
    for name in later:
        folder = out_dir / name
        if folder.exists():
            stale = out_dir / f"{name}.stale"
            shutil.rmtree(stale, ignore_errors=True)
            folder.rename(stale)
            log(f"[{name}] built on outputs that just changed: moved to {stale}; the next run redoes it")
