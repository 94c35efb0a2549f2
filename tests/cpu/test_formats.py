"""Decoding of every RV64I instruction format (R, I, S, B, U, J) with immediate edge values,
shifts with every shamt edge (RV64I and the W forms), and the RV64M corner cases.

References: unprivileged spec 20191213, chapter 2 (RV32I: formats 2.2-2.3, immediates 2.3,
integer computational 2.4, control transfer 2.5), chapter 5 (RV64I), chapter 7 (M, table 7.1
for division by zero and overflow).
"""

from __future__ import annotations

import pytest

from tests.cpu import asmkit as K

M64 = (1 << 64) - 1
MIN64 = -(1 << 63)
MAX64 = (1 << 63) - 1


def s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def u64(v: int) -> int:
    return v & M64


def _div(a: int, b: int) -> int:
    if b == 0:
        return -1
    if a == MIN64 and b == -1:
        return MIN64
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _rem(a: int, b: int) -> int:
    if b == 0:
        return a
    if a == MIN64 and b == -1:
        return 0
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _div32(a: int, b: int) -> int:
    a, b = s32(a), s32(b)
    if b == 0:
        return -1
    if a == -(1 << 31) and b == -1:
        return a
    q = abs(a) // abs(b)
    return s32(q if (a < 0) == (b < 0) else -q)


def _rem32(a: int, b: int) -> int:
    a, b = s32(a), s32(b)
    if b == 0:
        return a
    if a == -(1 << 31) and b == -1:
        return 0
    r = abs(a) % abs(b)
    return s32(-r if a < 0 else r)


# Reference semantics straight from the spec text, on Python integers.
REG_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "sll": lambda a, b: u64(a) << (b & 63),
    "slt": lambda a, b: int(s64(a) < s64(b)),
    "sltu": lambda a, b: int(u64(a) < u64(b)),
    "xor": lambda a, b: a ^ b,
    "srl": lambda a, b: u64(a) >> (b & 63),
    "sra": lambda a, b: s64(a) >> (b & 63),
    "or": lambda a, b: a | b,
    "and": lambda a, b: a & b,
    "addw": lambda a, b: s32(a + b),
    "subw": lambda a, b: s32(a - b),
    "sllw": lambda a, b: s32(a << (b & 31)),
    "srlw": lambda a, b: s32((a & 0xFFFFFFFF) >> (b & 31)),
    "sraw": lambda a, b: s32(a) >> (b & 31),
    # RV64M (chapter 7)
    "mul": lambda a, b: a * b,
    "mulh": lambda a, b: (s64(a) * s64(b)) >> 64,
    "mulhsu": lambda a, b: (s64(a) * u64(b)) >> 64,
    "mulhu": lambda a, b: (u64(a) * u64(b)) >> 64,
    "div": lambda a, b: _div(s64(a), s64(b)),
    "divu": lambda a, b: M64 if u64(b) == 0 else u64(a) // u64(b),
    "rem": lambda a, b: _rem(s64(a), s64(b)),
    "remu": lambda a, b: a if u64(b) == 0 else u64(a) % u64(b),
    "mulw": lambda a, b: s32(a * b),
    "divw": _div32,
    "divuw": lambda a, b: -1 if (b & 0xFFFFFFFF) == 0 else s32((a & 0xFFFFFFFF) // (b & 0xFFFFFFFF)),
    "remw": _rem32,
    "remuw": lambda a, b: s32(a) if (b & 0xFFFFFFFF) == 0 else s32((a & 0xFFFFFFFF) % (b & 0xFFFFFFFF)),
}

EDGE = [0, 1, -1, 2, MIN64, MAX64, 0x80000000, 0x7FFFFFFF, -0x80000000, 0xFFFFFFFF,
        0x123456789ABCDEF0, -0x123456789, 7, -7]


def _reg_cases(ops: list[str], pairs: list[tuple[int, int]], rd="a0", rs1="a1", rs2="a2"):
    cases = []
    for op in ops:
        for a, b in pairs:
            asm = f"li {rs1}, {a}\nli {rs2}, {b}\n{op} {rd}, {rs1}, {rs2}\n"
            if rd != "a0":
                asm += f"mv a0, {rd}\n"
            cases.append((f"{op} {a:#x}, {b:#x}", asm, REG_OPS[op](a, b)))
    return cases


