"""The translation tier against the interpreter on a real Linux boot, to the first user
instruction and a little past it.

Two deterministic machines boot the same Debian kernel and initramfs, one with every region
translated at once (WIRT_JIT=force: the template translator, chaining, the CSR and atomic
helpers, LLVM for hot regions), one interpreting only. Deterministic mode makes time and device
events a function of the instruction count, so the two must agree exactly at every count:
both stop every 2 million instructions and compare pc, privilege, every x and f register,
every CSR and the reservation, and RAM every 20 million and at the end. Slow: about 300 million
guest instructions per machine.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.cpu.lockstep import ARCH
from wirt.cpu import layout as L
from wirt.images.guest import default_guest
from wirt.images.scripts import run_param
from wirt.machine.board import Machine

pytestmark = pytest.mark.slow

STEP = 2_000_000
RAM_EVERY = 10          # compare RAM at every 10th step
PAST_USER = 20          # steps to keep going once user mode was reached
GIVE_UP_S = 600         # a guest the translated code broke may sleep in WFI with nothing to
                        # wake it (deterministic: only outside input could): fail, not hang


def machine(jit: str) -> Machine:
    g = default_guest()
    return Machine(g.firmware.read_bytes(), g.kernel.read_bytes(), g.initrd.read_bytes(),
                   memory_size=128 << 20, deterministic=True, on_output=lambda b: None, jit=jit,
                   bootargs="console=ttyS0 panic=1 wirt.modules=none " + run_param("true"))


def difference(a: Machine, b: Machine, ram: bool) -> str | None:
    ha, hb = a.hart, b.hart
    for i in ARCH:
        if ha.s[i] != hb.s[i]:
            return f"state slot {i}: jit {int(ha.s[i]):#x}, interpreter {int(hb.s[i]):#x}"
    diff = np.nonzero(ha.c != hb.c)[0]
    if len(diff):
        i = int(diff[0])
        return f"csr {i:#x}: jit {int(ha.c[i]):#x}, interpreter {int(hb.c[i]):#x}"
    if ram and not np.array_equal(a.memory.array, b.memory.array):
        pages = np.nonzero((a.memory.array != b.memory.array).reshape(-1, 4096).any(axis=1))[0]
        return f"RAM differs on pages {[hex(int(p) * 4096) for p in pages[:8]]}"
    return None


def _no_progress(signum, frame) -> None:
    raise AssertionError(f"no result within {GIVE_UP_S} s: a machine is stuck (asleep in WFI "
                         "with nothing to wake it?)")


def test_linux_boot_matches_the_interpreter_to_user_mode() -> None:
    old = signal.signal(signal.SIGALRM, _no_progress)
    signal.alarm(GIVE_UP_S)
    try:
        compare_boots()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def compare_boots() -> None:
    fast, ref = machine("force"), machine("off")
    user_at = None
    step = 0
    while user_at is None or step < user_at + PAST_USER:
        step += 1
        target = step * STEP
        ra, rb = fast.run(max_insns=target), ref.run(max_insns=target)
        assert ra.reason == rb.reason, f"at step {step}: jit {ra}, interpreter {rb}"
        why = difference(fast, ref, step % RAM_EVERY == 0 or ra.reason != "limit")
        assert why is None, f"the tiers differ at instruction {fast.instructions}: {why}"
        if ra.reason != "limit":
            break
        if user_at is None and int(fast.hart.s[L.PRIV]) == L.PRV_U:
            user_at = step
        assert step < 400, "no user-mode instruction within 800 million instructions"
    assert user_at is not None, "the guest never reached user mode"
    assert difference(fast, ref, True) is None
    stats = fast.hart.jit_stats()
    assert stats["template_regions"] > 1000 and stats["chained"] > 100_000, stats
