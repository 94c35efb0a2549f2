"""Trap entry and return: causes, epc and tval for each synchronous exception, xRET state
restoration, delegation, vectored mode, interrupt priority, and the TW/TSR/TVM traps.

References: privileged spec 1.12 — 3.1.6.1 (xIE/xPIE/xPP stack), 3.1.6.3 (MPRV), 3.1.6.5
(TVM/TW/TSR), 3.1.7 (mtvec modes), 3.1.8 (medeleg/mideleg), 3.1.9 (interrupt priority and
enables), 3.1.14 (mepc), 3.1.15 (mcause, table 3.6), 3.1.16 (mtval), 3.3.1 (ecall/ebreak),
3.3.2 (mret/sret), 3.3.3 (wfi), 4.1.x (the S-mode counterparts), Sstc for stimecmp.
"""

from __future__ import annotations

from tests.cpu import asmkit as K
from tests.cpu.asmkit import Probe

INT = 1 << 63
MIE, MPIE, MPP, MPRV = 1 << 3, 1 << 7, 3 << 11, 1 << 17
SIE, SPIE, SPP = 1 << 1, 1 << 5, 1 << 8
TVM, TW, TSR = 1 << 20, 1 << 21, 1 << 22
MCAUSE, MEPC, MTVAL = 0x342, 0x341, 0x343
ECALL, EBREAK, MRET, SRET, WFI, SFENCE = (0x00000073, 0x00100073, 0x30200073, 0x10200073,
                                          0x10500073, 0x12000073)


def test_ecall_from_each_mode() -> None:
    """ecall raises cause 8/9/11 for U/S/M (table 3.6), mepc = the ecall, mtval = 0, and
    mstatus.MPP records the previous privilege (3.1.6.1)."""
    parts = []
    for mode in ("M", "S", "U"):
        parts.append(f"ENTER_{mode}\nla s2, 1f\n1: ecall\nTRAPS\nREC s8\nREC s2\nREC s7\nTO_M")
    r = K.run("\n".join(parts) + "\n", "trap-ecall")
    expected = []
    for i, (cause, prv) in enumerate(((11, 3), (9, 1), (8, 0))):
        expected += [("count", i + 1), ("mcause", cause), ("mtval", 0), ("mepc", None),
                     ("ecall pc", None), ("mstatus on entry", None)]
    K.expect_results(r, expected)
    for i, prv in enumerate((3, 1, 0)):
        mepc, pc, st = r.results[6 * i + 3: 6 * i + 6]
        assert mepc == pc, f"mepc {mepc:#x} != ecall at {pc:#x}"
        assert (st >> 11) & 3 == prv, f"MPP={(st >> 11) & 3}, trap came from privilege {prv}"
        assert st & MIE == 0, "MIE is cleared on trap entry"


def test_ebreak_and_c_ebreak() -> None:
    """ebreak and c.ebreak raise breakpoint (cause 3) with mepc = mtval = the pc of the
    instruction (3.1.16); the handler skips 4 and 2 bytes respectively."""
    body = r"""
    la s2, 1f
1:  ebreak
    TRAPS
    REC s8
    REC s2
    la s2, 2f
    .option push
    .option rvc
2:  c.ebreak
    .option pop
    TRAPS
    REC s8
    REC s2
    """
    r = K.run(body, "trap-ebreak")
    pc1, pc2 = r.results[4], r.results[9]
    K.expect_results(r, [("count", 1), ("cause", 3), ("mtval", pc1), ("mepc", pc1), ("pc", None),
                         ("count", 2), ("cause", 3), ("mtval", pc2), ("mepc", pc2), ("pc", None)])


def test_illegal_instruction_mtval_is_the_encoding() -> None:
    """Illegal instruction (cause 2): mtval holds the faulting instruction bits, 32 for a
    32-bit instruction, the 16 bits (upper bits zero) for a compressed one (3.1.16)."""
    p = Probe()
    p.asm("csrw mstatus, zero")  # FS = Off: compressed FP loads are illegal too
    for enc in (0x04B50533, 0x00004073, 0xC0001073, 0x0000007B, 0xFE000033):
        p.probe(f"{enc:#010x}", enc, False)
    for half in (0x0000, 0x2001, 0x9C41, 0x4002, 0x2188):  # the last is c.fld fa0, 0(a1)
        p.body.append(f"li s10, -1\nli s11, -1\n.half {half:#06x}\nTRAPS")
        p.count += 1
        p.expected += [(f"c {half:#06x} count", p.count), (f"c {half:#06x} mcause", 2),
                       (f"c {half:#06x} mtval", half)]
    p.asm("li a0, 0x99")
    p.rec("execution continued", "a0", 0x99)
    p.run("trap-illegal")


