"""Run named stages in order, each in its own folder, with a done marker so a re-run skips finished work.

A stage is finished when ``<out>/<stage>/done.json`` exists, records the same options and the same contents of its
``inputs`` (the user's data and models it reads), and the files it names as its ``artifacts`` still exist; a stage
whose options or inputs changed, or whose artifacts were deleted, runs again, and so does every stage after it.
Options that only change what a run shows or keeps (``DISPLAY_ONLY``: progress bars, log and checkpoint intervals)
are no change. A folder without a marker means the stage was interrupted: it runs again
with ``resume=True`` so long stages (training, search) continue from their last checkpoint, unless an earlier stage
ran in this call (its partial work was built on the old outputs: it starts afresh); the marker's ``seconds`` count
every attempt (``qla_sdk.recipe.clock``). ``from_stage`` redoes that stage and the ones after it; ``until`` stops
after a stage, and where a stage ran in that call, the later stages' folders (built on its old outputs) are moved
aside to ``<stage>.stale``, so the next call runs them afresh instead of skipping or resuming them; a stage that
finishes again removes its ``.stale`` folder. Stage folders this runner did not make (no marker, no clock file) are
refused before any work, never resumed, deleted or moved.

Markers hold absolute paths (a run goes on from any working directory) and the output folder they were written
in: paths under it are read under the output folder's current place, so a moved or copied output folder uses its
own files, never the original's. Markers of earlier versions (no ``options``, no ``output_dir``) are still honoured:
their options are compared by the hash they hold, and their folder is told by the paths the stages wrote in it.

Under several processes (``torchrun``, ``accelerate launch``) every process calls ``run_stages``: stages marked
``all_processes`` (training) run everywhere; the others run on the main process while the rest wait at
``barrier`` and read the outputs from the marker the main process wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qla_sdk.errors import ConfigError, QlaError
from qla_sdk.io import write_json_atomic
from qla_sdk.recipe.clock import CLOCK, StageClock, read_clock_options

MARKER = "done.json"
# TrainConfig fields that change what a run shows or keeps on disk, not the model it makes (a resumed training run
# may change them too: TrainConfig.schedule_fingerprint leaves them out), so changing one re-runs nothing.
DISPLAY_ONLY = ("progress", "log_every", "eval_batch_size", "keep_checkpoints", "checkpoint_every")
# Options added after markers were first written, with the values that do what a marker without them did: a
# finished stage stays finished under those (at any depth of its options: the key ends the dotted name). Markers
# older still, which hold only a hash of every option, run their stage again.
ADDED_OPTIONS = {
    "length_adaptive.full_length_layers": (0,),
    "evolution.full_length_layers": (None, 0),
    # distillation on augmented copies (train.augment): off, at its defaults, is how older markers distilled
    "augment.copies": (0,),
    "augment.replace_prob": (0.4,),
    "augment.neighbors": (15,),
}


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Path, dict, bool], dict]  # (stage folder, outputs of earlier stages, resume) -> outputs
    options: object = None  # recorded: a change re-runs this stage and the later ones
    all_processes: bool = False  # True for training stages (DDP); others run on the main process only
    artifacts: tuple[str, ...] = ()  # output keys naming files or folders that must exist for a skip (model, ...)
    # Local files or folders the stage reads from the user (data, a given model): their contents are recorded, so
    # one edited in place runs the stage again, as a changed option does. Names that are no local path (hub ids)
    # are left out.
    inputs: tuple[str, ...] = ()


def options_hash(options: object) -> str:
    """The hash of every field of ``options``, display ones too: what markers written before ``options`` hold."""
    from qla_sdk.config import to_dict

    return hashlib.sha256(json.dumps(to_dict(options), sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_options(options: object) -> object:
    """``options`` as a marker records them (JSON): what decides the stage's outputs, so without the
    ``DISPLAY_ONLY`` fields of its training configs."""
    from qla_sdk.config import to_dict
    from qla_sdk.train.config import TrainConfig

    def walk(value: object) -> object:
        if isinstance(value, TrainConfig):
            return {k: v for k, v in to_dict(value).items() if k not in DISPLAY_ONLY}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: walk(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return to_dict(value)

    return json.loads(json.dumps(walk(options), sort_keys=True, default=str))


def option_changes(recorded: object, current: object) -> list[str]:
    """``key: old -> new`` for each option that differs between two ``recorded_options``."""
    old, new = _flat(recorded), _flat(current)
    unset = "(unset)"
    for key, value in new.items():
        neutral = [v for k, values in ADDED_OPTIONS.items() if key == k or key.endswith(f".{k}") for v in values]
        if key not in old and any(type(v) is type(value) and v == value for v in neutral):
            old[key] = value
    return [
        f"{key}: {old.get(key, unset)!r} -> {new.get(key, unset)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, unset) != new.get(key, unset)
    ]


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(value, dict):
        return {prefix or "options": value}
    flat: dict[str, object] = {}
    for key, item in value.items():
        flat.update(_flat(item, f"{prefix}{key}.") if isinstance(item, dict) and item else {f"{prefix}{key}": item})
    return flat


def _changes(marker: dict, options: object, moved: dict[str, str] | None = None) -> list[str] | None:
    """None when ``options`` are those the marker recorded; else the changed keys (none named for a marker written
    before markers recorded the options: its hash covers every field, and says only whether any changed).
    ``moved``: recorded input path -> its path now (``_moved_inputs``), read as the same option value."""
    if "options" not in marker:
        return None if marker.get("options_hash") == options_hash(options) else []
    return option_changes(_renamed(marker["options"], moved or {}), recorded_options(options)) or None


def _renamed(value: object, paths: dict[str, str]) -> object:
    """``value`` with every string that is a key of ``paths`` replaced by its value, at any depth."""
    if isinstance(value, dict):
        return {key: _renamed(item, paths) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, paths) for item in value]
    return paths.get(value, value) if isinstance(value, str) else value


def _moved_inputs(recorded: dict[str, str], now: dict[str, str]) -> dict[str, str]:
    """Recorded input path -> the input path now, for each input that only moved: no input has its old path now,
    and one at a new path has its contents (a recipe run from another checkout, a project folder moved, a data file
    renamed). The stage's options name the old path; without this, the move alone reran every stage and the later
    ones. Where contents match several old or new paths, the one of the same name is taken; with none of
    the same name, none: the stage runs again rather than guess which input is which."""
    gone = {old: digest for old, digest in recorded.items() if old not in now}
    new = {path: digest for path, digest in now.items() if path not in recorded}
    moved = {}
    for path, digest in new.items():
        candidates = [old for old, old_digest in gone.items() if old_digest == digest and old not in moved]
        same_name = [old for old in candidates if Path(old).name == Path(path).name]
        twins = [other for other, other_digest in new.items() if other_digest == digest]
        if same_name:
            moved[same_name[0]] = path
        elif len(candidates) == 1 and len(twins) == 1:
            moved[candidates[0]] = path
    return moved


def input_digests(paths: tuple[str, ...]) -> dict[str, str]:
    """sha256 of each local file, or of a folder's files by name (not its subfolders: model and data folders are
    flat, and a training run's nested checkpoints are not what a stage reads)."""
    from qla_sdk.io import sha256_file

    digests = {}
    for path in paths:
        if path is None or not Path(path).exists():
            continue
        if Path(path).is_dir():
            digest = hashlib.sha256()
            # hidden files (.DS_Store, an editor's swap file) are no input
            for file in sorted(p for p in Path(path).iterdir() if p.is_file() and not p.name.startswith(".")):
                digest.update(f"{file.name}\0{sha256_file(file)}\0".encode())
            digests[str(path)] = digest.hexdigest()
        else:
            digests[str(path)] = sha256_file(path)
    return digests


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
    markers = {name: read_marker(out_dir / name) for name in names}
    earlier_places = _earlier_places(out_dir, markers)
    outputs: dict[str, dict] = {}
    wait = barrier or (lambda: None)
    redo = False
    last = names.index(until) + 1 if until is not None else len(stages)
    for stage in stages[:last]:
        folder = out_dir / stage.name
        marker = markers[stage.name]
        redo = redo or stage.name == from_stage
        upstream_ran = redo  # this stage is --from, or an earlier stage ran: its partial work is built on old outputs
        if marker and not redo:
            done = _moved(marker["outputs"], earlier_places, out_dir)
            # Before --from, a deleted output is named, not rebuilt: the user deleted it on purpose (disk), and
            # rebuilding it would rerun hours of stages that --from says to keep.
            why, moved = _why_again(stage, marker, done, check_artifacts=from_stage is None)
            gone = [done[key] for key in stage.artifacts if _is_gone(done.get(key))]
            if why is None and gone and is_main:
                log(f"[{stage.name}] note: {gone[0]} no longer exists; a later stage that reads it will fail")
            if why is None:
                if is_main:
                    for old, new in moved.items():
                        if Path(old).name != Path(new).name:  # a rename is said: the user may not have meant it
                            log(f"[{stage.name}] note: its input {old} is {new} now (the same contents)")
                    log(f"[{stage.name}] done earlier, skipped ({folder})")
                outputs[stage.name] = done
                continue
            if is_main:
                log(f"[{stage.name}] {why}: running it and the later stages again")
        redo = True  # the stages after one that runs (fresh or resumed) were built on its old outputs
        resume = folder.exists() and marker is None and not upstream_ran
        options = recorded_options(stage.options)
        interrupted_with = read_clock_options(folder) if resume else None
        wait()  # every process has read the markers and the clock before the main process changes the folder
        if is_main:
            if folder.exists() and not resume:
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            log(f"[{stage.name}] {'resuming' if resume else 'running'} -> {folder}")
        wait()
        if is_main:
            inputs = input_digests(stage.inputs)  # before the run reads them: an edit during it shows next time
            # the clock counts the seconds of every attempt (a resumed stage's earlier ones too)
            with StageClock(folder, options=options) as clock:
                result = _run(stage, folder, outputs, resume, interrupted_with, options, clock)
            marker = {
                "options_hash": options_hash(stage.options),  # as earlier versions read it
                "options": options,
                "inputs": inputs,
                "output_dir": str(out_dir),
                "outputs": result,
                "seconds": clock.seconds,
                "attempts": clock.attempts,
            }
            write_json_atomic(folder / MARKER, marker)
            runs = f" over {clock.attempts} runs" if clock.attempts > 1 else ""
            log(f"[{stage.name}] finished in {clock.seconds:.0f} s{runs}")
            _remove_stale(out_dir, stage.name, log)
        else:
            result = _run(stage, folder, outputs, resume, interrupted_with, options) if stage.all_processes else None
        wait()
        outputs[stage.name] = result if is_main else read_marker(folder)["outputs"]
    if redo and last < len(stages):  # a stage ran: the ones after `until` were built on its old outputs
        if is_main:
            _set_aside(out_dir, names[last:], log)
        wait()
    return outputs


