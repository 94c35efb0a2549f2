"""Differential testing against QEMU (issue 20): random RV64IM programs (ALU, multiply/divide,
aligned loads and stores to a scratch area), and RV64GC programs (those, compressed, with AMOs,
LR/SC and F/D arithmetic in every rounding mode) run under wirt's bare-metal machine and under
`qemu-system-riscv64 -M spike`; each prints its registers (and FP registers and fcsr) and a
checksum of the scratch area through HTIF, and the two outputs must be equal. docs/testing.md lists the known differences on
QEMU's side, which these programs avoid (no Zb* instructions, no faults, no ROM access)."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from fuzzing import SCALE

from tests.conftest import build_program

PROGRAMS = 4 * SCALE
LENGTH = 300
REGS = [f"x{i}" for i in range(1, 32) if i not in (2, 3, 9, 10, 11, 26, 27, 31)]  # sp gp s1 a0 a1 s10 s11 t6: harness
RR = ["add", "sub", "sll", "srl", "sra", "xor", "or", "and", "slt", "sltu", "addw", "subw", "sllw", "srlw",
      "sraw", "mul", "mulh", "mulhu", "mulhsu", "mulw", "div", "divu", "rem", "remu", "divw", "divuw", "remw",
      "remuw"]
RI = ["addi", "xori", "ori", "andi", "slti", "sltiu", "addiw"]
SHIFTS = [("slli", 63), ("srli", 63), ("srai", 63), ("slliw", 31), ("srliw", 31), ("sraiw", 31)]
LOADS = [("ld", 8), ("lw", 4), ("lwu", 4), ("lh", 2), ("lhu", 2), ("lb", 1), ("lbu", 1)]
STORES = [("sd", 8), ("sw", 4), ("sh", 2), ("sb", 1)]

# Prints register a0 as 16 hex digits and a newline through HTIF's console (device 1, command 1),
# waiting for fromhost after each byte as Spike and QEMU expect.
PRINT = """
    j 9f
puthex:
    li a1, 60
1:  srl t6, a0, a1
    andi t6, t6, 15
    addi t6, t6, 48
    li s11, 58
    blt t6, s11, 2f
    addi t6, t6, 39
2:  mv s10, t6
    jal s11, putc
    addi a1, a1, -4
    bgez a1, 1b
    li s10, 10
    jal s11, putc
    ret
putc:
    li t6, 0x0101000000000000
    or t6, t6, s10
    la s1, tohost
    sd t6, 0(s1)
    la s1, fromhost
3:  ld t6, 0(s1)
    beqz t6, 3b
    sd zero, 0(s1)
    jr s11
