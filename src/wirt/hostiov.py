"""A request's buffers as (offset, length) arrays over one host buffer, for preadv/pwritev
without a Python object per buffer.

A 1 MiB virtio-blk request is 256 scattered guest pages. As a list of memoryviews each page
costs a slice, a length lookup in every `total_len`, and a buffer export inside `os.preadv`
(together about 100 us a request on the 2-core development host, twice the preadv itself).
`HostIov` keeps the pages as two int64 arrays of offsets into one buffer (guest RAM) and hands
the kernel a `struct iovec` array built from them in one numpy operation.

Safety: the kernel is given raw pointers, so every segment is checked to lie inside the buffer
when the iovec array is built (`iovec()`), whatever the caller already checked.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from wirt.iovec import IOV_MAX, scatter

__all__ = ["HostIov", "preadv", "pwritev"]

_libc = ctypes.CDLL(None, use_errno=True)
_ssize_t = ctypes.c_ssize_t
_preadv = _libc.preadv
_preadv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong]
_preadv.restype = _ssize_t
_pwritev = _libc.pwritev
_pwritev.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong]
_pwritev.restype = _ssize_t

_EMPTY = np.zeros(0, dtype=np.int64)


class HostIov:
    """Byte ranges [offs[i], offs[i]+lens[i]) of `buf` (a writable byte memoryview), in order.

    `buf` is kept referenced, so the memory stays mapped while the iovec is in use. Segments
    have length > 0."""

    __slots__ = ("buf", "addr", "offs", "lens", "total")

    def __init__(self, buf: memoryview, addr: int, offs: np.ndarray, lens: np.ndarray, total: int | None = None) -> None:
        self.buf = buf
        self.addr = addr  # host address of buf[0]
        self.offs = offs
        self.lens = lens
        self.total = int(lens.sum()) if total is None else total

    @classmethod
    def of(cls, buf: memoryview, addr: int, offs: np.ndarray, lens: np.ndarray) -> HostIov:
        """The segments with zero-length ones dropped."""
        keep = lens > 0
        if not keep.all():
            offs, lens = offs[keep], lens[keep]
        return cls(buf, addr, offs, lens)

    def __len__(self) -> int:
        return len(self.offs)

    def split(self, n: int) -> tuple[HostIov, HostIov]:
        """The first `n` bytes and the rest (fewer bytes in the first when there are fewer)."""
        buf, addr, offs, lens = self.buf, self.addr, self.offs, self.lens
        if n <= 0:
            return HostIov(buf, addr, _EMPTY, _EMPTY, 0), self
        if n >= self.total:
            return self, HostIov(buf, addr, _EMPTY, _EMPTY, 0)
        if int(lens[0]) == n:  # the common case: a header in a buffer of its own
            return HostIov(buf, addr, offs[:1], lens[:1], n), HostIov(buf, addr, offs[1:], lens[1:], self.total - n)
        if self.total - int(lens[-1]) == n:  # ... or a status byte
            return HostIov(buf, addr, offs[:-1], lens[:-1], n), HostIov(buf, addr, offs[-1:], lens[-1:], self.total - n)
        ends = np.cumsum(lens)
        k = int(np.searchsorted(ends, n, side="left"))  # segment holding byte n-1
        cut = n - (int(ends[k - 1]) if k else 0)  # bytes of segment k in the head
        head_offs, head_lens = offs[:k + 1].copy(), lens[:k + 1].copy()
        head_lens[k] = cut
        if cut == int(lens[k]):
            rest_offs, rest_lens = offs[k + 1:], lens[k + 1:]
        else:
            rest_offs, rest_lens = offs[k:].copy(), lens[k:].copy()
            rest_offs[0] += cut
            rest_lens[0] -= cut
        return HostIov(buf, addr, head_offs, head_lens, n), HostIov(buf, addr, rest_offs, rest_lens, self.total - n)

    def views(self) -> list[memoryview]:
        """The segments as memoryviews of the buffer (for code that wants Python buffers)."""
        buf = self.buf
        return [buf[o: o + n] for o, n in zip(self.offs.tolist(), self.lens.tolist())]

    def read(self) -> bytes:
        """A copy of the bytes."""
        return b"".join(self.views())

    def fill(self, data: bytes | memoryview) -> int:
        """Copy `data` into the segments in order; returns the bytes copied."""
        return scatter(self.views(), data)

    def zero(self) -> None:
        """Fill every segment with zero bytes (large ones by memset on the host address, so
        their bounds are checked first, as for the kernel)."""
        self.check()
        buf = self.buf
        for o, n in zip(self.offs.tolist(), self.lens.tolist()):
            ctypes.memset(self.addr + o, 0, n) if n > 4096 else buf.__setitem__(slice(o, o + n), bytes(n))

    def iovec(self) -> np.ndarray:
        """`struct iovec` entries (base pointer, length) for the kernel, each checked to lie
        inside the buffer: the kernel would write wherever a pointer says."""
        self.check()
        vec = np.empty((len(self.offs), 2), dtype=np.int64)
        vec[:, 0] = self.offs
        vec[:, 1] = self.lens
        vec[:, 0] += self.addr
        return vec

    def check(self) -> None:
        """Raise ValueError unless every segment lies inside the buffer."""
        offs, lens = self.offs, self.lens
        if len(offs) and (offs.min() < 0 or lens.min() < 0 or (offs + lens).max() > self.buf.nbytes):
            raise ValueError("I/O vector segment outside its buffer")


def _transfer(call: ctypes._CFuncPtr, fd: int, offset: int, iov: HostIov) -> int:
    """One pass of preadv/pwritev calls over the iovec from `offset`, IOV_MAX segments a call,
    stopping at the first short transfer; returns the bytes moved."""
    vec = iov.iovec()
    moved = 0
    for i in range(0, len(vec), IOV_MAX):
        part = vec[i: i + IOV_MAX]
        n = call(fd, part.ctypes.data, len(part), offset + moved)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        moved += n
        if n < int(part[:, 1].sum()):
            break
    return moved


def _all(call: ctypes._CFuncPtr, fd: int, offset: int, iov: HostIov) -> int:
    """Passes of `_transfer` until every segment is done or a pass moves nothing; returns the
    bytes moved."""
    done = 0
    while done < iov.total:
        n = _transfer(call, fd, offset + done, iov.split(done)[1] if done else iov)
        if n == 0:
            break
        done += n
    return done


def preadv(fd: int, offset: int, iov: HostIov) -> int:
    """Read into the segments from `offset` (the GIL is released during the system calls);
    returns the bytes read, fewer than iov.total only at the end of the file."""
    return _all(_preadv, fd, offset, iov)


def pwritev(fd: int, offset: int, iov: HostIov) -> None:
    """Write all the segments at `offset` (the GIL is released during the system calls)."""
    if _all(_pwritev, fd, offset, iov) < iov.total:
        raise OSError(0, "pwritev wrote nothing")
