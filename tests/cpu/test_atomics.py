"""The A extension: LR/SC reservation rules, every AMO in W and D forms, alignment traps.

References: unprivileged spec 20191213, chapter 8 — 8.2 (LR/SC: SC writes 0 on success
and 1 for an unspecified failure; an SC fails if its address is not in the reservation set
of the most recent LR; any SC invalidates the reservation), 8.4 (AMOs: rd gets the
sign-extended original value for .W; min/max signed vs unsigned), and the misalignment
rule of 8.2/8.4 (misaligned LR/SC/AMO raise an address-misaligned or access-fault
exception); privileged 1.12 table 3.6 (cause 4 for loads incl. LR, 6 for stores/AMOs).
"""

from __future__ import annotations

from tests.cpu import asmkit as K

M64 = (1 << 64) - 1
MIN64, MAX64 = 1 << 63, (1 << 63) - 1


def signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def amo_new(op: str, old: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    uo, ub = old & mask, b & mask
    so, sb = signed(old, bits), signed(b, bits)
    return {
        "swap": ub, "add": (uo + ub) & mask, "xor": uo ^ ub, "and": uo & ub, "or": uo | ub,
        "min": min(so, sb) & mask, "max": max(so, sb) & mask, "minu": min(uo, ub), "maxu": max(uo, ub),
    }[op]


OPS = ["swap", "add", "xor", "and", "or", "min", "max", "minu", "maxu"]
W_PAIRS = [(0x80000000, 0x7FFFFFFF), (0x7FFFFFFF, 0x80000000), (0xFFFFFFFF, 1), (1, 0xFFFFFFFF),
           (5, 5), (0x12345678, 0x9ABCDEF0)]
D_PAIRS = [(MIN64, MAX64), (MAX64, MIN64), (M64, 1), (1, M64), (7, 7), (0x0123456789ABCDEF, 0xFEDCBA9876543210)]
GARBAGE = 0xDEADBEEF  # upper half of the rs2 register and of the dword around a .W target


def test_every_amo_w() -> None:
    """amo*.w act on 32 bits: rd = sext(old word), memory = op(old, rs2[31:0]); the other word
    of the dword is untouched; min/max compare signed, minu/maxu unsigned (8.4)."""
    body = ["la s2, scratch"]
    expected = []
    for op in OPS:
        for old, b in W_PAIRS:
            body.append(f"li t0, {(GARBAGE << 32) | old}\nsd t0, 0(s2)\nli t1, {(GARBAGE << 32) | b}\n"
                        f"amo{op}.w a0, t1, (s2)\nREC a0\nld a1, 0(s2)\nREC a1")
            expected += [(f"amo{op}.w {old:#x},{b:#x}: rd", signed(old, 32)),
                         (f"amo{op}.w {old:#x},{b:#x}: mem", (GARBAGE << 32) | amo_new(op, old, b, 32))]
    # the word in the upper half of a dword
    body.append(f"li t0, {(0x80000000 << 32) | 0x1111}\nsd t0, 0(s2)\nli t1, 1\naddi t2, s2, 4\n"
                "amoadd.w a0, t1, (t2)\nREC a0\nld a1, 0(s2)\nREC a1")
    expected += [("amoadd.w upper word: rd", -0x80000000), ("upper word: mem", (0x80000001 << 32) | 0x1111)]
    K.expect_results(K.run("\n".join(body) + "\n", "amo-w"), expected)


def test_every_amo_d() -> None:
    """amo*.d on 64 bits, signed and unsigned extremes (8.4)."""
    body = ["la s2, scratch"]
    expected = []
    for op in OPS:
        for old, b in D_PAIRS:
            body.append(f"li t0, {old}\nsd t0, 0(s2)\nli t1, {b}\namo{op}.d a0, t1, (s2)\nREC a0\n"
                        "ld a1, 0(s2)\nREC a1")
            expected += [(f"amo{op}.d {old:#x},{b:#x}: rd", old),
                         (f"amo{op}.d {old:#x},{b:#x}: mem", amo_new(op, old, b, 64))]
    K.expect_results(K.run("\n".join(body) + "\n", "amo-d"), expected)


def test_amo_register_aliasing() -> None:
    """rd = x0 still updates memory; rd == rs2 uses the old rs2 value as the operand;
    aq/rl bits do not change the result."""
    body = r"""
    la s2, scratch
    li t0, 10
    sd t0, 0(s2)
    li t1, 5
    amoadd.d zero, t1, (s2)
    ld a0, 0(s2)
    REC a0
    li a0, 7
    amoadd.d a0, a0, (s2)
    REC a0
    ld a0, 0(s2)
    REC a0
    li t1, 3
    amoswap.w.aqrl a0, t1, (s2)
    REC a0
    lw a0, 0(s2)
    REC a0
    lr.d.aq a0, (s2)
    sc.d.rl a1, t1, (s2)
    REC a1
    """
    K.expect_results(K.run(body, "amo-alias"), [("rd=x0", 15), ("rd=rs2 old", 15), ("mem", 22),
                                                ("aqrl rd", 22), ("aqrl mem", 3), ("sc.rl", 0)])


def test_lr_sc_rules() -> None:
    """8.2: SC without a reservation fails with 1 and does not write; LR then SC succeeds
    (rd = 0) and writes; a second SC fails; an SC to an address outside the reservation
    fails, and invalidates the reservation (any SC does); only the most recent LR counts;
    LR.W sign-extends and SC.W writes 32 bits."""
    body = r"""
    la s2, scratch
    li t0, 4096
    add s3, s2, t0             /* a different page */
    li t0, 100
    sd t0, 0(s2)
    li t0, 300
    sd t0, 0(s3)
    li t1, 111
    sc.d a0, t1, (s2)          /* no reservation */
    REC a0
    ld a0, 0(s2)
    REC a0
    lr.d a0, (s2)
    REC a0
    li t1, 222
    sc.d a1, t1, (s2)
    REC a1
    ld a0, 0(s2)
    REC a0
    li t1, 333
    sc.d a1, t1, (s2)          /* reservation already used */
    REC a1
    ld a0, 0(s2)
    REC a0
    lr.d a0, (s2)
    li t1, 444
    sc.d a1, t1, (s3)          /* not the reserved address */
    REC a1
    ld a0, 0(s3)
    REC a0
    sc.d a1, t1, (s2)          /* the failed SC invalidated the reservation */
    REC a1
    ld a0, 0(s2)
    REC a0
    lr.d a0, (s2)
    lr.d a0, (s3)
    li t1, 555
    sc.d a1, t1, (s3)          /* the most recent LR */
    REC a1
    lr.d a0, (s3)
    lr.d a0, (s2)
    li t1, 666
    sc.d a1, t1, (s3)          /* the most recent LR was to s2 */
    REC a1
    ld a0, 0(s3)
    REC a0
    li t0, 0x12345678ffffff80
    sd t0, 0(s2)
    lr.w a0, (s2)
    REC a0
    li t1, 0x7fffffff00000001
    sc.w a1, t1, (s2)
    REC a1
    ld a0, 0(s2)
    REC a0
    REC s9
    """
    K.expect_results(K.run(body, "lrsc"), [
        ("sc without lr", 1), ("mem unchanged", 100), ("lr value", 100), ("sc success", 0),
        ("mem written", 222), ("second sc", 1), ("mem unchanged", 222),
        ("sc other address", 1), ("other mem unchanged", 300), ("sc after failed sc", 1), ("mem", 222),
        ("sc to latest lr", 0), ("sc to older lr", 1), ("mem", 555),
        ("lr.w sign-extends", -0x80), ("sc.w success", 0), ("sc.w writes 32 bits", 0x12345678_00000001),
        ("no traps", 0),
    ])


def test_reservation_cleared_by_traps() -> None:
    """wirt drops the reservation when it takes an ecall or an interrupt between LR and SC,
    so the SC fails (8.2 allows an SC to fail for such reasons; privileged 3.3.2 leaves it
    to the implementation whether xRET clears reservations — wirt clears at trap entry)."""
    body = r"""
    la s2, scratch
    li t0, 5
    sd t0, 0(s2)
    lr.d a0, (s2)
    ecall
    li t1, 6
    sc.d a1, t1, (s2)
    REC a1
    li t0, 2
    csrw mie, t0
    lr.d a0, (s2)
    csrsi mip, 2
    csrsi mstatus, 8           /* the interrupt is taken here */
    nop
    csrci mstatus, 8
    sc.d a1, t1, (s2)
    REC a1
    ld a0, 0(s2)
    REC a0
    REC s9
    REC s10
    """
    K.expect_results(K.run(body, "lrsc-trap"), [("sc after ecall", 1), ("sc after interrupt", 1),
                                                ("mem unchanged", 5), ("traps", 2),
                                                ("last cause", (1 << 63) | 1)])


def test_misaligned_atomics_trap() -> None:
    """Misaligned LR raises load address misaligned (4), misaligned SC and AMOs raise
    store/AMO address misaligned (6), mtval = the address; memory and rd are unchanged."""
    insns = [
        ("lr.w", "lr.w a0, (t2)", 2, 4), ("lr.d", "lr.d a0, (t2)", 4, 4),
        ("sc.w", "sc.w a0, t1, (t2)", 2, 6), ("sc.d", "sc.d a0, t1, (t2)", 4, 6),
        ("amoadd.w", "amoadd.w a0, t1, (t2)", 1, 6), ("amoswap.w", "amoswap.w a0, t1, (t2)", 3, 6),
        ("amoor.d", "amoor.d a0, t1, (t2)", 4, 6), ("amomaxu.d", "amomaxu.d a0, t1, (t2)", 7, 6),
    ]
    body = ["la s2, scratch", "li t0, -1", "sd t0, 0(s2)", "sd t0, 8(s2)", "li t1, 0"]
    expected = []
    for i, (name, asm, off, cause) in enumerate(insns):
        body.append(f"addi t2, s2, {off}\nli a0, 0x55\n{asm}\nTRAPS\nREC a0")
        expected += [(f"{name}: count", i + 1), (f"{name}: cause", cause), (f"{name}: mtval", None),
                     (f"{name}: rd unchanged", 0x55)]
    body.append("ld a0, 0(s2)\nREC a0\nld a0, 8(s2)\nREC a0")
    expected += [("mem unchanged", -1), ("mem unchanged", -1)]
    r = K.run("\n".join(body) + "\n", "amo-misaligned")
    K.expect_results(r, expected)
    s = r.sym("scratch")
    for i, (name, _, off, _) in enumerate(insns):
        assert r.results[4 * i + 2] == s + off, f"{name}: mtval {r.results[4 * i + 2]:#x} != {s + off:#x}"
