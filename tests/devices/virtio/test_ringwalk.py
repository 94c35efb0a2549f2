"""The compiled ring walk under batches: many chains per call, and a guest's bad descriptors
rejected wherever they sit in the batch (out of RAM, wrapping, looping, over the rings)."""

from __future__ import annotations

import pytest

from virtio_driver import F_INDIRECT, F_NEXT, F_WRITE, BASE, FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.virtqueue import Virtqueue, VirtqueueError, _Workspace, gather

RAM = 1 << 20


class Batch(VirtioDevice):
    """Test device: pops every chain with one pop_all, echoes them, pushes them with one push_many."""

    device_id = 43
    queue_sizes = (64,)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list] = []

    def queue_notify(self, q: Virtqueue) -> None:
        chains = q.pop_all()
        self.batches.append([(c.head, [v.nbytes for v in c.readable], [v.nbytes for v in c.writable])
                             for c in chains])
        written = []
        for c in chains:
            data = gather(c.readable)
            n = 0
            for v in c.writable:
                k = min(v.nbytes, len(data) - n)
                v[:k] = data[n: n + k]
                n += k
            written.append(n)
        q.push_many([c.head for c in chains], written)
        self.transport.notify_used(q)


def setup(num: int = 64):
    mem = new_memory(RAM)
    dev = Batch()
    t = VirtioMmio(dev, mem, IrqLine())
    t.strict = True
    d = FakeDriver(t, mem)
    d.negotiate()
    q = d.setup_queue(0, num)
    d.w(0x070, d.r(0x070) | 4)  # DRIVER_OK
    return mem, dev, t, d, q


def needs_reset(t: VirtioMmio) -> bool:
    return t.failure is not None


def test_batch_of_chains_in_one_call():
    mem, dev, t, d, q = setup()
    heads = [q.add([bytes([i]) * (i + 1)], [i + 1], publish=False) for i in range(10)]
    heads.append(q.add([b"in", b"direct"], [8], indirect=True, publish=False))
    q.publish()
    q.kick()
    assert len(dev.batches) == 1 and [h for h, _, _ in dev.batches[0]] == heads
    used = q.get_used()
    assert used == [(h, i + 1) for i, h in enumerate(heads[:10])] + [(heads[10], 8)]
    assert q.read_in(heads[3]) == b"\x03" * 4 and q.read_in(heads[10]) == b"indirect"
    assert not needs_reset(t)


def test_adjacent_descriptors_become_one_buffer():
    """Three readable descriptors back to back in RAM reach the device as one buffer; the
    writable one after them stays separate (it is another direction)."""
    mem, dev, t, d, q = setup()
    buf = d.alloc.alloc(64)
    mem.write(buf, b"abcdefghij" + b"\0" * 54)
    q.write_desc(q.desc, 0, buf, 3, F_NEXT, 1)
    q.write_desc(q.desc, 1, buf + 3, 3, F_NEXT, 2)
    q.write_desc(q.desc, 2, buf + 6, 4, F_NEXT, 3)
    q.write_desc(q.desc, 3, buf + 10, 10, F_WRITE, 0)
    q.put_avail(0)
    q.kick()
    assert dev.batches == [[(0, [10], [10])]]
    assert mem.read(buf + 10, 10) == b"abcdefghij"


@pytest.mark.parametrize("addr,length", [
    (BASE - 1, 2),  # starts below RAM
    (BASE + RAM - 4, 5),  # one byte past the end
    (0xFFFF_FFFF_FFFF_FFF0, 0x20),  # wraps around 2^64
    (0xFFFF_FFFF_FFFF_FFFF, 1),
    (BASE + 8, 0xFFFF_FFFF),  # longer than RAM
])
def test_bad_descriptor_late_in_a_batch_fails_the_whole_batch(addr, length):
    mem, dev, t, d, q = setup()
    for i in range(5):
        q.add([b"ok"], [2], publish=False)
    q.write_desc(q.desc, q.next_desc, addr, length, F_WRITE, 0)
    q.put_avail(q.next_desc, publish=False)
    q.publish()
    q.kick()
    assert needs_reset(t) and t.failure.endswith(f"guest address {addr:#x}+{length:#x} is outside RAM")
    assert q.get_used() == [] and dev.batches == []


def test_last_bytes_of_ram_are_usable():
    mem, dev, t, d, q = setup()
    src = d.alloc.alloc(4)
    mem.write(src, b"tail")
    q.write_desc(q.desc, 0, src, 4, F_NEXT, 1)
    q.write_desc(q.desc, 1, BASE + RAM - 4, 4, F_WRITE, 0)
    q.put_avail(0)
    q.kick()
    assert not needs_reset(t) and mem.read(BASE + RAM - 4, 4) == b"tail"


