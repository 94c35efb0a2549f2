"""Every RV64C instruction expands to the same 32-bit instruction the assembler would emit."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import cross_compiler

# (compressed source, expanded source) pairs covering each RV64C form and immediate edges.
CASES = [
    ("c.addi4spn s0, sp, 4", "addi s0, sp, 4"), ("c.addi4spn a5, sp, 1020", "addi a5, sp, 1020"),
    ("c.lw a0, 0(a1)", "lw a0, 0(a1)"), ("c.lw s1, 124(a5)", "lw s1, 124(a5)"),
    ("c.ld a0, 248(a1)", "ld a0, 248(a1)"), ("c.sw a0, 64(s0)", "sw a0, 64(s0)"),
    ("c.sd a2, 8(a3)", "sd a2, 8(a3)"), ("c.nop", "addi x0, x0, 0"),
    ("c.addi a0, -32", "addi a0, a0, -32"), ("c.addi t0, 31", "addi t0, t0, 31"),
    ("c.addiw a0, -1", "addiw a0, a0, -1"), ("c.addiw s2, 0", "addiw s2, s2, 0"),
    ("c.li a0, -32", "addi a0, x0, -32"), ("c.li t6, 17", "addi t6, x0, 17"),
    ("c.addi16sp sp, -512", "addi sp, sp, -512"), ("c.addi16sp sp, 496", "addi sp, sp, 496"),
    ("c.lui a0, 1", "lui a0, 1"), ("c.lui t0, 0xfffe0", "lui t0, 0xfffe0"),
    ("c.srli a0, 63", "srli a0, a0, 63"), ("c.srai s1, 1", "srai s1, s1, 1"),
    ("c.andi a2, -1", "andi a2, a2, -1"), ("c.sub a0, a1", "sub a0, a0, a1"),
    ("c.xor s0, a5", "xor s0, s0, a5"), ("c.or a3, a4", "or a3, a3, a4"),
    ("c.and a1, s1", "and a1, a1, s1"), ("c.subw a0, a1", "subw a0, a0, a1"),
    ("c.addw a4, a5", "addw a4, a4, a5"), ("c.slli t1, 63", "slli t1, t1, 63"),
    ("c.lwsp ra, 252(sp)", "lw ra, 252(sp)"), ("c.ldsp s0, 504(sp)", "ld s0, 504(sp)"),
    ("c.jr ra", "jalr x0, 0(ra)"), ("c.mv a0, t3", "add a0, x0, t3"),
    ("c.ebreak", "ebreak"), ("c.jalr t0", "jalr ra, 0(t0)"), ("c.add s0, a0", "add s0, s0, a0"),
    ("c.swsp a0, 252(sp)", "sw a0, 252(sp)"), ("c.sdsp s11, 504(sp)", "sd s11, 504(sp)"),
    ("c.fld fa0, 248(a1)", "fld fa0, 248(a1)"), ("c.fsd fs0, 8(a0)", "fsd fs0, 8(a0)"),
    ("c.fldsp ft0, 504(sp)", "fld ft0, 504(sp)"), ("c.fsdsp fa7, 0(sp)", "fsd fa7, 0(sp)"),
]
# Branches and jumps are pc-relative: assemble them at the same place with numeric offsets.
BRANCH_CASES = [
    ("c.beqz a0, .+254", "beq a0, x0, .+254"), ("c.bnez s1, .-256", "bne s1, x0, .-256"),
    ("c.j .+2046", "jal x0, .+2046"), ("c.j .-2048", "jal x0, .-2048"),
]


def _assemble(lines: list[str], tmp_path, name: str) -> bytes:
    src = tmp_path / f"{name}.S"
    obj = tmp_path / f"{name}.o"
    binf = tmp_path / f"{name}.bin"
    src.write_text("".join(f"{line}\n" for line in lines))
    subprocess.run([cross_compiler(), "-march=rv64gc", "-mabi=lp64d", "-c", "-o", str(obj), str(src)],
                   check=True, capture_output=True)
    subprocess.run(["riscv64-unknown-elf-objcopy", "-O", "binary", "-j", ".text", str(obj), str(binf)],
                   check=True)
    return binf.read_bytes()


def test_every_compressed_form_expands_like_the_assembler(tmp_path) -> None:
    from wirt.cpu.rvc import build_rvc_table

    table = build_rvc_table()
    cases = CASES + BRANCH_CASES
    short = _assemble([".option rvc"] + [c for c, _ in cases], tmp_path, "c")
    # Each expanded instruction sits where its compressed twin was: pad with a 2-byte gap.
    long_lines = [".option norvc"]
    for i, (_, e) in enumerate(cases):
        long_lines.append(f".org {4 * i}")
        long_lines.append(e)  # pc-relative offsets ('.+254') are relative to each instruction
    long = _assemble(long_lines, tmp_path, "e")
    assert len(short) == 2 * len(cases)
    for i, (c, e) in enumerate(cases):
        h = int.from_bytes(short[2 * i: 2 * i + 2], "little")
        expected = int.from_bytes(long[4 * i: 4 * i + 4], "little")
        got = int(table[h]) & 0xFFFFFFFF
        assert got == expected, f"{c}: expanded {got:08x}, assembler says {e} = {expected:08x}"


# c.addi4spn 0, c.addiw rd=0, c.addi16sp 0, c.lui 0, reserved OP-32 forms, c.lwsp/c.ldsp rd=0,
# c.jr x0, the reserved quadrant-0 slot, and the all-zero instruction.
ILLEGAL = [0x0000, 0x2001, 0x6101, 0x6081, 0x9C41, 0x9C61, 0x4002, 0x6002, 0x8002, 0x8000]


@pytest.mark.parametrize("h", ILLEGAL, ids=[f"{h:04x}" for h in ILLEGAL])
def test_reserved_encodings_are_illegal(h: int) -> None:
    from wirt.cpu.rvc import expand

    assert expand(h) == 0
