"""Exact pure-Python reference for RISC-V F/D arithmetic, built on fractions.Fraction.

Every operation computes the exact real result as a Fraction (square roots via an integer
square root with a sticky half-unit) and rounds it once, following IEEE 754-2008 with the
RISC-V choices: tininess detected after rounding, canonical NaN results, saturating
float->integer conversions.  Slow but obviously correct; used only by the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

RNE, RTZ, RDN, RUP, RMM = range(5)
NV, DZ, OF, UF, NX = 0x10, 0x08, 0x04, 0x02, 0x01


@dataclass(frozen=True)
class Fmt:
    """An IEEE binary interchange format."""

    mbits: int  # stored fraction bits
    ebits: int

    @property
    def p(self) -> int:
        return self.mbits + 1

    @property
    def bias(self) -> int:
        return (1 << (self.ebits - 1)) - 1

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def emax(self) -> int:
        return self.bias

    @property
    def width(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def sign_bit(self) -> int:
        return 1 << (self.width - 1)

    @property
    def inf(self) -> int:
        return ((1 << self.ebits) - 1) << self.mbits

    @property
    def max_finite(self) -> int:
        return self.inf - 1

    @property
    def canonical_nan(self) -> int:
        return self.inf | (1 << (self.mbits - 1))


S = Fmt(23, 8)
D = Fmt(52, 11)


def fmt_of(is_d: bool) -> Fmt:
    return D if is_d else S


# ----------------------------------------------------------------------------- decoding

def sign_of(bits: int, f: Fmt) -> int:
    return (bits >> (f.width - 1)) & 1


def is_nan(bits: int, f: Fmt) -> bool:
    return (bits & (f.sign_bit - 1)) > f.inf


def is_snan(bits: int, f: Fmt) -> bool:
    return is_nan(bits, f) and not (bits >> (f.mbits - 1)) & 1


def is_inf(bits: int, f: Fmt) -> bool:
    return (bits & (f.sign_bit - 1)) == f.inf


def is_zero(bits: int, f: Fmt) -> bool:
    return (bits & (f.sign_bit - 1)) == 0


def value(bits: int, f: Fmt) -> Fraction:
    """Exact value of a finite encoding (zeros give 0)."""
    e = (bits >> f.mbits) & ((1 << f.ebits) - 1)
    m = bits & ((1 << f.mbits) - 1)
    if e == 0:
        v = Fraction(m) * Fraction(2) ** (f.emin - f.mbits)
    else:
        v = Fraction(m + (1 << f.mbits)) * Fraction(2) ** (e - f.bias - f.mbits)
    return -v if sign_of(bits, f) else v


# ----------------------------------------------------------------------------- rounding

def round_integer(mag: Fraction, rm: int, negative: bool) -> int:
    """Round a nonnegative magnitude to an integer per rm (the sign matters for RDN/RUP)."""
    fl = math.floor(mag)
    frac = mag - fl
    if frac == 0:
        return fl
    half = Fraction(1, 2)
    if rm == RNE:
        up = frac > half or (frac == half and fl % 2 == 1)
    elif rm == RTZ:
        up = False
    elif rm == RDN:
        up = negative
    elif rm == RUP:
        up = not negative
    elif rm == RMM:
        up = frac >= half
    else:
        raise ValueError(rm)
    return fl + 1 if up else fl


def floor_log2(v: Fraction) -> int:
    """floor(log2(v)) for v > 0."""
    x = v.numerator.bit_length() - v.denominator.bit_length()
    if Fraction(2) ** x > v:
        x -= 1
    elif Fraction(2) ** (x + 1) <= v:
        x += 1
    return x


def encode_zero(negative: bool, f: Fmt) -> int:
    return f.sign_bit if negative else 0


def round_to_format(v: Fraction, rm: int, f: Fmt) -> tuple[int, int]:
    """Round a nonzero exact value to format f: (bits, flags)."""
    assert v != 0
    neg = v < 0
    mag = -v if neg else v
    x = floor_log2(mag)
    # Unbounded exponent range rounding: decides overflow and tininess (after rounding).
    q_unb = round_integer(mag / Fraction(2) ** (x - f.p + 1), rm, neg)
    unbounded = q_unb * Fraction(2) ** (x - f.p + 1)
    if unbounded >= Fraction(2) ** (f.emax + 1):
        to_max = rm == RTZ or (rm == RDN and not neg) or (rm == RUP and neg)
        m = f.max_finite if to_max else f.inf
        return (f.sign_bit if neg else 0) | m, OF | NX
    tiny = unbounded < Fraction(2) ** f.emin
    quantum = Fraction(2) ** (max(x, f.emin) - f.p + 1)
    q = round_integer(mag / quantum, rm, neg)
    result = q * quantum
    flags = 0
    if result != mag:
        flags |= NX
        if tiny:
            flags |= UF
    if result == 0:
        return encode_zero(neg, f), flags
    if result < Fraction(2) ** f.emin:
        bits = int(result / Fraction(2) ** (f.emin - f.mbits))
    else:
        e = floor_log2(result)
        m = int(result / Fraction(2) ** (e - f.mbits)) - (1 << f.mbits)
        bits = ((e + f.bias) << f.mbits) | m
    return (f.sign_bit if neg else 0) | bits, flags


def _nan_result(f: Fmt, *ops: int, invalid: bool = False) -> tuple[int, int]:
    snan = any(is_snan(o, f) for o in ops)
    return f.canonical_nan, (NV if (snan or invalid) else 0)


def _zero_sum(sa: int, sb: int, rm: int, f: Fmt) -> int:
    """IEEE 754-2008 6.3: exact zero sums."""
    if sa == sb:
        return encode_zero(bool(sa), f)
    return encode_zero(rm == RDN, f)


# ----------------------------------------------------------------------------- arithmetic

def add(a: int, b: int, rm: int, f: Fmt) -> tuple[int, int]:
    if is_nan(a, f) or is_nan(b, f):
        return _nan_result(f, a, b)
    if is_inf(a, f) and is_inf(b, f):
        if sign_of(a, f) != sign_of(b, f):
            return f.canonical_nan, NV
        return a, 0
    if is_inf(a, f):
        return a, 0
    if is_inf(b, f):
        return b, 0
    v = value(a, f) + value(b, f)
    if v == 0:
        if is_zero(a, f) and is_zero(b, f):
            return _zero_sum(sign_of(a, f), sign_of(b, f), rm, f), 0
        return _zero_sum(0, 1, rm, f), 0
    return round_to_format(v, rm, f)


def sub(a: int, b: int, rm: int, f: Fmt) -> tuple[int, int]:
    return add(a, b ^ f.sign_bit, rm, f)


def mul(a: int, b: int, rm: int, f: Fmt) -> tuple[int, int]:
    if is_nan(a, f) or is_nan(b, f):
        return _nan_result(f, a, b)
    sign = sign_of(a, f) ^ sign_of(b, f)
    if (is_inf(a, f) and is_zero(b, f)) or (is_zero(a, f) and is_inf(b, f)):
        return f.canonical_nan, NV
    if is_inf(a, f) or is_inf(b, f):
        return (f.sign_bit if sign else 0) | f.inf, 0
    if is_zero(a, f) or is_zero(b, f):
        return encode_zero(bool(sign), f), 0
    return round_to_format(value(a, f) * value(b, f), rm, f)


def div(a: int, b: int, rm: int, f: Fmt) -> tuple[int, int]:
    if is_nan(a, f) or is_nan(b, f):
        return _nan_result(f, a, b)
    sign = sign_of(a, f) ^ sign_of(b, f)
    sbit = f.sign_bit if sign else 0
    if (is_inf(a, f) and is_inf(b, f)) or (is_zero(a, f) and is_zero(b, f)):
        return f.canonical_nan, NV
    if is_inf(a, f):
        return sbit | f.inf, 0
    if is_inf(b, f) or is_zero(a, f):
        return sbit, 0
    if is_zero(b, f):
        return sbit | f.inf, DZ
    return round_to_format(value(a, f) / value(b, f), rm, f)


def _sqrt_fraction(v: Fraction, extra_bits: int = 80) -> Fraction:
    """A value that rounds exactly like sqrt(v) (v a positive dyadic rational): the integer
    square root on a grid much finer than any target format, plus half a unit if inexact."""
    num, den = v.numerator, v.denominator  # den is a power of two
    k = den.bit_length() - 1
    # v = num / 2**k; make the exponent even and scale up by 2**(2*extra_bits).
    if k % 2:
        num <<= 1
        k += 1
    scaled = num << (2 * extra_bits)
    r = math.isqrt(scaled)
    exact = r * r == scaled
    root = Fraction(r) if exact else Fraction(2 * r + 1, 2)
    return root / Fraction(2) ** (k // 2 + extra_bits)


def sqrt(a: int, rm: int, f: Fmt) -> tuple[int, int]:
    if is_nan(a, f):
        return _nan_result(f, a)
    if is_zero(a, f):
        return a, 0
    if sign_of(a, f):
        return f.canonical_nan, NV
    if is_inf(a, f):
        return a, 0
    return round_to_format(_sqrt_fraction(value(a, f)), rm, f)


def fma(a: int, b: int, c: int, rm: int, f: Fmt, negate_product: bool = False,
        negate_addend: bool = False) -> tuple[int, int]:
    """(+-a*b) + (+-c), single rounding."""
    if negate_product:
        a ^= f.sign_bit
    if negate_addend:
        c ^= f.sign_bit
    invalid = (is_inf(a, f) and is_zero(b, f)) or (is_zero(a, f) and is_inf(b, f))
    if invalid or is_nan(a, f) or is_nan(b, f) or is_nan(c, f):
        return _nan_result(f, a, b, c, invalid=invalid)
    sp = sign_of(a, f) ^ sign_of(b, f)
    sc = sign_of(c, f)
    if is_inf(a, f) or is_inf(b, f):
        if is_inf(c, f) and sc != sp:
            return f.canonical_nan, NV
        return (f.sign_bit if sp else 0) | f.inf, 0
    if is_inf(c, f):
        return c, 0
    v = value(a, f) * value(b, f) + value(c, f)
    if v == 0:
        return _zero_sum(sp, sc, rm, f), 0
    return round_to_format(v, rm, f)


# ----------------------------------------------------------------------------- others

def _key(bits: int, f: Fmt) -> tuple[Fraction, int]:
    # numeric value, then -0 < +0
    return value(bits, f), 0 if sign_of(bits, f) else 1


def _finite_or_inf_value(bits: int, f: Fmt) -> Fraction | float:
    if is_inf(bits, f):
        return -math.inf if sign_of(bits, f) else math.inf
    return value(bits, f)


def minmax(a: int, b: int, f: Fmt, want_max: bool) -> tuple[int, int]:
    flags = NV if (is_snan(a, f) or is_snan(b, f)) else 0
    if is_nan(a, f) and is_nan(b, f):
        return f.canonical_nan, flags
    if is_nan(a, f):
        return b, flags
    if is_nan(b, f):
        return a, flags
    ka = (_finite_or_inf_value(a, f), 0 if sign_of(a, f) else 1)
    kb = (_finite_or_inf_value(b, f), 0 if sign_of(b, f) else 1)
    if want_max:
        return (a if ka >= kb else b), flags
    return (a if ka <= kb else b), flags


def compare(a: int, b: int, f: Fmt, op: str) -> tuple[int, int]:
    """op in {'eq', 'lt', 'le'}."""
    if is_nan(a, f) or is_nan(b, f):
        if op == "eq":
            return 0, NV if (is_snan(a, f) or is_snan(b, f)) else 0
        return 0, NV
    x = _finite_or_inf_value(a, f)
    y = _finite_or_inf_value(b, f)
    res = {"eq": x == y, "lt": x < y, "le": x <= y}[op]
    return int(res), 0


def classify(a: int, f: Fmt) -> int:
    neg = sign_of(a, f)
    e = (a >> f.mbits) & ((1 << f.ebits) - 1)
    m = a & ((1 << f.mbits) - 1)
    if is_inf(a, f):
        return 1 << 0 if neg else 1 << 7
    if is_nan(a, f):
        return 1 << 8 if is_snan(a, f) else 1 << 9
    if e == 0 and m == 0:
        return 1 << 3 if neg else 1 << 4
    if e == 0:
        return 1 << 2 if neg else 1 << 5
    return 1 << 1 if neg else 1 << 6


INT_RANGES = {
    "w": (-(1 << 31), (1 << 31) - 1, 32),
    "wu": (0, (1 << 32) - 1, 32),
    "l": (-(1 << 63), (1 << 63) - 1, 64),
    "lu": (0, (1 << 64) - 1, 64),
}


def _to_int64(v: int, width: int) -> int:
    """Register image: sign-extend a width-bit two's-complement pattern to a signed int64."""
    v &= (1 << width) - 1
    if v >> (width - 1):
        v -= 1 << width
    return v


