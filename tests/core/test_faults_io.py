"""A full disk, an unwritable folder or an interruption while writing: a clear ``OutputError`` naming the output,
and the earlier output still whole. Faults are injected where the OS reports them (the write, fsync, rename), and
once for real: a file-size limit (RLIMIT_FSIZE) makes the kernel itself refuse the write."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qla_sdk.io as io
from qla_sdk.io import OutputError, atomic_dir, write_json_atomic

REPO = Path(__file__).resolve().parents[2]


def _fail(code):
    def raise_(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return raise_


@pytest.fixture()
def earlier(tmp_path):
    """An earlier output: a JSON file and a folder of two files."""
    write_json_atomic(tmp_path / "state.json", {"step": 1})
    with atomic_dir(tmp_path / "art") as tmp:
        (tmp / "a.txt").write_text("first")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("second")
    return tmp_path


def _intact(root: Path) -> None:
    assert json.loads((root / "state.json").read_text()) == {"step": 1}
    assert (root / "art" / "a.txt").read_text() == "first" and (root / "art" / "sub" / "b.txt").read_text() == "second"
    assert sorted(p.name for p in root.iterdir()) == ["art", "state.json"]  # no temp files or folders left


@pytest.mark.parametrize("where, code", [("fsync", errno.ENOSPC), ("replace", errno.EACCES), ("mkstemp", errno.EACCES)])
def test_json_write_fault(earlier, monkeypatch, where, code):
    target = io.tempfile if where == "mkstemp" else io.os
    monkeypatch.setattr(target, where, _fail(code))
    with pytest.raises(OutputError, match=f"cannot write {earlier / 'state.json'}: {os.strerror(code)}") as err:
        write_json_atomic(earlier / "state.json", {"step": 2})
    assert "writable folder with free space" in str(err.value) and isinstance(err.value, OSError)
    monkeypatch.undo()
    _intact(earlier)


def test_unserialisable_json_leaves_the_earlier_file(earlier):
    with pytest.raises(TypeError):
        write_json_atomic(earlier / "state.json", {"step": object()})
    _intact(earlier)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_folder_write_fault_inside(earlier, code):
    with pytest.raises(OutputError, match=f"cannot write {earlier / 'art'}: {os.strerror(code)}"):
        with atomic_dir(earlier / "art", ("a.txt",)) as tmp:
            (tmp / "a.txt").write_text("new")
            _fail(code)()
    _intact(earlier)


def test_nested_fault_names_the_outer_output(earlier):
    with pytest.raises(OutputError) as err:
        with atomic_dir(earlier / "art", ("a.txt",)) as tmp:
            with atomic_dir(tmp / "inner"):
                _fail(errno.ENOSPC)()
    assert str(err.value) == f"cannot write {earlier / 'art'}: No space left on device. Choose a writable folder " + (
        "with free space"
    )
    _intact(earlier)


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interrupted_folder_write(earlier, interruption):
    with pytest.raises(interruption):
        with atomic_dir(earlier / "art", ("a.txt",)) as tmp:
            (tmp / "a.txt").write_text("new")
            raise interruption
    _intact(earlier)


@pytest.mark.parametrize("failing", ["move aside", "move in"])
def test_failed_rename_keeps_the_earlier_folder(earlier, monkeypatch, failing):
    real = os.replace

    def replace(src, dst):
        if (failing == "move aside" and Path(src) == earlier / "art") or (
            failing == "move in" and str(src).endswith(".partial")
        ):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(OutputError, match="Permission denied"):
        with atomic_dir(earlier / "art", ("a.txt",)) as tmp:
            (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    _intact(earlier)


def test_folder_left_by_an_earlier_crash_does_not_block(earlier):
    stale = earlier / f".art.old-{os.getpid()}"  # a run killed between its two renames, same pid (containers)
    stale.mkdir()
    (stale / "x").write_text("x")
    with atomic_dir(earlier / "art", ("a.txt",)) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (earlier / "art" / "a.txt").read_text() == "new" and (stale / "x").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into 0o500 folders; the fault tests above simulate EACCES")
def test_read_only_folder(earlier):
    earlier.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            write_json_atomic(earlier / "state.json", {"step": 2})
        with pytest.raises(OutputError, match="Permission denied"):
            with atomic_dir(earlier / "art", ("a.txt",)) as tmp:
                (tmp / "a.txt").write_text("new")
    finally:
        earlier.chmod(0o700)
    _intact(earlier)


def test_the_kernel_refusing_a_write(earlier):
    """A real failed write: RLIMIT_FSIZE makes write(2) fail with EFBIG, as a full disk fails with ENOSPC."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from qla_sdk.io import OutputError, atomic_dir, write_bytes_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get the error instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        root, failures = Path({str(earlier)!r}), []
        try:
            write_bytes_atomic(root / "state.json", b"x" * 100_000)
        except OutputError as exc:
            failures.append(str(exc))
        try:
            with atomic_dir(root / "art", ("a.txt",)) as tmp:
                (tmp / "a.txt").write_bytes(b"y" * 100_000)
        except OutputError as exc:
            failures.append(str(exc))
        print("\\n".join(failures))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    lines = child.stdout.splitlines()
    assert lines == [
        f"cannot write {earlier / 'state.json'}: File too large. Choose a writable folder with free space",
        f"cannot write {earlier / 'art'}: File too large. Choose a writable folder with free space",
    ]
    _intact(earlier)


