"""The block interface every disk image format implements, and `open_image` which probes the format.

virtio-blk and the disk tools see only `BlockDevice`: byte-addressed reads and writes, flush,
discard and write-zeroes, the virtual size and whether writes are allowed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType

from wirt.confine.paths import PathPolicy
from wirt.errors import WirtError
from wirt.fileio import open_regular

FORMATS = ("raw", "qcow2")


class BlockDevice(ABC):
    """A virtual disk of `size` bytes. Offsets and lengths are in bytes and need no alignment."""

    format_name: str = ""
    path: str = ""

    @property
    @abstractmethod
    def size(self) -> int:
        """Virtual disk size in bytes."""

    @property
    @abstractmethod
    def read_only(self) -> bool:
        """True when writes, discards and flushes that change the image are refused."""

    @abstractmethod
    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill `buf` with the disk contents at `offset` (zero-copy target, e.g. guest RAM)."""

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes of disk contents at `offset`."""
        buf = bytearray(length)
        self.readinto(offset, memoryview(buf))
        return bytes(buf)

    @abstractmethod
    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write `data` at `offset`; durable only after `flush()`."""

    def readv(self, offset: int, views: list[memoryview]) -> None:
        """Fill several buffers in order from `offset` (a request's scattered guest pages)."""
        for v in views:
            self.readinto(offset, v)
            offset += v.nbytes

    def writev(self, offset: int, views: list[memoryview]) -> None:
        """Write several buffers back to back at `offset`; durable only after `flush()`."""
        for v in views:
            self.write(offset, v)
            offset += v.nbytes

    @abstractmethod
    def flush(self) -> None:
        """Make every completed write durable (survives a crash of this process or the host)."""

    @abstractmethod
    def discard(self, offset: int, length: int) -> None:
        """Tell the image the range is unused; whole clusters in it read as zeros afterwards."""

    @abstractmethod
    def write_zeroes(self, offset: int, length: int) -> None:
        """Make the range read as zeros, without writing zero bytes where the format allows."""

    def extents(self) -> Iterator[tuple[int, int, bool]]:
        """(offset, length, may_hold_data) covering the disk; False means it reads as zeros."""
        yield 0, self.size, True

    def close(self) -> None:
        """Flush (if writable) and release the image."""

    def __enter__(self) -> BlockDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- helpers for implementations --------------------------------------------------------

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"{self.path}: access [{offset}, +{length}) outside the {self.size}-byte disk")

    def _check_writable(self) -> None:
        if self.read_only:
            raise WirtError(f"{self.path}: image is open read-only")


def probe_format(path: str) -> str:
    """'qcow2' when the file starts with the qcow2 magic, else 'raw'."""
    if not os.path.exists(path):
        raise WirtError(f"{path}: no such file; check the path")
    fd = open_regular(path, os.O_RDONLY, "disk image")
    try:
        magic = os.pread(fd, 4, 0)
    except OSError as exc:
        raise WirtError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return "qcow2" if magic == b"QFI\xfb" else "raw"


def open_image(path: str | os.PathLike[str], read_only: bool = True, format: str | None = None,
               *, policy: PathPolicy | None = None) -> BlockDevice:
    """Open a disk image, probing its format unless `format` is given ('raw' or 'qcow2').

    `policy` (wirt.confine.paths) limits the files the image and its backing chain may be: a
    VM's disks are opened with its policy; `wirt disk` commands on files the user names use none.
    """
    path = os.fspath(path)
    if policy is not None:
        policy.check(path, "disk image", write=not read_only)
    fmt = format or probe_format(path)
    if fmt == "raw":
        from wirt.storage.raw import RawImage

        return RawImage(path, read_only=read_only)
    if fmt == "qcow2":
        from wirt.storage.qcow2 import Qcow2Image

        return Qcow2Image(path, read_only=read_only, policy=policy)
    raise WirtError(f"unknown image format {fmt!r}; use one of: {', '.join(FORMATS)}")