def _pairs(values):
    return [(a, b) for a in values for b in values]


def test_r_type_alu() -> None:
    """R-type (2.4 / 5.2): every OP funct3/funct7 combination on edge operands."""
    vals = [0, 1, -1, MIN64, MAX64, 0x80000000, 0x123456789ABCDEF0]
    ops = ["add", "sub", "slt", "sltu", "xor", "or", "and"]
    K.run_cases(_reg_cases(ops, _pairs(vals)), "fmt-r")


def test_r_type_register_fields_use_high_registers() -> None:
    """rd/rs1/rs2 fields decoded as 5-bit numbers: x31, x30, x29 (t6, t5, t4) and rs1 == rs2."""
    cases = _reg_cases(["sub", "sltu"], [(5, 9), (-1, 1)], rd="t6", rs1="t5", rs2="t4")
    cases.append(("add rd=rs1=rs2", "li a0, 21\nadd a0, a0, a0\n", 42))
    cases.append(("sub rs1 == rs2", "li a1, 0x55\nsub a0, a1, a1\n", 0))
    K.run_cases(cases, "fmt-regs")


def test_every_register_is_distinct_and_x0_is_zero() -> None:
    """All 31 registers hold their own value (the rd field reaches each); writes to x0
    are discarded for every format (2.1, 2.6)."""
    body = []
    regs = [n for n in range(1, 32) if n != 4]  # tp holds the results pointer
    for n in regs:
        body.append(f"addi x{n}, x0, {n}")
    for n in regs:
        body.append(f"REC x{n}")
    body += [
        "addi x0, x0, 5", "REC x0",
        "lui x0, 0x12345", "REC x0",
        "auipc x0, 1", "REC x0",
        "li a1, 3", "add x0, a1, a1", "REC x0",
        "jal x0, 1f", "1:", "REC x0",
        "la a2, scratch", "li a1, 99", "sd a1, 0(a2)", "ld x0, 0(a2)", "REC x0",
    ]
    r = K.run("\n".join(body) + "\n", "fmt-x0")
    assert r.results[: len(regs)] == regs
    assert r.results[len(regs):] == [0] * 6


def test_shifts_every_shamt_edge() -> None:
    """sll/srl/sra use rs2[5:0]; sllw/srlw/sraw use rs2[4:0] (5.2): amounts 0, 1, 31, 32,
    63, 64 (= 0), 65 (= 1), -1 (= 63 / 31)."""
    vals = [0x8000000000000001, -1, 0x00000000_80000000, 0x123456789ABCDEF0, 1]
    amounts = [0, 1, 31, 32, 33, 63, 64, 65, -1]
    pairs = [(a, b) for a in vals for b in amounts]
    K.run_cases(_reg_cases(["sll", "srl", "sra", "sllw", "srlw", "sraw"], pairs), "fmt-shift")


def test_immediate_shifts_every_shamt_edge() -> None:
    """slli/srli/srai take a 6-bit shamt (5.2.1); slliw/srliw/sraiw a 5-bit one."""
    vals = [0x8000000000000001, -1, 0x80000000, 0x123456789ABCDEF0]
    cases = []
    for a in vals:
        for sh in (0, 1, 31, 32, 63):
            cases.append((f"slli {a:#x},{sh}", f"li a1, {a}\nslli a0, a1, {sh}\n", u64(a) << sh))
            cases.append((f"srli {a:#x},{sh}", f"li a1, {a}\nsrli a0, a1, {sh}\n", u64(a) >> sh))
            cases.append((f"srai {a:#x},{sh}", f"li a1, {a}\nsrai a0, a1, {sh}\n", s64(a) >> sh))
        for sh in (0, 1, 15, 31):
            cases.append((f"slliw {a:#x},{sh}", f"li a1, {a}\nslliw a0, a1, {sh}\n", s32(a << sh)))
            cases.append((f"srliw {a:#x},{sh}", f"li a1, {a}\nsrliw a0, a1, {sh}\n",
                          s32((a & 0xFFFFFFFF) >> sh)))
            cases.append((f"sraiw {a:#x},{sh}", f"li a1, {a}\nsraiw a0, a1, {sh}\n", s32(a) >> sh))
    K.run_cases(cases, "fmt-shifti")


