"""The translation tier (cpu/jit): same results as the interpreter, invalidation, RAM edges.

Every asmkit program of tests/cpu also runs in lockstep under both tiers (asmkit.run); these
add random instruction streams, self-modifying code and accesses at the edges of RAM.
"""

from __future__ import annotations

import random

import pytest

from tests.cpu import asmkit as K
from tests.cpu.lockstep import lockstep
from wirt.cpu import layout as L

# Registers a random stream may write: not the harness's (tp, gp, t3-t6, s1, s3-s11, a7, ra)
# nor the data pointer s2 and loop counter s0.
FREE = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "t0", "t1", "t2"]
ALU_R = ["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "mul", "mulh",
         "mulhsu", "mulhu", "div", "divu", "rem", "remu", "addw", "subw", "sllw", "srlw", "sraw",
         "mulw", "divw", "divuw", "remw", "remuw"]
ALU_I = ["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"]
SHIFT_I = [("slli", 63), ("srli", 63), ("srai", 63), ("slliw", 31), ("srliw", 31), ("sraiw", 31)]
LOADS = [("lb", 1), ("lh", 2), ("lw", 4), ("ld", 8), ("lbu", 1), ("lhu", 2), ("lwu", 4)]
STORES = [("sb", 1), ("sh", 2), ("sw", 4), ("sd", 8)]
SPECIAL = ["li a0, 0x7fffffffffffffff", "li a1, -1", "li a2, 0x8000000000000000", "li a3, 0",
           "li a4, 0xffffffff80000000", "li a5, 0x80000000"]


def random_stream(seed: int, n: int = 120) -> str:
    """A loop over random valid instructions: ALU, M, compressed, loads and stores (some
    misaligned, some outside RAM so they trap and are skipped), short forward branches."""
    rnd = random.Random(seed)
    out = ["la s2, data", "li s0, 40"] + [f"li {r}, {rnd.getrandbits(64) - (1 << 63)}" for r in FREE]
    out.append("0:")
    for i in range(n):
        k = rnd.random()
        rd, a, b = rnd.choice(FREE), rnd.choice(FREE + ["zero"]), rnd.choice(FREE + ["zero"])
        if k < 0.35:
            out.append(f"{rnd.choice(ALU_R)} {rd}, {a}, {b}")
        elif k < 0.5:
            out.append(f"{rnd.choice(ALU_I)} {rd}, {a}, {rnd.randint(-2048, 2047)}")
        elif k < 0.58:
            name, top = rnd.choice(SHIFT_I)
            out.append(f"{name} {rd}, {a}, {rnd.randint(0, top)}")
        elif k < 0.62:
            out.append(rnd.choice(SPECIAL))
        elif k < 0.64:
            out.append(f"lui {rd}, {rnd.randint(0, 0xFFFFF)}")
        elif k < 0.66:
            out.append(f"auipc {rd}, {rnd.randint(0, 0xFFFFF)}")
        elif k < 0.76:
            name, size = rnd.choice(LOADS)
            off = rnd.choice([0, 8, 16, 24, 1, 3, 5, 7, 2047, 2044, 2000]) & ~(0 if rnd.random() < 0.2 else size - 1)
            out.append(f"{name} {rd}, {off}(s2)")
        elif k < 0.84:
            name, size = rnd.choice(STORES)
            off = rnd.choice([0, 8, 16, 24, 1, 3, 5, 6, 2047, 2044, 2000]) & ~(0 if rnd.random() < 0.2 else size - 1)
            out.append(f"{name} {a}, {off}(s2)")
        elif k < 0.87:
            # an access far outside RAM: an access fault the handler skips
            out.append(f"li t2, {rnd.choice([0x40000000, 0x7ffffff8, 0x80100000, -8])}")
            out.append(f"{rnd.choice(['ld', 'lw', 'sd', 'sb'])} {'t1' if rnd.random() < .5 else 'zero'}, 0(t2)"
                       .replace("sd t1", "sd t1").replace("sb zero", "sb a0"))
        elif k < 0.93:
            out.append(f"{rnd.choice(['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'])} {a}, {b}, 1f")
            out.append(f"{rnd.choice(ALU_R)} {rd}, {a}, {b}")
            out.append("1:")
        elif k < 0.95:
            # an atomic on the data: AMOs, or LR then SC (which succeeds, or fails after a
            # store to the reserved word), some misaligned (an exception the handler skips)
            w = rnd.choice(["w", "d"])
            off = rnd.choice([0, 8, 16, 24, 4, 12]) if rnd.random() < 0.9 else rnd.choice([1, 2, 6])
            if w == "d" and off % 8 == 4:
                off += 4
            out.append(f"addi t2, s2, {off}")
            if rnd.random() < 0.7:
                name = rnd.choice(["amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin",
                                   "amomax", "amominu", "amomaxu"])
                out.append(f"{name}.{w}{rnd.choice(['', '.aq', '.rl', '.aqrl'])} {rd}, {b}, (t2)")
            else:
                out.append(f"lr.{w} {rd}, (t2)")
                if rnd.random() < 0.3:
                    out.append(f"s{w} {a}, 0(t2)")
                out.append(f"sc.{w} {rd}, {b}, (t2)")
        elif k < 0.96:
            # CSR instructions (translated as calls of the interpreter's code): counters must
            # read the same under both tiers; a write leaves the region after it
            out.append(rnd.choice([f"csrr {rd}, instret", f"csrr {rd}, cycle", f"csrr {rd}, mscratch",
                                   f"csrw mscratch, {a}", f"csrrs {rd}, mscratch, {b}",
                                   f"csrrci {rd}, mscratch, 5", f"csrr {rd}, mhartid"]))
        elif k < 0.97:
            out.append(rnd.choice([f"c.addi {rd}, {rnd.randint(1, 31)}", f"c.mv {rd}, {a if a != 'zero' else 'a0'}",
                                   f"c.add {rd}, {a if a != 'zero' else 'a1'}", f"c.slli {rd}, {rnd.randint(1, 63)}",
                                   "c.li a5, -3", f"c.andi {'a0' if rd not in ('a0','a1','a2','a3','a4','a5') else rd}, 7"]))
        else:
            out.append(".word 0xffffffff")  # illegal: trapped and skipped
    out += ["addi s0, s0, -1", "bnez s0, 0b",
            "la t0, data", "ld a0, 0(t0)", "REC a0", "REC a1", "REC a2", "REC t0", "REC s9",
            ".pushsection .data", ".align 12", "data: .fill 1024, 8, 0x5a", ".popsection"]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tier", ["template", "llvm"])
