"""Execution of the F and D extensions' computational instructions (unpriv spec ch. 13, 14).

The arithmetic is `softfloat` (exact IEEE 754 with RISC-V NaN rules); this module decodes
OP-FP and the fused multiply-add opcodes, handles NaN-boxing of single values in the 64-bit
f registers (spec 14.2), the rounding-mode field and fcsr.fflags, and mstatus.FS.
Loads and stores (flw/fld/fsw/fsd) are in the core, beside the integer ones.
"""

from numba import njit

from wirt.cpu import softfloat as sf

BOX = -(1 << 32)  # upper 32 bits all ones: a NaN-boxed single (spec 14.2)
# What fp_compute asks the core to do with its result.
FP_ILLEGAL = 0
FP_WRITE_F = 1  # write the f register rd
FP_WRITE_X = 2  # write the x register rd


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


@njit(cache=True, nogil=True, inline="always")
def fp_compute(inst, a, b, cc, xs1, fcsr):
    """Compute one OP-FP / FMADD / FMSUB / FNMSUB / FNMADD instruction.

    a, b, cc are the raw f registers rs1, rs2, rs3; xs1 is x[rs1]; fcsr supplies the dynamic
    rounding mode. Returns (action, result, fflags). Scalars only: passing arrays between
    compiled functions costs reference counting on every call.
    """
    op = inst & 0x7F
    rm = (inst >> 12) & 7
    rs2 = (inst >> 20) & 31
    fmt = (inst >> 25) & 3
    if fmt > 1:
        return FP_ILLEGAL, 0, 0  # H and Q formats are not implemented
    is_d = fmt == 1
    frm = rm
    if frm == 7:
        frm = (fcsr >> 5) & 7
    rm_ok = frm <= 4  # 5 and 6 are reserved, and 7 in frm is invalid (spec 13.2)
    nx = (fcsr & sf.NX) != 0  # inexact already raised: RNE results need no error term
    flags = 0
    res = 0
    to_int = False
    if op != 0x53:  # fused multiply-add: rs3 in bits 31:27
        if not rm_ok:
            return FP_ILLEGAL, 0, 0
        # 0x43 fmadd, 0x47 fmsub (-c), 0x4B fnmsub (-(a*b)), 0x4F fnmadd (both negated)
        neg_p = (op & 8) != 0
        neg_c = (op & 4) != 0
        if is_d:
            res, flags = sf.fma_d(a, b, cc, frm, neg_p, neg_c, nx)
        else:
            res, flags = sf.fma_s(unbox(a), unbox(b), unbox(cc), frm, neg_p, neg_c)
    else:
        f5 = inst >> 27 & 31
        raw_a = a
        if not is_d:
            a = unbox(a)
            b = unbox(b)
        if f5 <= 3 or f5 == 0x0B:  # add, sub, mul, div, sqrt
            if not rm_ok:
                return FP_ILLEGAL, 0, 0
            if f5 == 0:
                res, flags = sf.add_d(a, b, frm, nx) if is_d else sf.add_s(a, b, frm)
            elif f5 == 1:
                res, flags = sf.sub_d(a, b, frm, nx) if is_d else sf.sub_s(a, b, frm)
            elif f5 == 2:
                res, flags = sf.mul_d(a, b, frm, nx) if is_d else sf.mul_s(a, b, frm)
            elif f5 == 3:
                res, flags = sf.div_d(a, b, frm, nx) if is_d else sf.div_s(a, b, frm)
            else:
                if rs2 != 0:
                    return FP_ILLEGAL, 0, 0
                res, flags = sf.sqrt_d(a, frm) if is_d else sf.sqrt_s(a, frm)
        elif f5 == 4:  # fsgnj, fsgnjn, fsgnjx (spec 13.6): no NaN canonicalisation
            sbit = 63 if is_d else 31
            sign_b = (b >> sbit) & 1
            if rm == 1:
                sign_b ^= 1
            elif rm == 2:
                sign_b ^= (a >> sbit) & 1
            elif rm != 0:
                return FP_ILLEGAL, 0, 0
            res = (a & ~(1 << sbit)) | (sign_b << sbit)
        elif f5 == 5:  # fmin, fmax
            if rm == 0:
                res, flags = sf.min_d(a, b) if is_d else sf.min_s(a, b)
            elif rm == 1:
                res, flags = sf.max_d(a, b) if is_d else sf.max_s(a, b)
            else:
                return FP_ILLEGAL, 0, 0
        elif f5 == 8:  # fcvt.s.d / fcvt.d.s
            if not rm_ok:
                return FP_ILLEGAL, 0, 0
            if is_d and rs2 == 0:
                res, flags = sf.cvt_d_s(unbox(raw_a), frm)
            elif not is_d and rs2 == 1:
                res, flags = sf.cvt_s_d(raw_a, frm)
            else:
                return FP_ILLEGAL, 0, 0
        elif f5 == 0x14:  # feq, flt, fle -> integer rd
            to_int = True
            if rm == 2:
                res, flags = sf.eq_d(a, b) if is_d else sf.eq_s(a, b)
            elif rm == 1:
                res, flags = sf.lt_d(a, b) if is_d else sf.lt_s(a, b)
            elif rm == 0:
                res, flags = sf.le_d(a, b) if is_d else sf.le_s(a, b)
            else:
                return FP_ILLEGAL, 0, 0
        elif f5 == 0x18:  # fcvt.{w,wu,l,lu}.{s,d}
            if not rm_ok or rs2 > 3:
                return FP_ILLEGAL, 0, 0
            to_int = True
            res, flags = sf.f_to_int(a, frm, is_d, rs2)
        elif f5 == 0x1A:  # fcvt.{s,d}.{w,wu,l,lu}
            if not rm_ok or rs2 > 3:
                return FP_ILLEGAL, 0, 0
            res, flags = sf.int_to_f(xs1, frm, is_d, rs2)
        elif f5 == 0x1C:  # fmv.x.{w,d} and fclass
            if rs2 != 0:
                return FP_ILLEGAL, 0, 0
            to_int = True
            if rm == 0:
                raw = raw_a  # bits move unchanged; fmv.x.w sign-extends bit 31
                if is_d:
                    res = raw
                else:
                    res = ((raw & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            elif rm == 1:
                res = sf.classify_d(a) if is_d else sf.classify_s(a)
            else:
                return FP_ILLEGAL, 0, 0
        elif f5 == 0x1E:  # fmv.{w,d}.x
            if rs2 != 0 or rm != 0:
                return FP_ILLEGAL, 0, 0
            res = xs1
        else:
            return FP_ILLEGAL, 0, 0
    if to_int:
        return FP_WRITE_X, res, flags
    if not is_d:
        res = box(res)
    return FP_WRITE_F, res, flags
