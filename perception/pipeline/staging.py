"""Atomic output folders: a run writes into a hidden sibling folder and moves it into place when done.

A killed `geodelta detect` then leaves DIR with nothing or with complete files only (summary.json is
moved last, so its presence means the set is complete), and an unwritable DIR fails before any work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from geodelta.errors import InputError

SUMMARY = "summary.json"  # moved last: a folder with summary.json is complete


def _partial_name(out_dir: Path, pid: int) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial-{pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _sweep_stale(out_dir: Path) -> None:
    """Remove staging folders of earlier runs into the same DIR whose process is gone (killed runs)."""
    for p in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def writable_dir(path: str | Path, what: str = "--out") -> Path:
    """`path` created if needed and writable, or InputError naming it (before any work is done)."""
    path = Path(path).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".geodelta-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to {what} {path}: {exc.strerror or exc}; choose a folder you can write") from None
    return path


def check_writable(out_dir: Path) -> Path:
    """Create a staging folder beside `out_dir` or fail in one line naming it (before any work is done)."""
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file, not a folder: choose another output folder")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(out_dir)
        work = _partial_name(out_dir, os.getpid())
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()  # creating it proves DIR's parent is writable; the folder is ours
    except OSError as exc:
        raise InputError(f"cannot write the output folder {out_dir}: {exc.strerror or exc}; "
                         "choose a folder you can write with --out") from None
    return work


def _publish(work: Path, out_dir: Path) -> None:
    """Move every file of `work` into `out_dir`, summary.json last; each move is an atomic rename."""
    if not out_dir.exists():
        os.replace(work, out_dir)  # the whole folder appears at once
        return
    old_summary = out_dir / SUMMARY
    if old_summary.exists():
        old_summary.unlink()  # the folder is incomplete until the new summary arrives
    entries = sorted(work.iterdir(), key=lambda p: p.name == SUMMARY)
    for entry in entries:
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    work.rmdir()


@contextlib.contextmanager
def staged_output(out_dir: str | Path) -> Iterator[Path]:
    """Yield a staging folder to write into; on success its files replace DIR's, on any failure it is removed."""
    out_dir = Path(out_dir).expanduser().absolute()
    work = check_writable(out_dir)
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        _publish(work, out_dir)
    except OSError as exc:
        raise InputError(f"cannot move the results into {out_dir}: {exc.strerror or exc}; "
                         f"they are in {work}") from None
