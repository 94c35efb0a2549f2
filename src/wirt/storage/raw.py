"""Raw disk images: the file is the disk, byte for byte; discard punches holes where the host can."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator

from wirt.errors import WirtError
from wirt.hostiov import HostIov
from wirt.iovec import total_len
from wirt.storage.block import BlockDevice
from wirt.storage.hostfile import HostFile

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = None


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a byte range with fallocate(PUNCH_HOLE); False when the host cannot."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
        return _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0
    except (OSError, AttributeError):
        return False


class RawImage(BlockDevice):
    """A raw image file."""

    format_name = "raw"

    def __init__(self, path: str, read_only: bool = True):
        self.path = path
        self._f = HostFile(path, read_only)
        self._size = self._f.size()

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._f.read_only

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        view = memoryview(buf).cast("B")
        self._check_range(offset, len(view))
        self._f.readinto(offset, view)

    def readv(self, offset: int, views: list[memoryview]) -> None:
        self._check_range(offset, total_len(views))
        self._f.readv(offset, views)  # one preadv straight into the buffers

    def writev(self, offset: int, views: list[memoryview]) -> None:
        self._check_writable()
        self._check_range(offset, total_len(views))
        self._f.pwritev(offset, views)

    def readv_iov(self, offset: int, iov: HostIov) -> None:
        self._check_range(offset, iov.total)
        self._f.readv_iov(offset, iov)  # one preadv straight into guest RAM

    def writev_iov(self, offset: int, iov: HostIov) -> None:
        self._check_writable()
        self._check_range(offset, iov.total)
        self._f.pwritev_iov(offset, iov)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check_writable()
        self._check_range(offset, len(data) if isinstance(data, (bytes, bytearray)) else memoryview(data).nbytes)
        self._f.pwrite(offset, data)

    def flush(self) -> None:
        if not self.read_only:
            self._f.sync()

    def discard(self, offset: int, length: int) -> None:
        self.write_zeroes(offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_range(offset, length)
        if length and not _punch_hole(self._f.fd, offset, length):
            zero = bytes(min(length, 1 << 20))
            for pos in range(offset, offset + length, len(zero)):
                self._f.pwrite(pos, zero[: min(len(zero), offset + length - pos)])

    def resize(self, new_size: int) -> None:
        """Grow the image to `new_size` bytes (the new tail reads as zeros)."""
        self._check_writable()
        if new_size < self._size:
            raise WirtError(f"{self.path}: shrinking is not supported (size {self._size} > {new_size})")
        os.ftruncate(self._f.fd, new_size)
        self._size = new_size

    def extents(self) -> Iterator[tuple[int, int, bool]]:
        """Data and hole ranges from SEEK_DATA/SEEK_HOLE (holes read as zeros)."""
        pos, end, fd = 0, self._size, self._f.fd
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # no more data (ENXIO) or unsupported
                data = end
            data = min(data, end)
            if data > pos:
                yield pos, data - pos, False
            if data >= end:
                return
            try:
                hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            except OSError:
                hole = end
            yield data, hole - data, True
            pos = hole

    def close(self) -> None:
        if self._f.fd >= 0:
            self.flush()
            self._f.close()


def create_raw(path: str, size: int) -> None:
    """Create (or truncate) a sparse raw image of `size` bytes."""
    try:
        with open(path, "wb") as f:
            f.truncate(size)
    except OSError as exc:
        raise WirtError(f"{path}: cannot create image: {exc.strerror}") from None