def test_random_streams_match_the_interpreter(seed: int, tier: str, monkeypatch) -> None:
    """Both first tiers: the template translator (jit/x64) and LLVM's (emit.py, the tier of
    hosts the template translator does not cover)."""
    if tier == "llvm":
        monkeypatch.setenv("WIRT_JIT_XTHRESHOLD", "0")
    path = K.build(random_stream(seed), f"jitrand{seed}")
    got = lockstep(str(path), 1 << 20, 400_000)
    assert got["exit_code"] == 0
    made = got["template_regions"] if tier == "template" else got["regions"] - got["template_regions"]
    assert made > 0 and got["checks"] > 40, got


# Values for the FP stream: normal numbers of every size (products and quotients that overflow
# or underflow, sums that cancel to zero), zeros, infinities, NaNs, subnormals, and singles both
# NaN-boxed and not (an unboxed single reads as the canonical NaN).
def _fp_values(rnd: random.Random) -> list[int]:
    vals = [0, 1 << 63, 0x7FF0000000000000, 0x7FF8000000000000, 0x0000000000000001,
            0x0010000000000000, 0xFFFFFFFF7F800000, 0xFFFFFFFF00000001, 0xFFFFFFFF00800000,
            0x000000003F800000, 0x3FF0000000000000, 0xFFFFFFFF3F800000, 0xBFF0000000000000]
    for _ in range(51):
        if rnd.random() < 0.5:
            exp = rnd.choice([rnd.randint(1, 0x7FE), rnd.randint(0x3F0, 0x410),
                              rnd.randint(0x3F0, 0x410), 1, 0x7FE])
            vals.append((rnd.getrandbits(1) << 63) | (exp << 52) | rnd.getrandbits(52))
        else:
            exp = rnd.choice([rnd.randint(1, 0xFE), rnd.randint(0x70, 0x8F), rnd.randint(0x70, 0x8F),
                              1, 0xFE])
            box = 0xFFFFFFFF if rnd.random() < 0.95 else rnd.getrandbits(32)
            vals.append((box << 32) | (rnd.getrandbits(1) << 31) | (exp << 23) | rnd.getrandbits(23))
    return vals