def f_to_int(a: int, rm: int, f: Fmt, kind: str) -> tuple[int, int]:
    lo, hi, width = INT_RANGES[kind]
    if is_nan(a, f):
        return _to_int64(hi, width), NV
    if is_inf(a, f):
        return _to_int64(lo if sign_of(a, f) else hi, width), NV
    v = value(a, f)
    neg = v < 0
    r = round_integer(abs(v), rm, neg)
    r = -r if neg else r
    if r < lo or r > hi:
        return _to_int64(lo if neg else hi, width), NV
    return _to_int64(r, width), (NX if r != v else 0)


def int_to_f(x: int, rm: int, f: Fmt, kind: str) -> tuple[int, int]:
    """x is the 64-bit register image (Python int, any sign); 32-bit kinds use the low 32."""
    lo, hi, width = INT_RANGES[kind]
    x &= (1 << width) - 1
    if lo < 0 and x >> (width - 1):
        x -= 1 << width
    if x == 0:
        return 0, 0
    return round_to_format(Fraction(x), rm, f)


def convert_float(a: int, rm: int, src: Fmt, dst: Fmt) -> tuple[int, int]:
    if is_nan(a, src):
        return dst.canonical_nan, NV if is_snan(a, src) else 0
    neg = sign_of(a, src)
    if is_inf(a, src):
        return (dst.sign_bit if neg else 0) | dst.inf, 0
    if is_zero(a, src):
        return encode_zero(bool(neg), dst), 0
    return round_to_format(value(a, src), rm, dst)
