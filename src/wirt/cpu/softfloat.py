"""IEEE 754-2008 binary32/binary64 arithmetic with exact RISC-V F/D semantics, for numba.

The CPU core calls these functions from its numba-compiled interpreter loop.  Every value is
a raw IEEE bit pattern held in an int64 (binary32: the 32-bit pattern in the low 32 bits,
upper bits zero; binary64: the 64-bit pattern reinterpreted as int64).  Every arithmetic
function returns ``(result, fflags)``; fflags uses the fcsr bit layout NV|DZ|OF|UF|NX.

Design (see the RISC-V unprivileged spec, chapters "F" and "D", and IEEE 754-2008 sec. 4-7):

* Fast paths use the host's binary64 arithmetic, which always runs in round-to-nearest-even
  (we never touch the host FPU rounding mode), plus an *exact* error term (TwoSum, or the
  hardware fused multiply-add reached through the ``llvm.fma`` intrinsic).  The sign of the
  exact error tells whether the true result lies above or below the host result, which is
  all that is needed to get the RTZ/RDN/RUP result (at most one ulp away) and the NX flag.
* binary32 operations are done in binary64, where products of two singles are exact and
  sums/quotients/square roots are accompanied by their exact error sign; the binary64 value
  plus that sign is then rounded once to binary32 by integer code, so double rounding can
  never occur.
* Hard cases (results that are subnormal or tiny, overflow under directed rounding, fma
  operands out of the error-free range...) fall back to exact integer soft-float code
  (``_*_slow``) that produces a significand with a sticky bit and rounds it once with
  ``_round_pack``.
* Underflow uses tininess *after* rounding (RISC-V's choice); UF is raised only for tiny
  and inexact results.  NaN results are always the canonical NaN (unpriv spec, "NaN
  Generation and Propagation").

Rounding modes: 0=RNE 1=RTZ 2=RDN 3=RUP 4=RMM (callers resolve DYN and reject 5/6).

Compile time: every entry point is a separate numba compilation unit (~0.1-0.3 s cold each).
The integer conversions also exist as two generic entry points, ``f_to_int(a, rm, is_d,
kind)`` and ``int_to_f(x, rm, is_d, kind)`` (kind = KIND_W/WU/L/LU), which a core can call
instead of the sixteen ``cvt_*`` wrappers to compile one unit instead of sixteen.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "RNE", "RTZ", "RDN", "RUP", "RMM",
    "NV", "DZ", "OF", "UF", "NX",
    "CANONICAL_NAN_S", "CANONICAL_NAN_D",
    "add_s", "sub_s", "mul_s", "div_s", "sqrt_s", "fma_s",
    "add_d", "sub_d", "mul_d", "div_d", "sqrt_d", "fma_d",
    "min_s", "max_s", "min_d", "max_d",
    "eq_s", "lt_s", "le_s", "eq_d", "lt_d", "le_d",
    "classify_s", "classify_d",
    "cvt_w_s", "cvt_wu_s", "cvt_l_s", "cvt_lu_s",
    "cvt_w_d", "cvt_wu_d", "cvt_l_d", "cvt_lu_d",
    "cvt_s_w", "cvt_s_wu", "cvt_s_l", "cvt_s_lu",
    "cvt_d_w", "cvt_d_wu", "cvt_d_l", "cvt_d_lu",
    "cvt_s_d", "cvt_d_s",
    "f_to_int", "int_to_f", "KIND_W", "KIND_WU", "KIND_L", "KIND_LU",
]

# Rounding modes (unpriv spec, "Floating-Point Control and Status Register", rm encoding).
RNE = 0
RTZ = 1
RDN = 2
RUP = 3
RMM = 4

# fflags bits (unpriv spec, "Accrued exception flag encoding").
NV = 0x10
DZ = 0x08
OF = 0x04
UF = 0x02
NX = 0x01

CANONICAL_NAN_S = 0x7FC00000
CANONICAL_NAN_D = 0x7FF8000000000000

# Integer-conversion kinds for f_to_int / int_to_f: W=int32, WU=uint32, L=int64, LU=uint64.
KIND_W = 0
KIND_WU = 1
KIND_L = 2
KIND_LU = 3

# Operand classes returned by _kind.
_ZERO = 0
_FINITE = 1
_INF = 2
_QNAN = 3
_SNAN = 4

# int64 constants (every literal must fit in int64, or numba types it uint64).
_SIGN_D = -0x8000000000000000
_MAG_D = 0x7FFFFFFFFFFFFFFF
_EXP_D = 0x7FF0000000000000
_FRAC_D = 0x000FFFFFFFFFFFFF
_INF_D = 0x7FF0000000000000
_MAXF_D = 0x7FEFFFFFFFFFFFFF
_SIGN_S = 0x80000000
_MAG_S = 0x7FFFFFFF
_EXP_S = 0x7F800000
_FRAC_S = 0x007FFFFF
_INF_S = 0x7F800000
_MAXF_S = 0x7F7FFFFF
_M32 = 0xFFFFFFFF
_M62 = (1 << 62) - 1
_LOW29 = (1 << 29) - 1
_HALF29 = 1 << 28
_TWO_P256 = 2.0 ** 256
_TWO_M128 = 2.0 ** -128

_JIT = dict(cache=True, nogil=True, error_model="numpy")
# Hot helpers are inlined at numba-IR level: LLVM does not inline across numba libraries
# reliably, and a numba call costs several ns.
_JIT_INLINE = dict(_JIT, inline="always")


# ---------------------------------------------------------------------------------------
# LLVM intrinsics: bit casts, count-leading-zeros, fused multiply-add, 64x64->128 multiply.
# ---------------------------------------------------------------------------------------

@intrinsic
def _i2f(typingctx, x):  # type: ignore[no-untyped-def]
    """Reinterpret an int64 bit pattern as a float64 (no conversion)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _f2i(typingctx, x):  # type: ignore[no-untyped-def]
    """Reinterpret a float64 as its int64 bit pattern."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _s2f(typingctx, x):  # type: ignore[no-untyped-def]
    """Widen the binary32 pattern in the low 32 bits of an int64 to float64 (exact for non-NaN)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f = builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())
        return builder.fpext(f, ir.DoubleType())

    return sig, codegen


@intrinsic
def _f2s(typingctx, x):  # type: ignore[no-untyped-def]
    """Round a float64 to binary32 with the host's round-to-nearest-even; return its bits."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f = builder.fptrunc(args[0], ir.FloatType())
        return builder.zext(builder.bitcast(f, ir.IntType(32)), ir.IntType(64))

    return sig, codegen


@intrinsic
def _clz(typingctx, x):  # type: ignore[no-untyped-def]
    """Count leading zeros of an int64 (64 for zero)."""
    sig = types.int64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """Correctly rounded (RNE) a*b+c: hardware FMA when present, else libm fma()."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _mul128(typingctx, a, b):  # type: ignore[no-untyped-def]
    """Unsigned 64x64->128-bit product of two int64 bit patterns, as (high, low) int64."""
    sig = types.UniTuple(types.int64, 2)(types.int64, types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i128 = ir.IntType(128)
        i64 = ir.IntType(64)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        lo = builder.trunc(p, i64)
        hi = builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), i64)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@intrinsic
