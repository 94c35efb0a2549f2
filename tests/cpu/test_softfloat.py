"""Tests for wirt.cpu.softfloat against the exact Fraction reference (tests/cpu/fp_reference.py).

Property tests cover add/sub/mul/div/sqrt/fma in all five rounding modes for binary32 and
binary64 (results and all five flags), with strategies biased towards edge cases; explicit
tests pin rounding, flags, conversions, min/max, compares and fclass.
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fp_reference as ref  # noqa: E402

from wirt.cpu import softfloat as sf  # noqa: E402

S, D = ref.S, ref.D
RMS = (ref.RNE, ref.RTZ, ref.RDN, ref.RUP, ref.RMM)
M64 = (1 << 64) - 1

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def s64(u: int) -> int:
    """Unsigned 64-bit pattern -> signed int64 argument."""
    u &= M64
    return u - (1 << 64) if u >> 63 else u


def u(v: int, f: ref.Fmt) -> int:
    """Returned int64 -> unsigned pattern of the format's width."""
    return v & ((1 << f.width) - 1)


def fbits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def sbits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def call(fn, f: ref.Fmt, *args):  # type: ignore[no-untyped-def]
    """Call a softfloat function with unsigned patterns; unsigned result pattern + flags."""
    res, flags = fn(*[s64(a) for a in args])
    return u(res, f), flags


# ----------------------------------------------------------------------------- strategies

def _specials(f: ref.Fmt) -> list[int]:
    sb = f.sign_bit
    vals = [
        0, f.inf, f.canonical_nan, f.canonical_nan | 1, f.inf | 1,  # qNaNs, sNaN
        f.inf | (1 << (f.mbits - 1)) - 1,  # sNaN with full payload
        1, (1 << f.mbits) - 1, 1 << f.mbits, f.max_finite, f.max_finite - 1,
        f.bias << f.mbits,  # 1.0
        (f.bias << f.mbits) | 1, (f.bias << f.mbits) - 1,
        ((f.bias + 1) << f.mbits),  # 2.0
        ((f.bias - 1) << f.mbits) | (1 << (f.mbits - 1)),  # 0.75
    ]
    return vals + [v | sb for v in vals]


