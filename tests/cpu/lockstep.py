"""Lockstep differential checking of the translation tier against the interpreter.

Two machines load the same program: one runs with every region translated
(WIRT_JIT=force) and returns after each region it leaves; the other only interprets, and
is run to exactly the same instruction count. At every such point the architectural state
must be identical: x and f registers, pc, privilege, instruction count, reservation and
every CSR; and all of RAM at every side exit, MMIO or HTIF exit and at the end (a region
that merely reached the instruction limit is compared without RAM, to keep the check fast).
"""

from __future__ import annotations

import zlib

import numpy as np

from wirt.cpu import layout as L
from wirt.machine.baremetal import BareMetal

# Slots of the state array that are architectural (the rest is wiring or host bookkeeping).
ARCH = list(range(0, L.F0 + 32)) + [L.PC, L.PRIV, L.ICOUNT, L.RESERVATION]


def _state(m: BareMetal, memory: bool) -> tuple:
    h = m.hart
    return (h.s[ARCH].tobytes(), h.c.tobytes(), zlib.crc32(m.memory.array) if memory else 0)


def _describe(a: BareMetal, b: BareMetal) -> str:
    ha, hb = a.hart, b.hart
    diff = [f"s[{i}] jit {int(ha.s[i]):#x} interp {int(hb.s[i]):#x}" for i in ARCH
            if ha.s[i] != hb.s[i]]
    diff += [f"csr {i:#x} jit {int(ha.c[i]):#x} interp {int(hb.c[i]):#x}"
             for i in np.nonzero(ha.c != hb.c)[0]]
    if zlib.crc32(a.memory.array) != zlib.crc32(b.memory.array):
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
        reason = jit.hart.run(max_insns - before)
        n = jit.hart.instret  # the exit's count, before handling it may undo an instruction
        stop = jit.handle(reason)
        # The reference runs to the same count; any exit it takes on the way (MMIO, HTIF) is the
        # one the translated side took at that count, handled the same way.
        while ref.hart.instret < n and ref.exit_code is None:
            r = ref.hart.run(n - ref.hart.instret)
            ref.handle(r)
            if r != L.EXIT_BUDGET:
                break
        checks += 1
        memory = reason != L.EXIT_BUDGET or int(jit.hart.jq[L.JQ_SIDE]) != sides
        if _state(jit, memory) != _state(ref, memory):
            raise AssertionError(f"tiers differ at instruction {n} (a region entered at instruction {before}): "
                                 f"{_describe(jit, ref)}")
        assert jit.exit_code == ref.exit_code
        if stop is not None:
            break
    if _state(jit, True) != _state(ref, True):
        raise AssertionError(f"tiers differ at the end: {_describe(jit, ref)}")
    return {"checks": checks, "instructions": jit.hart.instret, "exit_code": jit.exit_code,
            **jit.hart.jit_stats()}
