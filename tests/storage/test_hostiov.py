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


def test_qcow2_moves_guest_segments_through_iovec_arrays(tmp_path, monkeypatch):
    """Qcow2Image.readv_iov/writev_iov: one preadv/pwritev (an iovec array) per host-contiguous
    run of clusters, the run split at the cluster where the mapping jumps, every byte in place."""
    from wirt import hostiov
    from wirt.storage.qcow2 import Qcow2Image
    from wirt.storage.qcow2_create import create_qcow2

    path = str(tmp_path / "d.qcow2")
    create_qcow2(path, 1 << 20, cluster_size=4096)
    calls: list[tuple[str, int, int]] = []
    for name in ("preadv", "pwritev"):
        real = getattr(hostiov, name)
        monkeypatch.setattr(hostiov, name, lambda fd, off, iov, _r=real, _n=name: (
            calls.append((_n, off, iov.total)), _r(fd, off, iov))[1])
    buf = np.zeros(64 * 4096, dtype=np.uint8)
    # 64 scattered 256-byte segments = 16 KiB over guest clusters 3..6 (more than the 8 a run
    # may have to go to os.preadv as memoryviews)
    segs = [((37 * i) % 64 * 4096, 256) for i in range(64)]
    data = os.urandom(16 * 1024)
    with Qcow2Image(path, read_only=False) as img:
        img.write(5 * 4096, b"\1" * 4096)        # cluster 5 first: 3, 4, 6 land elsewhere
        iov = _iov(buf, segs)
        iov.fill(data)
        calls.clear()
        img.writev_iov(3 * 4096, iov)
        # 3-4 allocated together (one write), 5 in place, 6 allocated: three runs
        assert [c[0] for c in calls] == ["pwritev"] * 3 and sum(c[2] for c in calls) == len(data)
        buf[:] = 0
        calls.clear()
        img.readv_iov(3 * 4096, iov)
        assert iov.read() == data and [c[0] for c in calls] == ["preadv"] * 3
        assert img.read(3 * 4096, len(data)) == data


@pytest.mark.parametrize("method", ["readv_iov", "writev_iov"])
def test_qcow2_refuses_a_segment_outside_the_buffer(tmp_path, method):
    """A qcow2 image checks every guest segment against its buffer before the kernel gets a
    pointer, as a raw image does; nothing is written."""
    from wirt.storage.qcow2 import Qcow2Image
    from wirt.storage.qcow2_create import create_qcow2

    path = str(tmp_path / "d.qcow2")
    create_qcow2(path, 1 << 20, cluster_size=65536)
    buf = np.zeros(40000, dtype=np.uint8)
    iov = _iov(buf, [(1000 * i, 500) for i in range(12)] + [(39999, 2)])
    with Qcow2Image(path, read_only=False) as img:
        img.write(0, b"\x22" * 65536)
        with pytest.raises(ValueError, match="outside its buffer"):
            getattr(img, method)(0, iov)
        assert img.read(0, 65536) == b"\x22" * 65536