def fp_stream(seed: int) -> str:
    """A loop of F and D arithmetic with a fast path in translated code (add, sub, mul, div and
    the fused multiply-adds, both precisions), mostly in round-to-nearest-even with fflags.NX
    set, where the fast path applies, and sometimes not (NX clear, other rounding modes)."""
    rnd = random.Random(seed)
    ops = [f"{op}.{w}" for op in ("fadd", "fsub", "fmul", "fdiv") for w in "sd"]
    fused = [f"{op}.{w}" for op in ("fmadd", "fmsub", "fnmadd", "fnmsub") for w in "sd"]
    out = ["li t0, 1 << 13", "csrs mstatus, t0", "la s2, fpdata", "li s0, 40", "0:",
           "csrwi fcsr, 1",                    # NX set, frm RNE: where the fast paths apply
           "slli t1, s0, 3", "add t1, t1, s2"]  # each round loads another window of values
    out += [f"fld f{r}, {8 * k}(t1)" for r, k in enumerate(rnd.sample(range(24), 8))]
    for _ in range(40):
        k = rnd.random()
        fd, fa, fb, fc = (f"f{rnd.randrange(8)}" for _ in range(4))
        rm = rnd.choice(["rne", "dyn", "dyn", "dyn", "rtz", "rup"])
        if k < 0.1:
            out.append(f"fld {fd}, {8 * rnd.randrange(24)}(t1)")
        elif k < 0.13:
            out.append(rnd.choice(["csrwi fflags, 1", "csrwi fflags, 0", "csrwi frm, 0", "csrwi frm, 1",
                                   "csrwi fcsr, 1"]))
        elif k < 0.7:
            out.append(f"{rnd.choice(ops)} {fd}, {fa}, {fb}, {rm}")
        else:
            out.append(f"{rnd.choice(fused)} {fd}, {fa}, {fb}, {fc}, {rm}")
    out += ["frcsr a0", "REC a0", "fmv.x.d a1, f3", "REC a1", "addi s0, s0, -1", "bnez s0, 0b",
            ".pushsection .data", ".align 12", "fpdata:"]
    out += [f".dword {v}" for v in _fp_values(rnd)]
    out += [".popsection"]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tier", ["template", "llvm"])
def test_fp_fast_paths_match_the_interpreter(seed: int, tier: str, monkeypatch) -> None:
    """The host FP fast paths of both first tiers (x64/translate.fp_fast, emit.fpop) give the
    interpreter's registers and flags, on operands that take them and operands that must not."""
    if tier == "llvm":
        monkeypatch.setenv("WIRT_JIT_XTHRESHOLD", "0")
    path = K.build(fp_stream(seed), f"jitfp{seed}")
    got = lockstep(str(path), 1 << 20, 400_000)
    assert got["exit_code"] == 0 and got["checks"] > 40, got


# Every way the template translator takes an operand from rax, which still holds the register
# the block's previous instruction wrote (x64/translate.alu), and the ways it must not.
FORWARD = """
    la s2, data
    li s0, 300
    li a1, 0x0123456789abcdef
    li a2, -77
    li a4, 1000003
0:  add a0, a1, a2          /* rax = a0 */
    sub a3, a4, a0          /* rs2 from rax, rs1 loaded over it */
    mul a5, a3, a3          /* rs1 = rs2 = the register in rax */
    xor a0, a5, a0          /* rs1 in rax, rs2 loaded */
    lui a5, 0x12345         /* overwrites the register rax held: it must be loaded again */
    add a1, a5, a0
    ld a2, 8(s2)            /* rax = the loaded a2 */
    addw a4, a2, a2
    divw a6, a4, a2         /* rax after a division (and x % 0, x / 0 below) */
    remu t0, a6, zero
    divu t1, t0, zero
    sd t1, 16(s2)           /* a store leaves rax holding an address */
    add t2, t1, a6
    srli t2, t2, 3
    sw t2, 8(s2)
    addi a2, t2, 1
    bge a2, a0, 1f          /* a branch on the register in rax */
    addi a3, a3, 5
1:  auipc a6, 0             /* rax = a6 */
    sub a6, a6, s2
    andi a6, a6, 0xff
    add a4, a4, a6
    addi s0, s0, -1
    bnez s0, 0b
    REC a0
    REC a1
    REC a3
    REC a4
    REC t2
    .pushsection .data
    .align 12
data: .fill 512, 8, 0x3c
    .popsection
"""


def test_operands_forwarded_in_rax_match_the_interpreter() -> None:
    path = K.build(FORWARD, "jitforward")
    got = lockstep(str(path), 1 << 20, 400_000)
    assert got["exit_code"] == 0 and got["template_regions"] > 0 and got["checks"] > 10, got


SMC = """
    la s2, patch
    li s0, 0
1:  jal ra, patch          /* runs the original a few hundred times: translated */
    add s0, s0, a0
    li t0, 300
    blt s0, t0, 1b
    REC s0
    lw t1, 8(s2)           /* the encoding of `li a0, 5` below */
    sw t1, 0(s2)           /* patch: li a0, 1 -> li a0, 5 */
    FENCE_I
    jal ra, patch
    REC a0
    j 2f
    .align 4
patch:
    li a0, 1
    ret
    li a0, 5
2:
"""


