"""Sign and zero extension on RV64: loads of every width from memory with the high bits set
(aligned and misaligned), the W-form results, lui with bit 31 set, and the compressed
forms with negative immediates.

References: unprivileged spec 20191213, 2.6 (loads: LB/LH/LW sign-extend, LBU/LHU zero-extend),
5.2 (RV64I: *W instructions sign-extend their 32-bit result; LUI sign-extends), 5.3 (LWU, LD),
16.3-16.5 (RVC: C.LI, C.LUI, C.ADDIW, C.LW, C.LD sign extension).
"""

from __future__ import annotations

from tests.cpu import asmkit as K

# 16 bytes at scratch, chosen so that every byte, half, word and dword has its top bit set
# at some offsets and clear at others.
PATTERN = bytes([0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0,
                 0x7F, 0x01, 0x80, 0x7F, 0xFF, 0x00, 0x00, 0x80])


def sx(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def _load_cases(offsets_by_op: dict[str, list[int]]):
    widths = {"lb": 1, "lbu": 1, "lh": 2, "lhu": 2, "lw": 4, "lwu": 4, "ld": 8}
    cases = []
    for op, offsets in offsets_by_op.items():
        n = widths[op]
        for off in offsets:
            raw = int.from_bytes(PATTERN[off: off + n], "little")
            exp = raw if op.endswith("u") or op == "ld" else sx(raw, 8 * n)
            cases.append((f"{op} @{off}", f"{op} a0, {off}(s2)\n", exp))
    return cases


PROLOGUE = "la s2, scratch\n" + "".join(
    f"li t0, {b}\nsb t0, {i}(s2)\n" for i, b in enumerate(PATTERN))


def test_aligned_loads_extend() -> None:
    """lb/lh/lw sign-extend, lbu/lhu/lwu zero-extend, ld loads all 64 bits (2.6, 5.3)."""
    cases = _load_cases({
        "lb": list(range(16)), "lbu": list(range(16)),
        "lh": [0, 2, 4, 6, 8, 10, 12, 14], "lhu": [0, 2, 4, 6, 8, 10, 12, 14],
        "lw": [0, 4, 8, 12], "lwu": [0, 4, 8, 12], "ld": [0, 8],
    })
    K.run_cases(cases, "ext-load", prologue=PROLOGUE)


def test_misaligned_loads_work_and_extend() -> None:
    """Misaligned loads are supported on this hart (no trap: the unprivileged spec 2.6 lets
    an EEI handle them "invisibly"); the result is the same as an aligned load would give."""
    cases = _load_cases({
        "lh": [1, 3, 7, 9], "lhu": [1, 3, 7, 9],
        "lw": [1, 2, 3, 5, 6, 7, 9, 10], "lwu": [1, 2, 3, 5, 6, 7, 9, 10],
        "ld": [1, 2, 3, 4, 5, 6, 7],
    })
    r = K.run_cases(cases, "ext-load-mis", prologue=PROLOGUE)
    assert r.x(25) == 0, f"a misaligned load trapped (mcause {r.x(26):#x})"


def test_word_operations_sign_extend() -> None:
    """addiw/addw/subw/sllw/srlw/sraw/slliw/srliw/sraiw write sext(result[31:0]) and
    ignore the upper 32 bits of their sources (5.2)."""
    hi = 0x5A5A5A5A_00000000
    cases = [
        ("addiw overflow", "li a1, 0x7fffffff\naddiw a0, a1, 1\n", -0x80000000),
        ("addiw ignores high bits", f"li a1, {hi | 5}\naddiw a0, a1, -6\n", -1),
        ("addiw 0 = sext.w", "li a1, 0x1234567880000000\naddiw a0, a1, 0\n", -0x80000000),
        ("addiw positive clears high", f"li a1, {-0x100000000 + 0x10}\naddiw a0, a1, 1\n", 0x11),
        ("addw overflow", f"li a1, {hi | 0x7fffffff}\nli a2, {0x12345678_00000001}\naddw a0, a1, a2\n",
         -0x80000000),
        ("addw wraps to positive", "li a1, 0xffffffff\nli a2, 0xffffffff\naddw a0, a1, a2\n", -2),
        ("subw 0-1", f"li a1, {hi}\nli a2, 1\nsubw a0, a1, a2\n", -1),
        ("subw min-1 positive", "li a1, -0x80000000\nli a2, 1\nsubw a0, a1, a2\n", 0x7FFFFFFF),
        ("sllw into bit 31", "li a1, 1\nli a2, 31\nsllw a0, a1, a2\n", -0x80000000),
        ("sllw drops bits above 31", "li a1, 0x3\nli a2, 31\nsllw a0, a1, a2\n", -0x80000000),
        ("srlw by 0 sign-extends", f"li a1, {hi | 0x80000000}\nli a2, 0\nsrlw a0, a1, a2\n", -0x80000000),
        ("srlw by 1 zero-fills", f"li a1, {hi | 0x80000000}\nli a2, 1\nsrlw a0, a1, a2\n", 0x40000000),
        ("sraw fills from bit 31", f"li a1, {0x7fffffff_80000000}\nli a2, 4\nsraw a0, a1, a2\n", -0x8000000),
        ("sraw positive ignores high", f"li a1, {-0x100000000 + 0x70000000}\nli a2, 4\nsraw a0, a1, a2\n",
         0x07000000),
        ("slliw sign", "li a1, 0x40000000\nslliw a0, a1, 1\n", -0x80000000),
        ("srliw 0 sign-extends", "li a1, 0x80000000\nsrliw a0, a1, 0\n", -0x80000000),
        ("srliw 31", "li a1, -1\nsrliw a0, a1, 31\n", 1),
        ("sraiw 31", "li a1, 0x80000000\nsraiw a0, a1, 31\n", -1),
        ("mulw sign", "li a1, 0x10000\nli a2, 0x8000\nmulw a0, a1, a2\n", -0x80000000),
    ]
    K.run_cases(cases, "ext-w")


def test_lui_sign_extends_bit_31() -> None:
    """lui on RV64 sign-extends the 32-bit result (5.2)."""
    cases = [
        ("lui 0x80000", "lui a0, 0x80000\n", -0x80000000),
        ("lui 0xfffff", "lui a0, 0xfffff\n", -0x1000),
        ("lui 0x7ffff", "lui a0, 0x7ffff\n", 0x7FFFF000),
        ("lui 0xabcde", "lui a0, 0xabcde\n", sx(0xABCDE000, 32)),
        ("li 0xffffffff80000000 via lui", "li a0, 0xffffffff80000000\n", -0x80000000),
    ]
    K.run_cases(cases, "ext-lui")


def test_compressed_immediates_sign_extend() -> None:
    """C.LI's 6-bit immediate and C.LUI's nzimm[17:12] are sign-extended (16.5); C.ADDIW
    sign-extends its 32-bit result; C.LW sign-extends, C.LD does not need to (16.3)."""
    body = r"""
    .option push
    .option rvc
    la s2, scratch
    li t0, 0x80000000
    sw t0, 0(s2)
    li t0, -1
    sw t0, 4(s2)
    c.li a0, -32
    REC a0
    c.li a0, -1
    REC a0
    c.li a0, 31
    REC a0
    c.lui a0, 0xfffe0
    REC a0
    c.lui a0, 0xfffff
    REC a0
    c.lui a0, 0x1f
    REC a0
    li a0, 0x7fffffff
    c.addiw a0, 1
    REC a0
    li a0, 0
    c.addiw a0, -1
    REC a0
    li a0, 0x123456780000000f
    c.addiw a0, 0
    REC a0
    mv a1, s2
    c.lw a0, 0(a1)
    REC a0
    c.ld a0, 0(a1)
    REC a0
    li a0, 5
    c.addi a0, -32
    REC a0
    li a0, -1
    c.andi a0, -32
    REC a0
    li a0, 0x80000000
    li a1, 0x80000000
    c.addw a0, a1
    REC a0
    li a0, 0
    li a1, 1
    c.subw a0, a1
    REC a0
    .option pop
    """
    r = K.run(body, "ext-rvc")
    K.expect_results(r, [
        ("c.li -32", -32), ("c.li -1", -1), ("c.li 31", 31),
        ("c.lui 0xfffe0", -0x20000), ("c.lui 0xfffff", -0x1000), ("c.lui 0x1f", 0x1F000),
        ("c.addiw overflow", -0x80000000), ("c.addiw -1", -1), ("c.addiw 0 = sext.w", 0xF),
        ("c.lw", -0x80000000), ("c.ld", 0xFFFFFFFF_80000000),
        ("c.addi -32", -27), ("c.andi -32", -32), ("c.addw", 0), ("c.subw", -1),
    ])
