"""Atomic writes: a file or folder is the old version or the new one, never half-written; and the lock
that lets several processes share a folder (one swaps it while the others wait, readers never see a gap)."""

from __future__ import annotations

import errno
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
_UMASK = os.umask(0o022)  # read once, at import (setting it is the only way to read it; not thread-safe later)
os.umask(_UMASK)
FILE_MODE, DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK  # what open() and mkdir() would give: not temp files' 0600


def real(folder: str | Path) -> Path:
    """The folder a path names, symlinks followed: one folder has one lock and one history however it is
    reached, and a save replaces the real folder, never the link."""
    return Path(folder).expanduser().resolve()


def check_writable(path: str | Path, what: str, inside: bool = False) -> None:
    """Fail before the work, not after it: the folder `path` is written in (it, its siblings' temp and checkpoint
    folders, its lock; with `inside`, the folder `path` itself, for outputs written into it), or the nearest one of
    its parents that exists, must take a new file. Leaves nothing behind (a refused command creates no folders).
    `what` names where the path came from."""
    start = real(path) if inside else real(path).parent
    nearest = next(p for p in (start, *start.parents) if p.exists())
    try:
        if not nearest.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(nearest))
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as e:
        raise InputError(f"{what} {path}: cannot write in {nearest} ({e.strerror or e}); give a path in a folder "
                         "you can write to.") from None


@contextmanager
def folder_lock(folder: str | Path, shared: bool = False, timeout_s: float = LOCK_TIMEOUT_S, busy: str = ""):
    """Hold `folder`'s lock (a sibling file `.NAME.lock`): shared to read it, exclusive to replace it; `busy`:
    the error when another process holds it past `timeout_s` (default: a stuck writer).
    fcntl.flock rather than a lock-file library: it has shared locks, and the kernel drops a lock when its
    holder dies (SIGKILL too), so a dead writer never blocks the folder."""
    folder = real(folder)
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
                    raise InputError(busy or f"{folder} stayed locked by another process for {timeout_s:.0f} s; a "
                                     "writer is stuck: find it (`fuser` on the folder's .lock file) and stop it, "
                                     "then try again.") from None
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
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_dir(folder: str | Path):
    """Yield an empty sibling temp folder to fill; on success it is made durable (every file and folder
    fsynced, modes as mkdir and open give) and replaces `folder`; on error it is removed."""
    folder = real(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        _durable(tmp)
        _swap_in(tmp, folder)
        fsync_dir(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _durable(root: Path) -> None:
    """fsync every file, then every folder bottom-up: after the swap a power loss finds the new version whole
    (a rename alone survives a killed process, not a lost page cache)."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            os.chmod(path, FILE_MODE)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            os.chmod(path, DIR_MODE)
            fsync_dir(path)
    os.chmod(root, DIR_MODE)
    fsync_dir(root)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    folder = real(folder)
    old = _aside(folder)
    if not folder.exists() and old.exists():
        log.warning("%s was mid-update when a write stopped; restoring the previous version", folder)
        try:
            os.replace(old, folder)
        except FileNotFoundError:  # another reader restored it first
            pass


def _aside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")