def test_misaligned_loads_and_stores_work_but_amos_trap() -> None:
    """Plain misaligned loads/stores are handled (no trap), including across a page
    boundary; a misaligned AMO raises store/AMO address misaligned (cause 6), mtval = address."""
    body = r"""
    la s2, scratch
    li t0, 0x1122334455667788
    sd t0, 3(s2)
    sw t0, 17(s2)
    sh t0, 33(s2)
    li t1, 4093
    add t1, s2, t1             /* 8 bytes across the page boundary at scratch + 4096 */
    sd t0, 0(t1)
    ld a0, 0(t1)
    REC a0
    ld a0, 0(s2)
    REC a0
    lbu a0, 10(s2)
    REC a0
    lwu a0, 17(s2)
    REC a0
    lhu a0, 33(s2)
    REC a0
    REC s9
    addi s3, s2, 2
    amoadd.w a0, t0, (s3)
    TRAPS
    addi s3, s2, 4
    amoswap.d a0, t0, (s3)
    TRAPS
    """
    r = K.run(body, "trap-misaligned")
    s = r.sym("scratch")
    K.expect_results(r, [
        ("sd across page", 0x1122334455667788), ("ld bytes 0..7", 0x4455667788000000),
        ("byte 10", 0x11), ("sw @17", 0x55667788), ("sh @33", 0x7788), ("no traps so far", 0),
        ("amoadd.w count", 1), ("amoadd.w cause", 6), ("amoadd.w mtval", s + 2),
        ("amoswap.d count", 2), ("amoswap.d cause", 6), ("amoswap.d mtval", s + 4),
    ])


def test_access_faults_outside_ram() -> None:
    """On the bare-metal machine nothing but RAM is mapped: loads, stores, AMOs and fetches
    elsewhere are access faults (causes 5, 7, 7, 1) with mtval = the address (3.1.16)."""
    body = r"""
    li s2, 0x10000000
    lw a0, 4(s2)
    TRAPS
    sd a0, 8(s2)
    TRAPS
    li s3, 0x80100000          /* first byte past the 1 MiB of RAM */
    lb a0, 0(s3)
    TRAPS
    amoor.w a0, a0, (s3)
    TRAPS
    lr.d a0, (s3)
    TRAPS
    li t0, 0x20000000
    jalr ra, 0(t0)
    TRAPS
    REC s8
    """
    r = K.run(body, "trap-access")
    K.expect_results(r, [
        ("lw count", 1), ("lw cause", 5), ("lw mtval", 0x10000004),
        ("sd count", 2), ("sd cause", 7), ("sd mtval", 0x10000008),
        ("lb past RAM", 3), ("lb cause", 5), ("lb mtval", 0x80100000),
        ("amoor.w count", 4), ("amoor.w cause", 7), ("amoor.w mtval", 0x80100000),
        ("lr.d count", 5), ("lr.d cause", 5), ("lr.d mtval", 0x80100000),
        ("fetch count", 6), ("fetch cause", 1), ("fetch mtval", 0x20000000), ("fetch mepc", 0x20000000),
    ])


def test_instruction_straddling_the_end_of_ram() -> None:
    """A 32-bit instruction whose upper half lies past the end of RAM: instruction access
    fault, mepc = its start, mtval = the address of the faulting portion (3.1.16)."""
    body = r"""
    li t1, 0x80100000 - 2
    jalr ra, 0(t1)
    TRAPS
    REC s8
    """

    def setup(r):
        r.m.memory.write(0x80100000 - 2, (0x0513).to_bytes(2, "little"))  # low half of an addi

    r = K.run(body, "trap-fetch-ram-end", setup=setup)
    K.expect_results(r, [("count", 1), ("cause", 1), ("mtval", 0x80100000), ("mepc", 0x80100000 - 2)])


