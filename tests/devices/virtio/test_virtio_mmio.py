"""virtio-mmio transport: registers, feature negotiation, status machine, queues, interrupts."""

from __future__ import annotations

import pytest

from virtio_driver import BASE, Echo, FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio import mmio as R
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.rng import VirtioRng
from wirt.devices.virtio.spec import (
    F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER,
    STATUS_DRIVER_OK, STATUS_FEATURES_OK,
)


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(VirtioMmio, "strict", True)


def make(dev=None):
    mem = new_memory()
    irq = IrqLine(name="test")
    t = VirtioMmio(dev or Echo(), mem, irq)
    return t, FakeDriver(t, mem), irq


def test_identity_registers():
    t, d, _ = make()
    assert d.r(R.MAGIC_VALUE) == 0x74726976
    assert d.r(R.VERSION_REG) == 2
    assert d.r(R.DEVICE_ID) == 42
    assert d.r(R.VENDOR_ID_REG) == R.VENDOR_ID
    assert t.size == 0x200
    # non-32-bit accesses to control registers read 0 and are ignored when written
    assert d.r(R.MAGIC_VALUE, 2) == 0
    d.w(R.STATUS, 1, size=1)
    assert d.r(R.STATUS) == 0


def test_feature_negotiation():
    t, d, _ = make()
    feats = d.device_features()
    assert feats >> F_VERSION_1 & 1 and feats >> F_EVENT_IDX & 1 and feats >> F_INDIRECT_DESC & 1
    assert feats & 1 << 3
    d.w(R.DEVICE_FEATURES_SEL, 7)
    assert d.r(R.DEVICE_FEATURES) == 0
    assert d.negotiate()
    assert t.driver_features == feats
    # features are frozen after FEATURES_OK
    d.set_driver_features(0)
    assert t.driver_features == feats


def test_features_ok_refused_without_version_1():
    t, d, _ = make()
    assert not d.negotiate(features=1 << 3)  # legacy-only driver
    assert not d.r(R.STATUS) & STATUS_FEATURES_OK
    # DRIVER_OK cannot be set without FEATURES_OK
    d.w(R.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK)
    assert not d.r(R.STATUS) & STATUS_DRIVER_OK


def test_features_ok_refused_for_unoffered_bits():
    _, d, _ = make()
    assert not d.negotiate(features=1 << F_VERSION_1 | 1 << 7)


def test_status_machine_and_reset():
    t, d, irq = make()
    q0, q1 = d.init()
    st = d.r(R.STATUS)
    assert st == STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK
    q0.add([b"x"], [1])
    q0.kick()
    assert irq.level
    # the driver cannot clear bits except by writing 0
    d.w(R.STATUS, STATUS_ACKNOWLEDGE)
    assert d.r(R.STATUS) == st
    resets = t.device.resets
    d.w(R.STATUS, 0)
    assert d.r(R.STATUS) == 0
    assert t.device.resets == resets + 1
    assert not irq.level and d.isr() == 0
    for i in range(2):
        d.w(R.QUEUE_SEL, i)
        assert d.r(R.QUEUE_READY) == 0
    assert all(q.desc == 0 and q.last_avail == 0 and q.used_idx == 0 for q in t.queues)
    assert t.driver_features == 0


def test_queue_registers():
    t, d, _ = make()
    d.negotiate()
    d.w(R.QUEUE_SEL, 0)
    assert d.r(R.QUEUE_NUM_MAX) == 16
    d.w(R.QUEUE_SEL, 1)
    assert d.r(R.QUEUE_NUM_MAX) == 8
    d.w(R.QUEUE_SEL, 2)
    assert d.r(R.QUEUE_NUM_MAX) == 0  # not available
    d.w(R.QUEUE_READY, 1)
    assert d.r(R.QUEUE_READY) == 0
    q = d.setup_queue(0, 8)
    vq = t.queues[0]
    assert (vq.num, vq.desc, vq.driver, vq.device, vq.ready) == (8, q.desc, q.avail, q.used, True)
    # addresses cannot change while the queue is ready
    d.w(R.QUEUE_SEL, 0)
    d.w(R.QUEUE_DESC_LOW, 0x1234)
    assert vq.desc == q.desc
    d.w(R.QUEUE_READY, 0)
    assert not vq.ready
    d.w(R.QUEUE_DESC_LOW, 0x1230)
    d.w(R.QUEUE_DESC_HIGH, 0x1)
    assert vq.desc == 0x1_0000_1230


