"""The C extension: every RV64C instruction expanded to its 32-bit equivalent.

Unprivileged spec chapter 16 ("C" standard extension), table 16.5-16.7. The core looks up
a 65536-entry table built once from `expand`, so a compressed instruction costs one load;
entries of 0 are illegal encodings (the core then traps with the 16-bit bits in tval).
"""

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _i(op, rd, f3, rs1, imm):
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


@njit(cache=True, inline="always")
def _s(op, f3, rs1, rs2, imm):
    return (((imm >> 5) & 0x7F) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1F) << 7) | op


@njit(cache=True, inline="always")
def _r(op, rd, f3, rs1, rs2, f7):
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


@njit(cache=True, inline="always")
def _b(f3, rs1, rs2, imm):
    return ((((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3F) << 25) | (rs2 << 20) | (rs1 << 15)
            | (f3 << 12) | (((imm >> 1) & 0xF) << 8) | (((imm >> 11) & 1) << 7) | 0x63)


@njit(cache=True, inline="always")
def _j(rd, imm):
    return ((((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3FF) << 21) | (((imm >> 11) & 1) << 20)
            | (((imm >> 12) & 0xFF) << 12) | (rd << 7) | 0x6F)


@njit(cache=True, inline="always")
def _bit(h, pos, to):
    return ((h >> pos) & 1) << to


@njit(cache=True, inline="always")
def _sext(v, bits):
    m = 1 << (bits - 1)
    return (v ^ m) - m


@njit(cache=True)
def expand(h):
    """The 32-bit instruction equivalent to the 16-bit h, or 0 if h is reserved/illegal."""
    op = h & 3
    f3 = (h >> 13) & 7
    rd = (h >> 7) & 31
    rs2 = (h >> 2) & 31
    rdp = ((h >> 2) & 7) + 8   # rd'/rs2' in bits 4:2
    rs1p = ((h >> 7) & 7) + 8  # rs1'/rd' in bits 9:7
    imm6 = _sext(_bit(h, 12, 5) | ((h >> 2) & 31), 6)
    if op == 0:
        if f3 == 0:  # c.addi4spn
            imm = (_bit(h, 5, 3) | _bit(h, 6, 2) | (((h >> 7) & 0xF) << 6) | (((h >> 11) & 3) << 4))
            if imm == 0:
                return 0
            return _i(0x13, rdp, 0, 2, imm)
        uimm_d = (((h >> 10) & 7) << 3) | (((h >> 5) & 3) << 6)
        uimm_w = (((h >> 10) & 7) << 3) | _bit(h, 6, 2) | _bit(h, 5, 6)
        if f3 == 1:
            return _i(0x07, rdp, 3, rs1p, uimm_d)  # c.fld
        if f3 == 2:
            return _i(0x03, rdp, 2, rs1p, uimm_w)  # c.lw
        if f3 == 3:
            return _i(0x03, rdp, 3, rs1p, uimm_d)  # c.ld
        if f3 == 5:
            return _s(0x27, 3, rs1p, rdp, uimm_d)  # c.fsd
        if f3 == 6:
            return _s(0x23, 2, rs1p, rdp, uimm_w)  # c.sw
        if f3 == 7:
            return _s(0x23, 3, rs1p, rdp, uimm_d)  # c.sd
        return 0
    if op == 1:
        if f3 == 0:
            return _i(0x13, rd, 0, rd, imm6)  # c.addi (c.nop when rd=0)
        if f3 == 1:
            if rd == 0:
                return 0
            return _i(0x1B, rd, 0, rd, imm6)  # c.addiw
        if f3 == 2:
            return _i(0x13, rd, 0, 0, imm6)  # c.li
        if f3 == 3:
            if rd == 2:  # c.addi16sp
                imm = _sext(_bit(h, 12, 9) | _bit(h, 6, 4) | _bit(h, 5, 6) | (((h >> 3) & 3) << 7)
                            | _bit(h, 2, 5), 10)
                if imm == 0:
                    return 0
                return _i(0x13, 2, 0, 2, imm)
            if imm6 == 0:
                return 0
            return ((imm6 << 12) & 0xFFFFF000) | (rd << 7) | 0x37  # c.lui
        if f3 == 4:
            sub = (h >> 10) & 3
            shamt = _bit(h, 12, 5) | ((h >> 2) & 31)
            if sub == 0:
                return _i(0x13, rs1p, 5, rs1p, shamt)  # c.srli
            if sub == 1:
                return _i(0x13, rs1p, 5, rs1p, shamt | 0x400)  # c.srai
            if sub == 2:
                return _i(0x13, rs1p, 7, rs1p, imm6)  # c.andi
            f2 = (h >> 5) & 3
            if (h >> 12) & 1 == 0:
                if f2 == 0:
                    return _r(0x33, rs1p, 0, rs1p, rdp, 0x20)  # c.sub
                if f2 == 1:
                    return _r(0x33, rs1p, 4, rs1p, rdp, 0)  # c.xor
                if f2 == 2:
                    return _r(0x33, rs1p, 6, rs1p, rdp, 0)  # c.or
                return _r(0x33, rs1p, 7, rs1p, rdp, 0)  # c.and
            if f2 == 0:
                return _r(0x3B, rs1p, 0, rs1p, rdp, 0x20)  # c.subw
            if f2 == 1:
                return _r(0x3B, rs1p, 0, rs1p, rdp, 0)  # c.addw
            return 0
        if f3 == 5:  # c.j
            imm = _sext(_bit(h, 12, 11) | _bit(h, 11, 4) | (((h >> 9) & 3) << 8) | _bit(h, 8, 10)
                        | _bit(h, 7, 6) | _bit(h, 6, 7) | (((h >> 3) & 7) << 1) | _bit(h, 2, 5), 12)
            return _j(0, imm)
        imm = _sext(_bit(h, 12, 8) | (((h >> 10) & 3) << 3) | (((h >> 5) & 3) << 6)
                    | (((h >> 3) & 3) << 1) | _bit(h, 2, 5), 9)
        if f3 == 6:
            return _b(0, rs1p, 0, imm)  # c.beqz
        return _b(1, rs1p, 0, imm)  # c.bnez
    if op == 2:
        if f3 == 0:
            shamt = _bit(h, 12, 5) | ((h >> 2) & 31)
            return _i(0x13, rd, 1, rd, shamt)  # c.slli
        uimm_d = _bit(h, 12, 5) | (((h >> 5) & 3) << 3) | (((h >> 2) & 7) << 6)
        uimm_w = _bit(h, 12, 5) | (((h >> 4) & 7) << 2) | (((h >> 2) & 3) << 6)
        if f3 == 1:
            return _i(0x07, rd, 3, 2, uimm_d)  # c.fldsp
        if f3 == 2:
            if rd == 0:
                return 0
            return _i(0x03, rd, 2, 2, uimm_w)  # c.lwsp
        if f3 == 3:
            if rd == 0:
                return 0
            return _i(0x03, rd, 3, 2, uimm_d)  # c.ldsp
        if f3 == 4:
            if (h >> 12) & 1 == 0:
                if rs2 == 0:
                    if rd == 0:
                        return 0
                    return _i(0x67, 0, 0, rd, 0)  # c.jr
                return _r(0x33, rd, 0, 0, rs2, 0)  # c.mv
            if rs2 == 0:
                if rd == 0:
                    return 0x00100073  # c.ebreak
                return _i(0x67, 1, 0, rd, 0)  # c.jalr
            return _r(0x33, rd, 0, rd, rs2, 0)  # c.add
        uimm_sd = (((h >> 10) & 7) << 3) | (((h >> 7) & 7) << 6)
        uimm_sw = (((h >> 9) & 0xF) << 2) | (((h >> 7) & 3) << 6)
        if f3 == 5:
            return _s(0x27, 3, 2, rs2, uimm_sd)  # c.fsdsp
        if f3 == 6:
            return _s(0x23, 2, 2, rs2, uimm_sw)  # c.swsp
        return _s(0x23, 3, 2, rs2, uimm_sd)  # c.sdsp
    return 0


@njit(cache=True)
def _fill(table):
    for h in range(65536):
        if (h & 3) != 3:
            v = expand(h)
            table[h] = (v ^ 0x80000000) - 0x80000000  # sign-extended like a fetched 32-bit word


def build_rvc_table() -> np.ndarray:
    """The expansion of every 16-bit pattern (int32, sign-extended when loaded; 0 = illegal).

    int32 keeps the table at 256 KiB: it is read for every compressed instruction, and half
    the size stays in the host's L2 cache beside the guest's working set."""
    table = np.zeros(65536, dtype=np.int32)
    _fill(table)
    return table