def test_misaligned_access_fault_reports_the_faulting_portion() -> None:
    """A misaligned load/store straddling the end of RAM is an access fault; mtval must be
    "the virtual address of the portion of the access that caused the fault" (3.1.16), i.e.
    an address at or beyond the end of RAM, not the start of the access inside RAM."""
    body = r"""
    li s3, 0x80100000 - 4
    ld a0, 0(s3)
    TRAPS
    sd a0, 0(s3)
    TRAPS
    """
    r = K.run(body, "trap-access-straddle")
    K.expect_results(r, [("ld count", 1), ("ld cause", 5), ("ld mtval", None),
                         ("sd count", 2), ("sd cause", 7), ("sd mtval", None)])
    for label, tval in (("ld", r.results[2]), ("sd", r.results[5])):
        assert 0x80100000 <= tval < 0x80100004, (
            f"{label}: mtval {tval:#x} is not in the faulting portion [0x80100000, 0x80100004)")


def test_mret_restores_the_interrupt_stack() -> None:
    """mret (3.3.2): MIE = MPIE, MPIE = 1, MPP = U (least privileged), privilege = old MPP;
    MPRV is cleared when the new privilege is below M and kept when it is M (3.1.6.3)."""
    body = r"""
    li t0, 0x1888              /* MPP | MPIE | MIE */
    csrc mstatus, t0
    li t0, (3 << 11) | 0x80    /* MPP = M, MPIE = 1 */
    csrs mstatus, t0
    la t0, 1f
    csrw mepc, t0
    mret
1:  csrr a0, mstatus
    REC a0
    csrci mstatus, 8
    li t0, 0x1880
    csrc mstatus, t0
    li t0, (3 << 11) | 8       /* MPP = M, MPIE = 0, MIE = 1 */
    csrs mstatus, t0
    la t0, 2f
    csrw mepc, t0
    mret
2:  csrr a0, mstatus
    REC a0
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, (1 << 11) | (1 << 17)   /* MPP = S, MPRV = 1 */
    csrs mstatus, t0
    la t0, 3f
    csrw mepc, t0
    mret
3:  csrr a0, sstatus           /* legal only in S (or M) */
    TO_M
    csrr a0, mstatus
    REC a0
    li t0, (3 << 11) | (1 << 17)   /* MPP = M, MPRV = 1 */
    csrs mstatus, t0
    la t0, 4f
    csrw mepc, t0
    mret
4:  csrr a0, mstatus
    li t0, 1 << 17
    csrc mstatus, t0
    REC a0
    REC s9
    """
    r = K.run(body, "trap-mret")
    K.expect_results(r, [("mret MPIE=1", None), ("mret MPIE=0", None), ("mret to S", None),
                         ("mret to M", None), ("no traps", 0)])
    a, b, c, d = r.results[:4]
    assert a & MIE and a & MPIE and a & MPP == 0, f"after mret with MPIE=1: mstatus={a:#x}"
    assert b & MIE == 0 and b & MPIE and b & MPP == 0, f"after mret with MPIE=0: mstatus={b:#x}"
    assert c & MPRV == 0, f"MPRV not cleared by mret to S: mstatus={c:#x}"
    assert d & MPRV, f"MPRV cleared by mret to M: mstatus={d:#x}"


