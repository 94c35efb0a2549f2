"""A fake virtio driver for unit tests: lays out split rings in guest RAM and drives the
virtio-mmio registers the way Linux's virtio_mmio + virtio_ring do (virtio 1.2 §3.1.1, §4.2.3).

Imported as a plain module (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import struct

from wirt.devices.virtio import mmio as R
from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.spec import (
    F_EVENT_IDX, F_INDIRECT_DESC, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FEATURES_OK,
)
from wirt.devices.virtio.virtqueue import gather, scatter
from wirt.machine.memory import GuestMemory

BASE = 0x8000_0000
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def new_memory(size: int = 1 << 20) -> GuestMemory:
    return GuestMemory(size, BASE)


class Allocator:
    """Bump allocator over guest RAM."""

    def __init__(self, mem: GuestMemory, start: int = 0x1000) -> None:
        self.mem = mem
        self.next = mem.base + start

    def alloc(self, size: int, align: int = 16) -> int:
        addr = (self.next + align - 1) & ~(align - 1)
        self.next = addr + max(size, 1)
        assert self.next <= self.mem.base + self.mem.size, "test RAM exhausted"
        return addr


class DriverQueue:
    """The driver's side of one split virtqueue."""

    def __init__(self, drv: FakeDriver, index: int, num: int) -> None:
        self.drv, self.index, self.num = drv, index, num
        mem, a = drv.mem, drv.alloc
        self.desc = a.alloc(16 * num, 16)
        self.avail = a.alloc(6 + 2 * num, 2)
        self.used = a.alloc(6 + 8 * num, 4)
        self.avail_idx = 0
        self.last_used = 0
        self.next_desc = 0
        self.in_bufs: dict[int, list[tuple[int, int]]] = {}
        mem.write(self.desc, bytes(16 * num))
        mem.write(self.avail, bytes(6 + 2 * num))
        mem.write(self.used, bytes(6 + 8 * num))

    # descriptor helpers
    def write_desc(self, table: int, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        self.drv.mem.write(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def _take_desc(self) -> int:
        i = self.next_desc
        self.next_desc = (self.next_desc + 1) % self.num
        return i

    def add(self, out: list[bytes] = (), in_lens: list[int] = (), indirect: bool = False,
            publish: bool = True) -> int:
        """Make a chain of readable `out` buffers then writable buffers of `in_lens` bytes available."""
        mem, a = self.drv.mem, self.drv.alloc
        bufs: list[tuple[int, int, int]] = []
        for data in out:
            addr = a.alloc(len(data))
            mem.write(addr, data)
            bufs.append((addr, len(data), 0))
        ins = []
        for n in in_lens:
            addr = a.alloc(n)
            mem.write(addr, b"\xee" * n)
            bufs.append((addr, n, F_WRITE))
            ins.append((addr, n))
        if indirect:
            table = a.alloc(16 * len(bufs))
            for k, (addr, n, fl) in enumerate(bufs):
                self.write_desc(table, k, addr, n, fl | (F_NEXT if k + 1 < len(bufs) else 0), k + 1)
            head = self._take_desc()
            self.write_desc(self.desc, head, table, 16 * len(bufs), F_INDIRECT, 0)
        else:
            idxs = [self._take_desc() for _ in bufs]
            for k, (addr, n, fl) in enumerate(bufs):
                last = k + 1 == len(bufs)
                self.write_desc(self.desc, idxs[k], addr, n, fl | (0 if last else F_NEXT),
                                0 if last else idxs[k + 1])
            head = idxs[0]
        self.in_bufs[head] = ins
        self.put_avail(head, publish)
        return head

    def put_avail(self, head: int, publish: bool = True) -> None:
        mem = self.drv.mem
        mem.write(self.avail + 4 + 2 * (self.avail_idx % self.num), struct.pack("<H", head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        if publish:
            self.publish()

    def publish(self) -> None:
        self.drv.mem.write(self.avail + 2, struct.pack("<H", self.avail_idx))

    def kick(self) -> None:
        self.drv.w(R.QUEUE_NOTIFY, self.index)

    def set_avail_flags(self, flags: int) -> None:
        self.drv.mem.write(self.avail, struct.pack("<H", flags))

    def set_used_event(self, value: int) -> None:
        self.drv.mem.write(self.avail + 4 + 2 * self.num, struct.pack("<H", value))

    def avail_event(self) -> int:
        return struct.unpack("<H", self.drv.mem.read(self.used + 4 + 8 * self.num, 2))[0]

    def used_idx(self) -> int:
        return struct.unpack("<H", self.drv.mem.read(self.used + 2, 2))[0]

    def get_used(self) -> list[tuple[int, int]]:
        """New used elements (head, len) since the last call."""
        out = []
        idx = self.used_idx()
        while self.last_used != idx:
            slot = self.used + 4 + 8 * (self.last_used % self.num)
            out.append(struct.unpack("<II", self.drv.mem.read(slot, 8)))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out

    def read_in(self, head: int) -> bytes:
        """Contents of the writable buffers of chain `head`."""
        return b"".join(self.drv.mem.read(a, n) for a, n in self.in_bufs[head])


class FakeDriver:
    """Drives a VirtioMmio through its registers like a guest driver."""

    def __init__(self, dev: VirtioMmio, mem: GuestMemory) -> None:
        self.dev, self.mem = dev, mem
        self.alloc = Allocator(mem)
        self.queues: list[DriverQueue] = []

    def r(self, off: int, size: int = 4) -> int:
        return self.dev.read(off, size)

    def w(self, off: int, value: int, size: int = 4) -> None:
        self.dev.write(off, size, value)

    def device_features(self) -> int:
        self.w(R.DEVICE_FEATURES_SEL, 0)
        lo = self.r(R.DEVICE_FEATURES)
        self.w(R.DEVICE_FEATURES_SEL, 1)
        return lo | self.r(R.DEVICE_FEATURES) << 32

    def set_driver_features(self, feats: int) -> None:
        self.w(R.DRIVER_FEATURES_SEL, 0)
        self.w(R.DRIVER_FEATURES, feats & 0xFFFF_FFFF)
        self.w(R.DRIVER_FEATURES_SEL, 1)
        self.w(R.DRIVER_FEATURES, feats >> 32)

    def negotiate(self, features: int | None = None, event_idx: bool = True, indirect: bool = True) -> bool:
        """Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; True if the device accepted."""
        assert self.r(R.MAGIC_VALUE) == 0x74726976 and self.r(R.VERSION_REG) == 2
        self.w(R.STATUS, 0)
        self.w(R.STATUS, STATUS_ACKNOWLEDGE)
        self.w(R.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        offered = self.device_features()
        if features is None:
            features = offered
            if not event_idx:
                features &= ~(1 << F_EVENT_IDX)
            if not indirect:
                features &= ~(1 << F_INDIRECT_DESC)
        self.set_driver_features(features)
        self.w(R.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK)
        return bool(self.r(R.STATUS) & STATUS_FEATURES_OK)

    def setup_queue(self, index: int, num: int | None = None) -> DriverQueue:
        self.w(R.QUEUE_SEL, index)
        assert self.r(R.QUEUE_READY) == 0
        qmax = self.r(R.QUEUE_NUM_MAX)
        assert qmax > 0
        num = num or min(qmax, 16)
        q = DriverQueue(self, index, num)
        self.w(R.QUEUE_NUM, num)
        for lo, hi, addr in ((R.QUEUE_DESC_LOW, R.QUEUE_DESC_HIGH, q.desc),
                             (R.QUEUE_DRIVER_LOW, R.QUEUE_DRIVER_HIGH, q.avail),
                             (R.QUEUE_DEVICE_LOW, R.QUEUE_DEVICE_HIGH, q.used)):
            self.w(lo, addr & 0xFFFF_FFFF)
            self.w(hi, addr >> 32)
        self.w(R.QUEUE_READY, 1)
        while len(self.queues) <= index:
            self.queues.append(None)  # type: ignore[arg-type]
        self.queues[index] = q
        return q

    def init(self, nqueues: int | None = None, **kw) -> list[DriverQueue]:
        """Full initialisation (§3.1.1) with all queues; returns the driver queues."""
        assert self.negotiate(**kw)
        n = nqueues if nqueues is not None else len(self.dev.queues)
        qs = [self.setup_queue(i) for i in range(n)]
        self.w(R.STATUS, self.r(R.STATUS) | STATUS_DRIVER_OK)
        return qs

    def isr(self) -> int:
        return self.r(R.INTERRUPT_STATUS)

    def ack(self, bits: int | None = None) -> int:
        v = self.isr() if bits is None else bits
        self.w(R.INTERRUPT_ACK, v)
        return v

    def config(self, offset: int, size: int) -> int:
        return self.r(R.CONFIG + offset, size)


class Echo(VirtioDevice):
    """Test device: queue 0 copies readable bytes into writable buffers; config is settable."""

    device_id = 42
    queue_sizes = (16, 8)

    def __init__(self):
        super().__init__()
        self.cfg = bytearray(b"\x01\x02\x03\x04\x05\x06\x07\x08")
        self.resets = 0

    def features(self):
        return super().features() | 1 << 3

    def config(self):
        return bytes(self.cfg)

    def write_config(self, offset, data):
        self.cfg[offset: offset + len(data)] = data[: max(0, len(self.cfg) - offset)]

    def queue_notify(self, q):
        while (c := q.pop()) is not None:
            q.push(c.head, scatter(c.writable, gather(c.readable)))
        self.transport.notify_used(q)

    def reset(self):
        self.resets += 1
