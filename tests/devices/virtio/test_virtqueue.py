"""Split virtqueues: chains, indirect tables, interrupt suppression, and malformed rings."""

from __future__ import annotations

import pytest

from virtio_driver import F_INDIRECT, F_NEXT, F_WRITE, Echo, FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio import mmio as R
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.spec import STATUS_DEVICE_NEEDS_RESET
from wirt.devices.virtio.virtqueue import gather, scatter, take


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(VirtioMmio, "strict", True)


def setup(**kw):
    mem = new_memory()
    irq = IrqLine()
    t = VirtioMmio(Echo(), mem, irq)
    d = FakeDriver(t, mem)
    q0, _ = d.init(**kw)
    return t, d, q0, irq


def needs_reset(d: FakeDriver) -> bool:
    return bool(d.r(R.STATUS) & STATUS_DEVICE_NEEDS_RESET)


def test_buffer_helpers():
    a, b = memoryview(bytearray(b"abc")), memoryview(bytearray(b"defg"))
    head, rest = take([a, b], 4)
    assert gather(head) == b"abcd" and gather(rest) == b"efg"
    assert take([a], 10)[0][0].tobytes() == b"abc"
    assert gather([a, b], 5) == b"abcde"
    assert scatter([a, b], b"123456789") == 7
    assert a.tobytes() + b.tobytes() == b"1234567"


def test_multi_descriptor_chain_spanning_buffers():
    t, d, q, _ = setup()
    h = q.add([b"he", b"llo ", b"world"], [3, 4, 10])
    q.kick()
    assert q.get_used() == [(h, 11)]
    assert q.read_in(h)[:11] == b"hello world"
    assert q.read_in(h)[11:] == b"\xee" * 6


def test_indirect_descriptors():
    t, d, q, _ = setup()
    h = q.add([b"abc", b"def"], [6], indirect=True)
    q.kick()
    assert q.get_used() == [(h, 6)]
    assert q.read_in(h) == b"abcdef"
    assert not needs_reset(d)


def test_indirect_without_feature_needs_reset():
    t, d, q, _ = setup(indirect=False)
    q.add([b"abc"], [3], indirect=True)
    q.kick()
    assert needs_reset(d)


def test_many_chains_and_ring_wrap():
    t, d, q, _ = setup()
    for round_ in range(5):  # 5 * 8 chains of 2 descriptors through a 16-entry ring
        heads = [q.add([bytes([round_, i])], [2]) for i in range(8)]
        q.kick()
        assert q.get_used() == [(h, 2) for h in heads]
        for i, h in enumerate(heads):
            assert q.read_in(h) == bytes([round_, i])


def test_no_interrupt_flag_without_event_idx():
    t, d, q, irq = setup(event_idx=False)
    q.set_avail_flags(1)  # VIRTQ_AVAIL_F_NO_INTERRUPT
    q.add([b"a"], [1])
    q.kick()
    assert q.get_used() and d.isr() == 0 and not irq.level
    q.set_avail_flags(0)
    q.add([b"b"], [1])
    q.kick()
    assert d.isr() == 1 and irq.level


def test_event_idx_suppression():
    t, d, q, irq = setup(event_idx=True)
    # the device publishes avail_event = the next index it wants a kick for
    q.add([b"a"], [1])
    q.kick()
    assert q.avail_event() == 1
    assert d.isr() == 1  # first interrupt is always sent
    d.ack()
    # used_event = 5: no interrupt until the used index passes 5
    q.set_used_event(5)
    for i in range(3):
        q.add([b"x"], [1])
        q.kick()
        assert d.isr() == 0, i
    assert q.used_idx() == 4
    q.add([b"y"], [1])
    q.kick()
    assert q.used_idx() == 5 and d.isr() == 0  # used_event 5 means "after entry 5 is used"
    q.add([b"z"], [1])
    q.kick()
    assert q.used_idx() == 6 and d.isr() == 1
    d.ack()
    # the driver asks again for the next one
    q.set_used_event(6)
    q.add([b"w"], [1])
    q.kick()
    assert d.isr() == 1


def test_event_idx_batch_crossing_event():
    t, d, q, irq = setup(event_idx=True)
    q.add([b"a"], [1])
    q.kick()
    d.ack()
    q.set_used_event(2)
    for _ in range(4):
        q.add([b"b"], [1], publish=False)
    q.publish()
    q.kick()  # used idx goes 1 -> 5 in one batch, crossing 2
    assert q.used_idx() == 5 and d.isr() == 1


def test_chain_loop_needs_reset():
    t, d, q, irq = setup()
    buf = d.alloc.alloc(16)
    q.write_desc(q.desc, 0, buf, 4, F_NEXT, 1)
    q.write_desc(q.desc, 1, buf, 4, F_NEXT, 0)  # 0 -> 1 -> 0 ...
    q.put_avail(0)
    q.kick()
    assert needs_reset(d) and d.isr() & 2 and irq.level
    assert q.get_used() == []