def _opaque(typingctx, x):  # type: ignore[no-untyped-def]
    """Identity that erases numba's literal typing of a constant argument.

    Calling a jitted helper with a literal (``True``, ``0``...) makes numba compile a
    separate specialisation per literal value; passing ``_opaque(True)`` keeps one
    compiled version per helper (cold compile time), while LLVM still propagates the
    constant once the helper is inlined.
    """
    t = types.unliteral(x)
    sig = t(t)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return args[0]

    return sig, codegen


# ---------------------------------------------------------------------------------------
# Generic helpers (is_d selects binary64 / binary32).
# ---------------------------------------------------------------------------------------

@njit(**_JIT)
def _kind(a: int, is_d: bool) -> int:
    """Classify an operand as _ZERO/_FINITE/_INF/_QNAN/_SNAN."""
    if is_d:
        e = (a >> 52) & 0x7FF
        f = a & _FRAC_D
        emax = 0x7FF
        qbit = 1 << 51
    else:
        e = (a >> 23) & 0xFF
        f = a & _FRAC_S
        emax = 0xFF
        qbit = 1 << 22
    if e == emax:
        if f == 0:
            return _INF
        if f & qbit:
            return _QNAN
        return _SNAN
    if e == 0 and f == 0:
        return _ZERO
    return _FINITE


@njit(**_JIT)
def _unpack(a: int, is_d: bool) -> tuple[int, int, int]:
    """Split a finite nonzero value into (sign, lsb_exponent, significand): |a| = sig * 2**exp."""
    if is_d:
        sign = (a >> 63) & 1
        e = (a >> 52) & 0x7FF
        sig = a & _FRAC_D
        if e == 0:
            return sign, -1074, sig
        return sign, e - 1075, sig | (1 << 52)
    sign = (a >> 31) & 1
    e = (a >> 23) & 0xFF
    sig = a & _FRAC_S
    if e == 0:
        return sign, -149, sig
    return sign, e - 150, sig | (1 << 23)


@njit(**_JIT)
def _round_up(rm: int, sign: int, q: int, r: int, half: int) -> bool:
    """Whether to increment the magnitude q given the discarded remainder r (half = one half
    of the last kept place), per IEEE 754-2008 sec. 4.3 rounding-direction attributes."""
    if r == 0:
        return False
    if rm == RNE:
        return r > half or (r == half and (q & 1) == 1)
    if rm == RTZ:
        return False
    if rm == RDN:
        return sign == 1
    if rm == RUP:
        return sign == 0
    return r >= half  # RMM: ties away from zero


@njit(**_JIT)
def _overflow(sign: int, rm: int, is_d: bool) -> tuple[int, int]:
    """IEEE 754-2008 sec. 7.4: overflow delivers infinity or the largest finite number,
    depending on the rounding direction and the sign; flags OF|NX."""
    to_max = rm == RTZ or (rm == RDN and sign == 0) or (rm == RUP and sign == 1)
    if is_d:
        mag = _MAXF_D if to_max else _INF_D
        return (sign << 63) | mag, OF | NX
    mag = _MAXF_S if to_max else _INF_S
    return (sign << 31) | mag, OF | NX


@njit(**_JIT)
def _round_pack(sign: int, e: int, sig: int, rm: int, is_d: bool) -> tuple[int, int]:
    """Round (-1)**sign * sig * 2**e once to the target format and encode it.

    ``0 < sig < 2**63``.  Bit 0 of sig may be a sticky bit (OR of discarded lower bits)
    provided sig then has at least p+3 significant bits.  Handles subnormal results with
    tininess detected after rounding (RISC-V), overflow per rounding mode, and all flags.
    """
    if is_d:
        mb = 52
        bias = 1023
        sshift = 63
    else:
        mb = 23
        bias = 127
        sshift = 31
    p = mb + 1
    emin = 1 - bias
    sh = _clz(sig) - 1  # bring the MSB to bit 62
    sig = sig << sh
    x = e - sh + 62  # unbiased exponent of the MSB
    drop = 63 - p  # bits below the p kept bits
    half = 1 << (drop - 1)
    if x >= emin:
        q = sig >> drop
        r = sig & ((1 << drop) - 1)
        if _round_up(rm, sign, q, r, half):
            q += 1
            if q == (1 << p):
                q >>= 1
                x += 1
        if x > bias:
            return _overflow(sign, rm, is_d)
        flags = NX if r != 0 else 0
        return (sign << sshift) | ((x + bias) << mb) | (q & ((1 << mb) - 1)), flags
    # Subnormal range.  Tininess after rounding: the result is tiny unless rounding to p
    # bits with an unbounded exponent range carries up to 2**emin.
    tiny = True
    if x == emin - 1:
        qu = sig >> drop
        ru = sig & ((1 << drop) - 1)
        if qu == (1 << p) - 1 and _round_up(rm, sign, qu, ru, half):
            tiny = False
    shift = drop + (emin - x)
    if shift >= 64:
        q = 0
        r = 1
        hf = 2  # nonzero remainder below one half of the smallest subnormal
    elif shift == 63:
        q = 0
        r = sig
        hf = 1 << 62
    else:
        q = sig >> shift
        r = sig & ((1 << shift) - 1)
        hf = 1 << (shift - 1)
    if _round_up(rm, sign, q, r, hf):
        q += 1  # may carry into the smallest normal: the encoding stays right
    flags = 0
    if r != 0:
        flags = (NX | UF) if tiny else NX
    return (sign << sshift) | q, flags


@njit(**_JIT)
def _canon(is_d: bool) -> int:
    """Canonical quiet NaN (unpriv spec: "NaN Generation and Propagation")."""
    return CANONICAL_NAN_D if is_d else CANONICAL_NAN_S


@njit(**_JIT)
def _zero_sum_sign(sa: int, sb: int, rm: int) -> int:
    """Sign of an exact zero sum (IEEE 754-2008 sec. 6.3): x + x keeps the sign of the
    zeros; opposite signs give +0, except -0 under roundTowardNegative."""
    if sa == sb:
        return sa
    return 1 if rm == RDN else 0


@njit(**_JIT)
def _half_ulp_d(bits: int) -> float:
    """Half an ulp of a binary64 normal value (-1.0 when not representable)."""
    e = (bits >> 52) & 0x7FF
    if e > 53:
        return _i2f((e - 53) << 52)
    if e >= 2:
        return _i2f(1 << (e - 2))  # subnormal half-ulp: 2**(e-1076) = (1 << (e-2)) * 2**-1074
    return -1.0