def test_sret_restores_the_interrupt_stack() -> None:
    """sret (3.3.2): SIE = SPIE, SPIE = 1, SPP = U, privilege = old SPP; sret also clears
    MPRV (new privilege below M). sret is legal in M-mode."""
    p = Probe()
    p.asm(r"""
    ENTER_S
    li t0, 0x122             /* SPP | SPIE | SIE */
    csrc sstatus, t0
    li t0, 0x20
    csrs sstatus, t0         /* SPIE = 1, SPP = U */
    la t0, 1f
    csrw sepc, t0
    sret
1:""")
    p.probe("in U after sret: csrr sstatus", 0x10002573, False)
    p.asm("TO_M\ncsrr a0, mstatus")
    p.rec("mstatus after sret to U", "a0", None)
    p.asm(r"""
    ENTER_S
    li t0, 0x102             /* SPP = S, SIE = 1, SPIE = 0 */
    csrs sstatus, t0
    li t0, 0x20
    csrc sstatus, t0
    la t0, 2f
    csrw sepc, t0
    sret
2:""")
    p.probe("in S after sret: csrr sstatus", 0x10002573, True)
    p.rec("sstatus after sret to S", "a0", None)
    p.asm(r"""
    TO_M
    li t0, (3 << 11) | (1 << 17)   /* MPP = M, MPRV = 1 */
    csrs mstatus, t0
    li t0, 0x100
    csrc mstatus, t0               /* SPP = U */
    la t0, 3f
    csrw sepc, t0
    sret                           /* from M to U */
3:""")
    p.probe("in U after sret from M", 0x10002573, False)
    p.asm("TO_M\ncsrr a0, mstatus")
    p.rec("mstatus after sret from M", "a0", None)
    r = p.run("trap-sret")
    u, s, m = r.results[3], r.results[7], r.results[11]
    assert u & SIE and u & SPIE and u & SPP == 0, f"after sret to U: mstatus={u:#x}"
    assert s & SIE == 0 and s & SPIE and s & SPP == 0, f"after sret to S: sstatus={s:#x}"
    assert m & MPRV == 0, f"sret did not clear MPRV: mstatus={m:#x}"


def test_exceptions_delegated_to_s() -> None:
    """With medeleg bits set, exceptions from S and U go to S-mode (3.1.8): scause, sepc,
    stval are written, SPP records the source, and the M-mode trap CSRs are untouched."""
    body = r"""
    li t0, (1 << 2) | (1 << 3) | (1 << 8) | (1 << 13)
    csrw medeleg, t0
    li t0, 15
    csrw mcause, t0
    li t0, 0x5555
    csrw mtval, t0
    csrsi sstatus, 2           /* SIE = 1: SPIE must take it */
    SET_MPP 0
    la t0, 9f
    csrw mepc, t0              /* sentinel mepc: the U entry point */
    mret
9:  REC t0
    la s2, 1f
1:  ecall
    REC s4
    REC s5
    REC s6
    REC s3
    REC s2
    REC s1
    la s2, 2f
2:  .word 0xfe000033
    REC s4
    REC s5
    REC s6
    REC s3
    REC s2
    la s2, 3f
3:  ebreak
    REC s4
    REC s5
    REC s6
    REC s3
    REC s2
    REC s9
    j pass
    """
    r = K.run(body, "trap-medeleg")
    entry = r.results.pop(0)
    res = r.results
    K.expect_results(r, [
        ("ecall: S count", 1), ("scause", 8), ("stval", 0), ("sepc", res[4]), ("pc", None), ("sstatus", None),
        ("illegal: S count", 2), ("scause", 2), ("stval", 0xFE000033), ("sepc", res[10]), ("pc", None),
        ("ebreak: S count", 3), ("scause", 3), ("stval", res[15]), ("sepc", res[15]), ("pc", None),
        ("M handler never ran", 0),
    ])
    st = res[5]
    assert st & SPP == 0, "SPP must record U"
    assert st & SPIE and st & SIE == 0, f"SPIE = old SIE, SIE cleared: sstatus={st:#x}"
    c = r.m.hart.c
    assert (int(c[MCAUSE]), int(c[MEPC]), int(c[MTVAL])) == (15, entry, 0x5555), \
        "M-mode trap CSRs changed by a delegated trap"


def test_delegated_exception_from_s_sets_spp() -> None:
    """A delegated exception taken from S records SPP = S (4.1.1)."""
    body = r"""
    li t0, 1 << 2
    csrw medeleg, t0
    ENTER_S
    .word 0xfe000033
    REC s4
    REC s5
    REC s1
    REC s9
    """
    r = K.run(body, "trap-medeleg-s")
    K.expect_results(r, [("S count", 1), ("scause", 2), ("sstatus", None), ("M count", 0)])
    assert r.results[2] & SPP, "SPP must record S"


def test_traps_in_m_mode_are_never_delegated() -> None:
    """3.1.8: traps never transition to a less-privileged mode: an exception in M-mode goes
    to M even when its medeleg bit is set."""
    body = r"""
    li t0, (1 << 2) | (1 << 3)
    csrw medeleg, t0
    .word 0xfe000033
    ebreak
    REC s9
    REC s10
    REC s4
    """
    K.expect_results(K.run(body, "trap-medeleg-m"), [("M count", 2), ("mcause", 3), ("S count", 0)])


