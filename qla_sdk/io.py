"""Writes that never leave a half-written file or folder that looks whole: write to a temp path, then rename."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from qla_sdk.errors import QlaError


class OutputError(QlaError, OSError):
    """An output folder cannot be written (missing permission, full disk)."""


def _explain(path: Path, exc: OSError) -> OutputError:
    reason = getattr(exc, "reason", None) or exc.strerror or str(exc)  # an outer atomic_dir names its own path
    error = OutputError(f"cannot write {path}: {reason}. Choose a writable folder with free space")
    error.reason = reason
    return error


def write_json_atomic(path: str | Path, data: object) -> Path:
    return write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def _umask() -> int:
    """The process's umask, read without changing it where /proc has it (``os.umask`` alone must set one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_mode(tmp: str | Path, path: Path, directory: bool) -> None:
    """Give a temp file or folder (``mkstemp``/``mkdtemp``: owner only) the mode ``path`` has, or a new file or
    folder would get under the umask, so that other users and service accounts can read what is written."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = (0o777 if directory else 0o666) & ~_umask()
        if directory:  # a folder made in a setgid folder inherits the bit (and its group): keep it, as mkdir does
            mode |= os.stat(tmp).st_mode & stat.S_ISGID
    os.chmod(tmp, mode)


def write_bytes_atomic(path: str | Path, payload: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _usual_mode(tmp, path, directory=False)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise _explain(path, exc) from exc
    return path


def file_in_the_way(path: str | Path) -> Path | None:
    """The first existing path of ``path`` and the folders above it, when it is not a folder (a file that would
    stop ``path`` being made a folder or written under), else None."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def check_replaceable(path: str | Path, markers: tuple[str, ...] = (), kind: str = "an earlier output") -> None:
    """Refuse (``OutputError``) an existing ``path`` that ``atomic_dir`` must not replace: a file, or a folder with
    content that does not hold every name of ``markers`` (what marks ``kind``; no markers: only an empty folder
    may be replaced). Lets a command fail before its work rather than after it."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        # Replacing it would swap the link for a folder and leave its target as it was, which no one expects.
        raise OutputError(
            f"{path} is a symbolic link (to {os.readlink(path)}): it is left as it is. Give the folder it points "
            "to, or a new output folder, and repoint the link yourself"
        )
    if not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder: it is left as it is. Choose another output folder")
    if not any(path.iterdir()):
        return
    if not markers or not all((path / name).exists() for name in markers):
        holds = f" (it lacks {', '.join(name for name in markers if not (path / name).exists())})" if markers else ""
        raise OutputError(
            f"{path} exists and is not {kind}{holds}: it is left as it is. Choose a new output folder, or remove "
            "this one yourself"
        )


@contextlib.contextmanager
def atomic_dir(path: str | Path, markers: tuple[str, ...] = (), kind: str = "an earlier output") -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename, on failure it vanishes.

    An existing ``path`` is kept until the new folder is complete, then moved aside and removed. Only an empty folder
    or one holding every name of ``markers`` (an earlier output of the same ``kind``) is replaced: anything else
    raises ``OutputError`` before the temp folder is made (``check_replaceable``), so a wrong ``--out`` cannot
    delete a user's files.
    """
    check_replaceable(path, markers, kind)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
        try:
            _usual_mode(tmp, path, directory=True)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as exc:
        raise _explain(path, exc) from exc
    old = None
    try:
        yield tmp
        if path.exists():
            # Unique: a folder left by a run killed between the two renames (same pid in a container) is kept.
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as exc:
        if old is not None and not path.exists():
            with contextlib.suppress(OSError):
                os.replace(old, path)  # the new folder could not take its place: put the earlier one back
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _explain(path, exc) from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats shown with two decimals."""

    def cell(v) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