def test_chain_longer_than_queue_via_indirect_loop():
    t, d, q, _ = setup()
    buf = d.alloc.alloc(16)
    table = d.alloc.alloc(16 * 4)
    for i in range(4):
        q.write_desc(table, i, buf, 4, F_NEXT, (i + 1) % 4)
    q.write_desc(q.desc, 0, table, 64, F_INDIRECT, 0)
    q.put_avail(0)
    q.kick()
    assert needs_reset(d)


def test_nested_indirect_needs_reset():
    t, d, q, _ = setup()
    inner = d.alloc.alloc(16)
    outer = d.alloc.alloc(16)
    q.write_desc(inner, 0, d.alloc.alloc(8), 8, 0, 0)
    q.write_desc(outer, 0, inner, 16, F_INDIRECT, 0)
    q.write_desc(q.desc, 0, outer, 16, F_INDIRECT, 0)
    q.put_avail(0)
    q.kick()
    assert needs_reset(d)


@pytest.mark.parametrize("length", [0, 15, 17, 24])
def test_bad_indirect_length_needs_reset(length):
    t, d, q, _ = setup()
    table = d.alloc.alloc(64)
    q.write_desc(table, 0, d.alloc.alloc(8), 8, 0, 0)
    q.write_desc(q.desc, 0, table, length, F_INDIRECT, 0)
    q.put_avail(0)
    q.kick()
    assert needs_reset(d)


def test_indirect_with_next_needs_reset():
    t, d, q, _ = setup()
    table = d.alloc.alloc(16)
    q.write_desc(table, 0, d.alloc.alloc(8), 8, 0, 0)
    q.write_desc(q.desc, 0, table, 16, F_INDIRECT | F_NEXT, 1)
    q.put_avail(0)
    q.kick()
    assert needs_reset(d)


@pytest.mark.parametrize("addr,length", [
    (0x1000, 8),  # below RAM
    (0x8000_0000 + (1 << 20) - 4, 8),  # straddles the end of RAM
    (0xFFFF_FFFF_FFFF_FFF0, 0x20),  # wraps around 2^64
    (0x8000_0000, 0xFFFF_FFFF),  # longer than RAM
])
def test_out_of_range_buffer_needs_reset(addr, length):
    t, d, q, _ = setup()
    q.write_desc(q.desc, 0, addr, length, F_WRITE, 0)
    q.put_avail(0)
    q.kick()
    assert needs_reset(d)
    assert q.get_used() == []


def test_out_of_range_rings_need_reset():
    mem = new_memory()
    t = VirtioMmio(Echo(), mem, IrqLine())
    d = FakeDriver(t, mem)
    d.negotiate()
    d.w(R.QUEUE_SEL, 0)
    d.w(R.QUEUE_NUM, 16)
    d.w(R.QUEUE_DESC_LOW, 0x10)  # descriptor table outside RAM
    d.w(R.QUEUE_DRIVER_LOW, 0x8000_1000)
    d.w(R.QUEUE_DEVICE_LOW, 0x8000_2000)
    d.w(R.QUEUE_READY, 1)
    d.w(R.STATUS, d.r(R.STATUS) | 4)
    mem.write(0x8000_1002, b"\x01\x00")  # avail idx = 1, head 0
    d.w(R.QUEUE_NOTIFY, 0)
    assert needs_reset(d)


def test_used_ring_outside_ram_needs_reset():
    mem = new_memory()
    t = VirtioMmio(Echo(), mem, IrqLine())
    d = FakeDriver(t, mem)
    d.negotiate()
    q = d.setup_queue(0)
    d.w(R.STATUS, d.r(R.STATUS) | 4)
    t.queues[0].device = 0x7FFF_FFF0  # as if the driver had programmed it
    q.add([b"a"], [1])
    q.kick()
    assert needs_reset(d)


def test_rings_moved_after_use_are_checked_again():
    """The rings' checked offsets are kept between notifications (Virtqueue._layout), but a
    queue whose rings move (here the used ring, outside RAM) is checked again (§2.7)."""
    t, d, q, _ = setup()
    h = q.add([b"a"], [1])
    q.kick()
    assert q.get_used() == [(h, 1)]
    t.queues[0].device = 0x7FFF_FFF0  # as if the driver had programmed it
    q.add([b"b"], [1])
    q.kick()
    assert needs_reset(d)


def test_head_index_out_of_range_needs_reset():
    t, d, q, _ = setup()
    q.put_avail(200)
    q.kick()
    assert needs_reset(d)


def test_avail_index_jump_needs_reset():
    t, d, q, _ = setup()
    q.avail_idx = 100
    q.publish()
    q.kick()
    assert needs_reset(d)


def test_readable_after_writable_needs_reset():
    t, d, q, _ = setup()
    b = d.alloc.alloc(8)
    q.write_desc(q.desc, 0, b, 4, F_WRITE | F_NEXT, 1)
    q.write_desc(q.desc, 1, b, 4, 0, 0)
    q.put_avail(0)
    q.kick()
    assert needs_reset(d)


def test_queue_recovers_after_reset():
    t, d, q, _ = setup()
    q.put_avail(300)
    q.kick()
    assert needs_reset(d)
    q, _ = d.init()
    h = q.add([b"ok"], [2])
    q.kick()
    assert q.get_used() == [(h, 2)] and not needs_reset(d)
