"""Integer helpers for the core: 32-bit sign extension, unsigned compares, M-extension
multiply-high and division with the RISC-V corner cases (unpriv spec 7.1, 7.2)."""

import numpy as np
from numba import njit

INT64_MIN = -(1 << 63)


@njit(cache=True, inline="always")
def sext32(v):
    return ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


@njit(cache=True, inline="always")
def ltu(a, b):
    """Unsigned a < b on int64 bit patterns (flip the sign bits, compare signed)."""
    return (a ^ INT64_MIN) < (b ^ INT64_MIN)


@njit(cache=True, inline="always")
def srl(a, n):
    return np.int64(np.uint64(a) >> np.uint64(n))


@njit(cache=True)
def mulhu(a, b):
    """High 64 bits of the unsigned 128-bit product, from 32-bit halves."""
    ua = np.uint64(a)
    ub = np.uint64(b)
    m32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    a_lo = ua & m32
    a_hi = ua >> s32
    b_lo = ub & m32
    b_hi = ub >> s32
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_hi = a_lo * b_hi
    hi_hi = a_hi * b_hi
    cross = (lo_lo >> s32) + (hi_lo & m32) + lo_hi
    return np.int64(hi_hi + (hi_lo >> s32) + (cross >> s32))


@njit(cache=True)
def mulh(a, b):
    """High 64 bits of the signed 128-bit product."""
    h = mulhu(a, b)
    if a < 0:
        h -= b
    if b < 0:
        h -= a
    return h


@njit(cache=True)
def mulhsu(a, b):
    """High 64 bits of signed a times unsigned b."""
    h = mulhu(a, b)
    if a < 0:
        h -= b
    return h


@njit(cache=True, inline="always")
def uabs(a):
    """|a| as uint64 (exact for INT64_MIN too)."""
    if a < 0:
        return np.uint64(-a)
    return np.uint64(a)


@njit(cache=True)
def div(a, b):
    """Signed division truncating toward zero; x/0 = -1, MIN/-1 = MIN (spec table 7.1)."""
    if b == 0:
        return -1
    if a == INT64_MIN and b == -1:
        return a
    q = np.int64(uabs(a) // uabs(b))
    if (a < 0) != (b < 0):
        return -q
    return q


@njit(cache=True)
def rem(a, b):
    if b == 0:
        return a
    if a == INT64_MIN and b == -1:
        return 0
    r = np.int64(uabs(a) % uabs(b))
    if a < 0:
        return -r
    return r


@njit(cache=True)
def divu(a, b):
    if b == 0:
        return -1
    return np.int64(np.uint64(a) // np.uint64(b))


@njit(cache=True)
def remu(a, b):
    if b == 0:
        return a
    return np.int64(np.uint64(a) % np.uint64(b))