@pytest.mark.parametrize("fence", [True, False], ids=["fence.i", "no-fence"])
@pytest.mark.parametrize("jit", ["force", "on"])
def test_self_modifying_code_sees_the_new_instruction(fence: bool, jit: str) -> None:
    body = SMC.replace("FENCE_I", "fence.i" if fence else "nop")
    # `li a0, 1` and `li a0, 5` are both compressed: patch the halfword pair at once
    body = body.replace("lw t1, 8(s2)", "lw t1, 4(s2)").replace("sw t1, 0(s2)", "sw t1, 0(s2)")
    body = body.replace("    li a0, 1\n    ret\n    li a0, 5\n",
                        "    .option push\n    .option norvc\n    li a0, 1\n    ret\n    li a0, 5\n    .option pop\n")
    body = body.replace("lw t1, 4(s2)", "lw t1, 8(s2)")
    path = K.build(body, f"jitsmc{int(fence)}")
    from wirt.machine.baremetal import BareMetal
    m = BareMetal(str(path), 1 << 20, output=lambda b: None, jit=jit)
    if jit == "on":  # translated after a few runs, as in real use (compiled at once here)
        m.hart.jit.sync = True
        m.hart.jq[L.JQ_FORCE] = 1
        m.hart.jq[L.JQ_THRESHOLD] = 4
    res = m.run(1_000_000)
    assert res.exit_code == 0
    from wirt.machine.elf import read_elf
    results = read_elf(path).symbols["results"]
    assert m.memory.read_u64(results) == 300
    assert m.memory.read_u64(results + 8) == 5, "the patched instruction did not take effect"
    stats = m.hart.jit_stats()
    assert stats["invalidations"] >= 1 and stats["regions"] > 0, stats
    lockstep(str(path), 1 << 20, 1_000_000)


def group_stream(seed: int, mode: str) -> str:
    """A loop over runs of 3-10 loads or stores on one base register (the template tier checks
    such a run once: translate.group), some misaligned, some loading into their base last,
    with a data pointer that moves across a page boundary, so some runs straddle it; in S mode
    (`mode` "S", accesses through the TLB) or M mode."""
    rnd = random.Random(seed)
    out = (["ENTER_S"] if mode == "S" else []) + ["la s2, data", "li s0, 40"]
    out += [f"li {r}, {rnd.getrandbits(64) - (1 << 63)}" for r in FREE]
    out.append("0:")
    for _ in range(12):
        base = rnd.choice(["s2", "a6"])
        if base == "a6":
            out.append(f"addi a6, s2, {rnd.randint(0, 256)}")
        start = rnd.randint(0, 300)
        n = rnd.randint(3, 10)
        free = [r for r in FREE if r != "a6"]
        if rnd.random() < 0.5:
            for m in range(n):
                name, size = rnd.choice(LOADS)
                off = (start + rnd.randint(0, 200)) & ~(0 if rnd.random() < 0.2 else size - 1)
                rd = "a6" if base == "a6" and m == n - 1 and rnd.random() < 0.5 else rnd.choice(free)
                out.append(f"{name} {rd}, {off}({base})")
        else:
            for _m in range(n):
                name, size = rnd.choice(STORES)
                off = (start + rnd.randint(0, 200)) & ~(0 if rnd.random() < 0.2 else size - 1)
                out.append(f"{name} {rnd.choice(FREE + ['zero'])}, {off}({base})")
        out.append(f"{rnd.choice(ALU_R)} {rnd.choice(free)}, {rnd.choice(FREE)}, {rnd.choice(FREE)}")
    out += ["addi s2, s2, 97", "addi s0, s0, -1", "bnez s0, 0b"]
    out += (["TO_M"] if mode == "S" else []) + [f"REC {r}" for r in FREE]
    out += [".pushsection .data", ".align 12", "data: .fill 2048, 8, 0x5a", ".popsection"]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["M", "S"])
def test_grouped_loads_and_stores_match_the_interpreter(seed: int, mode: str) -> None:
    path = K.build(group_stream(seed, mode), f"jitgroup{mode}{seed}")
    got = lockstep(str(path), 1 << 20, 400_000)  # RAM and registers compared at the end too
    assert got["exit_code"] == 0 and got["template_regions"] > 0 and got["instructions"] > 3000, got


def test_a_group_of_stores_onto_translated_code_invalidates_it() -> None:
    """Three stores checked as one group (translate.group) rewrite translated code: the group's
    page check sends them the way single stores go, which drops the translations."""
    body = SMC.replace("    sw t1, 0(s2)           /* patch: li a0, 1 -> li a0, 5 */\n",
                       "    lw t2, 4(s2)\n    lw t3, 8(s2)\n    sw t1, 0(s2)\n    sw t2, 4(s2)\n    sw t3, 8(s2)\n")
    body = body.replace("FENCE_I", "nop")
    body = body.replace("    li a0, 1\n    ret\n    li a0, 5\n",
                        "    .option push\n    .option norvc\n    li a0, 1\n    ret\n    li a0, 5\n    .option pop\n")
    path = K.build(body, "jitgroupsmc")
    from wirt.machine.baremetal import BareMetal
    from wirt.machine.elf import read_elf
    m = BareMetal(str(path), 1 << 20, output=lambda b: None, jit="force")
    assert m.run(1_000_000).exit_code == 0
    results = read_elf(path).symbols["results"]
    assert m.memory.read_u64(results) == 300
    assert m.memory.read_u64(results + 8) == 5, "the patched instruction did not take effect"
    assert m.hart.jit_stats()["invalidations"] >= 1
    lockstep(str(path), 1 << 20, 1_000_000)