9:
"""


def program(seed: int) -> str:
    r = random.Random(seed)
    lines = [PRINT, "la s1, scratch"]
    for reg in REGS:
        lines.append(f"li {reg}, {r.choice([r.getrandbits(64), r.getrandbits(12), -r.getrandbits(31), 0, -1, 1 << 63])}")
    for _ in range(LENGTH):
        kind = r.random()
        rd, a, b = r.choice(REGS), r.choice(REGS), r.choice(REGS)
        if kind < 0.08:  # fresh values keep the registers from collapsing to 0 and -1
            lines.append(f"li {rd}, {r.getrandbits(64) - (1 << 63)}")
        elif kind < 0.55:
            lines.append(f"{r.choice(RR)} {rd}, {a}, {b}")
        elif kind < 0.7:
            lines.append(f"{r.choice(RI)} {rd}, {a}, {r.randint(-2048, 2047)}")
        elif kind < 0.8:
            op, top = r.choice(SHIFTS)
            lines.append(f"{op} {rd}, {a}, {r.randint(0, top)}")
        elif kind < 0.9:
            op, size = r.choice(LOADS)
            lines.append(f"{op} {rd}, {r.randrange(0, 2048, size)}(s1)")
        else:
            op, size = r.choice(STORES)
            lines.append(f"{op} {a}, {r.randrange(0, 2048, size)}(s1)")
    # print the registers, then an xor-rotate checksum of the scratch area
    for reg in REGS:
        lines += [f"mv a0, {reg}", "jal ra, puthex"]
    lines += ["li a0, 0", "li t5, 256", "la s1, scratch",
              "4: ld t4, 0(s1)", "slli t3, a0, 7", "srli a0, a0, 57", "or a0, a0, t3", "xor a0, a0, t4",
              "addi s1, s1, 8", "addi t5, t5, -1", "bnez t5, 4b", "jal ra, puthex"]
    return "\n".join(lines)


FREGS = [f"f{i}" for i in range(32)]
FP_RR = [f"{op}.{w}" for op in ("fadd", "fsub", "fmul", "fdiv", "fmin", "fmax", "fsgnj", "fsgnjn", "fsgnjx")
         for w in ("s", "d")]
FP_R4 = [f"{op}.{w}" for op in ("fmadd", "fmsub", "fnmadd", "fnmsub") for w in ("s", "d")]
FP_CMP = [f"{op}.{w}" for op in ("feq", "flt", "fle") for w in ("s", "d")]
FP_TO_INT = [f"fcvt.{i}.{w}" for i in ("w", "wu", "l", "lu") for w in ("s", "d")] + ["fclass.s", "fclass.d",
                                                                                     "fmv.x.d", "fmv.x.w"]
INT_TO_FP = [f"fcvt.{w}.{i}" for i in ("w", "wu", "l", "lu") for w in ("s", "d")] + ["fmv.d.x", "fmv.w.x"]
ROUNDING = ["rne", "rtz", "rdn", "rup", "rmm"]
AMOS = [f"amo{op}.{w}" for op in ("swap", "add", "xor", "and", "or", "min", "max", "minu", "maxu")
        for w in ("w", "d")]
# FP values with more special cases than random bits give: zeros, infinities, NaNs (quiet and
# signalling, boxed and not), the smallest normal and subnormal numbers, values near integer limits.
FP_SPECIAL = [0, 1 << 63, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, 0x7FF4000000000000,
              0x0010000000000000, 0x0000000000000001, 0x43E0000000000000, 0xC3E0000000000000, 0x41DFFFFFFFC00000,
              0xFFFFFFFF7F800000, 0xFFFFFFFF7FC00000, 0xFFFFFFFF7FA00000, 0xFFFFFFFF00800000, 0xFFFFFFFF00000001,
              0xFFFFFFFF4F000000, 0xFFFFFFFFCF000000, 0x3FF0000000000000, 0xFFFFFFFF3F800000, 0x000000003F800000]


def program_gc(seed: int) -> str:
    """A random RV64GC program: the integer operations of `program`, compressed where the assembler
    can (-march=rv64gc), AMOs and LR/SC on the scratch area, and F/D arithmetic, conversions and
    comparisons in every static rounding mode on special and random values. It prints the integer
    registers, the 32 FP registers, fcsr (the accrued exception flags) and the scratch checksum."""
    r = random.Random(seed)
    body = program(seed).split("\n")
    at = body.index("la s1, scratch") + 1 + len(REGS)  # after the integer registers got their values
    pre = ["li t0, 1 << 13", "csrs mstatus, t0", "csrwi fcsr, 0"]  # mstatus.FS: the FPU is on
    for f in FREGS:
        pre += [f"li t0, {r.choice([*FP_SPECIAL, r.getrandbits(64), r.getrandbits(64)])}", f"fmv.d.x {f}, t0"]
    pre.append(f"li t0, {r.getrandbits(64)}")
    mixed = []
    for _ in range(LENGTH):
        kind = r.random()
        rd, a, b = r.choice(REGS), r.choice(REGS), r.choice(REGS)
        fd, fa, fb, fc = (r.choice(FREGS) for _ in range(4))
        rm = r.choice(ROUNDING)
        if kind < 0.25:
            op = r.choice(FP_RR)
            mixed.append(f"{op} {fd}, {fa}, {fb}" + ("" if op.startswith(("fmin", "fmax", "fsgnj")) else f", {rm}"))
        elif kind < 0.35:
            mixed.append(f"{r.choice(FP_R4)} {fd}, {fa}, {fb}, {fc}, {rm}")
        elif kind < 0.4:
            mixed.append(f"fsqrt.{r.choice('sd')} {fd}, {fa}, {rm}")
        elif kind < 0.45:
            mixed.append(f"{r.choice(FP_CMP)} {rd}, {fa}, {fb}")
        elif kind < 0.52:
            op = r.choice(FP_TO_INT)
            mixed.append(f"{op} {rd}, {fa}" + (f", {rm}" if op.startswith("fcvt") else ""))
        elif kind < 0.58:
            op = r.choice(INT_TO_FP)
            exact = op in ("fcvt.d.w", "fcvt.d.wu") or not op.startswith("fcvt")  # no rounding mode operand
            mixed.append(f"{op} {fd}, {a}" + ("" if exact else f", {rm}"))
        elif kind < 0.62:
            mixed.append(f"fcvt.s.d {fd}, {fa}, {rm}" if r.random() < 0.5 else f"fcvt.d.s {fd}, {fa}")
        elif kind < 0.66:
            w = r.choice("wd")
            off = r.randrange(0, 2048, 4 if w == "w" else 8)
            mixed.append(f"f{'lw' if w == 'w' else 'ld'} {fd}, {off}(s1)" if r.random() < 0.5
                         else f"fs{w} {fa}, {off}(s1)")
        elif kind < 0.74:
            op = r.choice(AMOS)
            off = r.randrange(0, 2048, 8 if op.endswith(".d") else 4)
            mixed += [f"addi t6, s1, {off}", f"{op}{r.choice(['', '.aq', '.rl', '.aqrl'])} {rd}, {b}, (t6)"]
        elif kind < 0.77:
            w = r.choice("wd")
            off = r.randrange(0, 2048, 8 if w == "d" else 4)
            mixed += [f"addi t6, s1, {off}", f"lr.{w} {rd}, (t6)", f"{r.choice(RR)} {a}, {a}, {b}",
                      f"sc.{w} {r.choice(REGS)}, {a}, (t6)"]
        else:
            mixed.append(body[at + r.randrange(LENGTH)])  # an integer instruction of `program`
    tail = []
    for f in FREGS:
        tail += [f"fmv.x.d a0, {f}", "jal ra, puthex"]
    tail += ["csrr a0, fcsr", "jal ra, puthex"]
    checksum = len(body) - 12  # `program` ends with the registers' printing, then the checksum's 12 lines
    assert body[checksum] == "li a0, 0"
    return "\n".join(body[:at] + pre + mixed + body[at + LENGTH:checksum] + tail + body[checksum:])


def run_wirt(elf) -> bytes:
    from wirt.machine.baremetal import BareMetal

    out = bytearray()
    m = BareMetal(str(elf), 1 << 20, output=out.extend)
    result = m.run(10_000_000)
    assert result.reason == "exit", result
    return bytes(out)


def run_qemu(elf) -> bytes:
    exe = shutil.which("qemu-system-riscv64")
    if exe is None:
        pytest.fail("qemu-system-riscv64 is missing; `make test` installs it (Debian package qemu-system-misc)")
    r = subprocess.run([exe, "-M", "spike", "-nographic", "-bios", "none", "-kernel", str(elf)],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.stdout.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_random_program_matches_qemu(seed):
    elf = build_program(program(seed), f"diff{seed}", march="rv64im_zicsr")
    ours, theirs = run_wirt(elf), run_qemu(elf)
    assert ours.count(b"\n") == len(REGS) + 1
    assert ours == theirs, _first_difference(ours, theirs)


def _first_difference(a: bytes, b: bytes, names: list[str] | None = None) -> str:
    la, lb = a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            names = REGS if names is None else names
            what = names[i] if i < len(names) else "scratch checksum"
            return f"{what}: wirt {x}, QEMU {y}"
    return f"wirt printed {len(la)} lines, QEMU {len(lb)}"


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_random_gc_program_matches_qemu(seed):
    elf = build_program(program_gc(seed), f"diffgc{seed}", march="rv64gc_zicsr")
    ours, theirs = run_wirt(elf), run_qemu(elf)
    assert ours.count(b"\n") == len(REGS) + len(FREGS) + 2
    assert ours == theirs, _first_difference(ours, theirs, REGS + FREGS + ["fcsr"])