@st.composite
def float_bits(draw, f: ref.Fmt):  # type: ignore[no-untyped-def]
    """Bit patterns biased towards interesting exponents and mantissas."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.sampled_from(_specials(f)))
    if choice <= 2:
        return draw(st.integers(0, (1 << f.width) - 1))
    emaxf = (1 << f.ebits) - 1
    sign = draw(st.integers(0, 1))
    e = draw(st.one_of(
        st.integers(0, 3),  # subnormal / smallest normals
        st.integers(emaxf - 4, emaxf - 1),  # near overflow
        st.integers(f.bias - 4, f.bias + 4),  # around 1.0
        st.integers(1, emaxf - 1),
    ))
    m = draw(st.one_of(
        st.integers(0, (1 << f.mbits) - 1),
        st.integers(0, 15).map(lambda k: k << (f.mbits - 4)),  # short mantissas (ties)
        st.integers(0, 7).map(lambda k: ((1 << f.mbits) - 1) ^ k),  # all ones-ish
        st.integers(0, 7),  # trailing bits only
    ))
    return (sign << (f.width - 1)) | (e << f.mbits) | m


@st.composite
def close_pair(draw, f: ref.Fmt):  # type: ignore[no-untyped-def]
    """Two finite values with nearby exponents (cancellation, ties, carries)."""
    a = draw(float_bits(f))
    emaxf = (1 << f.ebits) - 1
    ea = (a >> f.mbits) & emaxf
    if ea == emaxf:
        ea = emaxf - 1
    eb = min(max(ea + draw(st.integers(-3, 3)), 0), emaxf - 1)
    if draw(st.booleans()):
        eb = min(max(ea + draw(st.integers(-60, 60)), 0), emaxf - 1)
    mb = draw(st.one_of(st.integers(0, (1 << f.mbits) - 1),
                        st.just(a & ((1 << f.mbits) - 1)),
                        st.integers(-4, 4).map(lambda k: (a + k) & ((1 << f.mbits) - 1))))
    b = (draw(st.integers(0, 1)) << (f.width - 1)) | (eb << f.mbits) | mb
    if draw(st.booleans()):
        a, b = b, a
    return a, b


def pairs(f: ref.Fmt):  # type: ignore[no-untyped-def]
    return st.one_of(st.tuples(float_bits(f), float_bits(f)), close_pair(f))


@st.composite
def fma_triple(draw, f: ref.Fmt):  # type: ignore[no-untyped-def]
    a = draw(float_bits(f))
    b = draw(float_bits(f))
    mode = draw(st.integers(0, 3))
    if mode == 0:
        c = draw(float_bits(f))
    else:
        # c near -(a*b): massive cancellation / exact zero / tiny results.
        if ref.is_nan(a, f) or ref.is_nan(b, f) or ref.is_inf(a, f) or ref.is_inf(b, f):
            c = draw(float_bits(f))
        else:
            prod = ref.value(a, f) * ref.value(b, f)
            if prod == 0:
                c = draw(float_bits(f))
            else:
                cb, _ = ref.round_to_format(-prod, draw(st.sampled_from(RMS)), f)
                if mode == 2:
                    cb = cb + draw(st.integers(-3, 3))
                elif mode == 3:
                    # same exponent region, random low bits
                    cb = (cb & ~((1 << 20) - 1)) | draw(st.integers(0, (1 << 20) - 1))
                c = cb & ((1 << f.width) - 1)
    return a, b, c


# ----------------------------------------------------------------------------- properties

FMTS = {"s": S, "d": D}
BINOPS = {
    "add": (ref.add, {"s": sf.add_s, "d": sf.add_d}),
    "sub": (ref.sub, {"s": sf.sub_s, "d": sf.sub_d}),
    "mul": (ref.mul, {"s": sf.mul_s, "d": sf.mul_d}),
    "div": (ref.div, {"s": sf.div_s, "d": sf.div_d}),
}


def _check(got: tuple[int, int], exp: tuple[int, int], what: str) -> None:
    assert got == exp, f"{what}: got ({got[0]:#x}, {got[1]:#x}) expected ({exp[0]:#x}, {exp[1]:#x})"


@pytest.mark.parametrize("fk", ["s", "d"])
@pytest.mark.parametrize("op", list(BINOPS))
def test_binop_matches_reference(op: str, fk: str) -> None:
    f = FMTS[fk]
    ref_fn, impls = BINOPS[op]
    impl = impls[fk]

    @SETTINGS
    @given(pairs(f))
    def prop(ab: tuple[int, int]) -> None:
        a, b = ab
        for rm in RMS:
            _check(call(impl, f, a, b, rm), ref_fn(a, b, rm, f), f"{op}_{fk}({a:#x}, {b:#x}, rm={rm})")

    prop()


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "fma"])
def test_nx_sticky_shortcut(op: str) -> None:
    """With fflags.NX already set, RNE results may skip the inexact check: the value must
    still be exact and the flags, once ORed into fcsr (which holds NX), identical."""
    f = FMTS["d"]

    @SETTINGS
    @given(pairs(f), float_bits(f), st.sampled_from(RMS))
    def prop(ab: tuple[int, int], c: int, rm: int) -> None:
        a, b = ab
        if op == "fma":
            got = sf.fma_d(s64(a), s64(b), s64(c), rm, False, False, True)
            exp = ref.fma(a, b, c, rm, f)
        else:
            ref_fn, impls = BINOPS[op]
            got = impls["d"](s64(a), s64(b), rm, True)
            exp = ref_fn(a, b, rm, f)
        _check((u(got[0], f), got[1] | ref.NX), (exp[0], exp[1] | ref.NX), f"{op}_d nx_sticky rm={rm}")

    prop()


@pytest.mark.parametrize("op", ["add", "sub", "mul", "fma"])
def test_near_overflow_operands(op: str) -> None:
    """Operands at the top of the binary64 range, where error-free transforms can overflow.

    Regression: TwoSum's intermediate s - x overflowed for add_d(0xffd0000000000003,
    0x7fefffffffffffff, RDN), giving a result one ulp high.
    """
    f = FMTS["d"]
    mants = (0, 1, 3, (1 << 52) - 1, (1 << 52) - 2, 1 << 51, 0x8000000000003)
    vals = [(sg << 63) | (e << 52) | m for sg in (0, 1) for e in (0x7FC, 0x7FD, 0x7FE)
            for m in mants]
    for a in vals:
        for b in vals:
            for rm in RMS:
                if op == "fma":
                    c = 0x3FF0000000000000 | (b & (1 << 63))  # +-1.0: a*1 + b
                    got = sf.fma_d(s64(a), s64(c), s64(b), rm, False, False)
                    _check((u(got[0], f), got[1]), ref.fma(a, c, b, rm, f),
                           f"fma_d({a:#x}, {c:#x}, {b:#x}, rm={rm})")
                    continue
                ref_fn, impls = BINOPS[op]
                y = b if op != "mul" else (b & ~(0x7FF << 52)) | (0x3FF << 52)  # b scaled to ~1
                _check(call(impls["d"], f, a, y, rm), ref_fn(a, y, rm, f),
                       f"{op}_d({a:#x}, {y:#x}, rm={rm})")


@pytest.mark.parametrize("fk", ["s", "d"])
def test_sqrt_matches_reference(fk: str) -> None:
    f = FMTS[fk]
    impl = sf.sqrt_s if fk == "s" else sf.sqrt_d

    @SETTINGS
    @given(st.one_of(float_bits(f), st.integers(0, (1 << f.width) - 1)))
    def prop(a: int) -> None:
        for rm in RMS:
            _check(call(impl, f, a, rm), ref.sqrt(a, rm, f), f"sqrt_{fk}({a:#x}, rm={rm})")

    prop()


@pytest.mark.parametrize("fk", ["s", "d"])
def test_fma_matches_reference(fk: str) -> None:
    f = FMTS[fk]
    impl = sf.fma_s if fk == "s" else sf.fma_d

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(fma_triple(f), st.booleans(), st.booleans())
    def prop(abc: tuple[int, int, int], negp: bool, negc: bool) -> None:
        a, b, c = abc
        for rm in RMS:
            got = impl(s64(a), s64(b), s64(c), rm, negp, negc)
            _check((u(got[0], f), got[1]), ref.fma(a, b, c, rm, f, negp, negc),
                   f"fma_{fk}({a:#x}, {b:#x}, {c:#x}, rm={rm}, negp={negp}, negc={negc})")

    prop()


@pytest.mark.parametrize("fk", ["s", "d"])
def test_slow_paths_match_reference(fk: str) -> None:
    """The exact integer fallbacks, exercised directly on arbitrary finite operands."""
    f = FMTS[fk]
    is_d = fk == "d"

    def finite(x: int) -> bool:
        return not (ref.is_nan(x, f) or ref.is_inf(x, f))

    @SETTINGS
    @given(pairs(f), float_bits(f))
    def prop(ab: tuple[int, int], c: int) -> None:
        a, b = ab
        assume(finite(a) and finite(b) and finite(c))
        nz = not (ref.is_zero(a, f) or ref.is_zero(b, f))
        for rm in RMS:
            r = sf._add_slow(s64(a), s64(b), rm, is_d)
            _check((u(r[0], f), r[1]), ref.add(a, b, rm, f), f"_add_slow({a:#x},{b:#x},{rm})")
            if nz:
                r = sf._mul_slow(s64(a), s64(b), rm, is_d)
                _check((u(r[0], f), r[1]), ref.mul(a, b, rm, f), f"_mul_slow({a:#x},{b:#x},{rm})")
                r = sf._div_slow(s64(a), s64(b), rm, is_d)
                _check((u(r[0], f), r[1]), ref.div(a, b, rm, f), f"_div_slow({a:#x},{b:#x},{rm})")
                if not ref.is_zero(c, f):
                    r = sf._fma_slow(s64(a), s64(b), s64(c), rm, is_d)
                    _check((u(r[0], f), r[1]), ref.fma(a, b, c, rm, f),
                           f"_fma_slow({a:#x},{b:#x},{c:#x},{rm})")

    prop()


@pytest.mark.parametrize("fk", ["s", "d"])
def test_slow_fma_cancellation(fk: str) -> None:
    f = FMTS[fk]
    is_d = fk == "d"

    @SETTINGS
    @given(fma_triple(f))
    def prop(abc: tuple[int, int, int]) -> None:
        a, b, c = abc
        for x in abc:
            assume(not ref.is_nan(x, f) and not ref.is_inf(x, f) and not ref.is_zero(x, f))
        for rm in RMS:
            r = sf._fma_slow(s64(a), s64(b), s64(c), rm, is_d)
            _check((u(r[0], f), r[1]), ref.fma(a, b, c, rm, f),
                   f"_fma_slow({a:#x},{b:#x},{c:#x},{rm})")

    prop()


@pytest.mark.parametrize("fk", ["s", "d"])
def test_minmax_compare_classify_properties(fk: str) -> None:
    f = FMTS[fk]
    mn, mx, eq, lt, le, cl = (
        (sf.min_s, sf.max_s, sf.eq_s, sf.lt_s, sf.le_s, sf.classify_s) if fk == "s"
        else (sf.min_d, sf.max_d, sf.eq_d, sf.lt_d, sf.le_d, sf.classify_d))

    @SETTINGS
    @given(pairs(f))
    def prop(ab: tuple[int, int]) -> None:
        a, b = ab
        _check(call(mn, f, a, b), ref.minmax(a, b, f, False), f"min({a:#x},{b:#x})")
        _check(call(mx, f, a, b), ref.minmax(a, b, f, True), f"max({a:#x},{b:#x})")
        for fn, name in ((eq, "eq"), (lt, "lt"), (le, "le")):
            assert fn(s64(a), s64(b)) == ref.compare(a, b, f, name), (name, hex(a), hex(b))
        assert cl(s64(a)) == ref.classify(a, f)

    prop()


CVT_F2I = {
    ("s", "w"): sf.cvt_w_s, ("s", "wu"): sf.cvt_wu_s, ("s", "l"): sf.cvt_l_s,
    ("s", "lu"): sf.cvt_lu_s, ("d", "w"): sf.cvt_w_d, ("d", "wu"): sf.cvt_wu_d,
    ("d", "l"): sf.cvt_l_d, ("d", "lu"): sf.cvt_lu_d,
}
CVT_I2F = {
    ("s", "w"): sf.cvt_s_w, ("s", "wu"): sf.cvt_s_wu, ("s", "l"): sf.cvt_s_l,
    ("s", "lu"): sf.cvt_s_lu, ("d", "w"): sf.cvt_d_w, ("d", "wu"): sf.cvt_d_wu,
    ("d", "l"): sf.cvt_d_l, ("d", "lu"): sf.cvt_d_lu,
}


@st.composite
def int_near_float(draw, f: ref.Fmt):  # type: ignore[no-untyped-def]
    """Float bit patterns of values near integers and integer range boundaries."""
    base = draw(st.sampled_from([0, 1, 2, 3, 2**31, 2**32, 2**63, 2**64, 2**24, 2**53, 5]))
    delta = draw(st.sampled_from([0, 0.5, 0.25, 0.75, 1, 1.5, 2]))
    v = base + draw(st.integers(-2, 2)) + delta
    if draw(st.booleans()):
        v = -v
    return ref.round_to_format(ref.Fraction(v), draw(st.sampled_from(RMS)), f)[0] if v else 0


@pytest.mark.parametrize("fk", ["s", "d"])
@pytest.mark.parametrize("kind", ["w", "wu", "l", "lu"])
def test_float_to_int_properties(fk: str, kind: str) -> None:
    f = FMTS[fk]
    impl = CVT_F2I[(fk, kind)]

    @SETTINGS
    @given(st.one_of(float_bits(f), int_near_float(f)))
    def prop(a: int) -> None:
        for rm in RMS:
            assert impl(s64(a), rm) == ref.f_to_int(a, rm, f, kind), (hex(a), rm)

    prop()


@pytest.mark.parametrize("fk", ["s", "d"])
@pytest.mark.parametrize("kind", ["w", "wu", "l", "lu"])
def test_int_to_float_properties(fk: str, kind: str) -> None:
    f = FMTS[fk]
    impl = CVT_I2F[(fk, kind)]
    ints = st.one_of(
        st.integers(-(1 << 63), (1 << 63) - 1),
        st.integers(-(1 << 31), (1 << 32)),
        st.integers(0, 63).flatmap(lambda k: st.integers(-3, 3).map(lambda d: (1 << k) + d)),
        st.integers(0, 63).flatmap(lambda k: st.integers(-3, 3).map(lambda d: -(1 << k) + d)),
    )

    @SETTINGS
    @given(ints)
    def prop(x: int) -> None:
        for rm in RMS:
            _check(call(impl, f, x, rm), ref.int_to_f(x, rm, f, kind), f"cvt {kind}->{fk} {x}")

    prop()


def test_float_float_conversion_properties() -> None:
    @SETTINGS
    @given(float_bits(D), float_bits(S))
    def prop(d: int, s: int) -> None:
        for rm in RMS:
            _check(call(sf.cvt_s_d, S, d, rm), ref.convert_float(d, rm, D, S), f"cvt_s_d {d:#x}")
            _check(call(sf.cvt_d_s, D, s, rm), ref.convert_float(s, rm, S, D), f"cvt_d_s {s:#x}")

    prop()


# ----------------------------------------------------------------------------- explicit tests

ONE_D = fbits(1.0)
ONE_S = sbits(1.0)
TINY_D = fbits(2.0 ** -60)  # far below half an ulp of 1.0


@pytest.mark.parametrize("rm,expected", [
    (ref.RNE, fbits(1.0)), (ref.RTZ, fbits(1.0)), (ref.RDN, fbits(1.0)),
    (ref.RUP, fbits(1.0) + 1), (ref.RMM, fbits(1.0)),
])
def test_rounding_modes_positive_add(rm: int, expected: int) -> None:
    assert call(sf.add_d, D, ONE_D, TINY_D, rm) == (expected, ref.NX)


@pytest.mark.parametrize("rm,expected", [
    (ref.RNE, fbits(-1.0)), (ref.RTZ, fbits(-1.0)), (ref.RDN, fbits(-1.0) + 1),
    (ref.RUP, fbits(-1.0)), (ref.RMM, fbits(-1.0)),
])
def test_rounding_modes_negative_add(rm: int, expected: int) -> None:
    assert call(sf.add_d, D, fbits(-1.0), fbits(-(2.0 ** -60)), rm) == (expected, ref.NX)


@pytest.mark.parametrize("rm,expected", [
    (ref.RNE, fbits(1.0)), (ref.RTZ, fbits(1.0)), (ref.RDN, fbits(1.0)),
    (ref.RUP, fbits(1.0) + 1), (ref.RMM, fbits(1.0) + 1),
])
def test_tie_rounding(rm: int, expected: int) -> None:
    # 1 + 2**-53 is exactly halfway between 1.0 (even) and 1.0 + ulp.
    assert call(sf.add_d, D, ONE_D, fbits(2.0 ** -53), rm) == (expected, ref.NX)
    # single: 1 + 2**-24
    exp_s = ONE_S + (expected - fbits(1.0))
    assert call(sf.add_s, S, ONE_S, sbits(2.0 ** -24), rm) == (exp_s, ref.NX)


def test_exact_zero_sign() -> None:
    for rm in RMS:
        want = D.sign_bit if rm == ref.RDN else 0
        assert call(sf.add_d, D, ONE_D, fbits(-1.0), rm) == (want, 0)
        assert call(sf.sub_s, S, ONE_S, ONE_S, rm) == ((S.sign_bit if rm == ref.RDN else 0), 0)
        assert call(sf.add_d, D, D.sign_bit, D.sign_bit, rm) == (D.sign_bit, 0)
        assert call(sf.add_d, D, 0, D.sign_bit, rm) == (want, 0)


def test_flags_each() -> None:
    # NV
    assert call(sf.sqrt_d, D, fbits(-1.0), 0) == (D.canonical_nan, ref.NV)
    assert call(sf.mul_s, S, S.inf, 0, 0) == (S.canonical_nan, ref.NV)
    assert call(sf.add_d, D, D.inf, D.inf | D.sign_bit, 0) == (D.canonical_nan, ref.NV)
    # DZ
    assert call(sf.div_d, D, ONE_D, D.sign_bit, 0) == (D.inf | D.sign_bit, ref.DZ)
    assert call(sf.div_s, S, ONE_S, 0, 0) == (S.inf, ref.DZ)
    # OF (+NX), per rounding mode
    big = D.max_finite
    assert call(sf.mul_d, D, big, fbits(2.0), ref.RNE) == (D.inf, ref.OF | ref.NX)
    assert call(sf.mul_d, D, big, fbits(2.0), ref.RTZ) == (big, ref.OF | ref.NX)
    assert call(sf.mul_d, D, big, fbits(-2.0), ref.RUP) == (big | D.sign_bit, ref.OF | ref.NX)
    assert call(sf.mul_d, D, big, fbits(-2.0), ref.RDN) == (D.inf | D.sign_bit, ref.OF | ref.NX)
    assert call(sf.add_s, S, S.max_finite, S.max_finite, ref.RDN) == (S.max_finite, ref.OF | ref.NX)
    # UF (+NX): tiny and inexact
    assert call(sf.mul_d, D, fbits(2.0 ** -1000 * (1 + 2.0 ** -52)), fbits(2.0 ** -60), ref.RNE) == (
        fbits(2.0 ** -1060), ref.UF | ref.NX)
    # tiny but exact: no UF
    assert call(sf.mul_d, D, fbits(2.0 ** -1000), fbits(2.0 ** -60), ref.RNE) == (fbits(2.0 ** -1060), 0)
    # NX alone
    assert call(sf.div_d, D, ONE_D, fbits(3.0), ref.RNE) == (fbits(1 / 3), ref.NX)


def test_tininess_after_rounding() -> None:
    # (1 + 2**-52) * (2**-1022 - 2**-1074) = 2**-1022 - 2**-1126: below the smallest normal,
    # but rounding to 53 bits with an unbounded exponent gives 2**-1022 -> not tiny -> no UF.
    a = fbits(1.0 + 2.0 ** -52)
    b = 0x000FFFFFFFFFFFFF  # largest subnormal
    assert call(sf.mul_d, D, a, b, ref.RNE) == (fbits(2.0 ** -1022), ref.NX)
    assert call(sf.mul_d, D, a, b, ref.RUP) == (fbits(2.0 ** -1022), ref.NX)
    assert call(sf.mul_d, D, a, b, ref.RTZ) == (b, ref.UF | ref.NX)
    # (1 - 2**-53) * 2**-1022 is exactly representable with 53 bits and an unbounded
    # exponent, so it is tiny; RNE delivers 2**-1022 (inexact) with UF.
    c = fbits(1.0 - 2.0 ** -53)
    assert call(sf.mul_d, D, c, fbits(2.0 ** -1022), ref.RNE) == (fbits(2.0 ** -1022), ref.UF | ref.NX)
    assert call(sf.mul_d, D, c, fbits(2.0 ** -1022), ref.RTZ) == (b, ref.UF | ref.NX)
    # single precision, same shape
    assert call(sf.mul_s, S, sbits(1.0 + 2.0 ** -23), 0x007FFFFF, ref.RNE) == (sbits(2.0 ** -126), ref.NX)
    assert call(sf.mul_s, S, sbits(1.0 + 2.0 ** -23), 0x007FFFFF, ref.RTZ) == (0x007FFFFF, ref.UF | ref.NX)


def test_fma_variants_and_signs() -> None:
    two, three, one = fbits(2.0), fbits(3.0), fbits(1.0)
    assert call(sf.fma_d, D, two, three, one, 0, False, False) == (fbits(7.0), 0)  # fmadd
    assert call(sf.fma_d, D, two, three, one, 0, False, True) == (fbits(5.0), 0)  # fmsub
    assert call(sf.fma_d, D, two, three, one, 0, True, False) == (fbits(-5.0), 0)  # fnmsub
    assert call(sf.fma_d, D, two, three, one, 0, True, True) == (fbits(-7.0), 0)  # fnmadd
    # exact zero: (2*3) - 6 = +0, or -0 under RDN; fnmadd of zeros: -(+0*+0) - (+0) = -0
    for rm in RMS:
        want = D.sign_bit if rm == ref.RDN else 0
        assert call(sf.fma_d, D, two, three, fbits(6.0), rm, False, True) == (want, 0)
        assert call(sf.fma_d, D, 0, 0, 0, rm, True, True) == (D.sign_bit, 0)
        assert call(sf.fma_s, S, 0, 0, 0, rm, True, True) == (S.sign_bit, 0)
    # inf * 0 + qNaN raises NV (RISC-V F spec)
    assert call(sf.fma_d, D, D.inf, 0, D.canonical_nan, 0, False, False) == (D.canonical_nan, ref.NV)
    assert call(sf.fma_s, S, 0, S.inf, S.canonical_nan, 0, False, False) == (S.canonical_nan, ref.NV)
    # single rounding: (1 + 2**-30)**2 - 1 = 2**-29 + 2**-60 exactly (a separate multiply
    # would have lost the 2**-60 term); (1 + 2**-52)**2 - 1 = 2**-51 + 2**-104 is inexact.
    x = fbits(1.0 + 2.0 ** -30)
    assert call(sf.fma_d, D, x, x, fbits(-1.0), 0, False, False) == (fbits(2.0 ** -29 + 2.0 ** -60), 0)
    x = fbits(1.0 + 2.0 ** -52)
    assert call(sf.fma_d, D, x, x, fbits(-1.0), ref.RNE, False, False) == (fbits(2.0 ** -51), ref.NX)
    assert call(sf.fma_d, D, x, x, fbits(-1.0), ref.RUP, False, False) == (fbits(2.0 ** -51) + 1, ref.NX)


def test_nan_results_are_canonical() -> None:
    payload_d = D.inf | 0x12345  # sNaN with payload
    payload_s = S.inf | 0x400123  # qNaN with payload
    assert call(sf.add_d, D, payload_d, ONE_D, 0) == (D.canonical_nan, ref.NV)
    assert call(sf.mul_s, S, payload_s, ONE_S, 0) == (S.canonical_nan, 0)
    assert call(sf.sqrt_s, S, payload_s, 0) == (S.canonical_nan, 0)
    assert call(sf.cvt_s_d, S, payload_d, 0) == (S.canonical_nan, ref.NV)
    assert call(sf.cvt_d_s, D, payload_s, 0) == (D.canonical_nan, 0)
    assert call(sf.cvt_d_s, D, S.inf | 1, 0) == (D.canonical_nan, ref.NV)


F2I_CASES = [
    # (fmt, kind, value, rm, expected int, flags)
    ("d", "w", 2.0 ** 31, ref.RNE, 2**31 - 1, ref.NV),
    ("d", "w", 2.0 ** 31 - 1, ref.RNE, 2**31 - 1, 0),
    ("d", "w", 2.0 ** 31 - 0.5, ref.RNE, 2**31 - 1, ref.NV),  # rounds to 2**31 (even)
    ("d", "w", 2.0 ** 31 - 0.5, ref.RTZ, 2**31 - 1, ref.NX),
    ("d", "w", -2.0 ** 31, ref.RNE, -2**31, 0),
    ("d", "w", -2.0 ** 31 - 0.5, ref.RNE, -2**31, ref.NX),  # tie to even: -2**31
    ("d", "w", -2.0 ** 31 - 0.5, ref.RMM, -2**31, ref.NV),  # away: -2**31-1, out of range
    ("d", "w", -2.0 ** 31 - 0.5, ref.RDN, -2**31, ref.NV),
    ("d", "w", -2.0 ** 31 - 0.5, ref.RUP, -2**31, ref.NX),
    ("d", "w", -2.0 ** 31 - 1, ref.RTZ, -2**31, ref.NV),
    ("d", "wu", 2.0 ** 32 - 1, ref.RNE, -1, 0),  # 0xFFFFFFFF, sign-extended
    ("d", "wu", 2.0 ** 32, ref.RNE, -1, ref.NV),
    ("d", "wu", 2.0 ** 31, ref.RNE, -2**31, 0),  # 0x80000000 sign-extended
    ("d", "wu", -0.3, ref.RTZ, 0, ref.NX),
    ("d", "wu", -0.7, ref.RNE, 0, ref.NV),
    ("d", "wu", -1.0, ref.RUP, 0, ref.NV),
    ("d", "wu", -0.0, ref.RNE, 0, 0),
    ("d", "l", 2.0 ** 63, ref.RNE, 2**63 - 1, ref.NV),
    ("d", "l", -2.0 ** 63, ref.RNE, -2**63, 0),
    ("d", "l", 2.0 ** 62 + 2.0 ** 10, ref.RNE, 2**62 + 2**10, 0),
    ("d", "lu", 2.0 ** 64, ref.RNE, -1, ref.NV),
    ("d", "lu", 2.0 ** 64 - 2048, ref.RNE, 2**64 - 2048 - 2**64, 0),
    ("d", "lu", 2.0 ** 63, ref.RNE, -2**63, 0),
    ("d", "lu", -0.5, ref.RDN, 0, ref.NV),
    ("d", "lu", -0.5, ref.RNE, 0, ref.NX),
    ("d", "l", 2.5, ref.RNE, 2, ref.NX),
    ("d", "l", 2.5, ref.RMM, 3, ref.NX),
    ("d", "l", -2.5, ref.RDN, -3, ref.NX),
    ("d", "l", -2.5, ref.RUP, -2, ref.NX),
    ("d", "l", 5e-324, ref.RUP, 1, ref.NX),  # subnormal
    ("d", "l", -5e-324, ref.RDN, -1, ref.NX),
    ("d", "l", -5e-324, ref.RNE, 0, ref.NX),
    ("d", "w", math.inf, ref.RNE, 2**31 - 1, ref.NV),
    ("d", "w", -math.inf, ref.RNE, -2**31, ref.NV),
    ("d", "wu", -math.inf, ref.RNE, 0, ref.NV),
    ("d", "lu", math.inf, ref.RNE, -1, ref.NV),
    ("d", "l", -math.inf, ref.RNE, -2**63, ref.NV),
    ("s", "w", 2.0 ** 31, ref.RNE, 2**31 - 1, ref.NV),
    ("s", "w", -2.0 ** 31, ref.RNE, -2**31, 0),
    ("s", "wu", 2.0 ** 32, ref.RNE, -1, ref.NV),
    ("s", "l", -2.0 ** 63, ref.RTZ, -2**63, 0),
    ("s", "lu", 2.0 ** 63, ref.RTZ, -2**63, 0),
    ("s", "lu", 2.0 ** 64, ref.RTZ, -1, ref.NV),
    ("s", "l", 1.5, ref.RNE, 2, ref.NX),
]


@pytest.mark.parametrize("fk,kind,val,rm,expected,flags", F2I_CASES)
def test_float_to_int_edges(fk: str, kind: str, val: float, rm: int, expected: int, flags: int) -> None:
    bits = fbits(val) if fk == "d" else sbits(val)
    got = CVT_F2I[(fk, kind)](s64(bits), rm)
    assert got == (expected, flags)
    assert ref.f_to_int(bits, rm, FMTS[fk], kind) == (expected, flags)


@pytest.mark.parametrize("fk", ["s", "d"])
@pytest.mark.parametrize("kind", ["w", "wu", "l", "lu"])
def test_float_to_int_nan(fk: str, kind: str) -> None:
    f = FMTS[fk]
    maxv = {"w": 2**31 - 1, "wu": -1, "l": 2**63 - 1, "lu": -1}[kind]
    for nan in (f.canonical_nan, f.canonical_nan | f.sign_bit, f.inf | 1):
        assert CVT_F2I[(fk, kind)](s64(nan), 0) == (maxv, ref.NV)


I2F_CASES = [
    ("d", "l", 2**53 + 1, ref.RNE, fbits(2.0 ** 53), ref.NX),
    ("d", "l", 2**53 + 1, ref.RUP, fbits(2.0 ** 53) + 1, ref.NX),
    ("d", "l", -(2**63), ref.RNE, fbits(-2.0 ** 63), 0),
    ("d", "lu", -1, ref.RNE, fbits(2.0 ** 64), ref.NX),  # 2**64 - 1
    ("d", "lu", -1, ref.RTZ, fbits(2.0 ** 64) - 1, ref.NX),
    ("d", "wu", -1, ref.RNE, fbits(2.0 ** 32 - 1), 0),  # low 32 bits only
    ("d", "w", 0xFFFFFFFF, ref.RNE, fbits(-1.0), 0),  # low 32 bits sign-extended
    ("d", "w", 0, ref.RDN, 0, 0),  # +0 even under RDN
    ("s", "w", 2**24 + 1, ref.RNE, sbits(2.0 ** 24), ref.NX),
    ("s", "w", 2**24 + 1, ref.RMM, sbits(2.0 ** 24) + 1, ref.NX),
    ("s", "lu", -1, ref.RNE, sbits(2.0 ** 64), ref.NX),
    ("s", "l", -(2**63), ref.RNE, sbits(-2.0 ** 63), 0),
    ("s", "wu", 0xFFFFFFFF, ref.RTZ, sbits(2.0 ** 32) - 1, ref.NX),
]


@pytest.mark.parametrize("fk,kind,x,rm,expected,flags", I2F_CASES)
def test_int_to_float_edges(fk: str, kind: str, x: int, rm: int, expected: int, flags: int) -> None:
    f = FMTS[fk]
    assert call(CVT_I2F[(fk, kind)], f, x, rm) == (expected, flags)
    assert ref.int_to_f(x, rm, f, kind) == (expected, flags)


def test_float_float_conversions() -> None:
    # rounding to single per mode
    x = fbits(1.0 + 2.0 ** -30)
    assert call(sf.cvt_s_d, S, x, ref.RNE) == (ONE_S, ref.NX)
    assert call(sf.cvt_s_d, S, x, ref.RUP) == (ONE_S + 1, ref.NX)
    # overflow and underflow
    assert call(sf.cvt_s_d, S, fbits(1e300), ref.RNE) == (S.inf, ref.OF | ref.NX)
    assert call(sf.cvt_s_d, S, fbits(1e300), ref.RTZ) == (S.max_finite, ref.OF | ref.NX)
    assert call(sf.cvt_s_d, S, fbits(1e-300), ref.RNE) == (0, ref.UF | ref.NX)
    assert call(sf.cvt_s_d, S, fbits(-1e-300), ref.RDN) == (S.sign_bit | 1, ref.UF | ref.NX)
    assert call(sf.cvt_s_d, S, fbits(2.0 ** -149), ref.RNE) == (1, 0)  # exact subnormal
    assert call(sf.cvt_s_d, S, D.sign_bit, ref.RNE) == (S.sign_bit, 0)
    assert call(sf.cvt_s_d, S, D.inf | D.sign_bit, ref.RNE) == (S.inf | S.sign_bit, 0)
    # widening is exact, subnormals become normal
    assert call(sf.cvt_d_s, D, 1, 0) == (fbits(2.0 ** -149), 0)
    assert call(sf.cvt_d_s, D, S.sign_bit, 0) == (D.sign_bit, 0)


def test_minmax_explicit() -> None:
    qn, sn = D.canonical_nan, D.inf | 1
    pz, nz = 0, D.sign_bit
    assert call(sf.min_d, D, pz, nz) == (nz, 0)
    assert call(sf.min_d, D, nz, pz) == (nz, 0)
    assert call(sf.max_d, D, nz, pz) == (pz, 0)
    assert call(sf.max_d, D, pz, nz) == (pz, 0)
    assert call(sf.min_d, D, qn, ONE_D) == (ONE_D, 0)
    assert call(sf.max_d, D, ONE_D, qn) == (ONE_D, 0)
    assert call(sf.min_d, D, sn, ONE_D) == (ONE_D, ref.NV)
    assert call(sf.max_d, D, qn, qn) == (qn, 0)
    assert call(sf.max_d, D, sn, qn) == (qn, ref.NV)
    assert call(sf.min_d, D, D.inf | 0x1234 | (1 << 51), D.inf | 0x77) == (qn, ref.NV)
    assert call(sf.min_d, D, fbits(-3.0), fbits(2.0)) == (fbits(-3.0), 0)
    assert call(sf.max_s, S, sbits(-3.0), sbits(-2.0)) == (sbits(-2.0), 0)
    assert call(sf.min_s, S, S.sign_bit, 0) == (S.sign_bit, 0)
    assert call(sf.max_s, S, S.inf | 1, S.canonical_nan) == (S.canonical_nan, ref.NV)
    assert call(sf.min_s, S, S.inf | S.sign_bit, S.max_finite) == (S.inf | S.sign_bit, 0)


def test_compare_explicit() -> None:
    qn, sn = S.canonical_nan, S.inf | 1
    assert sf.eq_s(0, S.sign_bit) == (1, 0)
    assert sf.le_s(S.sign_bit, 0) == (1, 0)
    assert sf.lt_s(S.sign_bit, 0) == (0, 0)
    assert sf.eq_s(qn, qn) == (0, 0)
    assert sf.eq_s(sn, ONE_S) == (0, ref.NV)
    assert sf.lt_s(qn, ONE_S) == (0, ref.NV)
    assert sf.le_s(ONE_S, qn) == (0, ref.NV)
    assert sf.lt_d(s64(fbits(-1.0)), ONE_D) == (1, 0)
    assert sf.le_d(ONE_D, ONE_D) == (1, 0)
    assert sf.lt_d(ONE_D, ONE_D) == (0, 0)
    assert sf.eq_d(s64(D.canonical_nan), s64(D.canonical_nan)) == (0, 0)
    assert sf.lt_d(s64(D.inf | D.sign_bit), s64(D.inf)) == (1, 0)


def test_classify_every_class() -> None:
    for f, cl in ((S, sf.classify_s), (D, sf.classify_d)):
        sb = f.sign_bit
        cases = {
            f.inf | sb: 1 << 0, (f.bias << f.mbits) | sb: 1 << 1, 1 | sb: 1 << 2, sb: 1 << 3,
            0: 1 << 4, 1: 1 << 5, f.bias << f.mbits: 1 << 6, f.inf: 1 << 7,
            f.inf | 1: 1 << 8, f.canonical_nan: 1 << 9, f.canonical_nan | sb: 1 << 9,
            (f.inf | 1) | sb: 1 << 8,
        }
        for bits, mask in cases.items():
            assert cl(s64(bits)) == mask, (hex(bits), mask)


def test_single_ops_ignore_upper_bits_zero() -> None:
    # single-precision operands carry the pattern in the low 32 bits; results too.
    r, fl = sf.add_s(ONE_S, ONE_S, 0)
    assert (r, fl) == (sbits(2.0), 0)
    r, fl = sf.sub_s(ONE_S, sbits(2.0), 0)
    assert (r, fl) == (sbits(-1.0), 0)  # upper 32 bits stay zero