@njit(**_JIT_INLINE)
def _adjust_d(bits: int, s: float, err: float, rm: int) -> tuple[int, int]:
    """Given a host RNE result s (bits) of an inexact operation and any float whose sign is
    the sign of the exact error (exact - s), move s by one ulp when the rounding mode asks
    for the other neighbour.  For RMM, err must be the exact error (to detect ties).
    Requires s normal, not at the minimum normal binade edge, and finite."""
    away = (err > 0.0) == (s > 0.0)  # exact magnitude is larger than |s|
    if rm == RTZ:
        move = not away
    elif rm == RDN:
        move = err < 0.0
    elif rm == RUP:
        move = err > 0.0
    elif rm == RMM:
        # RNE and RMM differ only on exact ties, where RNE picked the even neighbour.
        move = away and (bits & 1) == 0 and abs(err) == _half_ulp_d(bits)
    else:
        move = False
    if move:
        bits += 1 if away else -1  # sign-magnitude: +1 grows the magnitude
    if (bits & _EXP_D) == _EXP_D:
        return bits, OF | NX  # moved from the largest finite number to infinity
    return bits, NX


@njit(**_JIT_INLINE)
def _d2s(s: float, adj: int, rm: int) -> tuple[int, int]:
    """Round the exact value s + eps to binary32, where s is a binary64 and eps is a value of
    sign ``adj`` (-1, 0, +1) smaller in magnitude than half an ulp of s.  s must be nonzero
    and normal when adj != 0.  Rounding happens once, so there is no double rounding."""
    sb = _f2i(s)
    sign = (sb >> 63) & 1
    mag = sb & _MAG_D
    e = mag >> 52
    low = mag & _LOW29
    adjm = adj if sign == 0 else -adj  # direction of eps relative to the magnitude
    if 899 <= e <= 1149:
        # |s| in [2**-124, 2**127): every candidate result (truncation, +-1 ulp) is a
        # normal finite binary32, so only NX can be raised.  The binary32 encoding of the
        # truncated magnitude is the binary64 encoding shifted right by 29, rebiased.
        tr = (mag >> 29) - (896 << 23)
        if low == 0 and adjm == 0:
            return (sign << 31) | tr, 0
        if rm == RNE:
            if low > _HALF29 or (low == _HALF29 and (adjm > 0 or (adjm == 0 and (tr & 1) == 1))):
                tr += 1
        elif rm == RMM:
            if low > _HALF29 or (low == _HALF29 and adjm >= 0):
                tr += 1
        elif rm == RTZ or (rm == RDN and sign == 0) or (rm == RUP and sign == 1):
            if low == 0 and adjm < 0:
                tr -= 1  # exact magnitude slightly below tr: truncation is one ulp lower
        elif low != 0 or adjm > 0:
            tr += 1  # rounding away from zero
        return (sign << 31) | tr, NX
    return _d2s_slow(sb, adj, rm)


@njit(**_JIT)
def _d2s_slow(sb: int, adj: int, rm: int) -> tuple[int, int]:
    """_d2s outside [2**-124, 2**127): exact, subnormal, tiny or overflowing results."""
    sign = (sb >> 63) & 1
    mag = sb & _MAG_D
    e = mag >> 52
    low = mag & _LOW29
    adjm = adj if sign == 0 else -adj
    f = mag & _FRAC_D
    if adj == 0 and low == 0 and 897 <= e <= 1150:
        return (sign << 31) | ((e - 896) << 23) | (f >> 29), 0  # exact binary32 normal
    if e == 0:
        m = f
        el = -1074
    else:
        m = f | (1 << 52)
        el = e - 1075
    # Four times finer grid: m*4 +- 1 lies strictly between the same binary32 rounding
    # boundaries as the exact value, so it rounds (and flags) identically.
    return _round_pack(sign, el - 2, (m << 2) + adjm, rm, _opaque(False))


@njit(**_JIT)
def _fsign(x: float) -> int:
    """-1, 0 or +1 by the sign of x."""
    if x > 0.0:
        return 1
    if x < 0.0:
        return -1
    return 0


# ---------------------------------------------------------------------------------------
# Special operands (NaN / infinity / zero) shared by both formats.
# ---------------------------------------------------------------------------------------

@njit(**_JIT)
def _add_special(a: int, b: int, is_d: bool) -> tuple[int, int]:
    """a + b when at least one operand is infinite or NaN."""
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    if ka >= _QNAN or kb >= _QNAN:
        return _canon(is_d), (NV if (ka == _SNAN or kb == _SNAN) else 0)
    sh = 63 if is_d else 31
    if ka == _INF and kb == _INF and ((a >> sh) & 1) != ((b >> sh) & 1):
        return _canon(is_d), NV  # inf - inf is invalid (IEEE 754-2008 sec. 7.2)
    if ka == _INF:
        return a, 0
    return b, 0


@njit(**_JIT)
def _mul_special(a: int, b: int, is_d: bool) -> tuple[int, int]:
    """a * b when at least one operand is infinite or NaN."""
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    if ka >= _QNAN or kb >= _QNAN:
        return _canon(is_d), (NV if (ka == _SNAN or kb == _SNAN) else 0)
    if (ka == _INF and kb == _ZERO) or (ka == _ZERO and kb == _INF):
        return _canon(is_d), NV  # 0 * inf is invalid
    if is_d:
        return ((a ^ b) & _SIGN_D) | _INF_D, 0
    return ((a ^ b) & _SIGN_S) | _INF_S, 0


@njit(**_JIT)
def _div_special(a: int, b: int, is_d: bool) -> tuple[int, int]:
    """a / b when an operand is infinite, NaN or zero."""
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    nan = _canon(is_d)
    if ka >= _QNAN or kb >= _QNAN:
        return nan, (NV if (ka == _SNAN or kb == _SNAN) else 0)
    if (ka == _INF and kb == _INF) or (ka == _ZERO and kb == _ZERO):
        return nan, NV
    if is_d:
        sign = (a ^ b) & _SIGN_D
        inf = _INF_D
    else:
        sign = (a ^ b) & _SIGN_S
        inf = _INF_S
    if ka == _INF:
        return sign | inf, 0
    if kb == _INF or ka == _ZERO:
        return sign, 0
    return sign | inf, DZ  # finite nonzero / 0: division by zero (IEEE 754-2008 sec. 7.3)


@njit(**_JIT)
def _sqrt_special(a: int, is_d: bool) -> tuple[int, int]:
    """sqrt(a) for NaN, zero, infinite or negative a."""
    k = _kind(a, is_d)
    if k >= _QNAN:
        return _canon(is_d), (NV if k == _SNAN else 0)
    if k == _ZERO:
        return a, 0  # sqrt(-0) = -0
    sh = 63 if is_d else 31
    if (a >> sh) & 1:
        return _canon(is_d), NV  # negative operand
    return a, 0  # +inf


@njit(**_JIT)
def _fma_special(a: int, b: int, c: int, is_d: bool) -> tuple[int, int]:
    """a*b + c (signs already negated as requested) when an operand is infinite or NaN."""
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    kc = _kind(c, is_d)
    invalid = (ka == _INF and kb == _ZERO) or (ka == _ZERO and kb == _INF)
    if invalid or ka >= _QNAN or kb >= _QNAN or kc >= _QNAN:
        # Unpriv spec (F, fused multiply-add): inf*0 signals NV even when c is a quiet NaN.
        snan = ka == _SNAN or kb == _SNAN or kc == _SNAN
        return _canon(is_d), (NV if (invalid or snan) else 0)
    sh = 63 if is_d else 31
    inf = _INF_D if is_d else _INF_S
    sp = ((a ^ b) >> sh) & 1
    sc = (c >> sh) & 1
    if ka == _INF or kb == _INF:
        if kc == _INF and sc != sp:
            return _canon(is_d), NV  # inf - inf
        return (sp << sh) | inf, 0
    return c, 0  # c is infinite, product finite


