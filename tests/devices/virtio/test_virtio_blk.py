"""virtio-blk against raw and qcow2 images, driven through the fake driver."""

from __future__ import annotations

import os
import struct

import pytest

from virtio_driver import FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio import mmio as R
from wirt.devices.virtio.blk import (
    F_BLK_SIZE, F_DISCARD, F_FLUSH, F_RO, F_SEG_MAX, F_SIZE_MAX, F_WRITE_ZEROES, S_IOERR, S_OK, S_UNSUPP,
    T_DISCARD, T_FLUSH, T_GET_ID, T_IN, T_OUT, T_WRITE_ZEROES, VirtioBlk,
)
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.spec import F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_DEVICE_NEEDS_RESET
from wirt.storage import open_image
from wirt.storage.qcow2_create import create_qcow2
from wirt.storage.raw import create_raw

SIZE = 4 << 20


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(VirtioMmio, "strict", True)


@pytest.fixture(params=["raw", "qcow2"])
def image(request, tmp_path):
    path = str(tmp_path / f"disk.{request.param}")
    if request.param == "raw":
        create_raw(path, SIZE)
    else:
        create_qcow2(path, SIZE)
    return path


def attach(path, read_only=False, serial="wirt-serial-0001"):
    disk = open_image(path, read_only=read_only)
    mem = new_memory(2 << 20)
    t = VirtioMmio(VirtioBlk(disk, serial=serial), mem, IrqLine())
    d = FakeDriver(t, mem)
    (q,) = d.init()
    return disk, t, d, q


def hdr(rtype, sector=0):
    return struct.pack("<IIQ", rtype, 0, sector)


