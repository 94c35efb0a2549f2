"""Machine snapshots (machine/snapshot.py): save and restore a whole machine, sparse memory images,
and refusal of corrupted, truncated, foreign or mismatched snapshots without changing anything.

A tiny bare-metal program counts, stores the count in RAM and prints its low byte on the UART,
so its output and final state show whether a restored machine continues exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from wirt.devices.virtio import VirtioMmio, VirtioRng
from wirt.errors import WirtError
from wirt.machine import rvenc as rv
from wirt.machine.devicetree import RAM_BASE, TEST_BASE, UART_BASE, VIRTIO_IRQ_BASE
from wirt.machine.board import Machine
from wirt.machine.snapshot import MEMORY_FILE, STATE_FILE, restore_machine, save_machine

MIB = 1 << 20
ITERATIONS = 6000
COUNTER = RAM_BASE + 0x10_0000


def counter_program() -> bytes:
    """t1 counts to ITERATIONS; each step stores it at COUNTER and sends its low byte to the UART."""
    return rv.assemble([
        rv.auipc("s0", (COUNTER - RAM_BASE) >> 12),  # the first instruction is at RAM_BASE
        *rv.li32("s1", UART_BASE), *rv.li32("s2", ITERATIONS),
        rv.addi("t1", "zero", 0),
        rv.addi("t1", "t1", 1), rv.sd("t1", "s0", 0), rv.sb("t1", "s1", 0), rv.bne("t1", "s2", -12),
        *rv.li32("t1", 0x5555), *rv.li32("t0", TEST_BASE), rv.sw("t1", "t0", 0),  # finisher: power off
        rv.jal("zero", 0),
    ])


def machine(out: bytearray, memory: int = 64 * MIB, deterministic: bool = True) -> Machine:
    return Machine(counter_program(), memory_size=memory, deterministic=deterministic, on_output=out.extend)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, bytes, list[int]]:
    """A snapshot taken mid-run, plus the output after it and the final registers of the full run."""
    out = bytearray()
    m = machine(out)
    assert m.run(max_insns=9000).reason == "limit"
    save_machine(m, tmp_path / "snap")
    mark = len(out)
    assert m.run().reason == "poweroff"
    return tmp_path / "snap", bytes(out[mark:]), m.hart.s[:32].tolist()


@pytest.mark.parametrize("deterministic", [True, False])
def test_restored_machine_continues_exactly(saved, deterministic):
    folder, tail, regs = saved
    out = bytearray()
    m = machine(out, deterministic=deterministic)
    restore_machine(m, folder)
    assert m.memory.read_u64(COUNTER) > 0  # RAM came from the image
    assert m.run().reason == "poweroff"
    assert bytes(out) == tail and len(tail) > 1000
    assert m.hart.s[:32].tolist() == regs
    assert m.memory.read_u64(COUNTER) == ITERATIONS


def test_memory_image_is_sparse(saved):
    folder, _, _ = saved
    body = json.loads((folder / STATE_FILE).read_text())["body"]
    img = folder / MEMORY_FILE
    assert img.stat().st_size == 64 * MIB
    # program, counter page and device tree: a few pages stored, the rest are holes
    assert body["memory"]["stored_bytes"] <= 64 * 1024
    assert img.stat().st_blocks * 512 <= 1 * MIB


def test_restore_maps_copy_on_write_and_reset_forgets_the_image(saved):
    folder, _, _ = saved
    before = (folder / MEMORY_FILE).read_bytes()
    m = machine(bytearray())
    restore_machine(m, folder)
    m.memory.write(COUNTER, b"\xff" * 8)  # the guest's writes stay private
    assert (folder / MEMORY_FILE).read_bytes() == before
    m.reset()
    assert m.memory.read_u64(COUNTER) == 0  # power-on RAM is zero again, not the image


def _unchanged(m: Machine) -> tuple[bytes, list[int]]:
    return m.memory.read(COUNTER, 8), m.hart.s.tolist()


def test_corrupted_state_file_is_refused(saved):
    folder, _, _ = saved
    path = folder / STATE_FILE
    os.chmod(path, 0o600)
    doc = json.loads(path.read_text())
    doc["body"]["machine"]["hart"]["s"][1] += 1
    path.write_text(json.dumps(doc))
    m = machine(bytearray())
    before = _unchanged(m)
    with pytest.raises(WirtError, match="checksum mismatch"):
        restore_machine(m, folder)
    assert _unchanged(m) == before


def test_garbage_and_foreign_files_are_refused(saved):
    folder, _, _ = saved
    path = folder / STATE_FILE
    os.chmod(path, 0o600)
    path.write_text('{"format": "qemu-savevm", "version": 1}')
    with pytest.raises(WirtError, match="not a wirt snapshot"):
        restore_machine(machine(bytearray()), folder)
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(WirtError, match="not valid JSON"):
        restore_machine(machine(bytearray()), folder)
    path.unlink()
    with pytest.raises(WirtError, match="missing"):
        restore_machine(machine(bytearray()), folder)


def test_truncated_or_altered_memory_image_is_refused(saved):
    folder, _, _ = saved
    img = folder / MEMORY_FILE
    os.chmod(img, 0o600)
    data = bytearray(img.read_bytes())
    m = machine(bytearray())
    before = _unchanged(m)
    img.write_bytes(bytes(data[: 32 * MIB]))
    with pytest.raises(WirtError, match="truncated"):
        restore_machine(m, folder)
    data[0] ^= 0xFF  # the program's first byte
    img.write_bytes(bytes(data))
    with pytest.raises(WirtError, match="memory image checksum mismatch"):
        restore_machine(m, folder)
    assert _unchanged(m) == before


def test_machine_of_another_shape_is_refused(saved):
    folder, _, _ = saved
    with pytest.raises(WirtError, match=r"memory: snapshot 64 MiB, VM 128 MiB"):
        restore_machine(machine(bytearray(), memory=128 * MIB), folder)
    m = machine(bytearray())
    m.virtio[0].device = VirtioMmio(VirtioRng(), m.memory, m.plic.line(VIRTIO_IRQ_BASE))
    with pytest.raises(WirtError, match="virtio slot 0: snapshot empty, VM device=rng"):
        restore_machine(m, folder)


def test_state_is_plain_json_data(saved):
    folder, _, _ = saved
    doc = json.loads((folder / STATE_FILE).read_text())
    assert doc["format"] == "wirt-snapshot" and doc["version"] == 1
    assert doc["checksum"].startswith("sha256:")
    hart = doc["body"]["machine"]["hart"]
    assert all(isinstance(v, int) for v in hart["s"]) and np.asarray(hart["c"]).dtype == np.int64


def test_scan_of_touched_pages_finds_what_a_full_scan_finds():
    from wirt.machine.memory import GuestMemory
    from wirt.machine.snapshot import _nonzero_runs

    mem = GuestMemory(16 * MIB)
    mem.array[5 * 4096 + 7] = 1
    mem.array[100 * 4096: 103 * 4096] = 9
    mem.array[200 * 4096] = 0  # read-only touch of a page: present, but zero
    touched = mem.touched_pages()
    assert touched is not None and touched[5] and touched[101] and not touched[3000]
    assert _nonzero_runs(mem.array, touched) == _nonzero_runs(mem.array) == [[5, 1], [100, 3]]
    mem.zero()
    assert not mem.touched_pages()[101] and _nonzero_runs(mem.array, mem.touched_pages()) == []