# ---------------------------------------------------------------------------------------
# Exact integer slow paths (finite operands only).
# ---------------------------------------------------------------------------------------

@njit(**_JIT)
def _add_slow(a: int, b: int, rm: int, is_d: bool) -> tuple[int, int]:
    """Exact a + b for finite operands, by aligned integer addition with a sticky bit."""
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    sh = 63 if is_d else 31
    if ka == _ZERO and kb == _ZERO:
        return _zero_sum_sign((a >> sh) & 1, (b >> sh) & 1, rm) << sh, 0
    if ka == _ZERO:
        return b, 0
    if kb == _ZERO:
        return a, 0
    sa, ea, ma = _unpack(a, is_d)
    sb, eb, mb = _unpack(b, is_d)
    # Normalise both significands to MSB at bit 60 (<= 53 significant bits, so bits 0..7
    # are zero: small alignment shifts lose nothing).
    na = _clz(ma) - 3
    ma <<= na
    ea -= na
    nb = _clz(mb) - 3
    mb <<= nb
    eb -= nb
    if ea < eb or (ea == eb and ma < mb):
        sa, ea, ma, sb, eb, mb = sb, eb, mb, sa, ea, ma
    d = ea - eb
    if d >= 62:
        mb = 1  # entirely below the guard bits: sticky only
    elif d > 0:
        lost = mb & ((1 << d) - 1)
        mb = (mb >> d) | (1 if lost != 0 else 0)
    if sa == sb:
        s = ma + mb
    else:
        s = ma - mb
        if s == 0:
            return _zero_sum_sign(_opaque(0), _opaque(1), rm) << sh, 0
    return _round_pack(sa, ea, s, rm, is_d)


@njit(**_JIT)
def _mul_slow(a: int, b: int, rm: int, is_d: bool) -> tuple[int, int]:
    """Exact a * b for finite nonzero operands via a 128-bit integer product."""
    sa, ea, ma = _unpack(a, is_d)
    sb, eb, mb = _unpack(b, is_d)
    sign = sa ^ sb
    hi, lo = _mul128(ma, mb)
    if hi == 0 and lo >= 0:
        return _round_pack(sign, ea + eb, lo, rm, is_d)
    n = (128 - _clz(hi)) if hi != 0 else 64  # bit length of the product
    k = n - 62
    lo_part = (lo >> k) & ((1 << (64 - k)) - 1)  # logical shift of the low word
    sticky = 1 if (lo & ((1 << k) - 1)) != 0 else 0
    sig = (hi << (64 - k)) | lo_part | sticky  # k <= 44, hi < 2**(n-64)
    return _round_pack(sign, ea + eb + k, sig, rm, is_d)


@njit(**_JIT)
def _norm(e: int, m: int, p: int) -> tuple[int, int]:
    """Normalise a nonzero significand m to exactly p bits, adjusting the lsb exponent."""
    s = _clz(m) - (64 - p)
    return e - s, m << s


@njit(**_JIT)
def _div_slow(a: int, b: int, rm: int, is_d: bool) -> tuple[int, int]:
    """Exact a / b for finite nonzero operands by chunked integer long division."""
    p = 53 if is_d else 24
    sa, ea, ma = _unpack(a, is_d)
    sb, eb, mb = _unpack(b, is_d)
    ea, ma = _norm(ea, ma, p)
    eb, mb = _norm(eb, mb, p)
    if ma < mb:
        ma <<= 1
        ea -= 1
    q = ma // mb  # == 1
    r = ma - q * mb
    steps = 6 if is_d else 3
    for _ in range(steps):  # 10 quotient bits per step; r < mb < 2**53 so r << 10 fits
        r <<= 10
        d = r // mb
        q = (q << 10) | d
        r -= d * mb
    sig = q | (1 if r != 0 else 0)
    return _round_pack(sa ^ sb, ea - eb - 10 * steps, sig, rm, is_d)


@njit(**_JIT)
def _shl2(h: int, lo: int, s: int) -> tuple[int, int]:
    """Shift a two-limb (62-bit limbs) number left by s >= 0 (result must fit in 124 bits)."""
    if s == 0:
        return h, lo
    if s >= 62:
        return lo << (s - 62), 0
    return (h << s) | (lo >> (62 - s)), (lo << s) & _M62


@njit(**_JIT)
def _shr2(h: int, lo: int, t: int) -> tuple[int, int]:
    """Shift a two-limb number right by t > 0, OR-ing every lost bit into bit 0 (sticky)."""
    if t >= 124:
        return 0, (1 if (h | lo) != 0 else 0)
    if t >= 62:
        k = t - 62
        st = 1 if (lo != 0 or (h & ((1 << k) - 1)) != 0) else 0
        return 0, (h >> k) | st
    st = 1 if (lo & ((1 << t) - 1)) != 0 else 0
    return h >> t, (lo >> t) | ((h & ((1 << t) - 1)) << (62 - t)) | st


@njit(**_JIT)
def _bitlen2(h: int, lo: int) -> int:
    """Bit length of a two-limb number."""
    if h != 0:
        return 126 - _clz(h)
    return 64 - _clz(lo)


@njit(**_JIT)
def _fma_slow(a: int, b: int, c: int, rm: int, is_d: bool) -> tuple[int, int]:
    """Exact a*b + c with a single rounding, for finite a, b, c with a*b != 0 and c != 0
    (signs already negated as requested).  Uses a 124-bit window of two 62-bit limbs: the
    larger addend is placed with its MSB at bit 121, the smaller shifted in with a sticky
    bit (bits are lost only when it is far below, so cancellation is never massive then)."""
    sa, ea, ma = _unpack(a, is_d)
    sb, eb, mb = _unpack(b, is_d)
    sc, ec, mc = _unpack(c, is_d)
    sp = sa ^ sb
    hi, lo = _mul128(ma, mb)
    ph = (hi << 2) | ((lo >> 62) & 3)
    pl = lo & _M62
    ep = ea + eb
    ch = _opaque(0)
    cl = mc
    xp = ep + _bitlen2(ph, pl) - 1  # exponent of the product's MSB
    xc = ec + 63 - _clz(cl)
    w = max(xp, xc) - 121  # exponent of window bit 0
    if ep >= w:
        ph, pl = _shl2(ph, pl, ep - w)
    else:
        ph, pl = _shr2(ph, pl, w - ep)
    if ec >= w:
        ch, cl = _shl2(ch, cl, ec - w)
    else:
        ch, cl = _shr2(ch, cl, w - ec)
    if sp == sc:
        sign = sp
        sl = pl + cl
        sh = ph + ch + (sl >> 62)
        sl &= _M62
    else:
        if ph > ch or (ph == ch and pl >= cl):
            sign = sp
            sh = ph - ch
            sl = pl - cl
        else:
            sign = sc
            sh = ch - ph
            sl = cl - pl
        if sl < 0:
            sl += 1 << 62
            sh -= 1
        if sh == 0 and sl == 0:
            shift = 63 if is_d else 31
            return _zero_sum_sign(_opaque(0), _opaque(1), rm) << shift, 0
    if sh == 0:
        return _round_pack(sign, w, sl, rm, is_d)
    k = 64 - _clz(sh)  # drop k bits so 62 remain
    sticky = 1 if (sl & ((1 << k) - 1)) != 0 else 0
    sig = (sh << (62 - k)) | (sl >> k) | sticky
    return _round_pack(sign, w + k, sig, rm, is_d)


