"""Durable file replacement, the one way cdc rewrites a state file.

`atomic_write` leaves either the old or the new content at `path` after a
crash or power loss, never a torn or empty file: write a temporary file in the
same directory, fsync it, rename it over `path`, then fsync the directory so
the rename itself is on disk (rename(2) is atomic but not durable until the
directory entry is flushed; see the ext4/XFS notes in fsync(2)).
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data`, durably; raises OSError (the temp file is removed)."""
    path = Path(path)
    body = data.encode() if isinstance(data, str) else data
    # Per process: two processes saving the same file never share a temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """fsync a directory, so that files created, renamed or removed in it stay so after a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
