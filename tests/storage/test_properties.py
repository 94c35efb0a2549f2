"""Property tests: random writes, discards, write-zeroes, snapshots and reopens on a qcow2 image
behave exactly like a plain in-memory model, and leave an image qemu-img finds consistent."""

from __future__ import annotations

import os
import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage_helpers import assert_qemu_clean, pattern
from wirt.hostiov import HostIov
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2
from wirt.storage.qcow2_check import check_image

SIZE = 300 * 1024 + 512  # a partial last cluster for most cluster sizes

offsets = st.integers(0, SIZE - 1)
lengths = st.integers(1, 40_000)
ops = st.one_of(
    st.tuples(st.just("write"), offsets, lengths, st.integers(0, 1 << 20)),
    st.tuples(st.just("writev"), offsets, lengths, st.integers(0, 1 << 20)),
    st.tuples(st.just("writev_iov"), offsets, lengths, st.integers(0, 1 << 20)),
    st.tuples(st.just("discard"), offsets, lengths),
    st.tuples(st.just("zeroes"), offsets, lengths),
    st.tuples(st.just("snapshot"), st.integers(0, 3)),
    st.tuples(st.just("apply"), st.integers(0, 3)),
    st.tuples(st.just("delete"), st.integers(0, 3)),
    st.tuples(st.just("reopen")),
)


def _pieces(buf: memoryview, seed: int) -> list[memoryview]:
    """`buf` cut into scattered buffers of uneven sizes (as a guest's request arrives)."""
    rnd = random.Random(seed)
    out, pos = [], 0
    while pos < len(buf):
        n = rnd.choice([1, 512, 4096, rnd.randrange(1, 9000)])
        out.append(buf[pos : pos + n])
        pos += n
    return out


def _scattered_iov(n: int, seed: int) -> HostIov:
    """An I/O vector of `n` bytes in uneven segments scattered out of order over a buffer of its
    own, filled with 0xEE (as a guest's pages lie in its RAM: what virtio-blk hands
    readv_iov/writev_iov)."""
    rnd = random.Random(seed)
    sizes, left = [], n
    while left:
        k = min(left, rnd.choice([1, 512, 4096, rnd.randrange(1, 9000)]))
        sizes.append(k)
        left -= k
    slots = list(range(len(sizes)))
    rnd.shuffle(slots)
    slot = 9000
    ram = np.full(slot * len(sizes), 0xEE, dtype=np.uint8)
    offs = np.array([s * slot for s in slots], dtype=np.int64)
    return HostIov(memoryview(ram), ram.ctypes.data, offs, np.array(sizes, dtype=np.int64))


def _discard_model(model: bytearray, off: int, n: int, cs: int) -> None:
    first = -(-off // cs)
    last = -(-SIZE // cs) if off + n >= SIZE else (off + n) // cs
    if last > first:
        lo, hi = first * cs, min(SIZE, last * cs)
        model[lo:hi] = bytes(hi - lo)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cs=st.sampled_from([512, 4096, 65536]), with_backing=st.booleans(), script=st.lists(ops, max_size=25))
def test_random_operations_match_model(tmp_path_factory, cs, with_backing, script):
    d = tmp_path_factory.mktemp("prop")
    path = str(d / "p.qcow2")
    model = bytearray(SIZE)
    if with_backing:
        base = pattern(99, SIZE)
        with open(d / "base.raw", "wb") as f:
            f.write(base)
        model[:] = base
        create_qcow2(path, SIZE, cluster_size=cs, backing="base.raw", backing_format="raw")
    else:
        create_qcow2(path, SIZE, cluster_size=cs)
    snaps: dict[str, bytes] = {}
    img = Qcow2Image(path, read_only=False)
    try:
        for op in script:
            kind = op[0]
            if kind == "write":
                _, off, n, seed = op
                n = min(n, SIZE - off)
                data = pattern(seed, n)
                img.write(off, data)
                model[off : off + n] = data
            elif kind == "writev":  # one vectored write, as virtio-blk issues a request
                _, off, n, seed = op
                n = min(n, SIZE - off)
                data = pattern(seed, n)
                img.writev(off, _pieces(memoryview(data), seed))
                model[off : off + n] = data
            elif kind == "writev_iov":  # from guest RAM segments, as virtio-blk writes
                _, off, n, seed = op
                n = min(n, SIZE - off)
                data = pattern(seed, n)
                iov = _scattered_iov(n, seed)
                iov.fill(data)
                img.writev_iov(off, iov)
                model[off : off + n] = data
            elif kind == "discard":
                _, off, n = op
                n = min(n, SIZE - off)
                img.discard(off, n)
                _discard_model(model, off, n, cs)
            elif kind == "zeroes":
                _, off, n = op
                n = min(n, SIZE - off)
                img.write_zeroes(off, n)
                model[off : off + n] = bytes(n)
            elif kind == "snapshot":
                name = f"s{op[1]}"
                if name not in snaps:
                    img.create_snapshot(name)
                    snaps[name] = bytes(model)
            elif kind == "apply":
                name = f"s{op[1]}"
                if name in snaps:
                    img.apply_snapshot(name)
                    model[:] = snaps[name]
            elif kind == "delete":
                name = f"s{op[1]}"
                if name in snaps:
                    img.delete_snapshot(name)
                    del snaps[name]
            else:
                img.close()
                img = Qcow2Image(path, read_only=False)
            assert img.read(0, SIZE) == model, f"after {op}"
            got = bytearray(SIZE)
            img.readv(0, _pieces(memoryview(got), len(script)))
            assert got == model, f"readv after {op}"
            iov = _scattered_iov(SIZE, len(script) + 1)
            img.readv_iov(0, iov)
            assert iov.read() == model, f"readv_iov after {op}"
        assert sorted(s.name for s in img.list_snapshots()) == sorted(snaps)
        report = check_image(img)
        assert report.corruptions == 0 and report.leaks == 0, report.messages
    finally:
        img.close()
    assert_qemu_clean(path)
    with Qcow2Image(path) as img:
        assert img.read(0, SIZE) == model
        for s in img.list_snapshots():
            assert s.disk_size == SIZE
    os.remove(path)
