"""Which guest code a translation covers: a region of blocks on one physical page.

A region starts at a hot entry and follows fall-through and direct branches that stay on the
same 4 KiB page, so loops within a page run entirely in generated code. Everything on one
page shares one virtual-to-physical mapping and one execute permission (checked once, at
entry) and one invalidation word. Instructions the region does not translate end a block
with a side exit: the interpreter runs them (DESIGN.md "translation tier").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAGE = 4096
MAX_BLOCK = 64      # instructions per block
MAX_REGION = int(__import__('os').environ.get('WIRT_JIT_REGION', 128))    # instructions per region (compile time grows with it)


def _sext32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


@dataclass
class Insn:
    off: int        # offset in the page
    inst: int       # 32-bit encoding (compressed ones expanded), sign-extended
    ilen: int       # 2 or 4


@dataclass
class Block:
    start: int                           # page offset of the first instruction
    insns: list[Insn] = field(default_factory=list)
    end: str = "side"                    # how it ends: branch, jal, jalr, side, fall
    end_off: int = 0                     # page offset where a side exit or fall-through goes


def translatable(inst: int, fp: bool) -> str | None:
    """The class of an instruction the emitter handles inline, or None (the interpreter runs it).

    Anything reserved or illegal returns None, so the interpreter raises the exception.
    """
    op = inst & 0x7F
    f3 = (inst >> 12) & 7
    f7 = (inst >> 25) & 0x7F
    if op == 0x13:
        if f3 == 1 and (inst >> 26) != 0:
            return None
        if f3 == 5 and ((inst >> 26) & 0x3F) not in (0, 0x10):
            return None
        return "alu"
    if op == 0x33:
        if f7 in (0, 1) or (f7 == 0x20 and f3 in (0, 5)):
            return "alu"
        return None
    if op == 0x1B:
        if f3 == 0:
            return "alu"
        if f3 == 1 and f7 == 0:
            return "alu"
        if f3 == 5 and f7 in (0, 0x20):
            return "alu"
        return None
    if op == 0x3B:
        if f7 == 0 and f3 in (0, 1, 5):
            return "alu"
        if f7 == 0x20 and f3 in (0, 5):
            return "alu"
        if f7 == 1 and f3 in (0, 4, 5, 6, 7):
            return "alu"
        return None
    if op in (0x37, 0x17):
        return "alu"
    if op == 0x03:
        return "load" if f3 != 7 else None
    if op == 0x23:
        return "store" if f3 <= 3 else None
    if op == 0x07:
        return "load" if fp and f3 in (2, 3) else None
    if op == 0x27:
        return "store" if fp and f3 in (2, 3) else None
    if op == 0x63:
        return "branch" if f3 not in (2, 3) else None
    if op == 0x6F:
        return "jal"
    if op == 0x67:
        return "jalr" if f3 == 0 else None
    if op == 0x0F and f3 == 0:
        return "fence"
    if fp and op in (0x53, 0x43, 0x47, 0x4B, 0x4F):
        return "fpop"   # through jit/fpcall.fp_exec; it reports illegal forms itself
    return None


def branch_target(inst: int) -> int:
    """The signed offset of a B-type instruction."""
    return (((inst >> 31) << 12) | (((inst >> 7) & 1) << 11)
            | (((inst >> 25) & 0x3F) << 5) | (((inst >> 8) & 0xF) << 1))


def jal_target(inst: int) -> int:
    """The signed offset of a JAL instruction."""
    return (((inst >> 31) << 20) | (((inst >> 12) & 0xFF) << 12)
            | (((inst >> 20) & 1) << 11) | (((inst >> 21) & 0x3FF) << 1))


def read_insn(page16: np.ndarray, rvc: np.ndarray, off: int) -> Insn | None:
    """The instruction at a page offset, or None if it straddles the page end."""
    lo = int(page16[off >> 1])
    if (lo & 3) != 3:
        return Insn(off, int(rvc[lo]), 2)
    if off > PAGE - 4:
        return None
    return Insn(off, _sext32(lo | (int(page16[(off >> 1) + 1]) << 16)), 4)


def discover(page16: np.ndarray, rvc: np.ndarray, entry: int, fp: bool) -> dict[int, Block]:
    """The blocks of the region that starts at page offset `entry` (page16: the page's halfwords)."""
    blocks: dict[int, Block] = {}
    work = [entry]
    total = 0
    while work and total < MAX_REGION:
        start = work.pop()
        if start in blocks:
            continue
        b = Block(start)
        blocks[start] = b
        off = start
        while True:
            if off >= PAGE or len(b.insns) >= MAX_BLOCK or total >= MAX_REGION:
                b.end, b.end_off = "fall", off
                break
            if off != start and off in blocks and len(blocks[off].insns) > 0:
                b.end, b.end_off = "fall", off    # join an existing block
                break
            i = read_insn(page16, rvc, off)
            if i is None or i.inst == 0:
                b.end, b.end_off = "side", off
                break
            kind = translatable(i.inst, fp)
            if kind is None:
                b.end, b.end_off = "side", off
                break
            b.insns.append(i)
            total += 1
            off += i.ilen
            if kind == "branch":
                b.end = "branch"
                t = i.off + branch_target(i.inst)
                for nxt in (t, off):
                    if 0 <= nxt < PAGE and nxt not in blocks:
                        work.append(nxt)
                break
            if kind == "jal":
                b.end = "jal"
                t = i.off + jal_target(i.inst)
                if 0 <= t < PAGE and t not in blocks:
                    work.append(t)
                break
            if kind == "jalr":
                b.end = "jalr"
                break
        if b.end == "fall" and 0 <= b.end_off < PAGE and b.end_off not in blocks and total < MAX_REGION:
            work.append(b.end_off)
    return blocks
