"""Durable file updates: write to a temporary file beside the target, fsync, rename, fsync the folder.

A reader (or a process killed halfway) sees either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in folder `path` durable (best effort on file systems that refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, mode: int = 0o600, parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to fill; on success make it `path` durably (fsync,
    permission bits `mode`, rename, fsync the folder), on any error delete it.

    `parents` creates missing folders first (caches); state files leave it off, so a folder
    removed meanwhile is an error rather than silently made again.
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o600, parents: bool = False) -> Path:
    """Replace `path` with `data` atomically and durably (see atomic_path)."""
    if isinstance(data, str):
        data = data.encode()
    with atomic_path(path, mode, parents) as tmp:
        tmp.write_bytes(data)
    return Path(path)
