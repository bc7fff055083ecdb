"""Atomic writes: a file or folder is the old version or the new one, never half-written; and the lock
that lets several processes share a folder (one swaps it while the others wait, readers never see a gap)."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

log = logging.getLogger("polyprag")
LOCK_TIMEOUT_S = 300.0  # a swap takes seconds; waiting minutes means a writer is stuck, not busy


@contextmanager
def folder_lock(folder: str | Path, shared: bool = False, timeout_s: float = LOCK_TIMEOUT_S):
    """Hold `folder`'s lock (a sibling file `.NAME.lock`): shared to read it, exclusive to replace it.
    fcntl.flock rather than a lock-file library: it has shared locks, and the kernel drops a lock when its
    holder dies (SIGKILL too), so a dead writer never blocks the folder."""
    folder = Path(folder)
    if not shared:
        folder.parent.mkdir(parents=True, exist_ok=True)
    elif not (folder.exists() or _aside(folder).exists()):
        yield  # nothing to read: the read says so, and no lock file is left behind
        return
    try:
        fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if not shared:
            raise
        yield  # a read-only location: nobody can be writing it
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputError(f"{folder} stayed locked by another process for {timeout_s:.0f} s; a writer "
                                     "is stuck: find it (`fuser` on the folder's .lock file) and stop it, then "
                                     "try again.") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder (so the rename is atomic), fsynced, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_dir(folder: str | Path):
    """Yield an empty sibling temp folder to fill; on success it replaces `folder`, on error it is removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        _swap_in(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, folder: Path) -> None:
    """The old folder is renamed aside first, so a stop at any point leaves one whole version."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    old = _aside(folder)
    shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def lock_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.lock")


def recover_dir(folder: str | Path) -> None:
    """A stop between the two renames of a swap leaves only the old version, aside: put it back."""
    folder = Path(folder)
    old = _aside(folder)
    if not folder.exists() and old.exists():
        log.warning("%s was mid-update when a write stopped; restoring the previous version", folder)
        try:
            os.replace(old, folder)
        except FileNotFoundError:  # another reader restored it first
            pass


def _aside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")
