"""wirt.hostiov: I/O vectors over one buffer handed to preadv/pwritev as an iovec array."""

from __future__ import annotations

import os

import numpy as np
import pytest

from wirt.hostiov import HostIov, preadv, pwritev
from wirt.storage.hostfile import HostFile


def _iov(buf: np.ndarray, segs: list[tuple[int, int]]) -> HostIov:
    offs = np.array([o for o, _ in segs], dtype=np.int64)
    lens = np.array([n for _, n in segs], dtype=np.int64)
    return HostIov(memoryview(buf), buf.ctypes.data, offs, lens)


# scattered, out of order, of different sizes: what a guest's pages look like
SEGS = [(8192, 4096), (0, 100), (20000, 3000), (4096, 1), (30000, 5000)]


def test_split_keeps_every_byte_in_order():
    buf = np.arange(40000, dtype=np.uint32).astype(np.uint8)
    iov = _iov(buf, SEGS)
    whole = iov.read()
    for n in (0, 1, 99, 100, 4196, 4197, 7196, 7197, iov.total - 1, iov.total, iov.total + 5):
        head, rest = iov.split(n)
        assert head.total == min(n, iov.total) and head.total + rest.total == iov.total
        assert head.read() + rest.read() == whole
        assert all(int(x) > 0 for x in head.lens) and all(int(x) > 0 for x in rest.lens)


def test_preadv_and_pwritev_go_straight_to_the_segments(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(20000)
    path.write_bytes(data)
    buf = np.zeros(40000, dtype=np.uint8)
    iov = _iov(buf, SEGS)
    fd = os.open(path, os.O_RDWR)
    try:
        assert preadv(fd, 100, iov) == iov.total
        assert iov.read() == data[100: 100 + iov.total]
        buf[:] = 0xAB
        pwritev(fd, 1000, iov)
        assert os.pread(fd, iov.total + 1, 1000) == b"\xab" * iov.total + data[1000 + iov.total: 1001 + iov.total]
    finally:
        os.close(fd)


def test_more_segments_than_iov_max(tmp_path):
    """Over IOV_MAX (1024) segments the transfer goes on in further calls, in order."""
    path = tmp_path / "f"
    data = os.urandom(3000 * 16)
    path.write_bytes(data)
    buf = np.zeros(3000 * 32, dtype=np.uint8)
    iov = _iov(buf, [(32 * i, 16) for i in range(3000)])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert preadv(fd, 0, iov) == len(data)
    finally:
        os.close(fd)
    assert iov.read() == data


def test_read_past_the_end_of_the_file_zero_fills(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"\x11" * 5000)
    f = HostFile(str(path), read_only=True)
    buf = np.full(40000, 0xEE, dtype=np.uint8)
    iov = _iov(buf, SEGS + [(36000, 3000)] * 0)
    many = _iov(buf, [(1000 * i, 500) for i in range(20)])  # more than the memoryview path's 8
    try:
        f.readv_iov(0, many)
        assert many.read() == b"\x11" * 5000 + bytes(5000)
        f.readv_iov(4000, iov)  # few segments: the memoryview path
        assert iov.read() == b"\x11" * 1000 + bytes(iov.total - 1000)
    finally:
        f.close()


@pytest.mark.parametrize("seg", [(39999, 2), (-1, 10), (0, 40001), (2 ** 62, 4096)])
def test_a_segment_outside_the_buffer_is_refused_before_the_kernel_sees_it(tmp_path, seg):
    """The kernel writes wherever a pointer says: iovec() checks every segment against the buffer."""
    path = tmp_path / "f"
    path.write_bytes(bytes(8192))
    buf = np.zeros(40000, dtype=np.uint8)
    iov = _iov(buf, [(0, 4096), seg])
    with pytest.raises(ValueError, match="outside its buffer"):
        iov.iovec()
    with pytest.raises(ValueError, match="outside its buffer"):
        iov.zero()                 # memsets large segments by host address
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(ValueError):
            preadv(fd, 0, iov)
    finally:
        os.close(fd)