def rewrite_and_run(body: str, name: str, label: str, stop: int, stat: str, least: int) -> None:
    """Run `body` translated (force) for `stop` instructions, with at least `least` of the
    tier's `stat`; rewrite the instruction at `label` to `li a0, 7` from outside the core (as
    DMA or loading does); run on: the program must see the new instruction and record 7."""
    from wirt.machine.baremetal import BareMetal
    from wirt.machine.elf import read_elf
    path = K.build(body, name)
    syms = read_elf(path).symbols
    m = BareMetal(str(path), 1 << 20, output=lambda b: None, jit="force")
    assert m.run(stop).reason == "max-insns" and m.hart.jit_stats()[stat] >= least
    m.memory.write(syms[label], (0x00700513).to_bytes(4, "little"))  # li a0, 7
    r = m.run(40_000)
    assert r.exit_code == 0
    assert m.memory.read_u64(syms["results"]) == 7


def patch_loop(enter: str, align: int) -> str:
    """A loop calling `patch` (at a 2^align boundary: 12 puts it on the next page) until it is
    rewritten to return non-zero; `enter`: a macro run first (ENTER_S: in S mode)."""
    return f"""
    {enter}
    la s2, patch
1:  jal ra, patch
    beqz a0, 1b            /* loop until Python rewrites patch to return non-zero */
    REC a0
    j 2f
    .align {align}
    .option push
    .option norvc
patch:
    li a0, 0
    ret
    .option pop
2:
"""


def test_dma_write_drops_translations() -> None:
    """A write from outside the core (device DMA, loading) to translated code takes effect."""
    rewrite_and_run(patch_loop("", 4), "jitdma", "patch", 20_000, "regions", 1)


@pytest.mark.parametrize("stop", range(20_000, 20_008))
def test_dma_write_is_seen_by_a_chained_exit(stop: int) -> None:
    """The same in S-mode, where regions chain: the loop's region (made again after the write)
    jumps to `patch` on its own page through the fast chained exit, which must find the stale
    translation of `patch` by the page's generation word and not enter it. Stopping at several
    counts puts the write at different points of the loop."""
    rewrite_and_run(patch_loop("ENTER_S", 4), "jitdmas", "patch", stop, "chained", 101)


@pytest.mark.parametrize("stop", range(20_000, 20_008))
def test_dma_write_is_seen_by_an_m_mode_chain_across_pages(stop: int) -> None:
    """M mode chains too (it fetches untranslated), also to another page, whose generation
    word the exit reads: `patch` lies on the next page and is rewritten from outside."""
    rewrite_and_run(patch_loop("", 12), "jitdmam", "patch", stop, "chained", 101)


@pytest.mark.parametrize("stop", range(20_000, 20_008))
def test_dma_write_is_seen_by_a_return(stop: int) -> None:
    """The code a `ret` goes back to, on the same page (the JALR's fast chained exit), is
    rewritten from outside: the return must not enter its stale translation."""
    body = """
    ENTER_S
1:  jal ra, f
    .option push
    .option norvc
after:
    li a0, 0
    .option pop
    beqz a0, 1b
    REC a0
    j pass
f:  addi t0, t0, 1
    ret
"""
    rewrite_and_run(body, "jitdmaret", "after", stop, "regions", 0)


EDGES = """
    /* RAM is 1 MiB at 0x80000000: accesses at its last bytes work, past it they fault. */
    li s0, 0x80100000
    li t0, 0x1122334455667788
    sd t0, -8(s0)
    ld a0, -8(s0)
    REC a0
    lbu a1, -1(s0)
    REC a1
    sw t0, -4(s0)
    lw a2, -4(s0)
    REC a2
    ld a3, 0(s0)          /* first byte past RAM: load access fault, skipped */
    REC s10
    sd t0, 0(s0)          /* store access fault */
    REC s10
    ld a4, -4(s0)         /* misaligned and straddling the end of RAM: access fault */
    REC s10
    li s1, -8
    ld a5, 0(s1)          /* top of the address space */
    REC s10
    li s1, 0x7ffffff8
    sd t0, 0(s1)          /* just below RAM */
    REC s10
    REC s9
"""


