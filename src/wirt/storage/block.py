"""The block interface every disk image format implements.

virtio-blk and the disk tools see only `BlockDevice`: byte-addressed reads and writes, flush,
discard and write-zeroes, the virtual size and whether writes are allowed. `open_image`, which
probes the format and opens the right implementation, is in formats.py, above the formats.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType

from wirt.errors import WirtError
from wirt.hostiov import HostIov


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

    def readv_iov(self, offset: int, iov: HostIov) -> None:
        """`readv` into an I/O vector (guest RAM segments); formats that can hand it to the
        kernel as it is override this."""
        self.readv(offset, iov.views())

    def writev_iov(self, offset: int, iov: HostIov) -> None:
        """`writev` from an I/O vector (guest RAM segments)."""
        self.writev(offset, iov.views())

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
