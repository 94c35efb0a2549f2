"""Helpers for the CPU tests: a prelude of trap handlers and mode-switch macros that is
assembled in front of a test body (inside tests/cpu/asm/harness.S), running the result on
the BareMetal machine and reading back what the body recorded.

Conventions inside a body (see PRELUDE):

- `REC reg` appends a 64-bit value to the `results` array (pointer in tp); Python reads
  them back as `m.results` (unsigned).
- The M-mode trap handler `mtrap` records every trap: s9 += 1, s10 = mcause, s11 = mtval,
  s8 = mepc, s7 = mstatus as seen on entry. Exceptions are skipped (2 or 4 bytes, from the
  instruction at mepc); instruction access/page faults and misaligned fetches resume at ra
  instead (use `jalr ra, ...` to jump into a bad page). Interrupts clear mie and return.
- The S-mode handler `strap` (installed in stvec; used when something is delegated)
  records s4 += 1, s5 = scause, s6 = stval, s3 = sepc, s1 = sstatus on entry and otherwise
  behaves the same
  (for interrupts it clears sie).
- `ENTER_U`/`ENTER_S`/`ENTER_M` (from M-mode) continue at the next instruction in that
  mode; `TO_M` (from any mode) returns to M-mode at the next instruction, through an
  ecall with a7 = GOTO_M (the handlers neither record nor count it). TO_M needs ecall from
  S (cause 9) not to be delegated.
- Handlers use t3, t4 and t5; CHECK uses t6 and gp; TO_M uses a7.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import build_program

MASK64 = (1 << 64) - 1
LOCKSTEP = os.environ.get("WIRT_LOCKSTEP", "1") != "0"
GOTO_M = 0x7E5

PRELUDE = r"""
#define GOTO_M 0x7e5
    .macro REC reg
    sd \reg, 0(tp)
    addi tp, tp, 8
    .endm
    .macro SET_MPP mode
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, (\mode) << 11
    csrs mstatus, t0
    .endm
    .macro ENTER mode
    SET_MPP \mode
    la t0, .Lenter\@
    csrw mepc, t0
    mret
.Lenter\@:
    .endm
    .macro ENTER_U
    ENTER 0
    .endm
    .macro ENTER_S
    ENTER 1
    .endm
    .macro ENTER_M
    ENTER 3
    .endm
    .macro TO_M
    li a7, GOTO_M
    ecall
    li a7, 0
    .endm
    .macro TRAPS
    REC s9
    REC s10
    REC s11
    .endm

    la t0, mtrap
    csrw mtvec, t0
    la t0, strap
    csrw stvec, t0
    la tp, results
    li s4, 0
    li s5, -1
    li s6, -1
#if INIT_PMP
    /* One PMP entry granting S/U everything (as riscv-tests do): whether "no entry
       matches" fails for S/U when entries are implemented but off is left aside. */
    li t0, -1
    csrw pmpaddr0, t0
    li t0, 0x1f
    csrw pmpcfg0, t0
#endif
    j .Lbody_start

    .align 2
mtrap:
    csrr t5, mcause
    bltz t5, .Lm_irq
    li t4, 8
    blt t5, t4, .Lm_rec
    li t4, 11
    bgt t5, t4, .Lm_rec
    li t4, GOTO_M
    bne a7, t4, .Lm_rec
    csrr t5, mepc          /* TO_M: resume at the next instruction in M-mode */
    addi t5, t5, 4
    csrw mepc, t5
    li t5, 3 << 11
    csrs mstatus, t5
    mret
.Lm_rec:
    csrr s10, mcause
    csrr s11, mtval
    csrr s8, mepc
    csrr s7, mstatus
    addi s9, s9, 1
    li t4, 1
    beq s10, t4, .Lm_fetch
    li t4, 12
    beq s10, t4, .Lm_fetch
    beqz s10, .Lm_fetch
    csrr t5, mepc
    lhu t4, 0(t5)
    andi t4, t4, 3
    li t3, 3
    addi t5, t5, 2
    bne t4, t3, 1f
    addi t5, t5, 2
1:  csrw mepc, t5
    mret
.Lm_fetch:
    csrw mepc, ra
    mret
.Lm_irq:
    csrr s10, mcause
    csrr s11, mtval
    csrr s8, mepc
    csrr s7, mstatus
    addi s9, s9, 1
    csrw mie, zero
    mret

    .align 2
strap:
    csrr t5, scause
    bltz t5, .Ls_irq
    li t4, 8
    bne t5, t4, .Ls_rec
    li t4, GOTO_M
    bne a7, t4, .Ls_rec
    ecall                  /* ecall from U was delegated: go on to M from here */
    csrr t5, sepc          /* now in M-mode: continue after the U-mode ecall */
    addi t5, t5, 4
    jr t5
.Ls_rec:
    csrr s1, sstatus
    csrr s5, scause
    csrr s6, stval
    csrr s3, sepc
    addi s4, s4, 1
    li t4, 1
    beq s5, t4, .Ls_fetch
    li t4, 12
    beq s5, t4, .Ls_fetch
    beqz s5, .Ls_fetch
    csrr t5, sepc
    lhu t4, 0(t5)
    andi t4, t4, 3
    li t3, 3
    addi t5, t5, 2
    bne t4, t3, 1f
    addi t5, t5, 2
1:  csrw sepc, t5
    sret
.Ls_fetch:
    csrw sepc, ra
    sret
.Ls_irq:
    csrr s1, sstatus
    csrr s5, scause
    csrr s6, stval
    csrr s3, sepc
    addi s4, s4, 1
    csrw sie, zero
    sret

    .pushsection .data
    .align 3
results:
    .fill 1024, 8, 0
results_end:
    .popsection

