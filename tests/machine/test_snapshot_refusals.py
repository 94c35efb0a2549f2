"""A resealed snapshot whose machine state is wrong (shapes, types, ranges, device state) is
refused with one line, and the machine it was meant for is untouched and runs on correctly
(wirt.machine.statecheck; docs/snapshots.md "What is refused, and nothing changes")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_snapshot import COUNTER, ITERATIONS, machine

from wirt.cpu import layout as L
from wirt.errors import WirtError
from wirt.machine.attach import attach_rng
from wirt.machine.snapshot import STATE_FILE, restore_machine, save_machine, write_state_file


def _hart(i, v):
    return lambda st: st["hart"]["s"].__setitem__(i, v)


CASES = {
    "s too short": lambda st: st["hart"]["s"].pop(),
    "s of one word": lambda st: st["hart"].__setitem__("s", [7]),
    "s word a string": _hart(5, "x"),
    "s word a float": _hart(5, 1.5),
    "s word a boolean": _hart(5, True),
    "s word of 70 bits": _hart(5, 1 << 70),
    "RAM size": _hart(L.RAM_SIZE, 1 << 40),
    "RAM base": _hart(L.RAM_BASE, 0),
    "ROM size": _hart(L.ROM_SIZE, 1 << 30),
    "privilege 2": _hart(L.PRIV, 2),
    "c too long": lambda st: st["hart"]["c"].append(0),
    "machine not a table": lambda st: st.clear() or st.__setitem__("hart", []),
    "uart fifo not base64": lambda st: st["uart"].__setitem__("rx", "!!!"),
    "uart register a list": lambda st: st["uart"].__setitem__("ier", [1]),
    "rtc entry missing": lambda st: st["rtc"].pop("alarm"),
    "unknown entry": lambda st: st["plic"].__setitem__("extra", 1),
    "plic priorities short": lambda st: st["plic"]["priority"].pop(),
    "plic pending not hex": lambda st: st["plic"].__setitem__("pending", "zz"),
    "virtqueue index": lambda st: st["virtio"][0]["queues"][0].__setitem__("last_avail", 1 << 20),
    "virtqueue size": lambda st: st["virtio"][0]["queues"][0].__setitem__("num", -5),
    "virtio status a string": lambda st: st["virtio"][0].__setitem__("status", "ok"),
    "virtio device garbage": lambda st: st["virtio"][0].__setitem__("device", {"junk": [1, 2]}),
}


def _state(m) -> str:
    st = m.state()
    st.pop("clock")  # host_ticks: the host's clock, not the machine's state
    return json.dumps(st, sort_keys=True)


def _machine(out: bytearray):
    m = machine(out)
    attach_rng(m)
    return m


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    m = _machine(bytearray())
    assert m.run(max_insns=9000).reason == "limit"
    save_machine(m, tmp_path / "snap")
    return tmp_path / "snap"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_state_is_refused_and_the_machine_runs_on(snap, case):
    path = snap / STATE_FILE
    body = json.loads(path.read_text())["body"]
    CASES[case](body["machine"])
    os.chmod(path, 0o600)
    path.unlink()
    write_state_file(snap, body)  # resealed: the checksum is right, the content is not

    out = bytearray()
    m = _machine(out)
    assert m.run(max_insns=4000).reason == "limit"
    before = (_state(m), m.memory.read(COUNTER, 8))
    with pytest.raises(WirtError) as err:
        restore_machine(m, snap)
    text = str(err.value)
    assert "\n" not in text and "snapshot state" in text and "Error" not in text
    assert (_state(m), m.memory.read(COUNTER, 8)) == before
    assert m.run().reason == "poweroff"  # and the guest finishes its work correctly
    assert m.memory.read_u64(COUNTER) == ITERATIONS
    assert bytes(out) == bytes((i + 1) & 0xFF for i in range(ITERATIONS))


def test_the_unchanged_snapshot_still_restores(snap):
    m = _machine(bytearray())
    restore_machine(m, snap)
    assert m.run().reason == "poweroff" and m.memory.read_u64(COUNTER) == ITERATIONS