@pytest.mark.parametrize("where", ["indirect", "direct"])
def test_looping_chain_in_a_batch_is_rejected(where):
    mem, dev, t, d, q = setup()
    q.add([b"first"], [5])
    buf = d.alloc.alloc(16)
    if where == "indirect":
        table = d.alloc.alloc(16 * 3)
        for i in range(3):
            q.write_desc(table, i, buf, 4, F_NEXT, (i + 1) % 3)
        q.write_desc(q.desc, 10, table, 48, F_INDIRECT, 0)
    else:
        q.write_desc(q.desc, 10, buf, 4, F_NEXT, 11)
        q.write_desc(q.desc, 11, buf, 4, F_NEXT, 10)
    q.put_avail(10)
    q.kick()
    assert needs_reset(t) and "loops" in t.failure


@pytest.mark.parametrize("ring", ["desc", "avail", "used"])
def test_writable_buffer_over_a_ring_is_rejected_in_a_batch(ring):
    mem, dev, t, d, q = setup()
    q.add([b"x"], [1], publish=False)
    target = getattr(q, ring) + 2
    q.write_desc(q.desc, 20, target, 64, F_WRITE, 0)
    q.put_avail(20, publish=False)
    q.publish()
    before = mem.read(q.used, 6 + 8 * q.num)
    q.kick()
    assert needs_reset(t) and "overlaps the queue's rings" in t.failure
    assert mem.read(q.used + 2, 2) == before[2:4]  # nothing was returned


def test_next_index_past_the_table_is_rejected():
    mem, dev, t, d, q = setup()
    q.write_desc(q.desc, 0, d.alloc.alloc(8), 8, F_NEXT, q.num)
    q.put_avail(0)
    q.kick()
    assert needs_reset(t) and "next index" in t.failure


def test_head_twice_in_one_batch_is_rejected():
    mem, dev, t, d, q = setup()
    h = q.add([b"a"], [1], publish=False)
    q.put_avail(h, publish=False)
    q.publish()
    q.kick()
    assert needs_reset(t) and "twice" in t.failure


def test_chain_longer_than_the_workspace_grows_it():
    """An indirect table of more separate buffers than the walk's arrays start with."""
    mem, dev, t, d, q = setup()
    n = _Workspace.SEGS + 100
    table = d.alloc.alloc(16 * n)
    bufs = d.alloc.alloc(2 * n)
    for i in range(n):  # every other byte: no two descriptors are adjacent
        q.write_desc(table, i, bufs + 2 * i, 1, F_NEXT if i + 1 < n else 0, i + 1)
    q.write_desc(q.desc, 0, table, 16 * n, F_INDIRECT, 0)
    q.put_avail(0)
    vq = t.queues[0]
    chains = vq.pop_all()
    assert len(chains) == 1 and len(chains[0].readable) == n
    assert [v.tobytes() for v in chains[0].readable[:2]] == [mem.read(bufs, 1), mem.read(bufs + 2, 1)]


def test_dma_marks_translated_pages():
    """Pages the device may write (buffers, the used ring) drop the CPU's translations:
    their code_pages word moves from odd (translated) to the next even value."""
    mem, dev, t, d, q = setup()
    src = d.alloc.alloc(8)
    dst = d.alloc.alloc(4096, 4096)
    mem.write(src, b"payload!")
    page = (dst - BASE) >> 12
    used_page = (q.used - BASE) >> 12
    mem.code_pages[page] = 5
    mem.code_pages[used_page] = 7
    mem.code_pages[page + 1] = 9  # not written: stays
    q.write_desc(q.desc, 0, src, 8, F_NEXT, 1)
    q.write_desc(q.desc, 1, dst, 8, F_WRITE, 0)
    q.put_avail(0)
    q.kick()
    assert mem.code_pages[page] == 6 and mem.code_pages[used_page] == 8 and mem.code_pages[page + 1] == 9


def test_pop_all_limit_and_unpop():
    mem, dev, t, d, q = setup()
    heads = [q.add([b"z"], [1]) for _ in range(6)]
    vq = t.queues[0]
    got = vq.pop_all(4)
    assert [c.head for c in got] == heads[:4]
    vq.unpop(2)
    assert [c.head for c in vq.pop_all()] == heads[2:]


def test_rings_outside_ram_are_rejected_before_the_walk():
    mem, dev, t, d, q = setup()
    vq = t.queues[0]
    vq.desc = BASE + RAM - 16  # a 64-entry table cannot fit there
    with pytest.raises(VirtqueueError, match="outside RAM"):
        vq.pop_all()


def test_the_walk_is_loaded_when_a_queue_is_made_not_at_its_first_notification():
    """Loading numba code uses LLVM; at a first notification that ran on the vCPU thread while
    the translation tier's compile thread used LLVM too (one abort in CI). A fresh process: no
    walk before the queue, the walk's machine code after it, before any notification."""
    import subprocess
    import sys
    code = """
from wirt.devices.virtio import ringwalk as rw
from wirt.devices.virtio.virtqueue import GuestRam, Virtqueue
import numpy as np
class Mem:
    base, size = 0x80000000, 1 << 16
    array = np.zeros(1 << 16, dtype=np.uint8)
before = len(rw.pop_chains.overloads)
Virtqueue(GuestRam(Mem()), 0, 16)
print(before, len(rw.pop_chains.overloads) > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["0", "True"], out.stderr[-2000:]
