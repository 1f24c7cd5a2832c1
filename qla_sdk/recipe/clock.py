"""How long a stage has run over all its attempts.

A long stage (training, search) that is killed resumes from its checkpoint in a later process, so the process that
finishes it has seen only the last part. ``StageClock`` keeps the running total in ``<stage folder>/clock.json``,
rewritten every ``every_s`` seconds while the stage runs and once when it ends (error or not): a process killed
without warning loses at most ``every_s`` of it. A stage that runs afresh starts in an empty folder, so its clock
starts at zero.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from pathlib import Path

from qla_sdk.io import write_json_atomic

CLOCK = "clock.json"


def read_clock(folder: Path) -> tuple[float, int]:
    """(seconds, attempts) that earlier attempts of the stage in ``folder`` recorded; (0, 0) when none did."""
    path = Path(folder) / CLOCK
    if not path.exists():
        return 0.0, 0
    try:
        record = json.loads(path.read_text())
        return float(record["seconds"]), int(record["attempts"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # Only the time figure depends on it: the stage itself still resumes.
        warnings.warn(
            f"{path} is unreadable ({exc}): this stage's earlier attempts are left out of its seconds", stacklevel=2
        )
        return 0.0, 0


def read_clock_options(folder: Path) -> object | None:
    """The options the stage in ``folder`` last ran with, as ``StageClock`` recorded them; None when none were (a
    clock written before it recorded them, or none)."""
    try:
        return json.loads((Path(folder) / CLOCK).read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        return None


class StageClock:
    """``with StageClock(folder) as clock: ...``; then ``clock.seconds`` (all attempts) and ``clock.attempts``.
    ``options`` (JSON) are recorded beside them, so that an interrupted stage's options can be told later.
    A clock that cannot write its file warns and goes on: the stage matters more than its time figure."""

    def __init__(self, folder: str | Path, every_s: float = 30.0, options: object = None) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s={every_s}: give a positive number of seconds between writes, e.g. 30")
        self.folder = Path(folder)
        self.options = options
        self.every_s = every_s
        self.earlier_seconds, self.attempts = 0.0, 0
        self._start: float | None = None
        self._end: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def seconds(self) -> float:
        """Seconds of the earlier attempts plus this one's so far (or in all, once it ended)."""
        if self._start is None:
            return self.earlier_seconds
        end = self._end if self._end is not None else time.perf_counter()
        return self.earlier_seconds + (end - self._start)

    def _write(self) -> None:
        try:
            record = {"seconds": round(self.seconds, 3), "attempts": self.attempts}
            if self.options is not None:
                record["options"] = self.options
            write_json_atomic(self.folder / CLOCK, record)
        except OSError as exc:  # OutputError too
            warnings.warn(
                f"the stage clock cannot write {self.folder / CLOCK} ({exc}): its seconds may fall short", stacklevel=2
            )

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write()

    def __enter__(self) -> StageClock:
        if self._start is not None:
            raise RuntimeError("a StageClock times one attempt: make a new one for the next")
        self.earlier_seconds, attempts = read_clock(self.folder)
        self.attempts = attempts + 1
        self._start = time.perf_counter()
        self._write()
        self._thread = threading.Thread(target=self._tick, name=f"qla-clock-{self.folder.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._end = time.perf_counter()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write()