def _why_again(
    stage: Stage, marker: dict, outputs: dict, check_artifacts: bool = True
) -> tuple[str | None, dict[str, str]]:
    """Why a finished stage must run again (its options or inputs changed, or, with ``check_artifacts``, an
    artifact is gone), None when it need not; and its inputs that moved (``_moved_inputs``)."""
    now = input_digests(stage.inputs) if "inputs" in marker else None  # markers of earlier versions: no contents
    moved = _moved_inputs(marker["inputs"], now) if now is not None else {}
    changes = _changes(marker, stage.options, moved)
    if changes is not None:
        why = f"options changed since it ran ({', '.join(changes)})" if changes else "options changed since it ran"
        return why, moved
    missing = [outputs[key] for key in stage.artifacts if _is_gone(outputs.get(key))]
    if missing and check_artifacts:
        return f"done earlier, but {missing[0]} no longer exists", moved
    if now is not None:
        recorded = {moved.get(path, path): digest for path, digest in marker["inputs"].items()}
        edited = [path for path, digest in now.items() if recorded.get(path) != digest]
        if edited:
            return f"its input {edited[0]} changed since it ran", moved
    return None, moved


def _run(
    stage: Stage,
    folder: Path,
    earlier: dict,
    resume: bool,
    interrupted_with: object,
    options: object,
    clock: StageClock | None = None,
) -> dict:
    """``stage.run``; an error of a resumed stage (a checkpoint or search state made with other options) also says
    how to start just this stage afresh. The runner does not do that itself: it would delete the interrupted
    work (hours of training) on an edit that may be a slip, and some edits a stage takes on resuming (a longer
    search), so only the stage can tell; --from keeps every earlier stage."""
    try:
        return stage.run(folder, earlier, resume)
    except QlaError as exc:
        if resume and clock is not None:
            clock.options = interrupted_with  # a refused resume leaves the interrupted run's work, and its options
        if resume and exc.args:
            changes = option_changes(interrupted_with, options) if interrupted_with is not None else []
            since = f"; its options changed since it was interrupted ({', '.join(changes)})" if changes else ""
            exc.args = (
                f"{exc.args[0]}\n[{stage.name}] was resuming an interrupted run{since}: to start this stage afresh "
                f"and keep the stages before it, run again with --from {stage.name}",
                *exc.args[1:],
            )
        raise