def test_reserved_shift_encodings_are_illegal() -> None:
    """slliw/srliw/sraiw with imm[5] set are reserved (5.2.1), as are slli/srli with
    imm[11:6] other than 000000 / 010000: illegal instruction, mtval = the encoding."""
    encodings = [
        0x0205951B,  # slliw a0, a1, 32 (shamt[5] = 1)
        0x0205D51B,  # srliw a0, a1, 32
        0x4205D51B,  # sraiw a0, a1, 32
        0x0805D513,  # srli with imm[11:6] = 000010
        0x08059513,  # slli with imm[11:6] = 000010
        0x4405D513,  # srai with imm[11:6] = 010001
    ]
    body = "li a0, 77\n" + "".join(f".word {e:#010x}\nTRAPS\n" for e in encodings) + "REC a0\n"
    r = K.run(body, "fmt-shift-illegal")
    expected = []
    for i, e in enumerate(encodings):
        expected += [(f"count {i}", i + 1), (f"mcause {e:#x}", 2), (f"mtval {e:#x}", e)]
    expected.append(("a0 untouched by the illegal instructions", 77))
    K.expect_results(r, expected)


# Encodings in each major opcode whose funct3/funct7 (or fixed fields) are reserved.
RESERVED = {
    0x00002063: "BRANCH funct3=010",
    0x00003063: "BRANCH funct3=011",
    0x00007003: "LOAD funct3=111",
    0x00004023: "STORE funct3=100",
    0x00001067: "JALR funct3=001",
    0x0000201B: "OP-IMM-32 funct3=010",
    0x0000203B: "OP-32 funct3=010",
    0x4000103B: "OP-32 funct7=0100000 funct3=001",
    0x0200203B: "OP-32 funct7=0000001 funct3=010 (no mulhw)",
    0x40002033: "OP funct7=0100000 funct3=010",
    0x0000200F: "MISC-MEM funct3=010",
    0x000000F3: "ECALL with rd != 0",
    0x00008073: "ECALL with rs1 != 0",
    0x00200073: "SYSTEM funct12=2",
    0x1010302F: "LR.D with rs2 != 0",
    0xF800302F: "AMO funct5=11111, rs1=x0 (address 0, outside RAM)",
    0xF802B02F: "AMO funct5=11111, rs1=t0 (aligned RAM address)",
    0xF803302F: "AMO funct5=11111, rs1=t1 (misaligned for .d)",
    0x0000402F: "AMO funct3=100",
}


def test_reserved_encodings_are_illegal() -> None:
    """Reserved funct3/funct7/funct12 values in the RV64I/M/A opcodes raise illegal
    instruction with mtval = the encoding (priv 3.1.16); nothing else changes. Illegal
    instruction outranks address exceptions (priv table 3.7), so a reserved AMO is illegal
    whatever address rs1 holds."""
    p = K.Probe()
    p.asm("li a0, 0x42\nla t0, scratch\naddi t1, t0, 4")
    for enc, label in RESERVED.items():
        p.probe(label, enc, False)
    p.rec("a0 untouched", "a0", 0x42)
    p.run("fmt-reserved")


def test_i_type_immediates() -> None:
    """I-type immediates are sign-extended 12 bits: 2047 and -2048 are the edges (2.3)."""
    a = 0x1000
    cases = []
    for imm in (0, 1, -1, 2047, -2048):
        cases.append((f"addi {imm}", f"li a1, {a}\naddi a0, a1, {imm}\n", a + imm))
        cases.append((f"xori {imm}", f"li a1, {a}\nxori a0, a1, {imm}\n", a ^ imm))
        cases.append((f"ori {imm}", f"li a1, {a}\nori a0, a1, {imm}\n", a | imm))
        cases.append((f"andi {imm}", f"li a1, -1\nandi a0, a1, {imm}\n", imm))
        cases.append((f"addiw {imm}", f"li a1, 0x7fffffff\naddiw a0, a1, {imm}\n", s32(0x7FFFFFFF + imm)))
    for x in (0, 1, -1, -2048, 2047, -2049, MIN64, MAX64):
        for imm in (-2048, -1, 0, 2047):
            cases.append((f"slti {x},{imm}", f"li a1, {x}\nslti a0, a1, {imm}\n", int(x < imm)))
            cases.append((f"sltiu {x},{imm}", f"li a1, {x}\nsltiu a0, a1, {imm}\n",
                          int(u64(x) < u64(imm))))
    K.run_cases(cases, "fmt-i")


