"""Atomic writes: a file or folder is the old version or the new one, never half-written."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("polyprag")


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


def recover_dir(folder: str | Path) -> None:
    """A stop between the two renames of a swap leaves only the old version, aside: put it back."""
    folder = Path(folder)
    old = _aside(folder)
    if not folder.exists() and old.exists():
        log.warning("%s was mid-update when a write stopped; restoring the previous version", folder)
        os.replace(old, folder)


def _aside(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")