def test_bad_queue_size_needs_reset():
    t, d, _ = make()
    d.negotiate()
    d.w(R.QUEUE_SEL, 0)
    d.w(R.QUEUE_NUM, 12)  # not a power of two
    d.w(R.QUEUE_READY, 1)
    assert d.r(R.QUEUE_READY) == 0
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET


def test_notify_before_driver_ok_is_ignored():
    t, d, irq = make()
    d.negotiate()
    q = d.setup_queue(0)
    q.add([b"abc"], [3])
    q.kick()
    assert q.get_used() == [] and not irq.level
    d.w(R.STATUS, d.r(R.STATUS) | STATUS_DRIVER_OK)
    q.kick()
    assert q.get_used() == [(0, 3)]


def test_interrupt_status_and_ack():
    t, d, irq = make()
    q0, _ = d.init()
    h = q0.add([b"hello"], [5])
    q0.kick()
    assert q0.get_used() == [(h, 5)]
    assert q0.read_in(h) == b"hello"
    assert d.isr() == 1 and irq.level
    d.ack(1)
    assert d.isr() == 0 and not irq.level


def test_config_space_and_generation():
    t, d, irq = make()
    d.init()
    assert d.config(0, 1) == 1
    assert d.config(0, 2) == 0x0201
    assert d.config(0, 4) == 0x04030201
    assert d.config(0, 8) == 0x0807060504030201
    assert d.config(6, 4) == 0x0807  # past the end reads as zeros
    assert d.config(0x80, 4) == 0
    d.w(R.CONFIG + 1, 0xAA, size=1)
    assert d.config(0, 2) == 0xAA01
    gen = d.r(R.CONFIG_GENERATION)
    t.config_changed()
    assert d.r(R.CONFIG_GENERATION) == gen + 1
    assert d.isr() == 2 and irq.level
    d.ack(2)
    assert not irq.level


def test_needs_reset_sends_config_interrupt():
    t, d, irq = make()
    q0, _ = d.init()
    t.fail("test")
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    assert d.isr() & 2 and irq.level
    # the device no longer processes queues
    q0.add([b"a"], [1])
    q0.kick()
    assert q0.get_used() == []
    # status writes cannot clear NEEDS_RESET; reset can
    d.w(R.STATUS, d.r(R.STATUS) & ~STATUS_DEVICE_NEEDS_RESET)
    assert d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET
    d.w(R.STATUS, 0)
    assert d.r(R.STATUS) == 0 and not irq.level
    q0, _ = d.init()
    q0.add([b"b"], [1])
    q0.kick()
    assert q0.get_used() == [(0, 1)]


def test_state_roundtrip():
    t, d, _ = make()
    q0, _ = d.init()
    h1 = q0.add([b"xy"], [2])
    q0.kick()
    s = t.state()
    t2 = VirtioMmio(Echo(), d.mem, IrqLine())
    t2.load_state(s)
    assert t2.state() == s
    d.dev = t2
    h2 = q0.add([b"zz"], [2])
    q0.kick()
    assert q0.get_used() == [(h1, 2), (h2, 2)]
    assert q0.read_in(h2) == b"zz"


def test_rng_fills_buffers():
    t, d, _ = make(VirtioRng())
    assert d.r(R.DEVICE_ID) == 4
    (q,) = d.init()
    h1 = q.add([], [64])
    h2 = q.add([], [16, 16], indirect=True)
    q.kick()
    used = dict(q.get_used())
    assert used == {h1: 64, h2: 32}
    assert q.read_in(h1) != b"\xee" * 64 and len(set(q.read_in(h1))) > 8
    assert q.read_in(h2)[:16] != q.read_in(h2)[16:]


def test_memory_base_is_respected():
    mem = new_memory()
    assert mem.base == BASE
    t = VirtioMmio(VirtioRng(), mem)
    assert t.ram.base == BASE and t.ram.size == mem.size
