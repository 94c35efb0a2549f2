"""Durable file updates: write to a temporary file beside the target, fsync, rename, fsync the folder.

A reader (or a process killed halfway) sees either the old file or the new one, never a mix.
Files wirt reads on a VM's behalf are opened with `open_regular`: devices, FIFOs and sockets
are refused (a disk of /dev/zero or a FIFO must give an error, not an endless read or a hang).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from wirt.errors import WirtError

__all__ = ["atomic_path", "atomic_write", "check_regular", "fsync_dir", "open_regular", "read_regular"]


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


def open_regular(path: str | os.PathLike[str], flags: int, what: str = "file") -> int:
    """Open `path` and return its descriptor, refusing anything but a regular file.

    Devices (/dev/zero is endless), FIFOs (an open blocks) and sockets are refused with one
    line: O_NONBLOCK keeps the open itself from waiting, and fstat checks what was opened.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WirtError(f"{what} {p} does not exist; check the path") from None
    except IsADirectoryError:
        raise WirtError(f"{what} {p} is a directory, not a file") from None
    except PermissionError:
        raise WirtError(f"{what} {p} is not readable (permission denied); fix its permissions") from None
    except OSError as exc:
        raise WirtError(f"{what} {p}: cannot open it ({exc.strerror or exc})") from None
    try:
        check_regular(fd, p, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(fd: int, path: str, what: str = "file") -> None:
    """Refuse (one line) a descriptor that is not a regular file; make it blocking again."""
    import stat

    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise WirtError(f"{what} {path} is {kind}, not a regular file; give a file")
    os.set_blocking(fd, True)


def read_regular(path: str | os.PathLike[str], what: str = "file", limit: int | None = None) -> bytes:
    """The contents of regular file `path` (see open_regular); refused past `limit` bytes."""
    fd = open_regular(path, os.O_RDONLY, what)
    try:
        size = os.fstat(fd).st_size
        if limit is not None and size > limit:
            raise WirtError(f"{what} {os.fspath(path)} is {size} bytes, more than the {limit} allowed; give the right file")
        chunks, done = [], 0
        while True:
            try:
                b = os.read(fd, max(1 << 20, size - done))
            except OSError as exc:
                raise WirtError(f"cannot read {what} {os.fspath(path)}: {exc.strerror or exc}") from None
            if not b:
                break
            chunks.append(b)
            done += len(b)
            if limit is not None and done > limit:
                raise WirtError(f"{what} {os.fspath(path)} grew past {limit} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)