.Lbody_start:
"""


class Ran:
    """What a run left behind: the machine, the ELF symbols, the recorded results."""

    def __init__(self, machine, symbols: dict[str, int]) -> None:
        self.m = machine
        self.symbols = symbols
        self.results: list[int] = []

    def x(self, n: int) -> int:
        return self.m.hart.x(n)

    def sym(self, name: str) -> int:
        return self.symbols[name]

    def u64(self, addr: int) -> int:
        return self.m.memory.read_u64(addr)


def u64(v: int) -> int:
    return v & MASK64


def build(body: str, name: str, *, init_pmp: bool = True) -> Path:
    source = f"#define INIT_PMP {1 if init_pmp else 0}\n" + PRELUDE + body
    try:
        return build_program(source, name)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"assembling {name} failed:\n{exc.stderr}")


def load(body: str, name: str, *, ram: int = 1 << 20, init_pmp: bool = True) -> Ran:
    """Build and load a body, without running it (for tests that set state from Python)."""
    from wirt.machine.baremetal import BareMetal
    from wirt.machine.elf import read_elf

    path = build(body, name, init_pmp=init_pmp)
    m = BareMetal(str(path), ram, output=lambda b: None)
    r = Ran(m, read_elf(path).symbols)
    r.path, r.ram = path, ram
    return r


def finish(r: Ran, max_insns: int = 200_000, expect_pass: bool = True) -> Ran:
    """Run a loaded body to its HTIF exit and collect the REC results."""
    result = r.m.run(max_insns)
    assert result.reason == "exit", f"program did not finish: {result} (pc {r.m.hart.pc:#x})"
    r.result = result
    tp = r.x(4)
    start = r.sym("results")
    assert start <= tp <= r.sym("results_end"), f"results pointer tp={tp:#x} was clobbered"
    r.results = [r.u64(a) for a in range(start, tp, 8)]
    if expect_pass:
        assert result.exit_code == 0, (
            f"CHECK {result.exit_code} failed (trap count {r.x(25)}, last mcause {r.x(26):#x}, "
            f"mtval {r.x(27):#x}, mepc {r.x(24):#x}; results {[hex(v) for v in r.results]})")
    return r


def run(body: str, name: str, *, ram: int = 1 << 20, max_insns: int = 200_000,
        init_pmp: bool = True, setup=None, expect_pass: bool = True) -> Ran:
    r = load(body, name, ram=ram, init_pmp=init_pmp)
    if setup is not None:
        setup(r)
    finish(r, max_insns, expect_pass)
    if setup is None and LOCKSTEP:
        # Every program of the CPU tests also runs through the translation tier, in lockstep
        # with the interpreter (tests/cpu/lockstep.py).
        from tests.cpu.lockstep import lockstep
        lockstep(str(r.path), ram, max_insns)
    return r


def run_cases(cases: list[tuple[str, str, int]], name: str, prologue: str = "", **kw) -> Ran:
    """Each case is (label, asm leaving its result in a0, expected value). All cases run in
    one program; every mismatch is reported together."""
    parts = [prologue]
    for _, asm, _ in cases:
        parts.append(asm)
        parts.append("REC a0")
    r = run("\n".join(parts) + "\n", name, **kw)
    assert len(r.results) == len(cases), f"recorded {len(r.results)} results for {len(cases)} cases"
    bad = [f"{label}: got {got:#x}, expected {u64(exp):#x}"
           for (label, _, exp), got in zip(cases, r.results) if got != u64(exp)]
    assert not bad, f"{len(bad)} of {len(cases)} cases wrong:\n" + "\n".join(bad)
    return r


def expect_results(r: Ran, expected: list[tuple[str, int]]) -> None:
    """Compare the recorded results with (label, expected) pairs; report every mismatch.
    An expected value of None is not checked."""
    assert len(r.results) == len(expected), (
        f"recorded {len(r.results)} results, expected {len(expected)}: {[hex(v) for v in r.results]}")
    bad = [f"{label}: got {got:#x}, expected {u64(exp):#x}"
           for (label, exp), got in zip(expected, r.results) if exp is not None and got != u64(exp)]
    assert not bad, f"{len(bad)} of {len(expected)} values wrong:\n" + "\n".join(bad)


class Probe:
    """Builds a body of single instructions (given as exact encodings) that either execute
    or raise illegal instruction into M-mode; records (trap count, mcause, mtval) after
    each and checks them against what was declared."""

    def __init__(self) -> None:
        self.body: list[str] = []
        self.expected: list[tuple[str, int | None]] = []
        self.count = 0

    def asm(self, text: str) -> None:
        self.body.append(text)

    def probe(self, label: str, enc: int, legal: bool, cause: int = 2, tval: int | None = None) -> None:
        self.body.append(f"li s10, -1\nli s11, -1\n.word {enc:#010x}\nTRAPS")
        if not legal:
            self.count += 1
        self.expected += [(f"{label}: trap count", self.count),
                          (f"{label}: mcause", -1 if legal else cause),
                          (f"{label}: mtval", -1 if legal else (enc if tval is None else tval))]

    def rec(self, label: str, reg: str, value: int | None) -> None:
        self.body.append(f"REC {reg}")
        self.expected.append((label, value))

    def run(self, name: str, **kw) -> Ran:
        r = run("\n".join(self.body) + "\n", name, **kw)
        expect_results(r, self.expected)
        return r


# ---- instruction encodings (for mtval checks) ----------------------------------------------
def csr_insn(f3: int, rd: int, rs1: int, csr: int) -> int:
    """Encoding of csrrw(1)/csrrs(2)/csrrc(3)/csrrwi(5)/csrrsi(6)/csrrci(7)."""
    return (csr << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73