@pytest.mark.parametrize("rounds", [1, 300])
def test_ram_edges_exit_properly_under_force(rounds: int) -> None:
    body = f"li s3, {rounds}\n9:\n" + EDGES.replace("REC", "REC") + "addi s3, s3, -1\nbnez s3, 9b\n"
    body = body.replace("    REC s9\n", "")
    path = K.build(body, f"jitedge{rounds}")
    got = lockstep(str(path), 1 << 20, 2_000_000)
    assert got["exit_code"] == 0 and got["regions"] > 0
    from wirt.machine.baremetal import BareMetal
    from wirt.machine.elf import read_elf
    m = BareMetal(str(path), 1 << 20, output=lambda b: None, jit="force")
    assert m.run(2_000_000).exit_code == 0
    res = read_elf(path).symbols["results"]
    vals = [m.memory.read_u64(res + 8 * i) for i in range(8)]
    assert vals == [0x1122334455667788, 0x11, 0x55667788, L.EXC_LOAD_ACCESS, L.EXC_STORE_ACCESS,
                    L.EXC_LOAD_ACCESS, L.EXC_LOAD_ACCESS, L.EXC_STORE_ACCESS]


@pytest.mark.parametrize("prog,arch,ram", [("intloop", "rv64imac", 1), ("fploop", "rv64gc", 1),
                                           ("branchy", "rv64imc", 1)])
def test_benchmark_programs_match_the_interpreter(prog: str, arch: str, ram: int) -> None:
    from wirt.demo import build_program
    path = build_program(prog, {"ROUNDS": 1}, arch)
    got = lockstep(str(path), ram << 20, 3_000_000)
    assert got["exit_code"] == 0 and got["regions"] > 0


def test_jit_setting_parsing() -> None:
    from wirt.cpu.jit.cache import jit_setting
    assert jit_setting("0") == "off" and jit_setting("force") == "force" and jit_setting("1") == "on"
    with pytest.raises(ValueError, match="not one of"):
        jit_setting("fast")


# S- or U-mode code under Sv39 calling functions on other pages, directly, through a pointer
# and through an alias page whose mapping flips between two physical pages (S: by switching
# satp between two roots), so chained exits (jit/x64 dispatch) must re-check the TLB and the
# table at every crossing. The tables are built by the program itself in M-mode.
CHAIN = r"""
    la t2, root1
    la t0, l1a
    srli t0, t0, 12
    slli t0, t0, 10
    ori t0, t0, 1
    sd t0, 8(t2)                 /* VA 0x40000000.. -> l1a */
    li t0, ((0x80000000 >> 12) << 10) | {giga}
    sd t0, 16(t2)                /* identity gigapage over RAM */
    la t1, l0a
    srli t0, t1, 12
    slli t0, t0, 10
    ori t0, t0, 1
    la t1, l1a
    sd t0, 0(t1)
    la t0, fn_a
    srli t0, t0, 12
    slli t0, t0, 10
    ori t0, t0, {leaf}
    la t1, l0a
    sd t0, 0x400(t1)             /* VA 0x40080000 -> fn_a's page */
    la t2, root2
    la t0, l1b
    srli t0, t0, 12
    slli t0, t0, 10
    ori t0, t0, 1
    sd t0, 8(t2)
    li t0, ((0x80000000 >> 12) << 10) | {giga}
    sd t0, 16(t2)
    la t1, l0b
    srli t0, t1, 12
    slli t0, t0, 10
    ori t0, t0, 1
    la t1, l1b
    sd t0, 0(t1)
    la t0, fn_b
    srli t0, t0, 12
    slli t0, t0, 10
    ori t0, t0, {leaf}
    la t1, l0b
    sd t0, 0x400(t1)             /* VA 0x40080000 -> fn_b's page */
    la t0, root1
    srli t0, t0, 12
    li t1, 8 << 60
    or t0, t0, t1
    csrw satp, t0
    sfence.vma
    ENTER_{mode}
    li s0, 0
    li s2, 0
1:  li t0, 0x40080000            /* TLB index 0x80: not the index of this code's pages */
    jalr ra, 0(t0)               /* the alias page: fn_a or fn_b */
    add s2, s2, a0
    jal ra, fn_c                 /* direct call to another page */
    add s2, s2, a0
    la t0, fn_c
    jalr ra, 0(t0)               /* through a pointer */
    slli s2, s2, 1
    add s2, s2, a0
    andi t0, s0, 63
    bnez t0, 2f
    {switch}
2:  addi s0, s0, 1
    li t0, 1500
    blt s0, t0, 1b
    REC s2
    j pass

    .pushsection .text
    .balign 4096
fn_a:
    li a0, 0
    li t1, 5
3:  addi a0, a0, 3
    addi t1, t1, -1
    bnez t1, 3b
    ret
    .balign 4096
fn_b:
    li a0, 0
    li t1, 7
3:  addi a0, a0, 11
    addi t1, t1, -1
    bnez t1, 3b
    ret
    .balign 4096
fn_c:
    la t1, cdata
    ld a0, 0(t1)
    addi a0, a0, 1
    sd a0, 0(t1)
    ret
    .balign 4096
    .popsection
    .pushsection .data
    .balign 8192
root1: .fill 512, 8, 0
root2: .fill 512, 8, 0
l1a: .fill 512, 8, 0
l0a: .fill 512, 8, 0
l1b: .fill 512, 8, 0
l0b: .fill 512, 8, 0
cdata: .dword 0
    .popsection
"""
# Flip the alias: csrr satp, toggle between root1 and root2 (they are 4 KiB apart).
SWITCH = r"""csrr t0, satp
    xori t0, t0, 1
    csrw satp, t0
    sfence.vma"""