def request(q, rtype, sector=0, out=b"", in_len=0, indirect=False, split=False):
    """Submit one request; returns (status, data read back, used length)."""
    outs = [hdr(rtype, sector)]
    if out:
        outs += [out[: len(out) // 2], out[len(out) // 2:]] if split else [out]
    ins = ([in_len // 2, in_len - in_len // 2] if split else [in_len]) if in_len else []
    h = q.add(outs, ins + [1], indirect=indirect)
    q.kick()
    used = dict(q.get_used())
    data = q.read_in(h)
    return data[-1], data[:-1], used[h]


def test_config_and_features(image):
    disk, t, d, q = attach(image)
    feats = d.device_features()
    for b in (F_VERSION_1, F_SIZE_MAX, F_SEG_MAX, F_BLK_SIZE, F_FLUSH, F_DISCARD, F_WRITE_ZEROES,
              F_INDIRECT_DESC, F_EVENT_IDX):
        assert feats >> b & 1, b
    assert not feats >> F_RO & 1
    assert d.r(R.DEVICE_ID) == 2
    assert d.config(0, 8) == SIZE // 512  # capacity
    assert d.config(8, 4) > 0  # size_max
    assert d.config(12, 4) == 1022  # seg_max: queue size - 2 (a 1 MiB request in one chain)
    assert d.config(20, 4) == 512  # blk_size
    assert d.config(36, 4) > 0 and d.config(40, 4) > 0  # max_discard_sectors / seg
    align = d.config(44, 4)
    assert align >= 1 and (align == 1 or align % 8 == 0)
    assert d.config(48, 4) > 0 and d.config(52, 4) > 0  # write zeroes limits
    disk.close()


def test_write_read_flush(image):
    disk, t, d, q = attach(image)
    data = os.urandom(4096)
    assert request(q, T_OUT, 8, out=data)[::2] == (S_OK, 1)
    st, back, n = request(q, T_IN, 8, in_len=4096)
    assert st == S_OK and back == data and n == 4097
    # split buffers and indirect descriptors
    st, back, _ = request(q, T_IN, 9, in_len=1024, split=True, indirect=True)
    assert st == S_OK and back == data[512:1536]
    data2 = os.urandom(2048)
    assert request(q, T_OUT, 100, out=data2, split=True, indirect=True)[0] == S_OK
    assert request(q, T_FLUSH)[0] == S_OK
    disk.close()
    with open_image(image) as img:
        assert img.read(8 * 512, 4096) == data
        assert img.read(100 * 512, 2048) == data2


def test_data_lands_in_guest_ram_zero_copy(image):
    disk, t, d, q = attach(image)
    disk.write(0, b"A" * 512)
    st, back, _ = request(q, T_IN, 0, in_len=512)
    assert st == S_OK and back == b"A" * 512
    disk.close()


def test_out_of_range_and_misaligned(image):
    disk, t, d, q = attach(image)
    cap = SIZE // 512
    assert request(q, T_IN, cap - 1, in_len=1024)[0] == S_IOERR
    assert request(q, T_OUT, cap, out=b"x" * 512)[0] == S_IOERR
    assert request(q, T_IN, 0, in_len=100)[0] == S_IOERR  # not a whole sector
    assert request(q, T_IN, 2**63, in_len=512)[0] == S_IOERR
    assert request(q, 77)[0] == S_UNSUPP
    assert not d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    disk.close()


def test_get_id(image):
    disk, t, d, q = attach(image, serial="disk-serial")
    st, data, n = request(q, T_GET_ID, in_len=20)
    assert st == S_OK and data == b"disk-serial" + bytes(9) and n == 21
    disk.close()


def test_discard_and_write_zeroes(image):
    disk, t, d, q = attach(image)
    data = os.urandom(256 * 1024)
    assert request(q, T_OUT, 0, out=data)[0] == S_OK
    seg = struct.pack("<QII", 128, 128, 0)  # 64 KiB at 64 KiB
    assert request(q, T_WRITE_ZEROES, out=seg)[0] == S_OK
    seg_unmap = struct.pack("<QII", 384, 8, 1)
    assert request(q, T_WRITE_ZEROES, out=seg_unmap)[0] == S_OK
    back = request(q, T_IN, 0, in_len=len(data))[1]
    assert back[:65536] == data[:65536]
    assert back[65536:131072] == bytes(65536)
    assert back[384 * 512: 392 * 512] == bytes(4096)
    assert back[131072:384 * 512] == data[131072:384 * 512]
    # discard of a whole aligned 64 KiB range: allowed to zero it, must not touch outside
    assert request(q, T_DISCARD, out=struct.pack("<QII", 256, 128, 0))[0] == S_OK
    back = request(q, T_IN, 0, in_len=len(data))[1]
    assert back[:65536] == data[:65536]
    # invalid: unmap flag on discard, unknown flags, out of range, bad length, too many segments
    assert request(q, T_DISCARD, out=struct.pack("<QII", 0, 8, 1))[0] == S_UNSUPP
    assert request(q, T_WRITE_ZEROES, out=struct.pack("<QII", 0, 8, 2))[0] == S_UNSUPP
    assert request(q, T_DISCARD, out=struct.pack("<QII", SIZE // 512, 8, 0))[0] == S_IOERR
    assert request(q, T_DISCARD, out=b"short")[0] == S_IOERR
    many = struct.pack("<QII", 0, 1, 0) * (d.config(40, 4) + 1)
    assert request(q, T_DISCARD, out=many)[0] == S_UNSUPP
    disk.close()


def test_read_only_disk(image):
    with open_image(image, read_only=False) as w:
        w.write(0, b"keep" * 128)
    disk, t, d, q = attach(image, read_only=True)
    assert d.device_features() >> F_RO & 1
    assert request(q, T_OUT, 0, out=b"x" * 512)[0] == S_IOERR
    assert request(q, T_WRITE_ZEROES, out=struct.pack("<QII", 0, 8, 0))[0] == S_IOERR
    assert request(q, T_DISCARD, out=struct.pack("<QII", 0, 8, 0))[0] == S_IOERR
    assert request(q, T_FLUSH)[0] == S_OK
    st, back, _ = request(q, T_IN, 0, in_len=512)
    assert st == S_OK and back == b"keep" * 128
    disk.close()


def test_malformed_request_needs_reset(image):
    disk, t, d, q = attach(image)
    q.add([b"short"], [1])  # header < 16 bytes
    q.kick()
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    (q,) = d.init()
    q.add([hdr(T_IN)], [])  # no status byte
    q.kick()
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    disk.close()


def test_host_io_error_is_ioerr(image, monkeypatch):
    disk, t, d, q = attach(image)

    def boom(*a, **k):
        raise OSError(5, "Input/output error")

    # the device reads a request with one readv (a few buffers) or readv_iov (many)
    monkeypatch.setattr(disk, "readv", boom)
    monkeypatch.setattr(disk, "readv_iov", boom)
    assert request(q, T_IN, 0, in_len=512)[0] == S_IOERR
    assert not d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    disk.close()


# ---- the batched path: everything available at a notify is served together ---------------------

def _queue_request(q, rtype, sector=0, out=b"", in_len=0, pieces=1, indirect=False):
    """Make one request available without notifying; data split into `pieces` buffers."""
    outs = [hdr(rtype, sector)]
    step = max(1, -(-len(out) // pieces)) if out else 0
    outs += [out[i: i + step] for i in range(0, len(out), step)] if out else []
    ins = [in_len // pieces] * pieces if in_len else []
    return q.add(outs, ins + [1], publish=False, indirect=indirect)


def test_batch_of_adjacent_and_scattered_requests(image):
    """Eight writes in one kick (adjacent ones merged into one host write, a flush between two
    runs, one out of range), then eight reads: each request gets its own status and data."""
    disk, t, d, q = attach(image)
    blocks = [bytes([i + 1]) * 4096 for i in range(8)]
    sectors = [0, 8, 16, 24, 100, 108, SIZE // 512 - 4, 200]  # two runs, one past the end, one alone
    heads = []
    for i, (sec, data) in enumerate(zip(sectors, blocks)):
        heads.append(_queue_request(q, T_OUT, sec, data, pieces=4, indirect=True))
        if i == 3:
            heads.append(_queue_request(q, T_FLUSH, indirect=True))
    q.publish()
    q.kick()
    used = dict(q.get_used())
    assert set(used) == set(heads)
    statuses = [q.read_in(h)[-1] for h in heads]
    assert statuses == [S_OK] * 4 + [S_OK] + [S_OK, S_OK, S_IOERR, S_OK]
    reads = [_queue_request(q, T_IN, sec, in_len=4096, pieces=8, indirect=True) for sec in sectors]
    q.publish()
    q.kick()
    used = dict(q.get_used())
    for i, (h, sec) in enumerate(zip(reads, sectors)):
        back = q.read_in(h)
        if sec + 8 > SIZE // 512:
            assert back[-1] == S_IOERR
        else:
            assert back[-1] == S_OK and back[:-1] == blocks[i] and used[h] == 4097
    disk.close()
    with open_image(image) as img:
        assert img.read(16 * 512, 4096) == blocks[2] and img.read(108 * 512, 4096) == blocks[5]


def test_batch_rejects_a_head_made_available_twice(image):
    disk, t, d, q = attach(image)
    h = _queue_request(q, T_OUT, 0, b"x" * 512)
    q.put_avail(h, publish=False)  # the same chain again before the device returned it
    q.publish()
    q.kick()
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    disk.close()


def test_batch_rejects_out_of_range_descriptors(image):
    """A chain pointing outside guest RAM, queued after good ones, fails the device."""
    disk, t, d, q = attach(image)
    _queue_request(q, T_OUT, 0, b"a" * 512)
    head = _queue_request(q, T_IN, 0, in_len=512)
    # rewrite the data descriptor of the second chain: address past the end of RAM
    q.write_desc(q.desc, (head + 1) % q.num, (2 << 20) - 256 + 0x8000_0000, 512, 3, (head + 2) % q.num)
    q.publish()
    q.kick()
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    disk.close()


@pytest.mark.parametrize("ring", ["desc", "avail", "used"])
def test_batch_rejects_buffers_overlapping_the_rings(image, ring):
    """A read whose data buffer overlaps the queue's own rings is refused, not performed."""
    disk, t, d, q = attach(image)
    with open_image(image, read_only=False) as img:
        img.write(0, b"\xab" * 512)
    _queue_request(q, T_OUT, 8, b"b" * 512)
    head = _queue_request(q, T_IN, 0, in_len=512)
    target = getattr(q, ring)
    q.write_desc(q.desc, (head + 1) % q.num, target, 512, 3, (head + 2) % q.num)
    before = d.mem.read(q.desc, 16 * q.num) if ring != "desc" else None
    q.publish()
    q.kick()
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    assert b"\xab" * 16 not in d.mem.read(min(q.desc, q.avail, q.used), 16 * q.num + 16 * q.num)
    if before is not None:
        assert d.mem.read(q.desc, 16 * q.num) == before
    disk.close()


def test_stats_count_what_the_device_moves(image):
    """`wirt stats`/`top` count the bytes virtio-blk moves (through readv/writev, not read/write)."""
    from wirt.vm.runner import CountingDisk

    disk = CountingDisk(open_image(image, read_only=False))
    mem = new_memory(2 << 20)
    q = FakeDriver(VirtioMmio(VirtioBlk(disk), mem, IrqLine()), mem).init()[0]
    assert request(q, T_OUT, 8, out=os.urandom(4096), split=True)[0] == S_OK
    assert request(q, T_IN, 8, in_len=1024)[0] == S_OK
    assert (disk.bytes_written, disk.writes, disk.bytes_read, disk.reads) == (4096, 1, 1024, 1)
    disk.close()


def test_scattered_pages_go_through_the_iovec_path(image):
    """A request of many non-adjacent pages (more than the memoryview path's 8) is read and
    written through one iovec array; a header split over two descriptors still parses."""
    disk, t, d, q = attach(image)
    a = d.alloc
    pages = [a.alloc(512, 512) for _ in range(24)]
    for _ in pages:
        a.alloc(512, 512)  # spacers: no two data buffers adjacent, so the walk cannot merge them
    order = pages[::2] + pages[1::2]
    data = os.urandom(512 * len(order))
    for k, p in enumerate(order):
        d.mem.write(p, data[512 * k: 512 * (k + 1)])

    def run(rtype, header_pieces):
        h = hdr(rtype, 16)
        hbufs = [a.alloc(8), a.alloc(8)] if header_pieces == 2 else [a.alloc(16)]
        for k, hb in enumerate(hbufs):
            d.mem.write(hb, h[8 * k: 8 * k + 16 // header_pieces])
        status = a.alloc(1)
        flag = 2 if rtype == T_IN else 0
        bufs = [(hb, 16 // header_pieces, 0) for hb in hbufs] + [(p, 512, flag) for p in order] + [(status, 1, 2)]
        table = a.alloc(16 * len(bufs))
        for k, (addr, n, fl) in enumerate(bufs):
            q.write_desc(table, k, addr, n, fl | (1 if k + 1 < len(bufs) else 0), k + 1)
        head = q._take_desc()
        q.write_desc(q.desc, head, table, 16 * len(bufs), 4, 0)
        q.put_avail(head)
        q.kick()
        ((used_head, used_len),) = q.get_used()
        assert used_head == head
        return d.mem.read(status, 1)[0], used_len

    assert run(T_OUT, 2) == (S_OK, 1)
    assert disk.read(16 * 512, len(data)) == data
    for p in order:
        d.mem.write(p, bytes(512))
    assert run(T_IN, 1) == (S_OK, len(data) + 1)
    assert b"".join(d.mem.read(p, 512) for p in order) == data
    disk.close()


def _spaced_request(d, q, rtype, sector, outs=(), in_lens=(), indirect=False):
    """Make a request available the way Linux lays it out: the header, each data buffer and the
    status byte apart in guest RAM (so the walk merges none of them). Returns (head, [(addr, n)]
    of the device-writable data buffers, status address)."""
    a, mem = d.alloc, d.mem
    bufs = []
    for data in (hdr(rtype, sector), *outs):
        addr = a.alloc(len(data))
        a.alloc(16)  # spacer
        mem.write(addr, data)
        bufs.append((addr, len(data), 0))
    ins = []
    for n in in_lens:
        addr = a.alloc(n)
        a.alloc(16)
        mem.write(addr, b"\xee" * n)
        bufs.append((addr, n, 2))
        ins.append((addr, n))
    status = a.alloc(1)
    a.alloc(16)
    bufs.append((status, 1, 2))
    if indirect:
        table = a.alloc(16 * len(bufs))
        for k, (addr, n, fl) in enumerate(bufs):
            q.write_desc(table, k, addr, n, fl | (1 if k + 1 < len(bufs) else 0), k + 1)
        head = q._take_desc()
        q.write_desc(q.desc, head, table, 16 * len(bufs), 4, 0)
    else:
        idxs = [q._take_desc() for _ in bufs]
        for k, (addr, n, fl) in enumerate(bufs):
            last = k + 1 == len(bufs)
            q.write_desc(q.desc, idxs[k], addr, n, fl | (0 if last else 1), 0 if last else idxs[k + 1])
        head = idxs[0]
    q.put_avail(head, publish=False)
    return head, ins, status


@pytest.mark.parametrize("pieces", [1, 2, 5])
def test_small_requests_in_linux_layout(image, pieces):
    """Reads and writes of a few buffers with the header in a buffer of its own (the layout
    Linux uses; parsed from lists into memoryviews) land where they should, status and used
    length included; one batch mixing them with a request of many pages is one host write."""
    disk, t, d, q = attach(image)
    calls = []
    for name in ("writev", "writev_iov"):
        real = getattr(disk, name)
        setattr(disk, name, lambda off, bufs, _r=real, _n=name: (calls.append(_n), _r(off, bufs))[1])
    data = os.urandom(4096)
    step = -(-4096 // pieces)
    chunks = [data[i: i + step] for i in range(0, 4096, step)]
    head, _, status = _spaced_request(d, q, T_OUT, 8, chunks)
    q.publish()
    q.kick()
    assert dict(q.get_used())[head] == 1 and d.mem.read(status, 1)[0] == S_OK
    assert calls == ["writev"]  # memoryviews, no I/O vector
    assert disk.read(8 * 512, 4096) == data
    head, ins, status = _spaced_request(d, q, T_IN, 8, in_lens=[len(c) for c in chunks], indirect=True)
    q.publish()
    q.kick()
    assert dict(q.get_used())[head] == 4097 and d.mem.read(status, 1)[0] == S_OK
    assert b"".join(d.mem.read(addr, n) for addr, n in ins) == data
    # sectors 16.. : small, many-page (24 x 512 B), small: adjacent, so one run and one write
    calls.clear()
    big = os.urandom(24 * 512)
    parts = [os.urandom(1024), big, os.urandom(512)]
    heads = []
    sector = 16
    for blob in parts:
        chunks = [blob[i: i + 512] for i in range(0, len(blob), 512)] if len(blob) > 4096 else [blob]
        heads.append(_spaced_request(d, q, T_OUT, sector, chunks, indirect=len(chunks) > 8)[0])
        sector += len(blob) // 512
    q.publish()
    q.kick()
    used = dict(q.get_used())
    assert [used[h] for h in heads] == [1, 1, 1] and len(calls) == 1
    assert disk.read(16 * 512, sector * 512 - 16 * 512) == b"".join(parts)
    disk.close()