def test_delegated_software_interrupt() -> None:
    """mideleg.SSIP sends the supervisor software interrupt to S (3.1.8); it is not taken in
    M (lower-privilege interrupts are disabled there), nor in S with SIE=0, but always in U
    (3.1.6.1); scause has the interrupt bit, sepc the interrupted instruction."""
    body = r"""
    li t0, 2
    csrw mideleg, t0
    csrw mie, t0
    csrsi mstatus, 8           /* MIE = 1 */
    csrsi mip, 2
    nop
    REC s4                     /* not taken in M */
    csrci mstatus, 8
    ENTER_S
    nop
    REC s4                     /* not taken in S with SIE = 0 */
    la s2, 1f
    csrsi sstatus, 2
1:  nop                        /* taken here */
    REC s4
    REC s5
    REC s3
    REC s2
    REC s1
    csrci sstatus, 2
    li t0, 2
    csrs sie, t0
    TO_M
    la s2, 2f
    ENTER_U
2:  nop                        /* taken: U always has S interrupts enabled */
    REC s4
    REC s5
    REC s3
    REC s2
    REC s9
    j pass
    """
    r = K.run(body, "trap-mideleg")
    res = r.results
    K.expect_results(r, [("not in M", 0), ("not in S with SIE=0", 0),
                         ("S count", 1), ("scause", INT | 1), ("sepc", res[5]), ("pc", None),
                         ("sstatus", None),
                         ("U: S count", 2), ("scause", INT | 1), ("sepc", res[10]), ("pc", None),
                         ("M count", 0)])
    st = res[6]
    assert st & SPIE and st & SPP and st & SIE == 0, f"sstatus on entry {st:#x}"


def test_undelegated_interrupt_is_taken_in_s_even_with_mie_clear() -> None:
    """An M-level (undelegated) interrupt is always enabled while running below M
    (3.1.6.1): with MIE=0 it waits in M and is taken at the first S instruction."""
    body = r"""
    li t0, 2
    csrw mie, t0
    csrsi mip, 2
    nop
    REC s9                     /* not taken in M with MIE = 0 */
    SET_MPP 1
    la s2, 1f
    csrw mepc, s2
    mret
1:  nop
    REC s9
    REC s10
    REC s8
    REC s2
    REC s7
    csrr a0, sstatus           /* still in S */
    REC s9
    """
    r = K.run(body, "trap-int-m-from-s")
    res = r.results
    K.expect_results(r, [("not in M", 0), ("count", 1), ("mcause", INT | 1), ("mepc", res[4]),
                         ("pc", None), ("mstatus", None), ("still one trap", 1)])
    assert (res[5] >> 11) & 3 == 1, "MPP must record S"


def test_machine_timer_interrupt_from_mtimecmp() -> None:
    """MTIP (3.1.9) follows mtime >= mtimecmp and is read-only in mip; with MTIE and MIE it
    traps with cause 7 | interrupt bit, mtval = 0."""
    body = r"""
    csrr a0, mip
    REC a0
    li t0, 0x80
    csrc mip, t0
    csrr a0, mip
    REC a0
    csrw mie, t0
    la s2, 1f
    csrsi mstatus, 8
1:  nop
    csrci mstatus, 8
    REC s9
    REC s10
    REC s11
    REC s8
    REC s2
    """

    def setup(r):
        r.m.hart.s[73] = 0  # this hart's CLINT mtimecmp slot (layout.MTIMECMP): due now

    r = K.run(body, "trap-mtip", setup=setup)
    from wirt.cpu import layout
    assert layout.MTIMECMP == 73
    K.expect_results(r, [("mip", 0x80), ("mip after csrc", 0x80), ("count", 1),
                         ("mcause", INT | 7), ("mtval", 0), ("mepc", r.results[6]), ("pc", None)])


VTAB = r"""
    .pushsection .text
    .option push
    .option norvc
    .balign 256
vtab:
    .irp k, 0,1,2,3,4,5,6,7,8,9,10,11
    j vec\k
    .endr
    .irp k, 0,1,2,3,4,5,6,7,8,9,10,11
vec\k: li a6, \k
    j mtrap
    .endr
    .balign 256
svtab:
    .irp k, 0,1,2,3,4,5,6,7,8,9,10,11
    j svec\k
    .endr
    .irp k, 0,1,2,3,4,5,6,7,8,9,10,11
svec\k: li a6, \k
    j strap
    .endr
    .option pop
    .popsection
"""