# ---------------------------------------------------------------------------------------
# binary64 arithmetic.
#
# nx_sticky: the caller's fflags.NX is already set.  Under RNE the host's result is then the
# answer in the fast paths (no overflow or underflow can occur there) and the only flag
# left to find, NX, would change nothing; the error term that detects it is skipped and
# the returned flags may omit NX.  QEMU's hard-float path rests on the same observation.
# ---------------------------------------------------------------------------------------

@njit(**_JIT_INLINE)
def add_d(a: int, b: int, rm: int, nx_sticky: bool = False) -> tuple[int, int]:
    """fadd.d: a + b rounded per rm.

    nx_sticky says fflags.NX is already set (see the section comment)."""
    if (a & _EXP_D) == _EXP_D or (b & _EXP_D) == _EXP_D:
        return _add_special(a, b, _opaque(True))
    x = _i2f(a)
    y = _i2f(b)
    s = x + y
    sb = _f2i(s)
    if (sb & _EXP_D) == _EXP_D:
        # Host (RNE) overflowed; RMM overflows at exactly the same threshold.
        if rm == RNE or rm == RMM:
            return sb, OF | NX
        return _add_slow(a, b, rm, _opaque(True))
    if nx_sticky and rm == RNE:
        return sb, 0
    # TwoSum (Knuth): err = (x + y) - s exactly, for any finite x, y without overflow.
    # Its intermediate s - x can overflow when both operands are near the top of the
    # range (|s - x| ~ |y| rounds up to infinity): then the error term is meaningless.
    bb = s - x
    if bb == math.inf or bb == -math.inf:
        return _add_slow(a, b, rm, _opaque(True))
    err = (x - (s - bb)) + (y - bb)
    if err == 0.0:
        # Exact.  (A tiny sum of two binary64 values is always exact, so UF never arises.)
        if s == 0.0 and rm == RDN:
            return (a | b) & _SIGN_D, 0  # exact zero sum is -0 under RDN (IEEE 6.3)
        return sb, 0
    if rm == RNE:
        return sb, NX
    return _adjust_d(sb, s, err, rm)


@njit(**_JIT)
def sub_d(a: int, b: int, rm: int, nx_sticky: bool = False) -> tuple[int, int]:
    """fsub.d: a - b rounded per rm."""
    return add_d(a, b ^ _SIGN_D, rm, nx_sticky)


@njit(**_JIT_INLINE)
def mul_d(a: int, b: int, rm: int, nx_sticky: bool = False) -> tuple[int, int]:
    """fmul.d: a * b rounded per rm (nx_sticky as for add_d)."""
    if (a & _EXP_D) == _EXP_D or (b & _EXP_D) == _EXP_D:
        return _mul_special(a, b, _opaque(True))
    x = _i2f(a)
    y = _i2f(b)
    p = x * y
    pb = _f2i(p)
    ep = (pb >> 52) & 0x7FF
    if 64 <= ep < 0x7FF:
        # |p| >= 2**-959, so the exponents of x and y sum to >= -960 and the product error
        # (a multiple of ulp(x)*ulp(y) >= 2**-1064) is exactly representable: fma gives it.
        if nx_sticky and rm == RNE:
            return pb, 0
        err = _fma(x, y, -p)
        if err == 0.0:
            return pb, 0
        if rm == RNE:
            return pb, NX
        return _adjust_d(pb, p, err, rm)
    if ep == 0x7FF and (rm == RNE or rm == RMM):
        return pb, OF | NX
    if x == 0.0 or y == 0.0:
        return pb, 0  # exact signed zero
    return _mul_slow(a, b, rm, _opaque(True))


@njit(**_JIT_INLINE)
def div_d(a: int, b: int, rm: int, nx_sticky: bool = False) -> tuple[int, int]:
    """fdiv.d: a / b rounded per rm (nx_sticky as for add_d)."""
    ea = (a >> 52) & 0x7FF
    eb = (b >> 52) & 0x7FF
    if ea == 0x7FF or eb == 0x7FF or (a & _MAG_D) == 0 or (b & _MAG_D) == 0:
        return _div_special(a, b, _opaque(True))
    x = _i2f(a)
    y = _i2f(b)
    q = x / y
    qb = _f2i(q)
    eq = (qb >> 52) & 0x7FF
    if ea >= 64 and 2 <= eq < 0x7FF:
        # Remainder r = x - q*y is a multiple of ulp(q)*ulp(y) >= 2**-1074 (|x| >= 2**-959),
        # so fma returns it exactly; exact quotient = q + r/y.  A quotient of two p-bit
        # numbers is never a midpoint, so RMM == RNE here.
        if nx_sticky and rm == RNE:
            return qb, 0
        r = _fma(-q, y, x)
        if r == 0.0:
            return qb, 0
        if rm == RNE or rm == RMM:
            return qb, NX
        return _adjust_d(qb, q, r if y > 0.0 else -r, rm)
    if eq == 0x7FF and (rm == RNE or rm == RMM):
        return qb, OF | NX
    return _div_slow(a, b, rm, _opaque(True))


@njit(**_JIT)
def sqrt_d(a: int, rm: int) -> tuple[int, int]:
    """fsqrt.d: sqrt(a) rounded per rm."""
    e = (a >> 52) & 0x7FF
    if a <= 0 or e == 0x7FF:  # sign bit set, zero, inf or NaN
        return _sqrt_special(a, _opaque(True))
    x = _i2f(a)
    scaled = e < 64
    if scaled:
        x *= _TWO_P256  # exact; sqrt scales by 2**128
    y = math.sqrt(x)  # host sqrt is correctly rounded (RNE)
    # r = x - y*y: y >= 2**-480 so ulp(y)**2 >= 2**-1064 and fma yields r exactly.
    r = _fma(-y, y, x)
    flags = 0
    if r != 0.0:
        flags = NX
        # sqrt is never exactly a midpoint, so RMM == RNE; directed modes move one ulp.
        if r < 0.0 and (rm == RTZ or rm == RDN):
            y = _i2f(_f2i(y) - 1)
        elif r > 0.0 and rm == RUP:
            y = _i2f(_f2i(y) + 1)
    if scaled:
        y *= _TWO_M128  # exact: sqrt of a positive binary64 is >= 2**-537, normal
    return _f2i(y), flags