def chain_program(mode: str):
    """CHAIN built for S- or U-mode (U: the pages are user pages and the alias does not flip)."""
    user = 0x10 if mode == "U" else 0
    body = CHAIN.format(mode=mode, giga=0xCF | user, leaf=0xCB | user,
                        switch=SWITCH if mode == "S" else "nop")
    return K.build(body, f"jitchain{mode}")


@pytest.mark.parametrize("mode", ["S", "U"])
def test_chained_regions_across_pages_match_the_interpreter(mode: str) -> None:
    got = lockstep(str(chain_program(mode)), 1 << 20, 2_000_000)
    assert got["exit_code"] == 0
    assert got["template_regions"] > 0 and got["chained"] > 1000, got


@pytest.mark.parametrize("mode", ["S", "U"])
def test_chained_exits_into_optimized_code_match_the_interpreter(mode: str, monkeypatch) -> None:
    """The same program with LLVM's optimizing level after a few thousand instructions: chained
    exits then enter level-2 code by a tail call from the dispatcher, which returns to the core
    itself; state must stay exact at every exit."""
    monkeypatch.setenv("WIRT_JIT_HOT", "3000")
    got = lockstep(str(chain_program(mode)), 1 << 20, 2_000_000)
    assert got["exit_code"] == 0
    assert got["optimized"] > 0 and got["chained"] > 1000, got


def test_a_loop_resumed_in_its_middle_is_optimized_at_its_head(monkeypatch) -> None:
    """Code resumes after a trap in the middle of a loop. The region made there covers only
    the rest of the iteration and goes on in the loop head's region, so the head region runs
    the loop, gets hot, and LLVM optimizes the loop once, there; before, the resume point made
    a second copy of the loop (one per point an interrupt returns to), which got hot alone."""
    from wirt.machine.devicetree import RAM_BASE

    monkeypatch.setenv("WIRT_JIT_HOT", "100000")
    monkeypatch.setenv("WIRT_JIT", "force")
    body = """
    .option push
    .option norvc
    li a0, 0
    li a2, 0
    li a7, 0
    li t0, 2000
loop:
    li t1, 100
inner:
    addi a0, a0, 3
    xori a1, a0, 5
    add a2, a2, a1
    addi t1, t1, -1
    bnez t1, inner
    ecall                   /* the handler records it and resumes after it */
    addi t0, t0, -1
    bnez t0, loop
    .option pop
    REC a2
    REC s9
"""
    r = K.finish(K.load(body, "jitresume"), 3_000_000)
    a0 = a2 = 0
    for _ in range(2000 * 100):
        a0 += 3
        a2 += a0 ^ 5
    assert r.results == [a2, 2000]
    # the hot loop is the inner one: a time slice that ends in it re-enters at its head
    head = r.sym("inner") - RAM_BASE
    optimized = sorted(off for (off, _), (fn, _, level) in r.m.hart.jit.regions.items() if level == 2 and fn)
    assert optimized == [head], [hex(o) for o in optimized]


def test_a_loop_whose_slot_another_region_holds_is_translated() -> None:
    """Two region entries that hash to one table slot: the first (loop A) is translated and
    holds the slot; the second (loop B, run long after) must take the slot and be translated
    too. A miss on a held slot once restarted its count at every miss, so B stayed interpreted
    for good (a hot user loop behind a kernel region: 4.4x slower)."""
    from wirt.cpu.jit.table import slot_of
    from wirt.machine.baremetal import BareMetal
    from wirt.machine.devicetree import RAM_BASE
    from wirt.machine.elf import read_elf

    def program(skip: int) -> tuple:
        body = f"""
    .option push
    .option norelax
    .option norvc
    li t0, 2000
loopa:
    addi t0, t0, -1
    bnez t0, loopa
    li t0, 200000
    j loopb
aftera:
    .skip {skip}
loopb:
    addi t0, t0, -1
    bnez t0, loopb
    .option pop
    REC t0
"""
        path = K.build(body, f"jitslot{skip}")
        syms = read_elf(path).symbols
        return path, syms["loopa"] - RAM_BASE, syms["aftera"] - RAM_BASE, syms["loopb"] - RAM_BASE

    _, a, after, _ = program(0)
    # offsets a and a ^ d share a slot when (d >> 1) ^ (d >> 11) has no bit below 16
    d = next(d for d in ((1 << 17) | (1 << 7), (1 << 18) | (1 << 8)) if a ^ d > after)
    path, a, _, b = program((a ^ d) - after)
    assert b == a ^ d and slot_of(a, 0) == slot_of(b, 0), (hex(a), hex(b))
    m = BareMetal(str(path), 1 << 20, output=lambda b: None, jit="on")
    assert m.run(2_000_000).exit_code == 0
    stats = m.hart.jit_stats()
    # loop B is 400 thousand instructions: nearly all of them must have run translated
    assert stats["translated_insns"] > 350_000, stats


