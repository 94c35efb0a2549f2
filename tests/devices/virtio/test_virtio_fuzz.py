"""Fuzzing: random register traffic and random ring contents never raise out of a device and never
touch memory outside guest RAM (guard bytes around RAM stay intact)."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import examples
from virtio_driver import F_INDIRECT, F_NEXT, F_WRITE, Echo, FakeDriver
from wirt.devices.irq import IrqLine
from wirt.devices.virtio import mmio as R
from wirt.devices.virtio.blk import VirtioBlk
from wirt.devices.virtio.console import VirtioConsole
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.net import VirtioNet
from wirt.devices.virtio.rng import VirtioRng
from wirt.storage import open_image
from wirt.storage.raw import create_raw

BASE = 0x8000_0000
RAM = 64 * 1024
GUARD = 4096


class GuardedMemory:
    """Guest RAM that is the middle of a larger buffer; the guard bytes around it must never change."""

    def __init__(self, size: int = RAM, base: int = BASE) -> None:
        self.base, self.size = base, size
        self.whole = np.full(size + 2 * GUARD, 0xA5, dtype=np.uint8)
        self.array = self.whole[GUARD: GUARD + size]
        self.array[:] = 0

    def write(self, addr: int, data: bytes) -> None:
        off = addr - self.base
        assert 0 <= off and off + len(data) <= self.size
        self.array[off: off + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read(self, addr: int, length: int) -> bytes:
        off = addr - self.base
        return self.array[off: off + length].tobytes()

    def guards_intact(self) -> bool:
        return bool((self.whole[:GUARD] == 0xA5).all() and (self.whole[-GUARD:] == 0xA5).all())


class NullBackend:
    def start(self, deliver):
        self.deliver = deliver

    def send(self, frame):
        pass

    def close(self):
        pass


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(VirtioMmio, "strict", True)  # device bugs surface as test failures


@pytest.fixture(scope="module")
def disk_path():
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "fuzz.img")
        create_raw(path, 1 << 20)
        yield path


KINDS = ["echo", "blk", "net", "console", "rng"]


def make_device(kind: str, disk_path: str, mem: GuardedMemory):
    if kind == "echo":
        dev = Echo()
    elif kind == "blk":
        dev = VirtioBlk(open_image(disk_path, read_only=False))
    elif kind == "net":
        dev = VirtioNet(NullBackend(), bytes.fromhex("525400000001"))
    elif kind == "console":
        dev = VirtioConsole(on_output=lambda b: None)
    else:
        dev = VirtioRng()
    return VirtioMmio(dev, mem, IrqLine())


def close_device(t: VirtioMmio) -> None:
    t.close()
    if isinstance(t.device, VirtioBlk):
        t.device.disk.close()


REGS = [R.DEVICE_FEATURES_SEL, R.DRIVER_FEATURES, R.DRIVER_FEATURES_SEL, R.QUEUE_SEL, R.QUEUE_NUM,
        R.QUEUE_READY, R.QUEUE_NOTIFY, R.INTERRUPT_ACK, R.STATUS, R.QUEUE_DESC_LOW, R.QUEUE_DESC_HIGH,
        R.QUEUE_DRIVER_LOW, R.QUEUE_DRIVER_HIGH, R.QUEUE_DEVICE_LOW, R.QUEUE_DEVICE_HIGH, R.CONFIG,
        R.CONFIG + 6, R.CONFIG_GENERATION, R.SHM_SEL]

values = st.one_of(
    st.integers(0, 0xFFFF_FFFF),
    st.integers(0, 16),
    st.sampled_from([0, 1, 3, 7, 0xB, 0xF, 0x4F, 0x80, 0xFF]),  # status-like values
    st.integers(BASE, BASE + RAM + 64),  # addresses in and just past RAM
)
offsets = st.one_of(st.sampled_from(REGS), st.integers(0, 0x1FF))
mmio_op = st.tuples(st.sampled_from(["r", "w"]), offsets, st.sampled_from([1, 2, 4, 8]), values)
poke = st.tuples(st.just("poke"), st.integers(0, RAM - 1), st.binary(min_size=1, max_size=32), st.just(0))


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), ops=st.lists(st.one_of(mmio_op, mmio_op, poke), max_size=60))
def test_random_register_traffic(disk_path, kind, ops):
    mem = GuardedMemory()
    t = make_device(kind, disk_path, mem)
    try:
        for op, a, b, c in ops:
            if op == "poke":
                mem.write(BASE + a, b[: RAM - a])
                continue
            size = b
            off = a - a % size
            if off + size > t.size:
                continue
            if op == "r":
                v = t.read(off, size)
                assert 0 <= v < 1 << (8 * size)
            else:
                t.write(off, size, c & ((1 << (8 * size)) - 1))
            assert t.isr.irq.level == (t.interrupt_status != 0)
        assert mem.guards_intact()
    finally:
        close_device(t)


# Random ring contents behind a properly initialised device.
addr_st = st.one_of(
    st.integers(BASE, BASE + RAM - 1),
    st.integers(BASE + RAM - 64, BASE + RAM + 64),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, BASE, BASE + RAM, 2**64 - 16]),
)
len_st = st.one_of(st.integers(0, 600), st.sampled_from([16, 32, 4096, 0xFFFF_FFFF]))
desc_st = st.tuples(addr_st, len_st, st.integers(0, 7), st.integers(0, 20))
header_st = st.one_of(
    st.binary(min_size=0, max_size=32),
    st.builds(lambda t, s: struct.pack("<IIQ", t, 0, s), st.sampled_from([0, 1, 4, 8, 11, 13, 99]),
              st.integers(0, 3000)),
)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_random_queue_contents(disk_path, kind, data):
    mem = GuardedMemory()
    t = make_device(kind, disk_path, mem)
    d = FakeDriver(t, mem)
    try:
        qs = d.init(event_idx=data.draw(st.booleans()), indirect=data.draw(st.booleans()))
        for _ in range(data.draw(st.integers(1, 4))):
            qi = data.draw(st.integers(0, len(qs) - 1))
            q = qs[qi]
            # mostly well-formed chains (to reach the device models), sometimes random descriptors
            if data.draw(st.integers(0, 2)):
                q.add([data.draw(header_st)] + data.draw(st.lists(st.binary(max_size=64), max_size=2)),
                      data.draw(st.lists(st.integers(0, 600), max_size=3)),
                      indirect=data.draw(st.booleans()))
            else:
                table = q.desc
                if data.draw(st.booleans()):
                    table = d.alloc.alloc(16 * 8)
                    q.write_desc(q.desc, 0, table, 16 * data.draw(st.integers(0, 9)),
                                 F_INDIRECT | data.draw(st.sampled_from([0, F_NEXT, F_WRITE])), 0)
                for i, (addr, ln, fl, nxt) in enumerate(data.draw(st.lists(desc_st, min_size=1, max_size=8))):
                    q.write_desc(table, i, addr, ln, fl, nxt)
                q.put_avail(data.draw(st.integers(0, 20)))
            if data.draw(st.booleans()):
                q.set_used_event(data.draw(st.integers(0, 0xFFFF)))
            if not data.draw(st.integers(0, 5)):
                q.avail_idx = data.draw(st.integers(0, 0xFFFF))
                q.publish()
            q.kick()
            if kind == "net":
                t.device.receive(data.draw(st.binary(max_size=200)))
            if kind == "console":
                t.device.feed(data.draw(st.binary(max_size=50)))
            d.ack()
        assert mem.guards_intact()
        assert t.isr.irq.level == (t.interrupt_status != 0)
    finally:
        close_device(t)