def test_vectored_trap_vectors() -> None:
    """Vectored mode (3.1.7, 4.1.2): interrupts go to base + 4 * cause, exceptions to base."""
    body = VTAB + r"""
    la t0, vtab + 1
    csrw mtvec, t0
    la t0, svtab + 1
    csrw stvec, t0
    li a6, -1
    ecall
    REC a6
    REC s10
    li a6, -1
    .word 0xfe000033
    REC a6
    REC s10
    li t0, 0x222               /* SSIE, STIE, SEIE */
    csrw mie, t0
    li a6, -1
    csrsi mip, 2
    csrsi mstatus, 8
    nop
    REC a6
    REC s10
    csrw mip, zero
    li t0, 0x20
    csrw mie, t0
    li a6, -1
    csrs mip, t0
    nop
    REC a6
    REC s10
    csrw mip, zero
    li t0, 0x80
    li a6, -1
    csrw mie, t0               /* mtimecmp was set to 0 from Python */
    nop
    REC a6
    REC s10
    csrci mstatus, 8
    li t0, 0x20                /* S: delegated STIP through stvec */
    csrw mideleg, t0
    csrw mie, t0
    csrs mip, t0
    li t0, 1 << 2
    csrw medeleg, t0
    ENTER_S
    li a6, -1
    csrsi sstatus, 2
    nop
    REC a6
    REC s5
    li a6, -1
    .word 0xfe000033
    REC a6
    REC s5
    """

    def setup(r):
        r.m.hart.s[73] = 0

    r = K.run(body, "trap-vectored", setup=setup)
    K.expect_results(r, [
        ("ecall -> base", 0), ("mcause", 11), ("illegal -> base", 0), ("mcause", 2),
        ("SSI -> base+4", 1), ("mcause", INT | 1), ("STI -> base+20", 5), ("mcause", INT | 5),
        ("MTI -> base+28", 7), ("mcause", INT | 7),
        ("S: STI -> stvec base+20", 5), ("scause", INT | 5), ("S: illegal -> stvec base", 0), ("scause", 2),
    ])


PRIO = r"""
    .pushsection .text
    .align 2
prio_m:
    csrr t5, mcause
    REC t5
    li t4, 1
    sll t4, t4, t5
    csrc mie, t4
    mret
    .align 2
prio_s:
    csrr t5, scause
    REC t5
    li t4, 1
    sll t4, t4, t5
    csrc sie, t4
    sret
    .popsection
"""


def test_interrupt_priority_in_m() -> None:
    """3.1.9: simultaneous M-mode interrupts are taken in the order MEI, MSI, MTI, SEI, SSI,
    STI. MSIP/MEIP come from the device lines (set from Python), MTIP from mtimecmp = 0,
    SSIP/STIP/SEIP are written to mip."""
    body = PRIO + r"""
    la t0, prio_m
    csrw mtvec, t0
    li t0, 0x222
    csrs mip, t0
    li t0, 0xaaa
    csrw mie, t0
    csrsi mstatus, 8
    nop
    csrci mstatus, 8
    csrr a0, mie
    REC a0
    """

    def setup(r):
        r.m.hart.s[73] = 0              # MTIMECMP
        r.m.hart.s[74] = (1 << 3) | (1 << 11)  # HW_IP: MSIP from the CLINT, MEIP from the PLIC

    r = K.run(body, "trap-prio", setup=setup)
    from wirt.cpu import layout
    assert (layout.MTIMECMP, layout.HW_IP) == (73, 74)
    K.expect_results(r, [("1st", INT | 11), ("2nd", INT | 3), ("3rd", INT | 7), ("4th", INT | 9),
                         ("5th", INT | 1), ("6th", INT | 5), ("all handled", 0)])