def test_a_full_code_buffer_is_emptied_and_its_pages_returned(monkeypatch) -> None:
    """More translated code than a hart's template buffer holds: the core empties the buffer
    and translates again (same results as the interpreter, in lockstep), and the pages past
    the code written since are given back to the host (they read as zero again)."""
    import mmap

    from wirt.cpu.jit import cache
    from wirt.cpu.jit.x64 import buffer
    from wirt.cpu.jit.x64.translate import MAX_CODE, SCRATCH
    from wirt.machine.baremetal import BareMetal
    size = SCRATCH + 2 * MAX_CODE + 4096      # the smallest buffer the core uses
    monkeypatch.setattr(cache, "code_buffer", lambda: buffer.code_buffer(size))
    # 1500 small functions, each its own region (with their return sites: over 400 KiB of code)
    funcs = "".join(f"f{i}:\n    addi a0, a0, {i % 2000}\n    xori a1, a0, {i % 1000}\n    add a2, a2, a1\n    ret\n"
                    for i in range(1500))
    calls = "".join(f"    call f{i}\n" for i in range(1500))
    body = f"""
    li s0, 3
    li a0, 0
    li a2, 0
1:
{calls}    addi s0, s0, -1
    bnez s0, 1b
    REC a0
    REC a2
    j 2f
{funcs}2:
"""
    path = K.build(body, "jitfull")
    got = lockstep(str(path), 1 << 20, 2_000_000)
    assert got["exit_code"] == 0
    m = BareMetal(str(path), 1 << 20, output=lambda b: None, jit="force")
    xc, jq, checked = m.hart.xc, m.hart.jq, 0
    while True:
        r = m.run(m.hart.instret + 500)
        if int(jq[L.JQ_XFLUSH]) > checked:   # emptied during this step, and serviced after it
            checked = int(jq[L.JQ_XFLUSH])
            pos = (int(jq[L.JQ_XPOS]) + cache.RELEASE_MARGIN + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
            assert pos < len(xc) - MAX_CODE
            assert not xc[pos:].any(), "the old code's pages were not given back"
        if r.reason != "max-insns":
            break
    assert r.exit_code == 0 and checked >= 1, (r, m.hart.jit_stats())


def test_optimized_code_is_installed_in_every_hart() -> None:
    """A region LLVM optimized for one hart goes into every hart's table (the same program
    often runs on every vCPU), not only into the tables of the harts that asked for it."""
    import numpy as np

    from wirt.cpu.jit.cache import TranslationCache
    from wirt.cpu.rvc import build_rvc_table
    from wirt.cpu.jit.table import slot_of
    from wirt.machine.devicetree import RAM_BASE

    ram = np.zeros(1 << 20, dtype=np.uint8)
    loop = [0x00150513, 0xFFF58593, 0xFE059CE3]   # 1: addi a0, a0, 1; addi a1, a1, -1; bnez a1, 1b
    ram[:12] = np.array(loop, dtype=np.uint32).view(np.uint8)
    pages = np.zeros(len(ram) // 4096, dtype=np.int64)
    pages[0] = 1                                   # marked: translations may hold its code
    cache = TranslationCache(ram, RAM_BASE, pages, build_rvc_table(), "on", sync=True)
    tables = [cache.new_tables()[:2] for _ in range(3)]
    mode = 3 | (3 << 2)                            # M-mode, no TLB
    jt0, jq0 = tables[0]
    jq0[L.JQ_HEAD: L.JQ_HEAD + L.JQ_ENTRY] = [0, mode | L.JQ_LEVEL2, RAM_BASE, 1]
    jq0[L.JQ_COUNT] = 1
    for jt, jq in tables:
        cache.servicer(jt, jq)()
    b = slot_of(0, mode) * L.JT_W
    assert cache.stats["optimized"] == 1
    for jt, _ in tables:
        assert jt[b] == mode << L.JT_MODE_SHIFT and jt[b + 1] != 0 and jt[b + 2] == 1
