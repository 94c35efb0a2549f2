"""The two kinds of buffer list an image's vectored I/O takes, behind one interface, so a format
maps its clusters once for both: a list of memoryviews (`readv`/`writev`) and a `HostIov` of
guest RAM segments (`readv_iov`/`writev_iov`, which reach the kernel as one iovec array with no
Python object per page).

Both give: `total`, `split(n)`, `fill(data)`, `zero()`, `buffers()` (Python buffers, for a
pwritev that adds copy-on-write head and tail bytes) and the three transfers a format makes
(`pread` and `pwrite` on its host file, `read_image` from a backing image), and `write_image`
for a device model that hands a request's buffers to an image (virtio-blk).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from wirt.hostiov import HostIov
from wirt.iovec import scatter, take, total_len

if TYPE_CHECKING:
    from wirt.storage.block import BlockDevice
    from wirt.storage.hostfile import HostFile

__all__ = ["ViewsVec", "IovVec", "BufVec"]


class ViewsVec:
    """A list of memoryviews, filled or written in order."""

    __slots__ = ("views", "total")

    def __init__(self, views: list[memoryview], total: int | None = None) -> None:
        self.views = views
        self.total = total_len(views) if total is None else total

    def split(self, n: int) -> tuple[ViewsVec, ViewsVec]:
        """The first `n` bytes and the rest."""
        if n >= self.total:
            return self, _NO_VIEWS
        head, rest = take(self.views, n)
        return ViewsVec(head, n), ViewsVec(rest, self.total - n)

    def buffers(self) -> list[memoryview]:
        return self.views

    def fill(self, data: bytes | memoryview) -> int:
        return scatter(self.views, data)

    def zero(self) -> None:
        z = _ZEROS
        for v in self.views:
            n = v.nbytes
            for i in range(0, n, len(z)):
                v[i: min(n, i + len(z))] = z[: min(len(z), n - i)]

    def pread(self, f: HostFile, offset: int) -> None:
        f.readv(offset, self.views)

    def pwrite(self, f: HostFile, offset: int) -> None:
        f.pwritev(offset, self.views)

    def read_image(self, dev: BlockDevice, offset: int) -> None:
        dev.readv(offset, self.views)

    def write_image(self, dev: BlockDevice, offset: int) -> None:
        dev.writev(offset, self.views)


_NO_VIEWS = ViewsVec([], 0)
_ZEROS = bytes(1 << 16)


class IovVec:
    """Guest RAM segments (`HostIov`): transfers hand the kernel an iovec array, every segment
    checked against its buffer first (`HostIov.iovec`)."""

    __slots__ = ("iov", "total")

    def __init__(self, iov: HostIov) -> None:
        self.iov = iov
        self.total = iov.total

    def split(self, n: int) -> tuple[IovVec, IovVec]:
        """The first `n` bytes and the rest."""
        head, rest = self.iov.split(n)
        return IovVec(head), IovVec(rest)

    def buffers(self) -> list[memoryview]:
        return self.iov.views()

    def fill(self, data: bytes | memoryview) -> int:
        return self.iov.fill(data)

    def zero(self) -> None:
        self.iov.zero()

    def pread(self, f: HostFile, offset: int) -> None:
        f.readv_iov(offset, self.iov)

    def pwrite(self, f: HostFile, offset: int) -> None:
        f.pwritev_iov(offset, self.iov)

    def read_image(self, dev: BlockDevice, offset: int) -> None:
        dev.readv_iov(offset, self.iov)

    def write_image(self, dev: BlockDevice, offset: int) -> None:
        dev.writev_iov(offset, self.iov)


BufVec = Union[ViewsVec, IovVec]