@njit(**_JIT_INLINE)
def fma_d(a: int, b: int, c: int, rm: int, negate_product: bool,
          negate_addend: bool, nx_sticky: bool = False) -> tuple[int, int]:
    """fmadd.d family: (+-a*b) + (+-c) with a single rounding (nx_sticky as for add_d).

    fmadd: (F, F); fmsub: (F, T); fnmsub: (T, F) = -(a*b) + c; fnmadd: (T, T) = -(a*b) - c.
    """
    a ^= int(negate_product) << 63  # branch-free sign flips
    c ^= int(negate_addend) << 63
    ea = (a >> 52) & 0x7FF
    eb = (b >> 52) & 0x7FF
    ec = (c >> 52) & 0x7FF
    if 1 <= ea <= 2044 and 1 <= eb <= 2044 and 1 <= ec <= 2044 and 1134 <= ea + eb <= 3066:
        # Product exponent in [-912, 1020]: a*b is finite and its error exactly
        # representable; every partial sum below stays far from overflow.
        x = _i2f(a)
        y = _i2f(b)
        z = _i2f(c)
        r1 = _fma(x, y, z)
        rb = _f2i(r1)
        er = (rb >> 52) & 0x7FF
        if 123 <= er <= 2044:
            if nx_sticky and rm == RNE:
                return rb, 0
            # Boldo & Muller, "Exact and approximated error of the FMA" (ErrFma): with no
            # underflow, a*b + c = r1 + r2 + r3 exactly, r2 = RN(r2 + r3).  The exact error
            # is r2 + r3: zero iff r2 == 0, same sign as r2, a tie iff |r2| = ulp/2, r3 = 0.
            u1 = x * y
            u2 = _fma(x, y, -u1)
            al1 = z + u2  # TwoSum(z, u2)
            t = al1 - z
            al2 = (z - (al1 - t)) + (u2 - t)
            be1 = u1 + al1  # TwoSum(u1, al1)
            t = be1 - u1
            be2 = (u1 - (be1 - t)) + (al1 - t)
            g = (be1 - r1) + be2
            r2 = g + al2  # Fast2Sum(g, al2)
            r3 = al2 - (r2 - g)
            if r2 == 0.0:
                return rb, 0
            if rm == RNE or (rm == RMM and r3 != 0.0):
                return rb, NX
            return _adjust_d(rb, r1, r2, rm)
    return _fma_d_general(a, b, c, rm)


@njit(**_JIT)
def _fma_d_general(a: int, b: int, c: int, rm: int) -> tuple[int, int]:
    """fma_d outside the error-free fast-path range: specials, zeros, extreme exponents."""
    if (a & _EXP_D) == _EXP_D or (b & _EXP_D) == _EXP_D or (c & _EXP_D) == _EXP_D:
        return _fma_special(a, b, c, _opaque(True))
    if (a & _MAG_D) == 0 or (b & _MAG_D) == 0:
        if (c & _MAG_D) != 0:
            return c, 0  # (+-0) + c is exactly c
        sp = ((a ^ b) >> 63) & 1
        return _zero_sum_sign(sp, (c >> 63) & 1, rm) << 63, 0
    if (c & _MAG_D) == 0:
        return mul_d(a, b, rm)  # a*b + 0 == a*b rounded once (a*b != 0, sign preserved)
    return _fma_slow(a, b, c, rm, _opaque(True))


# ---------------------------------------------------------------------------------------
# binary32 arithmetic (computed in binary64, rounded once to binary32).
# ---------------------------------------------------------------------------------------

@njit(**_JIT)
def add_s(a: int, b: int, rm: int) -> tuple[int, int]:
    """fadd.s: a + b rounded per rm."""
    a &= _M32
    b &= _M32
    if (a & _EXP_S) == _EXP_S or (b & _EXP_S) == _EXP_S:
        return _add_special(a, b, _opaque(False))
    x = _s2f(a)
    y = _s2f(b)
    s = x + y  # TwoSum: x + y = s + err exactly (no overflow possible in binary64)
    bb = s - x
    err = (x - (s - bb)) + (y - bb)
    if s == 0.0:
        if rm == RDN:
            return (a | b) & _SIGN_S, 0
        return (a & b) & _SIGN_S, 0
    return _d2s(s, _fsign(err), rm)


@njit(**_JIT)
def sub_s(a: int, b: int, rm: int) -> tuple[int, int]:
    """fsub.s: a - b rounded per rm."""
    return add_s(a, (b & _M32) ^ _SIGN_S, rm)


@njit(**_JIT)
def mul_s(a: int, b: int, rm: int) -> tuple[int, int]:
    """fmul.s: a * b rounded per rm."""
    a &= _M32
    b &= _M32
    if (a & _EXP_S) == _EXP_S or (b & _EXP_S) == _EXP_S:
        return _mul_special(a, b, _opaque(False))
    p = _s2f(a) * _s2f(b)  # exact: 48-bit product, exponent within binary64 range
    if p == 0.0:
        return (a ^ b) & _SIGN_S, 0
    return _d2s(p, _opaque(0), rm)


@njit(**_JIT)
def div_s(a: int, b: int, rm: int) -> tuple[int, int]:
    """fdiv.s: a / b rounded per rm."""
    a &= _M32
    b &= _M32
    if ((a & _EXP_S) == _EXP_S or (b & _EXP_S) == _EXP_S or (a & _MAG_S) == 0
            or (b & _MAG_S) == 0):
        return _div_special(a, b, _opaque(False))
    x = _s2f(a)
    y = _s2f(b)
    q = x / y  # |q| in [2**-277, 2**277]: normal binary64
    r = _fma(-q, y, x)  # exact remainder (binary32 operands: no underflow possible)
    adj = _fsign(r) if y > 0.0 else -_fsign(r)
    return _d2s(q, adj, rm)


@njit(**_JIT)
def sqrt_s(a: int, rm: int) -> tuple[int, int]:
    """fsqrt.s: sqrt(a) rounded per rm."""
    a &= _M32
    if (a & _SIGN_S) != 0 or (a & _EXP_S) == _EXP_S or a == 0:
        return _sqrt_special(a, _opaque(False))
    x = _s2f(a)
    y = math.sqrt(x)
    r = _fma(-y, y, x)  # exact sign of x - y*y
    return _d2s(y, _fsign(r), rm)


@njit(**_JIT)
def fma_s(a: int, b: int, c: int, rm: int, negate_product: bool,
          negate_addend: bool) -> tuple[int, int]:
    """fmadd.s family: (+-a*b) + (+-c) with a single rounding (see fma_d for the flags)."""
    a &= _M32
    b &= _M32
    c &= _M32
    if negate_product:
        a ^= _SIGN_S
    if negate_addend:
        c ^= _SIGN_S
    if (a & _EXP_S) == _EXP_S or (b & _EXP_S) == _EXP_S or (c & _EXP_S) == _EXP_S:
        return _fma_special(a, b, c, _opaque(False))
    p = _s2f(a) * _s2f(b)  # exact in binary64
    z = _s2f(c)
    s = p + z  # TwoSum: exact value is s + err
    bb = s - p
    err = (p - (s - bb)) + (z - bb)
    if s == 0.0:
        return _zero_sum_sign(((a ^ b) >> 31) & 1, (c >> 31) & 1, rm) << 31, 0
    return _d2s(s, _fsign(err), rm)


