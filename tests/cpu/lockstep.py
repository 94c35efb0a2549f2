"""Lockstep differential checking of the translation tier against the interpreter.

Two machines load the same program: one runs with every region translated
(WIRT_JIT=force) and returns after each region it leaves; the other only interprets, and
is run to exactly the same instruction count. At every such point the architectural state
must be identical: x and f registers, pc, privilege, instruction count, reservation and
every CSR; and all of RAM at side exits, MMIO and HTIF exits (each of the first 256, then
every 16th: a difference in RAM persists, so it is still caught) and at the end. A region
that merely reached the instruction limit is compared without RAM, to keep the check fast.
"""

from __future__ import annotations

import numpy as np

from wirt.cpu import layout as L
from wirt.machine.baremetal import BareMetal

# Slots of the state array that are architectural (the rest is wiring or host bookkeeping).
ARCH = list(range(0, L.F0 + 32)) + [L.PC, L.PRIV, L.ICOUNT, L.RESERVATION]


def _same(a: BareMetal, b: BareMetal, memory: bool) -> bool:
    ha, hb = a.hart, b.hart
    return (np.array_equal(ha.s[ARCH], hb.s[ARCH]) and np.array_equal(ha.c, hb.c)
            and (not memory or np.array_equal(a.memory.array, b.memory.array)))


def _describe(a: BareMetal, b: BareMetal) -> str:
    ha, hb = a.hart, b.hart
    diff = [f"s[{i}] jit {int(ha.s[i]):#x} interp {int(hb.s[i]):#x}" for i in ARCH
            if ha.s[i] != hb.s[i]]
    diff += [f"csr {i:#x} jit {int(ha.c[i]):#x} interp {int(hb.c[i]):#x}"
             for i in np.nonzero(ha.c != hb.c)[0]]
    if not np.array_equal(a.memory.array, b.memory.array):
        pages = np.nonzero((a.memory.array != b.memory.array).reshape(-1, 4096).any(axis=1))[0]
        diff.append(f"RAM differs on pages {[hex(p * 4096) for p in pages[:8]]}")
    return "; ".join(diff[:12])


def lockstep(path: str, ram: int = 1 << 20, max_insns: int = 2_000_000) -> dict:
    """Run `path` under both tiers, comparing state at every region exit; returns counts.

    Raises AssertionError naming the first difference.
    """
    jit = BareMetal(str(path), ram, output=lambda b: None, jit="force")
    ref = BareMetal(str(path), ram, output=lambda b: None, jit="off")
    jit.hart.jq[L.JQ_STEP] = 1
    checks = 0
    while jit.exit_code is None and jit.hart.instret < max_insns:
        before = jit.hart.instret
        sides = int(jit.hart.jq[L.JQ_SIDE])
        pc_before = jit.hart.pc
        reason = jit.hart.run(max_insns - before)
        if reason == L.EXIT_BUDGET and jit.hart.instret == before and jit.hart.pc == pc_before:
            # Left by a side exit at the region's first instruction: the core would interpret it
            # next, but returned first (step mode). Let it, for one instruction.
            jit.hart.jq[L.JQ_STEP] = 0
            reason = jit.hart.run(1)
            jit.hart.jq[L.JQ_STEP] = 1
        n = jit.hart.instret  # the exit's count, before handling it may undo an instruction
        stop = jit.handle(reason)
        # The reference runs to the same count; any exit it takes on the way (MMIO, HTIF) is the
        # one the translated side took at that count, handled the same way.
        while ref.hart.instret < n and ref.exit_code is None:
            r = ref.hart.run(n - ref.hart.instret)
            ref.handle(r)
            if r != L.EXIT_BUDGET:
                break
        # A trap takes no instruction count: at count n one side may already have entered a
        # handler (an exception after a side exit, or an interrupt) that the other takes first
        # thing next time. Such a point is not compared; the next one (or the end) is.
        if (ref.hart.instret == n and ref.hart.pc != jit.hart.pc and ref.exit_code is None
                and stop is None):
            continue
        checks += 1
        memory = ((reason != L.EXIT_BUDGET or int(jit.hart.jq[L.JQ_SIDE]) != sides)
                  and (checks < 256 or checks % 16 == 0))
        if not _same(jit, ref, memory):
            raise AssertionError(f"tiers differ at instruction {n} (a region entered at instruction {before}): "
                                 f"{_describe(jit, ref)}")
        assert jit.exit_code == ref.exit_code
        if stop is not None:
            break
    if not _same(jit, ref, True):
        raise AssertionError(f"tiers differ at the end: {_describe(jit, ref)}")
    return {"checks": checks, "instructions": jit.hart.instret, "exit_code": jit.exit_code,
            **jit.hart.jit_stats()}
