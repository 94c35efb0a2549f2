"""Encoders for the few RV64 instructions the board writes itself (boot ROM, test programs).

Formats and opcodes follow the RISC-V unprivileged spec 20191213, chapter 2 ("RV32I Base
Integer Instruction Set", figure 2.3 for the R/I/S/B/U/J formats) and chapter 9 (Zicsr).
Each function returns the 32-bit instruction word; `assemble` packs words little-endian.
"""

from __future__ import annotations

import struct

__all__ = [
    "REG", "lui", "auipc", "addi", "add", "or_", "slli", "ld", "lw", "lbu", "sb", "sw", "sd", "jal", "jalr", "beq", "bne",
    "csrr", "csrw", "csrs", "mret", "wfi", "li32", "assemble",
]

# ABI register names (unprivileged spec chapter 25, table 25.1).
REG = {
    "zero": 0, "ra": 1, "sp": 2, "gp": 3, "tp": 4, "t0": 5, "t1": 6, "t2": 7, "s0": 8, "s1": 9,
    **{f"a{i}": 10 + i for i in range(8)}, **{f"s{i}": 16 + i for i in range(2, 12)},
    "t3": 28, "t4": 29, "t5": 30, "t6": 31,
}


def _r(reg: int | str) -> int:
    n = REG[reg] if isinstance(reg, str) else reg
    if not 0 <= n < 32:
        raise ValueError(f"no register x{n}")
    return n


def _imm12(imm: int) -> int:
    if not -2048 <= imm < 2048:
        raise ValueError(f"immediate {imm} does not fit 12 signed bits")
    return imm & 0xFFF


def _i(op: int, f3: int, rd: int | str, rs1: int | str, imm: int) -> int:
    return (_imm12(imm) << 20) | (_r(rs1) << 15) | (f3 << 12) | (_r(rd) << 7) | op


def _s(f3: int, rs1: int | str, rs2: int | str, imm: int) -> int:
    imm = _imm12(imm)
    return ((imm >> 5) << 25) | (_r(rs2) << 20) | (_r(rs1) << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23


def _b(f3: int, rs1: int | str, rs2: int | str, off: int) -> int:
    if off % 2 or not -4096 <= off < 4096:
        raise ValueError(f"branch offset {off} is odd or out of range")
    o = off & 0x1FFF
    return (((o >> 12) & 1) << 31 | ((o >> 5) & 0x3F) << 25 | _r(rs2) << 20 | _r(rs1) << 15
            | f3 << 12 | ((o >> 1) & 0xF) << 8 | ((o >> 11) & 1) << 7 | 0x63)


def lui(rd: int | str, imm20: int) -> int:
    """rd = imm20 << 12 (sign-extended)."""
    return ((imm20 & 0xFFFFF) << 12) | (_r(rd) << 7) | 0x37


def auipc(rd: int | str, imm20: int) -> int:
    """rd = pc + (imm20 << 12)."""
    return ((imm20 & 0xFFFFF) << 12) | (_r(rd) << 7) | 0x17


def addi(rd: int | str, rs1: int | str, imm: int) -> int:
    return _i(0x13, 0, rd, rs1, imm)


def _rtype(f7: int, f3: int, rd: int | str, rs1: int | str, rs2: int | str) -> int:
    return (f7 << 25) | (_r(rs2) << 20) | (_r(rs1) << 15) | (f3 << 12) | (_r(rd) << 7) | 0x33


def add(rd: int | str, rs1: int | str, rs2: int | str) -> int:
    return _rtype(0, 0, rd, rs1, rs2)


def or_(rd: int | str, rs1: int | str, rs2: int | str) -> int:
    return _rtype(0, 6, rd, rs1, rs2)


def slli(rd: int | str, rs1: int | str, shamt: int) -> int:
    if not 0 <= shamt < 64:
        raise ValueError(f"shift amount {shamt} out of range")
    return (shamt << 20) | (_r(rs1) << 15) | (1 << 12) | (_r(rd) << 7) | 0x13


def ld(rd: int | str, rs1: int | str, imm: int) -> int:
    return _i(0x03, 3, rd, rs1, imm)


def lw(rd: int | str, rs1: int | str, imm: int) -> int:
    return _i(0x03, 2, rd, rs1, imm)


def lbu(rd: int | str, rs1: int | str, imm: int) -> int:
    return _i(0x03, 4, rd, rs1, imm)


def sb(rs2: int | str, rs1: int | str, imm: int) -> int:
    """mem8[rs1 + imm] = rs2 (argument order as in assembly: sb rs2, imm(rs1))."""
    return _s(0, rs1, rs2, imm)


def sw(rs2: int | str, rs1: int | str, imm: int) -> int:
    return _s(2, rs1, rs2, imm)


def sd(rs2: int | str, rs1: int | str, imm: int) -> int:
    return _s(3, rs1, rs2, imm)


def jal(rd: int | str, off: int) -> int:
    if off % 2 or not -(1 << 20) <= off < (1 << 20):
        raise ValueError(f"jump offset {off} is odd or out of range")
    o = off & 0x1FFFFF
    return (((o >> 20) & 1) << 31 | ((o >> 1) & 0x3FF) << 21 | ((o >> 11) & 1) << 20
            | ((o >> 12) & 0xFF) << 12 | _r(rd) << 7 | 0x6F)


def jalr(rd: int | str, rs1: int | str, imm: int = 0) -> int:
    return _i(0x67, 0, rd, rs1, imm)


def beq(rs1: int | str, rs2: int | str, off: int) -> int:
    return _b(0, rs1, rs2, off)


def bne(rs1: int | str, rs2: int | str, off: int) -> int:
    return _b(1, rs1, rs2, off)


def csrr(rd: int | str, csr: int) -> int:
    """csrrs rd, csr, x0 (Zicsr): read a CSR without side effects."""
    return ((csr & 0xFFF) << 20) | (2 << 12) | (_r(rd) << 7) | 0x73


def csrw(csr: int, rs1: int | str) -> int:
    """csrrw x0, csr, rs1."""
    return ((csr & 0xFFF) << 20) | (_r(rs1) << 15) | (1 << 12) | 0x73


def csrs(csr: int, rs1: int | str) -> int:
    """csrrs x0, csr, rs1: set the bits of rs1 in a CSR."""
    return ((csr & 0xFFF) << 20) | (_r(rs1) << 15) | (2 << 12) | 0x73


def mret() -> int:
    """Privileged spec 3.3.2: return from an M-mode trap."""
    return 0x30200073


def wfi() -> int:
    """Privileged spec 3.3.3: wait for interrupt (SYSTEM, funct12 = 0x105)."""
    return 0x10500073


def li32(rd: int | str, value: int) -> list[int]:
    """Load a 32-bit signed constant with lui + addi (the usual %hi/%lo split)."""
    if not -(1 << 31) <= value < (1 << 31):
        raise ValueError(f"{value:#x} does not fit 32 signed bits")
    lo = ((value & 0xFFF) ^ 0x800) - 0x800
    if value - lo >= (1 << 31):
        raise ValueError(f"{value:#x} needs more than lui + addi on RV64 (lui sign-extends)")
    hi = ((value - lo) >> 12) & 0xFFFFF
    return [lui(rd, hi), addi(rd, rd, lo)] if hi else [addi(rd, "zero", lo)]


def assemble(words: list[int]) -> bytes:
    """Instruction words as little-endian bytes (instruction memory is little-endian)."""
    return b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)