def _earlier_places(out_dir: Path, markers: dict[str, dict | None]) -> list[Path]:
    """Where the output folder was when its markers were written, where that is not ``out_dir`` (it was moved or
    copied since). Markers record it; an earlier version's marker is told by a path its stage wrote in its own
    folder (``X/<stage>/...``) that exists in ``out_dir`` too (a model, an artifact)."""
    places = set()
    for name, marker in markers.items():
        if not marker:
            continue
        if "output_dir" in marker:
            places.add(Path(marker["output_dir"]))
            continue
        for path in _absolute_paths(marker.get("outputs")):
            inner = path.parts[:-1]  # a path in the stage's folder (X/<stage>/model), not a folder of that name
            if name not in inner[1:]:
                continue
            at = len(inner) - 1 - inner[::-1].index(name)
            place = Path(*inner[:at])
            # The place held this output folder if it still has the stage's marker (copied) or is gone (moved): a
            # user's own path that happens to hold the stage's name (a teacher at /proj/teacher, out at /proj/out)
            # is neither, and must be read where it is.
            earlier = (place / name / MARKER).is_file() or not place.exists()
            if earlier and out_dir.joinpath(*path.parts[at:]).exists():
                places.add(place)
    places.discard(out_dir)
    return sorted(places, key=lambda p: len(p.parts), reverse=True)  # the deepest first, as it matches best