def test_interrupt_priority_across_privileges() -> None:
    """3.1.9: interrupts for M are taken before those delegated to S; among the delegated ones
    the same order applies (SEI, SSI, STI)."""
    body = PRIO + r"""
    la t0, prio_m
    csrw mtvec, t0
    la t0, prio_s
    csrw stvec, t0
    li t0, 0x222
    csrw mideleg, t0
    csrs mip, t0
    li t0, 0xaaa
    csrw mie, t0
    ENTER_S
    csrsi sstatus, 2
    nop
    csrci sstatus, 2
    li a0, 0x5
    REC a0
    j pass
    """

    def setup(r):
        r.m.hart.s[73] = 0

    r = K.run(body, "trap-prio-s", setup=setup)
    K.expect_results(r, [("M first", INT | 7), ("then SEI", INT | 9), ("then SSI", INT | 1),
                         ("then STI", INT | 5), ("done", 5)])


def test_sstc_raises_stip() -> None:
    """Sstc: with menvcfg.STCE=1, STIP is set while time >= stimecmp and reaches S through
    mideleg (cause 5 | interrupt bit)."""
    body = r"""
    li t0, 1 << 63
    csrw menvcfg, t0
    li t0, 2
    csrw mcounteren, t0
    li t0, 0x20
    csrw mideleg, t0
    csrw mie, t0
    li t0, -1
    csrw stimecmp, t0
    ENTER_S
    csrsi sstatus, 2
    nop
    REC s4                     /* stimecmp = -1: nothing pending */
    csrr a0, time
    addi a0, a0, 2
    csrw stimecmp, a0
    li t1, 2000
1:  addi t1, t1, -1
    beqz s4, 2f
    j 3f
2:  bnez t1, 1b
3:  REC s4
    REC s5
    j pass
    """
    K.expect_results(K.run(body, "trap-sstc"), [("nothing pending", 0), ("STI taken", 1),
                                                ("scause", INT | 5)])


def test_wfi_tw_tsr_tvm() -> None:
    """wfi in U is illegal; with TW=1 also in S (3.1.6.5); wfi with a pending-but-disabled
    interrupt just completes (3.3.3). TSR=1 makes sret in S illegal; TVM=1 makes satp
    accesses and sfence.vma in S illegal; none of these affect M. mret below M, sret and
    sfence.vma in U are illegal."""
    satp_r = K.csr_insn(2, 10, 0, 0x180)
    satp_w = K.csr_insn(1, 0, 0, 0x180)
    p = Probe()
    p.asm("li t0, 2\ncsrw mie, t0\ncsrw mip, t0\ncsrw mideleg, t0")
    p.probe("M: wfi with SSIP pending, MIE=0", WFI, True)
    p.asm("ENTER_S")
    p.probe("S TW=0: wfi, SSIP pending (delegated, SIE=0)", WFI, True)
    p.asm("TO_M\ncsrw mip, zero\nENTER_U")
    p.probe("U: wfi", WFI, False)
    p.probe("U: sret", SRET, False)
    p.probe("U: mret", MRET, False)
    p.probe("U: sfence.vma", SFENCE, False)
    p.asm(f"TO_M\nli t0, {TW}\ncsrs mstatus, t0\nENTER_S")
    p.probe("S TW=1: wfi", WFI, False)
    p.probe("S: mret", MRET, False)
    p.asm("TO_M\nli t0, 2\ncsrw mie, t0\ncsrw mip, t0")
    p.probe("M TW=1: wfi", WFI, True)
    p.asm(f"li t0, {TW}\ncsrc mstatus, t0\nli t0, {TSR}\ncsrs mstatus, t0\nENTER_S")
    p.probe("S TSR=1: sret", SRET, False)
    p.asm(f"TO_M\nli t0, {TSR}\ncsrc mstatus, t0\nli t0, {TVM}\ncsrs mstatus, t0\nENTER_S")
    p.probe("S TVM=1: csrr satp", satp_r, False)
    p.probe("S TVM=1: csrw satp", satp_w, False)
    p.probe("S TVM=1: sfence.vma", SFENCE, False)
    p.asm("TO_M")
    p.probe("M TVM=1: csrr satp", satp_r, True)
    p.probe("M TVM=1: sfence.vma", SFENCE, True)
    p.asm(f"li t0, {TVM}\ncsrc mstatus, t0\nENTER_S")
    p.probe("S TVM=0: csrr satp", satp_r, True)
    p.probe("S TVM=0: sfence.vma", SFENCE, True)
    p.asm("TO_M")
    p.run("trap-tw-tsr-tvm")