@pytest.mark.parametrize(
    "existing, message",
    [
        ("file", "exists and is not a folder"),
        ("other folder", r"exists and is not an earlier output \(it lacks a.txt\)"),
        ("link to an earlier output", r"is a symbolic link \(to real\).*repoint the link yourself"),
    ],
)
def test_an_output_never_replaces_what_it_did_not_write(tmp_path, existing, message):
    """A wrong ``--out`` (a user's folder, a file, the input checkpoint) is refused before anything is written: the
    path keeps its content and nothing is left beside it."""
    target = tmp_path / "out"
    if existing == "file":
        target.write_text("precious")
    elif existing == "other folder":
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    else:  # e.g. current -> v3 in a deployment: replacing it would swap the link for a folder
        (tmp_path / "real").mkdir()
        (tmp_path / "real" / "a.txt").write_text("precious")
        target.symlink_to("real")
    with pytest.raises(OutputError, match=message) as err:
        with atomic_dir(target, ("a.txt",)) as tmp:
            (tmp / "a.txt").write_text("new")
    assert "left as it is" in str(err.value)
    linked = existing.startswith("link")
    kept = {"file": target, "other folder": target / "notes.txt"}.get(existing, target / "a.txt").read_text()
    assert kept == "precious" and sorted(p.name for p in tmp_path.iterdir()) == (["out", "real"] if linked else ["out"])
    assert target.is_symlink() == linked


@pytest.mark.parametrize("markers", [(), ("a.txt",)])
def test_an_empty_folder_is_replaced(tmp_path, markers):
    (tmp_path / "out").mkdir()
    with atomic_dir(tmp_path / "out", markers) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (tmp_path / "out" / "a.txt").read_text() == "new"


def test_without_markers_an_earlier_folder_is_refused(earlier):
    with pytest.raises(OutputError, match="is not an earlier output: it is left"):
        with atomic_dir(earlier / "art"):
            pass
    _intact(earlier)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_outputs_get_the_umask_mode(tmp_path, umask):
    """Temp files and folders are owner-only (mkstemp, mkdtemp); what is renamed into place gets the mode a plain
    write would have, so other users and service accounts can read an artifact."""
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "art") as tmp:
            (tmp / "b.txt").write_text("b")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "art").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_replaced_file_keeps_its_mode(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"v": 1})
    (tmp_path / "a.json").chmod(0o640)
    write_json_atomic(tmp_path / "a.json", {"v": 2})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def test_a_folder_in_a_setgid_folder_keeps_the_bit(tmp_path):
    """In a shared folder (setgid: files take its group), a new output folder keeps setgid, as ``mkdir`` would."""
    import stat

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)
    if not shared.stat().st_mode & stat.S_ISGID:
        pytest.skip("this file system or user cannot set setgid")
    (shared / "plain").mkdir()
    with atomic_dir(shared / "art") as tmp:
        (tmp / "sub").mkdir()
    for folder in (shared / "plain", shared / "art", shared / "art" / "sub"):
        assert folder.stat().st_mode & stat.S_ISGID, folder
