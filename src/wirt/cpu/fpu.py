"""Execution of the F and D extensions' computational instructions (unpriv spec ch. 13, 14).

The arithmetic is `softfloat` (exact IEEE 754 with RISC-V NaN rules); this module decodes
OP-FP and the fused multiply-add opcodes, handles NaN-boxing of single values in the 64-bit
f registers (spec 14.2), the rounding-mode field and fcsr.fflags, and mstatus.FS.
Loads and stores (flw/fld/fsw/fsd) are in the core, beside the integer ones.
"""

from numba import njit

from wirt.cpu import softfloat as sf
from wirt.cpu.layout import CSR_FCSR, CSR_MSTATUS, F0, MS_FS

BOX = -(1 << 32)  # upper 32 bits all ones: a NaN-boxed single (spec 14.2)
FP_OK = 0
FP_ILLEGAL = 1


@njit(cache=True, nogil=True, inline="always")
def unbox(v):
    """The single-precision value in an f register; an improperly boxed one reads as the
    canonical NaN (spec 14.2)."""
    if (v >> 32) != -1:
        return sf.CANONICAL_NAN_S
    return v & 0xFFFFFFFF


@njit(cache=True, nogil=True, inline="always")
def box(v):
    return (v & 0xFFFFFFFF) | BOX


@njit(cache=True, nogil=True)
def fp_execute(s, c, inst):
    """Execute one OP-FP / FMADD / FMSUB / FNMSUB / FNMADD instruction; returns FP_OK or
    FP_ILLEGAL. Writes fflags and marks mstatus.FS dirty."""
    if (c[CSR_MSTATUS] & MS_FS) == 0:
        return FP_ILLEGAL  # FS = Off: every FP instruction is illegal (priv spec 3.1.6.6)
    op = inst & 0x7F
    rd = (inst >> 7) & 31
    rm = (inst >> 12) & 7
    rs1 = (inst >> 15) & 31
    rs2 = (inst >> 20) & 31
    fmt = (inst >> 25) & 3
    if fmt > 1:
        return FP_ILLEGAL  # H and Q formats are not implemented
    is_d = fmt == 1
    frm = rm
    if frm == 7:
        frm = (c[CSR_FCSR] >> 5) & 7
    rm_ok = frm <= 4  # 5 and 6 are reserved, and 7 in frm is invalid (spec 13.2)
    a = s[F0 + rs1]
    b = s[F0 + rs2]
    flags = 0
    res = 0
    to_int = False
    if op != 0x53:  # fused multiply-add: rs3 in bits 31:27
        if not rm_ok:
            return FP_ILLEGAL
        cc = s[F0 + ((inst >> 27) & 31)]
        neg_p = op == 0x4B or op == 0x4F  # fnmsub, fnmadd: -(a*b)
        neg_c = op == 0x47 or op == 0x4F  # fmsub, fnmadd: -c
        if is_d:
            res, flags = sf.fma_d(a, b, cc, frm, neg_p, neg_c)
        else:
            res, flags = sf.fma_s(unbox(a), unbox(b), unbox(cc), frm, neg_p, neg_c)
    else:
        f5 = inst >> 27 & 31
        if not is_d:
            a = unbox(a)
            b = unbox(b)
        if f5 <= 3 or f5 == 0x0B:  # add, sub, mul, div, sqrt
            if not rm_ok:
                return FP_ILLEGAL
            if f5 == 0:
                res, flags = sf.add_d(a, b, frm) if is_d else sf.add_s(a, b, frm)
            elif f5 == 1:
                res, flags = sf.sub_d(a, b, frm) if is_d else sf.sub_s(a, b, frm)
            elif f5 == 2:
                res, flags = sf.mul_d(a, b, frm) if is_d else sf.mul_s(a, b, frm)
            elif f5 == 3:
                res, flags = sf.div_d(a, b, frm) if is_d else sf.div_s(a, b, frm)
            else:
                if rs2 != 0:
                    return FP_ILLEGAL
                res, flags = sf.sqrt_d(a, frm) if is_d else sf.sqrt_s(a, frm)
        elif f5 == 4:  # fsgnj, fsgnjn, fsgnjx (spec 13.6): no NaN canonicalisation
            sbit = 63 if is_d else 31
            sign_b = (b >> sbit) & 1
            if rm == 1:
                sign_b ^= 1
            elif rm == 2:
                sign_b ^= (a >> sbit) & 1
            elif rm != 0:
                return FP_ILLEGAL
            res = (a & ~(1 << sbit)) | (sign_b << sbit)
        elif f5 == 5:  # fmin, fmax
            if rm == 0:
                res, flags = sf.min_d(a, b) if is_d else sf.min_s(a, b)
            elif rm == 1:
                res, flags = sf.max_d(a, b) if is_d else sf.max_s(a, b)
            else:
                return FP_ILLEGAL
        elif f5 == 8:  # fcvt.s.d / fcvt.d.s
            if not rm_ok:
                return FP_ILLEGAL
            if is_d and rs2 == 0:
                res, flags = sf.cvt_d_s(unbox(s[F0 + rs1]), frm)
            elif not is_d and rs2 == 1:
                res, flags = sf.cvt_s_d(s[F0 + rs1], frm)
            else:
                return FP_ILLEGAL
        elif f5 == 0x14:  # feq, flt, fle -> integer rd
            to_int = True
            if rm == 2:
                res, flags = sf.eq_d(a, b) if is_d else sf.eq_s(a, b)
            elif rm == 1:
                res, flags = sf.lt_d(a, b) if is_d else sf.lt_s(a, b)
            elif rm == 0:
                res, flags = sf.le_d(a, b) if is_d else sf.le_s(a, b)
            else:
                return FP_ILLEGAL
        elif f5 == 0x18:  # fcvt.{w,wu,l,lu}.{s,d}
            if not rm_ok or rs2 > 3:
                return FP_ILLEGAL
            to_int = True
            res, flags = sf.f_to_int(a, frm, is_d, rs2)
        elif f5 == 0x1A:  # fcvt.{s,d}.{w,wu,l,lu}
            if not rm_ok or rs2 > 3:
                return FP_ILLEGAL
            res, flags = sf.int_to_f(s[rs1], frm, is_d, rs2)
        elif f5 == 0x1C:  # fmv.x.{w,d} and fclass
            if rs2 != 0:
                return FP_ILLEGAL
            to_int = True
            if rm == 0:
                raw = s[F0 + rs1]  # bits move unchanged; fmv.x.w sign-extends bit 31
                if is_d:
                    res = raw
                else:
                    res = ((raw & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            elif rm == 1:
                res = sf.classify_d(a) if is_d else sf.classify_s(a)
            else:
                return FP_ILLEGAL
        elif f5 == 0x1E:  # fmv.{w,d}.x
            if rs2 != 0 or rm != 0:
                return FP_ILLEGAL
            res = s[rs1]
        else:
            return FP_ILLEGAL
    if to_int:
        if rd != 0:
            s[rd] = res
    else:
        s[F0 + rd] = res if is_d else box(res)
    if flags != 0:
        c[CSR_FCSR] |= flags
    c[CSR_MSTATUS] |= MS_FS  # any FP state change makes FS Dirty (priv spec 3.1.6.6)
    return FP_OK
