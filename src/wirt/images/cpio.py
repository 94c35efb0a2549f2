"""Write (and read back) cpio archives in the "newc" format, which Linux unpacks as an initramfs.

Format (cpio(5) "New ASCII Format", Documentation/driver-api/early-userspace/buffer-format.rst):
each entry is a 110-byte header — magic `070701` then 13 fields of 8 hex digits: ino, mode,
uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize (with
the NUL), check (0) — then the NUL-terminated name padded to a multiple of 4 bytes (counting
the header), then the data padded to a multiple of 4. A symlink's data is its target. The
archive ends with an entry named `TRAILER!!!`.
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"070701"
HEADER_LEN = 110
TRAILER = "TRAILER!!!"


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


class CpioWriter:
    """Append entries to a newc archive on a binary stream; call `close()` to write the trailer.

    Output is deterministic: inode numbers count up from 1 and every mtime is `mtime`.
    """

    def __init__(self, out: BinaryIO, *, mtime: int = 0) -> None:
        self._out = out
        self._mtime = mtime
        self._ino = 0
        self._names: set[str] = set()
        self.closed = False

    def _entry(self, name: str, mode: int, data: bytes = b"", *, nlink: int = 1, rdev: tuple[int, int] = (0, 0)) -> None:
        if self.closed:
            raise ValueError("archive already closed")
        name = name.lstrip("/") or "."
        if name in self._names and name != TRAILER:
            raise ValueError(f"duplicate cpio entry {name!r}")
        self._names.add(name)
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (
            0 if name == TRAILER else self._ino,
            mode, 0, 0, nlink, self._mtime, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        header = MAGIC + b"".join(b"%08X" % f for f in fields)
        assert len(header) == HEADER_LEN
        self._out.write(header + encoded + _pad4(HEADER_LEN + len(encoded)))
        self._out.write(data + _pad4(len(data)))

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        """A directory (parents must be added first: the kernel does not create them)."""
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        """A regular file with the given contents."""
        self._entry(name, stat.S_IFREG | perm, data)

    def add_symlink(self, name: str, target: str) -> None:
        """A symbolic link; cpio stores the target as the entry's data."""
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        """A character device node, e.g. /dev/console (5, 1)."""
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def close(self) -> None:
        """Write the trailer entry; the archive is complete afterwards."""
        if not self.closed:
            self._entry(TRAILER, 0, nlink=1)
            self.closed = True


@dataclass(frozen=True)
class CpioEntry:
    """One entry read back from a newc archive."""

    name: str
    mode: int
    data: bytes
    rdev: tuple[int, int]

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


def read_newc(data: bytes) -> Iterator[CpioEntry]:
    """Parse a newc archive (gzip-compressed or not) up to its trailer; raise ValueError if malformed."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    pos = 0
    while True:
        header = data[pos : pos + HEADER_LEN]
        if len(header) < HEADER_LEN or header[:6] != MAGIC:
            raise ValueError(f"bad newc header at offset {pos}")
        try:
            f = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise ValueError(f"bad newc header field at offset {pos}") from None
        mode, size, rdev, namesize = f[1], f[6], (f[9], f[10]), f[11]
        name_end = pos + HEADER_LEN + namesize
        name = data[pos + HEADER_LEN : name_end - 1].decode()
        pos = name_end + (-(HEADER_LEN + namesize) % 4)
        if name == TRAILER:
            return
        body = data[pos : pos + size]
        if len(body) != size:
            raise ValueError(f"truncated data for {name!r}")
        pos += size + (-size % 4)
        yield CpioEntry(name, mode, body, rdev)
