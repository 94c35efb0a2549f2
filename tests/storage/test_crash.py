"""Crash safety: a writer killed with SIGKILL at random moments leaves a consistent image holding
every write it flushed (issue #6). Killed 50 times; each time qemu-img check must find no corruption."""

from __future__ import annotations

import os
import random
import struct
from functools import partial

from storage_helpers import assert_qemu_clean, kill_writer, pattern
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2

SIZE = 4 << 20
CLUSTER = 4096
OPS_PER_FLUSH = 6
KILLS = 50


def _op(run: int, i: int) -> tuple[str, int, int]:
    """The i-th operation of a run: (kind, offset, length), deterministic so the parent can replay it."""
    rnd = random.Random(run * 1_000_003 + i)
    kind = rnd.choices(["write", "discard", "zeroes"], [8, 1, 1])[0]
    length = rnd.randrange(1, 3 * CLUSTER) if kind == "write" else rnd.randrange(1, 6 * CLUSTER)
    # Half the operations land in a small hot region, so clusters are freed and reused.
    span = 64 * CLUSTER if rnd.random() < 0.5 else SIZE
    off = rnd.randrange(0, span - length)
    return kind, off, length


def _apply(model: bytearray, run: int, i: int) -> None:
    kind, off, n = _op(run, i)
    if kind == "write":
        model[off : off + n] = pattern(run * 100_000 + i, n)
    elif kind == "zeroes":
        model[off : off + n] = bytes(n)
    else:  # discard: whole clusters read as zeros, partial ones are untouched
        first, last = -(-off // CLUSTER), (off + n) // CLUSTER
        if last > first:
            model[first * CLUSTER : last * CLUSTER] = bytes((last - first) * CLUSTER)


def _touched(run: int, i: int) -> tuple[int, int]:
    _, off, n = _op(run, i)
    return off, off + n


def _child(path: str, run: int, ack_fd: int) -> None:
    img = Qcow2Image(path, read_only=False)  # repairs refcounts after the previous kill
    i = 0
    while True:
        for _ in range(OPS_PER_FLUSH):
            kind, off, n = _op(run, i)
            if kind == "write":
                img.write(off, pattern(run * 100_000 + i, n))
            elif kind == "zeroes":
                img.write_zeroes(off, n)
            else:
                img.discard(off, n)
            i += 1
        img.flush()
        os.write(ack_fd, struct.pack("<I", i))  # every operation before i is durable


def test_kill_minus_nine_during_writes(tmp_path):
    path = str(tmp_path / "crash.qcow2")
    create_qcow2(path, SIZE, cluster_size=CLUSTER)
    model = bytearray(SIZE)
    rnd = random.Random(42)
    acked_total = 0
    for run in range(KILLS):
        acked = kill_writer(partial(_child, path, run), rnd.uniform(0.0, 0.12))
        acked_total += acked
        for i in range(acked):
            _apply(model, run, i)
        # Operations after the last acknowledged flush may or may not have reached the disk.
        uncertain = [_touched(run, i) for i in range(acked, acked + OPS_PER_FLUSH)]
        assert_qemu_clean(path, allow_leaks=True)
        with Qcow2Image(path) as img:
            actual = bytearray(img.read(0, SIZE))
        for lo, hi in uncertain:
            lo, hi = lo - lo % CLUSTER, -(-hi // CLUSTER) * CLUSTER  # discard works on whole clusters
            model[lo:hi] = actual[lo:hi]
        assert actual == model, f"run {run}: a flushed write did not survive the kill"
    assert acked_total > KILLS, "the writer hardly ever got to flush; the test did not exercise anything"
    # A final clean open repairs leaks; then QEMU must find the image fully clean.
    with Qcow2Image(path, read_only=False) as img:
        assert img.read(0, SIZE) == model
    assert_qemu_clean(path)