def _absolute_paths(value: object) -> list[Path]:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v)]
    return [Path(value)] if isinstance(value, str) and os.path.isabs(value) else []


def _moved(value: object, places: list[Path], out_dir: Path) -> object:
    """``value`` (a marker's outputs) with the paths under an earlier place of the output folder under ``out_dir``."""
    if isinstance(value, dict):
        return {k: _moved(v, places, out_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, places, out_dir) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and not Path(value).is_relative_to(out_dir):
        for place in places:
            if Path(value).is_relative_to(place):
                return str(out_dir / Path(value).relative_to(place))
    return value


def _is_gone(value: object) -> bool:
    """An artifact recorded as a local path that no longer exists (a hub id, or None, is not a path)."""
    return isinstance(value, str) and os.path.isabs(value) and not Path(value).exists()


def _remove_stale(out_dir: Path, name: str, log: Callable[[str], None]) -> None:
    """The set-aside folder of a stage that has just finished again holds nothing a run reads any more."""
    stale = out_dir / f"{name}.stale"
    if stale.exists():
        shutil.rmtree(stale)
        log(f"[{name}] removed {stale} (its outputs from before the stage ran again)")


def _written_here(folder: Path) -> bool:
    """Whether ``folder`` is a stage folder this runner made (its marker or clock file; or empty), so that it may
    resume, replace or set it aside."""
    if not folder.exists():
        return True
    return folder.is_dir() and ((folder / MARKER).exists() or (folder / CLOCK).exists() or not any(folder.iterdir()))


def check_output_dir(out_dir: str | Path) -> None:
    """Refuse an output folder that is a file, before anything tries to make it."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"output {out_dir} is a file: give a folder for the recipe's stages")


def _check_stage_folders(out_dir: Path, names: list[str]) -> None:
    """Refuse, before any work, an output that is a file, or stage folders (and set-aside ones) this runner did not
    make: it resumes, deletes or moves those, and must not do so to a user's own files."""
    check_output_dir(out_dir)
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