def test_s_type_and_load_offsets() -> None:
    """S-type splits imm[11:5] and imm[4:0] (2.3): stores and loads at offsets 2047 and
    -2048 from a base in the middle of the scratch area."""
    body = """
    la a2, scratch
    li t0, 4096
    add a2, a2, t0          /* base = scratch + 4096 */
    li a1, 0x1122334455667788
    sd a1, -2048(a2)
    sb a1, 2047(a2)
    sh a1, 31(a2)
    sw a1, -32(a2)
    la a3, scratch
    li t0, 2048
    add a3, a3, t0
    ld a0, 0(a3)             /* = base - 2048 */
    REC a0
    la a3, scratch
    ld a0, -2048(a2)
    REC a0
    lbu a0, 2047(a2)
    REC a0
    lhu a0, 31(a2)
    REC a0
    lwu a0, -32(a2)
    REC a0
    li t0, 4096 + 2047
    add a3, a3, t0
    lbu a0, 0(a3)
    REC a0
    """
    r = K.run(body, "fmt-s")
    K.expect_results(r, [("sd -2048", 0x1122334455667788), ("ld -2048", 0x1122334455667788),
                         ("sb 2047", 0x88), ("sh 31", 0x7788), ("sw -32", 0x55667788),
                         ("sb landed at base+2047", 0x88)])


BRANCHES = {
    "beq": lambda a, b: a == b,
    "bne": lambda a, b: a != b,
    "blt": lambda a, b: s64(a) < s64(b),
    "bge": lambda a, b: s64(a) >= s64(b),
    "bltu": lambda a, b: u64(a) < u64(b),
    "bgeu": lambda a, b: u64(a) >= u64(b),
}


def test_branch_conditions_signed_and_unsigned() -> None:
    """Each branch condition (2.5.2), taken and not taken, with operands whose signed and
    unsigned orders differ."""
    pairs = [(1, 1), (1, 2), (2, 1), (-1, 1), (1, -1), (MIN64, MAX64), (MAX64, MIN64), (0, -1), (-1, -1)]
    cases = []
    for op, f in BRANCHES.items():
        for a, b in pairs:
            asm = f"li a1, {a}\nli a2, {b}\nli a0, 1\n{op} a1, a2, 1f\nli a0, 0\n1:\n"
            cases.append((f"{op} {a:#x},{b:#x}", asm, int(f(a, b))))
    K.run_cases(cases, "fmt-b")


def test_branch_offset_extremes() -> None:
    """B-type offsets are 13-bit signed, multiples of 2: +4094 and -4096 are the edges (2.5.2);
    also offsets that exercise imm[11] (bit 7 of the encoding) and imm[12]."""
    body = r"""
    .option push
    .option norvc
    .option norelax
    li a0, 0
    li a1, 5
    bne a1, zero, 2f            /* forward +4094 */
    li a0, -1
    .skip 4094 - 8
2:  ori a0, a0, 1
    REC a0
    j 4f
3:  ori a0, a0, 2               /* backward target */
    REC a0
    j 5f
    .skip 4096 - 16
4:  blt zero, a1, 3b            /* at 3b + 4096: offset -4096 */
    li a0, -1
    REC a0
5:  li a0, 0
    beq a0, zero, 6f            /* +2048: only imm[11] set */
    .skip 2048 - 4
6:  ori a0, a0, 4
    bgeu a1, zero, 7f           /* +2050: imm[11] and imm[1] */
    .skip 2050 - 4
7:  ori a0, a0, 8
    REC a0
    .option pop
    """
    r = K.run(body, "fmt-b-far")
    K.expect_results(r, [("+4094", 1), ("-4096", 3), ("+2048/+2050", 12)])