# ---------------------------------------------------------------------------------------
# min/max, comparisons, classification.
# ---------------------------------------------------------------------------------------

@njit(**_JIT)
def _order_key(a: int, is_d: bool) -> int:
    """Signed-integer key ordering non-NaN values numerically, with -0 < +0."""
    if not is_d:
        a = (a << 32) >> 32  # sign-extend the binary32 pattern
        return a ^ ((a >> 63) & _MAG_S)
    return a ^ ((a >> 63) & _MAG_D)


@njit(**_JIT)
def _minmax(a: int, b: int, is_d: bool, want_max: bool) -> tuple[int, int]:
    """fmin/fmax (unpriv spec 2.2+: IEEE 754-2019 minimumNumber/maximumNumber)."""
    if not is_d:
        a &= _M32
        b &= _M32
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    flags = NV if (ka == _SNAN or kb == _SNAN) else 0
    if ka >= _QNAN:
        if kb >= _QNAN:
            return _canon(is_d), flags
        return b, flags
    if kb >= _QNAN:
        return a, flags
    pick_a = _order_key(a, is_d) >= _order_key(b, is_d)
    if not want_max:
        pick_a = _order_key(a, is_d) <= _order_key(b, is_d)
    return (a if pick_a else b), flags


@njit(**_JIT)
def min_s(a: int, b: int) -> tuple[int, int]:
    """fmin.s"""
    return _minmax(a, b, _opaque(False), _opaque(False))


@njit(**_JIT)
def max_s(a: int, b: int) -> tuple[int, int]:
    """fmax.s"""
    return _minmax(a, b, _opaque(False), _opaque(True))


@njit(**_JIT)
def min_d(a: int, b: int) -> tuple[int, int]:
    """fmin.d"""
    return _minmax(a, b, _opaque(True), _opaque(False))


@njit(**_JIT)
def max_d(a: int, b: int) -> tuple[int, int]:
    """fmax.d"""
    return _minmax(a, b, _opaque(True), _opaque(True))


@njit(**_JIT)
def _compare(a: int, b: int, is_d: bool, op: int) -> tuple[int, int]:
    """op 0: feq (quiet: NV only for sNaN); 1: flt, 2: fle (signaling: NV for any NaN)."""
    if not is_d:
        a &= _M32
        b &= _M32
    ka = _kind(a, is_d)
    kb = _kind(b, is_d)
    if ka >= _QNAN or kb >= _QNAN:
        if op == 0:
            return 0, (NV if (ka == _SNAN or kb == _SNAN) else 0)
        return 0, NV
    if is_d:
        x = _i2f(a)
        y = _i2f(b)
    else:
        x = _s2f(a)
        y = _s2f(b)
    if op == 0:
        res = x == y  # host comparison: +0 == -0
    elif op == 1:
        res = x < y
    else:
        res = x <= y
    return (1 if res else 0), 0


@njit(**_JIT)
def eq_s(a: int, b: int) -> tuple[int, int]:
    """feq.s"""
    return _compare(a, b, _opaque(False), _opaque(0))


@njit(**_JIT)
def lt_s(a: int, b: int) -> tuple[int, int]:
    """flt.s"""
    return _compare(a, b, _opaque(False), _opaque(1))


@njit(**_JIT)
def le_s(a: int, b: int) -> tuple[int, int]:
    """fle.s"""
    return _compare(a, b, _opaque(False), _opaque(2))


@njit(**_JIT)
def eq_d(a: int, b: int) -> tuple[int, int]:
    """feq.d"""
    return _compare(a, b, _opaque(True), _opaque(0))


@njit(**_JIT)
def lt_d(a: int, b: int) -> tuple[int, int]:
    """flt.d"""
    return _compare(a, b, _opaque(True), _opaque(1))


@njit(**_JIT)
def le_d(a: int, b: int) -> tuple[int, int]:
    """fle.d"""
    return _compare(a, b, _opaque(True), _opaque(2))


@njit(**_JIT)
def _classify(a: int, is_d: bool) -> int:
    """fclass mask (unpriv spec, "Single-Precision Floating-Point Classify Instruction")."""
    if is_d:
        neg = (a >> 63) & 1
        e = (a >> 52) & 0x7FF
        f = a & _FRAC_D
        emax = 0x7FF
        qbit = 1 << 51
    else:
        neg = (a >> 31) & 1
        e = (a >> 23) & 0xFF
        f = a & _FRAC_S
        emax = 0xFF
        qbit = 1 << 22
    if e == emax:
        if f == 0:
            return 1 if neg else 1 << 7  # -inf / +inf
        return 1 << 9 if (f & qbit) else 1 << 8  # quiet / signaling NaN
    if e == 0:
        if f == 0:
            return 1 << 3 if neg else 1 << 4  # -0 / +0
        return 1 << 2 if neg else 1 << 5  # subnormal
    return 1 << 1 if neg else 1 << 6  # normal


@njit(**_JIT)
def classify_s(a: int) -> int:
    """fclass.s: 10-bit class mask (no flags)."""
    return _classify(a & _M32, _opaque(False))


@njit(**_JIT)
def classify_d(a: int) -> int:
    """fclass.d: 10-bit class mask (no flags)."""
    return _classify(a, _opaque(True))


# ---------------------------------------------------------------------------------------
# Conversions.
# ---------------------------------------------------------------------------------------

@njit(**_JIT)
def f_to_int(a: int, rm: int, is_d: bool, kind: int) -> tuple[int, int]:
    """fcvt.{w,wu,l,lu}.{s,d}: float -> integer rounded per rm (unpriv spec, "Floating-Point
    Conversion and Move Instructions"): out-of-range and NaN inputs saturate and raise NV
    (NaN and +inf give the maximum, -inf the minimum); 32-bit results are sign-extended."""
    if not is_d:
        a &= _M32
    k = _kind(a, is_d)
    sh = 63 if is_d else 31
    sign = (a >> sh) & 1
    if kind == KIND_W:
        maxv = 0x7FFFFFFF
        minv = -0x80000000
    elif kind == KIND_WU:
        maxv = -1  # 0xFFFFFFFF sign-extended
        minv = 0
    elif kind == KIND_L:
        maxv = _MAG_D
        minv = _SIGN_D
    else:
        maxv = -1  # 2**64 - 1
        minv = 0
    if k >= _QNAN:
        return maxv, NV
    if k == _INF:
        return (minv if sign else maxv), NV
    if k == _ZERO:
        return 0, 0
    _, e, sig = _unpack(a, is_d)
    inexact = False
    if e >= 0:
        nbits = 64 - _clz(sig) + e
        if nbits > 64:
            return (minv if sign else maxv), NV
        mag = sig << e  # may be >= 2**63, i.e. negative as int64 (unsigned magnitude)
    else:
        s = -e
        if s > 60:
            q = 0
            r = 1
            half = 2  # |a| < 2**-7: nonzero fraction below one half
        else:
            q = sig >> s
            r = sig & ((1 << s) - 1)
            half = 1 << (s - 1)
        if _round_up(rm, sign, q, r, half):
            q += 1
        inexact = r != 0
        mag = q
        nbits = 64 - _clz(mag)
    flags = NX if inexact else 0
    if kind == KIND_W:
        ok = mag <= 0x7FFFFFFF or (sign == 1 and mag == 0x80000000) if nbits <= 32 else False
    elif kind == KIND_WU:
        ok = (mag == 0) if sign else (nbits <= 32)
    elif kind == KIND_L:
        ok = nbits <= 63 or (sign == 1 and mag == _SIGN_D)
    else:
        ok = (mag == 0) if sign else True
    if not ok:
        return (minv if sign else maxv), NV
    val = -mag if sign else mag
    if kind == KIND_WU:
        val = (val << 32) >> 32  # RV64: 32-bit results are sign-extended
    return val, flags


