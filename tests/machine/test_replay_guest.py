"""Replay: a deterministic Debian guest snapshotted midway finishes byte-identically after a restore,
with one vCPU and with two (every hart saved; the harts interleaved in fixed quanta). The snapshot
is taken with a warm translation cache (the tier is on by default) and the restored machine
starts cold: translations are never part of the state.

Slow: boots the real kernel (about 1.3e9 guest instructions) in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wirt.images.guest import default_guest
from wirt.images.scripts import run_param
from wirt.machine.board import Machine
from wirt.machine.snapshot import restore_machine, save_machine

pytestmark = pytest.mark.slow

WORKLOAD = "i=0; while [ $i -lt 40 ]; do echo tick $i $(cat /proc/uptime) $RANDOM; i=$((i+1)); done"


def guest(out: bytearray, cpus: int = 1) -> Machine:
    g = default_guest()
    return Machine(g.firmware.read_bytes(), g.kernel.read_bytes(), g.initrd.read_bytes(),
                   memory_size=256 << 20, deterministic=True, on_output=out.extend, num_harts=cpus,
                   bootargs="console=ttyS0 panic=1 wirt.modules=none " + run_param(WORKLOAD))


@pytest.mark.parametrize("cpus", [1, 2])
def test_replay_after_restore_is_byte_identical(tmp_path: Path, cpus: int) -> None:
    out = bytearray()
    m = guest(out, cpus)
    while b"tick 10 " not in out:  # run to the middle of the workload
        assert m.run(max_insns=m.instructions + 20_000_000).reason == "limit", bytes(out[-2000:])
    warm = m.hart.jit_stats()
    assert warm["setting"] == "on" and warm["regions"] > 100 and warm["entered"] > 0, warm
    save_machine(m, tmp_path)
    mark, at = len(out), [h.instret for h in m.harts]
    first = m.run()
    assert first.reason == "poweroff", bytes(out[-2000:])
    tail = bytes(out[mark:])
    assert b"tick 39 " in tail and b"wirt: exit status 0" in tail

    out2 = bytearray()
    m2 = guest(out2, cpus)
    restore_machine(m2, tmp_path)
    assert [h.instret for h in m2.harts] == at
    assert m2.hart.jit_stats()["regions"] == 0    # cold: the snapshot holds no translations
    second = m2.run()
    assert second.reason == "poweroff"
    assert second.instructions == first.instructions
    assert bytes(out2) == tail