def test_lui_and_auipc() -> None:
    """U-type (2.4): lui places imm[31:12] and sign-extends bit 31 (RV64, 5.2); auipc adds the
    sign-extended immediate to the pc of the auipc itself."""
    cases = [
        ("lui 0x7ffff", "lui a0, 0x7ffff\n", 0x7FFFF000),
        ("lui 0x80000", "lui a0, 0x80000\n", -0x80000000),
        ("lui 0xfffff", "lui a0, 0xfffff\n", -0x1000),
        ("lui 1", "lui a0, 1\n", 0x1000),
        ("auipc 0", "1: auipc a0, 0\nla a1, 1b\nsub a0, a0, a1\n", 0),
        ("auipc 1", "1: auipc a0, 1\nla a1, 1b\nsub a0, a0, a1\n", 0x1000),
        ("auipc 0x7ffff", "1: auipc a0, 0x7ffff\nla a1, 1b\nsub a0, a0, a1\n", 0x7FFFF000),
        ("auipc 0x80000", "1: auipc a0, 0x80000\nla a1, 1b\nsub a0, a0, a1\n", -0x80000000),
        ("auipc 0xfffff", "1: auipc a0, 0xfffff\nla a1, 1b\nsub a0, a0, a1\n", -0x1000),
        ("auipc absolute", "1: auipc a0, 0\n", None),
    ]
    r = K.run("\n".join(c[1] + "REC a0" for c in cases) + "\n", "fmt-u")
    assert r.results[-1] >> 31 == 1 and r.results[-1] < 0x80100000, "auipc 0 gives the pc (in RAM)"
    K.expect_results(r, [(c[0], c[2]) for c in cases])


def test_jal_and_jalr_link_and_targets() -> None:
    """jal/jalr write pc+4 to rd (2.5.1); jalr target is (rs1 + imm) with bit 0 cleared and
    is computed before rd is written (rd == rs1); the immediate edges -2048/2047."""
    body = r"""
    .option push
    .option norvc
1:  jal a0, 2f
2:  la a1, 1b
    sub a0, a0, a1
    REC a0                          /* link = pc + 4 */
    la a1, 3f
    li t0, 2048
    add a1, a1, t0
9:  jalr a0, -2048(a1)              /* imm -2048 */
    li a0, -1
3:  la a1, 9b
    sub a0, a0, a1
    REC a0
    la a1, 4f
    addi a1, a1, -2046
9:  jalr ra, 2047(a1)               /* target 4f + 1: bit 0 cleared */
    li ra, -1
4:  la a1, 9b
    sub a0, ra, a1
    REC a0
    la a0, 5f
9:  jalr a0, 0(a0)                  /* rd == rs1: target from the old value */
    li a0, -1
5:  la a1, 9b
    sub a0, a0, a1
    REC a0
    li a0, 0
    jal zero, 7f                    /* forward jal across a 0x1800 gap */
    .skip 0x1800
6:  li a0, 0x66
    REC a0
    j 8f
7:  jal zero, 6b                    /* backward jal */
8:
    .option pop
    """
    r = K.run(body, "fmt-j")
    K.expect_results(r, [("jal link", 4), ("jalr -2048 link", 4), ("jalr 2047 bit0 cleared", 4),
                         ("jalr rd==rs1", 4), ("jal forward/backward", 0x66)])


def test_compressed_jumps_link_pc_plus_2() -> None:
    """C.JALR links pc + 2 (unpriv 16.4); C.J/C.BEQZ/C.BNEZ branch by their offsets."""
    body = r"""
    .option push
    .option rvc
    la t0, 2f
9:  c.jalr t0
    li a0, -1
2:  la a1, 9b
    sub a0, ra, a1
    REC a0
    li a0, 0
    li s0, 0
    c.beqz s0, 3f
    li a0, -1
3:  c.bnez s0, 4f
    c.j 5f
4:  li a0, -1
5:  c.addi a0, 1
    la t0, 6f
    c.jr t0
    li a0, -1
6:  REC a0
    .option pop
    """
    K.expect_results(K.run(body, "fmt-rvc-jumps"), [("c.jalr link", 2), ("c.beqz/c.bnez/c.j/c.jr", 1)])