@njit(**_JIT)
def int_to_f(x: int, rm: int, is_d: bool, kind: int) -> tuple[int, int]:
    """fcvt.{s,d}.{w,wu,l,lu}: integer -> float rounded per rm (NX when inexact).  For the
    32-bit kinds only the low 32 bits of x are used (sign- or zero-extended)."""
    if kind == KIND_W:
        x = (x << 32) >> 32
    elif kind == KIND_WU:
        x &= _M32
    sign = 0
    mag = x
    if (kind == KIND_W or kind == KIND_L) and x < 0:
        sign = 1
        mag = -x  # for -2**63 stays 0x8000...: read as unsigned 2**63 below
    if mag == 0:
        return 0, 0
    sshift = 63 if is_d else 31
    lim = (1 << 53) if is_d else (1 << 24)
    if 0 < mag <= lim:
        # Exactly representable: the host conversion is exact.
        f = float(mag)
        if is_d:
            return (sign << 63) | _f2i(f), 0
        return (sign << sshift) | _f2s(f), 0
    if mag < 0:  # unsigned magnitude >= 2**63: halve it with a sticky bit
        sig = ((mag >> 1) & _MAG_D) | (mag & 1)
        return _round_pack(sign, _opaque(1), sig, rm, is_d)
    return _round_pack(sign, _opaque(0), mag, rm, is_d)


@njit(**_JIT)
def cvt_w_s(a: int, rm: int) -> tuple[int, int]:
    """fcvt.w.s"""
    return f_to_int(a, rm, _opaque(False), _opaque(KIND_W))


@njit(**_JIT)
def cvt_wu_s(a: int, rm: int) -> tuple[int, int]:
    """fcvt.wu.s"""
    return f_to_int(a, rm, _opaque(False), _opaque(KIND_WU))


@njit(**_JIT)
def cvt_l_s(a: int, rm: int) -> tuple[int, int]:
    """fcvt.l.s"""
    return f_to_int(a, rm, _opaque(False), _opaque(KIND_L))


@njit(**_JIT)
def cvt_lu_s(a: int, rm: int) -> tuple[int, int]:
    """fcvt.lu.s"""
    return f_to_int(a, rm, _opaque(False), _opaque(KIND_LU))


@njit(**_JIT)
def cvt_w_d(a: int, rm: int) -> tuple[int, int]:
    """fcvt.w.d"""
    return f_to_int(a, rm, _opaque(True), _opaque(KIND_W))


@njit(**_JIT)
def cvt_wu_d(a: int, rm: int) -> tuple[int, int]:
    """fcvt.wu.d"""
    return f_to_int(a, rm, _opaque(True), _opaque(KIND_WU))


@njit(**_JIT)
def cvt_l_d(a: int, rm: int) -> tuple[int, int]:
    """fcvt.l.d"""
    return f_to_int(a, rm, _opaque(True), _opaque(KIND_L))


@njit(**_JIT)
def cvt_lu_d(a: int, rm: int) -> tuple[int, int]:
    """fcvt.lu.d"""
    return f_to_int(a, rm, _opaque(True), _opaque(KIND_LU))


@njit(**_JIT)
def cvt_s_w(x: int, rm: int) -> tuple[int, int]:
    """fcvt.s.w"""
    return int_to_f(x, rm, _opaque(False), _opaque(KIND_W))


@njit(**_JIT)
def cvt_s_wu(x: int, rm: int) -> tuple[int, int]:
    """fcvt.s.wu"""
    return int_to_f(x, rm, _opaque(False), _opaque(KIND_WU))


@njit(**_JIT)
def cvt_s_l(x: int, rm: int) -> tuple[int, int]:
    """fcvt.s.l"""
    return int_to_f(x, rm, _opaque(False), _opaque(KIND_L))


@njit(**_JIT)
def cvt_s_lu(x: int, rm: int) -> tuple[int, int]:
    """fcvt.s.lu"""
    return int_to_f(x, rm, _opaque(False), _opaque(KIND_LU))


@njit(**_JIT)
def cvt_d_w(x: int, rm: int) -> tuple[int, int]:
    """fcvt.d.w (always exact)"""
    return int_to_f(x, rm, _opaque(True), _opaque(KIND_W))


@njit(**_JIT)
def cvt_d_wu(x: int, rm: int) -> tuple[int, int]:
    """fcvt.d.wu (always exact)"""
    return int_to_f(x, rm, _opaque(True), _opaque(KIND_WU))


@njit(**_JIT)
def cvt_d_l(x: int, rm: int) -> tuple[int, int]:
    """fcvt.d.l"""
    return int_to_f(x, rm, _opaque(True), _opaque(KIND_L))


@njit(**_JIT)
def cvt_d_lu(x: int, rm: int) -> tuple[int, int]:
    """fcvt.d.lu"""
    return int_to_f(x, rm, _opaque(True), _opaque(KIND_LU))


@njit(**_JIT)
def cvt_s_d(a: int, rm: int) -> tuple[int, int]:
    """fcvt.s.d: narrow binary64 to binary32 (NaN -> canonical NaN, NV for sNaN)."""
    k = _kind(a, _opaque(True))
    if k >= _QNAN:
        return CANONICAL_NAN_S, (NV if k == _SNAN else 0)
    sign = (a >> 63) & 1
    if k == _INF:
        return (sign << 31) | _INF_S, 0
    if k == _ZERO:
        return sign << 31, 0
    return _d2s(_i2f(a), _opaque(0), rm)


@njit(**_JIT)
def cvt_d_s(a: int, rm: int) -> tuple[int, int]:
    """fcvt.d.s: widen binary32 to binary64 (exact; rm unused; NaN -> canonical, NV for sNaN)."""
    a &= _M32
    k = _kind(a, _opaque(False))
    if k >= _QNAN:
        return CANONICAL_NAN_D, (NV if k == _SNAN else 0)
    return _f2i(_s2f(a)), 0
