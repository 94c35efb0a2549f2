"""A VM process killed with SIGKILL while virtio-blk serves writes at queue depth 8 leaves a
qcow2 image that qemu-img check finds clean (leaks allowed), holding every write whose flush
request the device had completed (issue 18)."""

from __future__ import annotations

import os
import random
import struct
import sys
from functools import partial
from pathlib import Path

from virtio_driver import FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio.blk import S_OK, T_FLUSH, T_OUT, VirtioBlk
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2

sys.path.insert(0, str(Path(__file__).parents[2] / "storage"))
from storage_helpers import assert_qemu_clean, kill_writer, pattern  # noqa: E402

SIZE = 8 << 20
CLUSTER = 65536
DEPTH = 8
KILLS = 12


def _batch(run: int, b: int) -> list[tuple[int, bytes]]:
    """The DEPTH writes of batch b: (sector, data), 4-32 KiB each, half in a small hot region."""
    rnd = random.Random(run * 7919 + b)
    out = []
    for k in range(DEPTH):
        n = rnd.randrange(1, 9) * 4096
        span = 16 * CLUSTER if rnd.random() < 0.5 else SIZE
        off = rnd.randrange(0, (span - n) // 512) * 512
        out.append((off // 512, pattern(run * 1_000_000 + b * DEPTH + k, n)))
    return out


def _child(path: str, run: int, ack_fd: int) -> None:
    disk = Qcow2Image(path, read_only=False)  # repairs refcounts after the previous kill
    mem = new_memory(4 << 20)
    t = VirtioMmio(VirtioBlk(disk), mem, IrqLine())
    d = FakeDriver(t, mem)
    (q,) = d.init()
    mark = d.alloc.next
    b = 0
    while True:
        d.alloc.next = mark  # the previous batch's buffers are free again
        for sector, data in _batch(run, b):
            half = len(data) // 2
            q.add([struct.pack("<IIQ", T_OUT, 0, sector), data[:half], data[half:]], [1],
                  indirect=True, publish=False)
        flush = q.add([struct.pack("<IIQ", T_FLUSH, 0, 0)], [1], indirect=True, publish=False)
        q.publish()
        q.kick()  # DEPTH writes and a flush in flight together
        used = dict(q.get_used())
        assert flush in used and q.read_in(flush)[-1] == S_OK
        os.write(ack_fd, struct.pack("<I", b + 1))  # batches 0..b are durable
        b += 1


def test_kill_minus_nine_during_queue_depth_8_writes(tmp_path):
    path = str(tmp_path / "vm.qcow2")
    create_qcow2(path, SIZE, cluster_size=CLUSTER)
    model = bytearray(SIZE)
    rnd = random.Random(18)
    acked_total = 0
    for run in range(KILLS):
        # the kill comes after the first batch is durable, while writes flow
        acked = kill_writer(partial(_child, path, run), rnd.uniform(0.0, 0.3), wait_first_ack=True)
        acked_total += acked
        for b in range(acked):
            for sector, data in _batch(run, b):
                model[sector * 512: sector * 512 + len(data)] = data
        assert_qemu_clean(path, allow_leaks=True)
        with Qcow2Image(path) as img:
            actual = bytearray(img.read(0, SIZE))
        # The batch in flight at the kill may or may not have reached the disk, in any part.
        for sector, data in _batch(run, acked):
            lo = sector * 512
            model[lo: lo + len(data)] = actual[lo: lo + len(data)]
        assert actual == model, f"run {run}: a write covered by a completed flush did not survive the kill"
    assert acked_total >= KILLS
    with Qcow2Image(path, read_only=False) as img:  # a clean open repairs the leaks
        assert img.read(0, SIZE) == model
    assert_qemu_clean(path)