def test_jal_max_offsets_decode() -> None:
    """J-type offsets are 21-bit signed: +0xffffe and -0x100000 are the edges (2.5.1). Both
    targets lie outside the 1 MiB of RAM here, so the fetch faults with cause 1 and mtval /
    mepc = the decoded target (priv 3.1.16), which shows the immediate was decoded."""
    body = r"""
    .option push
    .option norvc
    la s2, 1f
1:  jal ra, .+0xffffe
    TRAPS
    REC s8
    REC s2
    la s2, 2f
2:  jal ra, .-0x100000
    TRAPS
    REC s8
    REC s2
    .option pop
    """
    r = K.run(body, "fmt-j-far")
    pc1, pc2 = r.results[4], r.results[9]
    K.expect_results(r, [("count", 1), ("cause", 1), ("mtval", pc1 + 0xFFFFE), ("mepc", pc1 + 0xFFFFE),
                         ("pc", None),
                         ("count", 2), ("cause", 1), ("mtval", pc2 - 0x100000),
                         ("mepc", pc2 - 0x100000), ("pc", None)])


def test_fence_i_makes_stored_instructions_visible() -> None:
    """Zifencei (unprivileged chapter 3): after a store to instruction memory, fence.i makes
    the new instruction visible to fetches of the same hart."""
    body = r"""
    .option push
    .option norvc
    la t1, 2f
    li t0, 0x00700513          /* addi a0, x0, 7 */
    sw t0, 0(t1)
    fence.i
    li a0, 0
2:  addi a0, x0, 1
    REC a0
    .option pop
    """
    K.expect_results(K.run(body, "fmt-fencei"), [("patched instruction ran", 7)])


# ---- RV64M -----------------------------------------------------------------------------

def test_multiply_signs() -> None:
    """mul/mulh/mulhsu/mulhu (7.1) for every sign combination and the extremes."""
    vals = [0, 1, -1, 2, MIN64, MAX64, 0x100000000, -0x100000000, 0x123456789ABCDEF0, -3]
    K.run_cases(_reg_cases(["mul", "mulh", "mulhsu", "mulhu"], _pairs(vals)), "m-mul")


def test_divide_corner_cases() -> None:
    """div/divu/rem/remu (7.2): division by zero gives -1 / 2^64-1 and rem = dividend;
    MIN / -1 overflows to MIN with rem 0; truncation toward zero; remainder takes the
    dividend's sign (table 7.1)."""
    vals = [0, 1, -1, 7, -7, 2, MIN64, MAX64, 0x8000000000000001]
    K.run_cases(_reg_cases(["div", "divu", "rem", "remu"], _pairs(vals)), "m-div")


def test_word_multiply_divide() -> None:
    """mulw/divw/divuw/remw/remuw (7.1, 7.2) use the low 32 bits and sign-extend the 32-bit
    result, including divide by zero (remuw x/0 = sext(x[31:0])) and -2^31 / -1."""
    vals = [0, 1, -1, 7, -7, 0x80000000, 0x7FFFFFFF, 0xFFFFFFFF, 0x1_00000000, 0x1234_5678_8000_0001,
            -0x80000000]
    K.run_cases(_reg_cases(["mulw", "divw", "divuw", "remw", "remuw"], _pairs(vals)), "m-w")


@pytest.mark.parametrize("rd_alias", ["rs1", "rs2"])
def test_m_results_when_rd_aliases_a_source(rd_alias: str) -> None:
    """The result goes to rd even when rd is also a source register."""
    a, b = -7, 2
    if rd_alias == "rs1":
        ops = [(op, f"li a0, {a}\nli a2, {b}\n{op} a0, a0, a2\n", REG_OPS[op](a, b))
               for op in ("mul", "mulh", "div", "rem", "divw", "remuw")]
    else:
        ops = [(op, f"li a1, {a}\nli a0, {b}\n{op} a0, a1, a0\n", REG_OPS[op](a, b))
               for op in ("mul", "mulhu", "divu", "remu", "mulw", "divuw")]
    K.run_cases(ops, f"m-alias-{rd_alias}")
