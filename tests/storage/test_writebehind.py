"""Write-behind (storage/writebehind.py): which writes start the host's write-back early, and
that it neither changes what a file holds nor outlives the file."""

from __future__ import annotations

import os
import random
import threading

import pytest

from wirt.storage.hostfile import HostFile
from wirt.storage.writebehind import CHUNK, LARGE, WriteBehind

MIB = 1 << 20


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(b"")
    f = HostFile(str(path), read_only=False)
    yield f
    f.close()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def test_sequential_stream_is_handed_to_writeback(image):
    data = os.urandom(MIB)
    for i in range(10):
        image.pwrite(i * MIB, data)
    # 10 MiB back to back: two whole chunks handed over, the last 2 MiB still gathering
    assert image.writeback.submitted == 2 * CHUNK
    assert "wirt-writeback" in _threads()


def test_random_writes_are_left_to_the_flush(image):
    rng = random.Random(1)
    block = os.urandom(4096)
    for _ in range(4096):                     # 16 MiB of random 4 KiB writes
        image.pwrite(rng.randrange(0, 256) * 4096 * 17, block)
    assert image.writeback.submitted == 0


def test_small_writes_elsewhere_do_not_break_a_run(image):
    data = os.urandom(LARGE)
    pos = 64 * MIB
    for i in range(CHUNK // LARGE):
        image.pwrite(pos, data)
        pos += LARGE
        image.pwrite(512 * i, b"metadata")   # e.g. a qcow2 L2 entry between data clusters
    assert image.writeback.submitted == CHUNK


def test_one_large_write_alone_is_handed_over(image):
    image.pwrite(0, bytes(CHUNK))
    assert image.writeback.submitted == CHUNK


def test_contents_and_close(tmp_path):
    """Write-back running beside the writes leaves the file exactly as written; close waits for
    the thread, so the descriptor is never used after it is closed."""
    path = tmp_path / "disk.raw"
    path.write_bytes(b"")
    f = HostFile(str(path), read_only=False)
    expect = bytearray()
    for i in range(24):
        chunk = os.urandom(MIB)
        f.pwritev(i * MIB, [memoryview(chunk)[:4096], memoryview(chunk)[4096:]])
        expect += chunk
    f.sync()
    thread = f.writeback._thread
    assert thread is not None and thread.is_alive()
    f.close()
    assert not thread.is_alive()
    assert path.read_bytes() == bytes(expect)


def test_without_the_system_call_nothing_is_handed_over(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        wb = WriteBehind(fd)
        wb.enabled = False                        # a host C library without sync_file_range
        for i in range(8):
            wb.wrote(i * MIB, MIB)
        assert wb.submitted == 0 and wb._thread is None
        wb.close()
    finally:
        os.close(fd)
