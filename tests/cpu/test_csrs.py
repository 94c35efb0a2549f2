"""Each CSR's read/write mask, WARL behaviour, access rules and side effects.

References: privileged spec 1.12 — 2.1 (CSR address conventions: bits 11:10 read-only,
bits 9:8 lowest privilege), 3.1.1 (misa), 3.1.6 (mstatus, incl. 3.1.6.5 XS/FS/SD, 3.1.6.2
MPP WARL), 3.1.7 (mtvec), 3.1.8 (medeleg/mideleg), 3.1.9 (mip/mie), 3.1.10-3.1.11
(counters, mcounteren), 3.1.14 (mepc), 3.1.18 (menvcfg), 3.7.1 (PMP CSRs, locking),
4.1.1 (sstatus), 4.1.3 (sip/sie), 4.1.11 (satp WARL), and the Sstc extension (stimecmp,
menvcfg.STCE). Unprivileged 20191213 chapter 9 (Zicsr: which forms write; a value written
to instret is the value read by the following instruction).
"""

from __future__ import annotations

from tests.cpu import asmkit as K
from tests.cpu.asmkit import Probe, csr_insn

# mstatus fields (3.1.6)
SIE, MIE, SPIE, UBE, MPIE, SPP = 1 << 1, 1 << 3, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MPP = 3 << 11
FS = 3 << 13
MPRV, SUM, MXR, TVM, TW, TSR = 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22
UXL64, SXL64 = 2 << 32, 2 << 34
SD = 1 << 63
XL = UXL64 | SXL64

# CSR numbers
SSTATUS, SIE_CSR, STVEC, SCOUNTEREN, SENVCFG, SSCRATCH, SEPC, SIP, STIMECMP, SATP = (
    0x100, 0x104, 0x105, 0x106, 0x10A, 0x140, 0x141, 0x144, 0x14D, 0x180)
MSTATUS, MISA, MEDELEG, MIDELEG, MIE_CSR, MTVEC, MCOUNTEREN, MENVCFG = (
    0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x30A)
MSCRATCH, MEPC, MIP = 0x340, 0x341, 0x344
CYCLE, TIME, INSTRET, HPM3 = 0xC00, 0xC01, 0xC02, 0xC03
MVENDORID, MARCHID, MHARTID = 0xF11, 0xF12, 0xF14
FFLAGS, FRM, FCSR = 0x001, 0x002, 0x003

A0, T1 = 10, 6


def csrr(csr: int, rd: int = A0) -> int:
    return csr_insn(2, rd, 0, csr)


def csrw(csr: int, rs1: int = T1) -> int:
    return csr_insn(1, 0, rs1, csr)


def test_mstatus_masks() -> None:
    """mstatus: WPRI/unsupported fields read zero, UXL=SXL=2 read-only (3.1.6.2),
    MPP is WARL and never holds the reserved value 2, SD = (FS == 3) (3.1.6.5)."""
    body = r"""
    li t0, -1
    csrw mstatus, t0
    csrr a0, mstatus
    REC a0
    csrw mstatus, zero
    csrr a0, mstatus
    REC a0
    li t0, 1 << 11
    csrw mstatus, t0
    li t0, 2 << 11
    csrw mstatus, t0
    csrr a0, mstatus
    REC a0
    li t0, 0 << 13
    csrw mstatus, t0
    csrr a0, mstatus
    REC a0
    li t0, 1 << 13
    csrw mstatus, t0
    csrr a0, mstatus
    REC a0
    li t0, 2 << 13
    csrw mstatus, t0
    csrr a0, mstatus
    REC a0
    li t0, 3 << 13
    csrw mstatus, t0
    csrr a0, mstatus
    REC a0
    li t0, 1 << 13
    csrc mstatus, t0        /* FS 3 -> 2: SD clears */
    csrr a0, mstatus
    REC a0
    li t0, 1 << 11
    csrw mstatus, t0
    li t0, 3 << 32          /* UXL/SXL writes are ignored */
    csrs mstatus, t0
    li t0, 3 << 34
    csrc mstatus, t0
    csrr a0, mstatus
    REC a0
    """
    r = K.run(body, "csr-mstatus")
    writable = SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR
    K.expect_results(r, [
        ("all ones", writable | XL | SD), ("zero", XL), ("MPP=2 (WARL)", None),
        ("FS=0", XL), ("FS=1", XL | (1 << 13)), ("FS=2", XL | (2 << 13)), ("FS=3 -> SD", XL | FS | SD),
        ("FS=2 again", XL | (2 << 13)), ("UXL/SXL read-only", XL | (1 << 11)),
    ])
    mpp = (r.results[2] >> 11) & 3
    assert mpp != 2, "mstatus.MPP holds the reserved value 2 (3.1.6.2: MPP is WARL)"
    assert r.results[2] & ~MPP == XL


def test_sstatus_is_a_view_of_mstatus() -> None:
    """sstatus (4.1.1) shows only SIE, SPIE, UBE, SPP, VS, FS, XS, SUM, MXR, UXL, SD;
    writes through it change only those (writable) bits of mstatus."""
    body = r"""
    li t0, -1
    csrw mstatus, t0
    csrr a0, sstatus
    REC a0
    csrw mstatus, zero
    li t0, -1
    csrw sstatus, t0
    csrr a0, mstatus
    REC a0
    csrr a0, sstatus
    REC a0
    li t0, -1
    csrw mstatus, t0
    csrw sstatus, zero
    csrr a0, mstatus
    REC a0
    csrr a0, sstatus
    REC a0
    """
    r = K.run(body, "csr-sstatus")
    s_bits = SIE | SPIE | SPP | FS | SUM | MXR
    m_only = MIE | MPIE | MPP | MPRV | TVM | TW | TSR
    K.expect_results(r, [
        ("sstatus after mstatus=-1", s_bits | UXL64 | SD),
        ("mstatus after sstatus=-1", s_bits | XL | SD),
        ("sstatus after sstatus=-1", s_bits | UXL64 | SD),
        ("mstatus after sstatus=0", m_only | XL),
        ("sstatus after sstatus=0", UXL64),
    ])


def test_misa_is_fixed() -> None:
    """misa (3.1.1): MXL=2 (64-bit) and the letters A C D F I M S U; writes are ignored."""
    body = r"""
    csrr a0, misa
    REC a0
    csrw misa, zero
    csrr a0, misa
    REC a0
    li t0, -1
    csrw misa, t0
    csrr a0, misa
    REC a0
    """
    letters = sum(1 << (ord(ch) - ord("A")) for ch in "ACDFIMSU")
    misa = (2 << 62) | letters
    K.expect_results(K.run(body, "csr-misa"), [("read", misa), ("after 0", misa), ("after -1", misa)])


def test_delegation_registers() -> None:
    """medeleg (3.1.8): bit 11 (ecall from M) is read-only zero; the standard causes an
    S-mode OS delegates are writable. mideleg: only the S-level interrupts SSIP, STIP, SEIP."""
    body = r"""
    li t0, -1
    csrw medeleg, t0
    csrr a0, medeleg
    REC a0
    csrw medeleg, zero
    csrr a0, medeleg
    REC a0
    li t0, 1 << 11
    csrw medeleg, t0
    csrr a0, medeleg
    REC a0
    li t0, -1
    csrw mideleg, t0
    csrr a0, mideleg
    REC a0
    csrw mideleg, zero
    csrr a0, mideleg
    REC a0
    """
    r = K.run(body, "csr-deleg")
    K.expect_results(r, [("medeleg -1", None), ("medeleg 0", 0), ("medeleg bit 11", 0),
                         ("mideleg -1", 0x222), ("mideleg 0", 0)])
    medeleg = r.results[0]
    assert (medeleg >> 11) & 1 == 0, "medeleg[11] must be read-only zero"
    delegable = sum(1 << c for c in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15))
    assert medeleg & delegable == delegable, f"medeleg={medeleg:#x} lacks standard causes"


def test_mie_and_sie() -> None:
    """mie (3.1.9) implements MEIE/SEIE/MTIE/STIE/MSIE/SSIE; sie (4.1.3) is mie restricted to
    the bits delegated in mideleg (others read zero and ignore writes)."""
    body = r"""
    li t0, -1
    csrw mie, t0
    csrr a0, mie
    REC a0
    csrw mideleg, zero
    csrr a0, sie
    REC a0
    csrw mie, zero
    li t0, -1
    csrw sie, t0
    csrr a0, mie
    REC a0
    li t0, 0x222
    csrw mideleg, t0
    li t0, -1
    csrw sie, t0
    csrr a0, mie
    REC a0
    csrr a0, sie
    REC a0
    li t0, -1
    csrw mie, t0
    csrr a0, sie
    REC a0
    li t0, 0x20
    csrw mideleg, t0
    csrr a0, sie
    REC a0
    csrw sie, zero
    csrr a0, mie
    REC a0
    csrw mie, zero
    csrr a0, mie
    REC a0
    """
    K.expect_results(K.run(body, "csr-mie"), [
        ("mie -1", 0xAAA), ("sie, nothing delegated", 0), ("sie write, nothing delegated", 0),
        ("sie -1 with mideleg 0x222 -> mie", 0x222), ("sie", 0x222), ("sie with mie=-1", 0x222),
        ("sie with mideleg=STIP", 0x20), ("sie=0 clears only STIE", 0xA8A), ("mie 0", 0),
    ])


def test_mip_and_sip_writable_bits() -> None:
    """mip (3.1.9): SSIP, STIP and SEIP are writable from M, MSIP/MTIP/MEIP are not; sip
    (4.1.3) shows the delegated bits and only SSIP is writable through it, also from S-mode.
    With menvcfg.STCE=1 (Sstc), STIP is the stimecmp comparator and not writable."""
    body = r"""
    li t0, -1
    csrw mip, t0
    csrr a0, mip
    REC a0
    csrr a0, sip
    REC a0
    csrw mip, zero
    csrr a0, mip
    REC a0
    li t0, 0x222
    csrw mideleg, t0
    li t0, -1
    csrw mip, t0
    csrr a0, sip
    REC a0
    csrw sip, zero
    csrr a0, mip
    REC a0
    li t0, -1
    csrw sip, t0
    csrr a0, mip
    REC a0
    csrw mip, zero
    ENTER_S
    csrsi sip, 2
    csrr a0, sip
    REC a0
    li t0, 0x220
    csrs sip, t0
    csrr a0, sip
    REC a0
    TO_M
    csrr a0, mip
    REC a0
    csrw mip, zero
    li t0, -1
    csrw stimecmp, t0
    li t0, 1 << 63
    csrw menvcfg, t0
    li t0, 0x20
    csrs mip, t0
    csrr a0, mip
    REC a0
    csrw stimecmp, zero
    csrr a0, mip
    REC a0
    li t0, 0x20
    csrc mip, t0
    csrr a0, mip
    REC a0
    """
    K.expect_results(K.run(body, "csr-mip"), [
        ("mip -1", 0x222), ("sip, nothing delegated", 0), ("mip 0", 0),
        ("sip delegated", 0x222), ("sip=0 clears only SSIP", 0x220), ("sip=-1 sets only SSIP", 0x222),
        ("sip.SSIP set from S", 0x2), ("STIP/SEIP not writable from S", 0x2), ("mip after S", 0x2),
        ("STCE: STIP not writable, stimecmp=-1", 0x0), ("STCE: stimecmp=0 -> STIP", 0x20),
        ("STCE: csrc STIP has no effect", 0x20),
    ])


def test_trap_vectors_and_epcs() -> None:
    """mtvec/stvec (3.1.7, 4.1.2): modes 0 and 1 are kept, the reserved modes 2 and 3 are
    not stored; mepc/sepc (3.1.14) always have bit 0 clear (IALIGN=16);
    mscratch/sscratch hold any 64-bit value."""
    regs = []
    for csr in ("mtvec", "stvec"):
        for mode in range(4):
            regs.append(f"li t0, 0x80004000 + {mode}\ncsrw {csr}, t0\ncsrr a0, {csr}\nREC a0")
    regs.append("la t0, mtrap\ncsrw mtvec, t0\nla t0, strap\ncsrw stvec, t0")
    for csr in ("mepc", "sepc"):
        regs.append(f"li t0, -1\ncsrw {csr}, t0\ncsrr a0, {csr}\nREC a0")
        regs.append(f"li t0, 0x80000003\ncsrw {csr}, t0\ncsrr a0, {csr}\nREC a0")
    for csr in ("mscratch", "sscratch"):
        regs.append(f"li t0, 0x0123456789abcdef\ncsrw {csr}, t0\ncsrr a0, {csr}\nREC a0")
    r = K.run("\n".join(regs) + "\n", "csr-vec")
    expected = []
    for csr in ("mtvec", "stvec"):
        expected += [(f"{csr} mode 0", 0x80004000), (f"{csr} mode 1", 0x80004001),
                     (f"{csr} mode 2", None), (f"{csr} mode 3", None)]
    for csr in ("mepc", "sepc"):
        expected += [(f"{csr} -1", -2), (f"{csr} odd", 0x80000002)]
    expected += [("mscratch", 0x0123456789ABCDEF), ("sscratch", 0x0123456789ABCDEF)]
    K.expect_results(r, expected)
    for i in (2, 3, 6, 7):
        assert r.results[i] & 3 < 2, f"{'mtvec' if i < 4 else 'stvec'} holds reserved mode {r.results[i] & 3}"


def test_counteren_and_envcfg() -> None:
    """mcounteren/scounteren are 32-bit with CY, TM, IR implemented (3.1.11, 4.1.5);
    menvcfg (3.1.18) has STCE (Sstc) writable, PBMTE read-only zero (no Svpbmt) and the
    Zicbo* fields zero; senvcfg has no bits above 7 and no CBZE/CBCFE/CBIE."""
    body = r"""
    li t0, -1
    csrw mcounteren, t0
    csrr a0, mcounteren
    REC a0
    csrw mcounteren, zero
    csrr a0, mcounteren
    REC a0
    li t0, -1
    csrw scounteren, t0
    csrr a0, scounteren
    REC a0
    csrw scounteren, zero
    csrr a0, scounteren
    REC a0
    li t0, -1
    csrw menvcfg, t0
    csrr a0, menvcfg
    REC a0
    csrw menvcfg, zero
    csrr a0, menvcfg
    REC a0
    li t0, -1
    csrw senvcfg, t0
    csrr a0, senvcfg
    REC a0
    """
    r = K.run(body, "csr-counteren")
    K.expect_results(r, [("mcounteren -1", None), ("mcounteren 0", 0), ("scounteren -1", None),
                         ("scounteren 0", 0), ("menvcfg -1", None), ("menvcfg 0", 0),
                         ("senvcfg -1", None)])
    for i, name in ((0, "mcounteren"), (2, "scounteren")):
        v = r.results[i]
        assert v & 7 == 7, f"{name}: CY/TM/IR not writable ({v:#x})"
        assert v >> 32 == 0, f"{name} is a 32-bit register ({v:#x})"
    menvcfg = r.results[4]
    assert menvcfg >> 63 == 1, f"menvcfg.STCE not writable ({menvcfg:#x})"
    assert (menvcfg >> 62) & 1 == 0, "menvcfg.PBMTE set without Svpbmt"
    assert menvcfg & 0xF0 == 0, "menvcfg CBZE/CBCFE/CBIE set without Zicbo*"
    assert r.results[6] & ~0xF == 0 or r.results[6] & ~1 == 0, f"senvcfg={r.results[6]:#x}"
    assert r.results[6] & 0xF0 == 0


def test_satp_modes_warl() -> None:
    """satp (4.1.11): Bare, Sv39 and Sv48 are accepted; a write with an unsupported MODE
    (Sv57 = 10, reserved = 1) has no effect at all."""
    sv39 = (8 << 60) | 0x80010
    sv48 = (9 << 60) | 0x80020
    body = f"""
    li t0, {sv39}
    csrw satp, t0
    csrr a0, satp
    REC a0
    li t0, {sv48}
    csrw satp, t0
    csrr a0, satp
    REC a0
    li t0, {(10 << 60) | 0x80030}
    csrw satp, t0
    csrr a0, satp
    REC a0
    li t0, {(1 << 60) | 0x80040}
    csrw satp, t0
    csrr a0, satp
    REC a0
    csrw satp, zero
    csrr a0, satp
    REC a0
    """
    K.expect_results(K.run(body, "csr-satp"), [("sv39", sv39), ("sv48", sv48), ("sv57 ignored", sv48),
                                             ("mode 1 ignored", sv48), ("bare", 0)])


def test_pmp_registers_and_lock() -> None:
    """pmpaddr holds bits 55:2 (3.7.1); pmpcfg fields: R=0/W=1 is reserved (WARL), bits 6:5
    read zero, pmpcfg1 does not exist on RV64. A locked entry ignores writes to its pmpcfg
    and pmpaddr, and its permissions apply to M-mode too (3.7.1.2)."""
    p = Probe()
    p.asm("li t0, 0x12345678\ncsrw pmpaddr1, t0\ncsrr a0, pmpaddr1")
    p.rec("pmpaddr1", "a0", 0x12345678)
    p.asm("li t0, -1\ncsrw pmpaddr2, t0\ncsrr a0, pmpaddr2")
    p.rec("pmpaddr2 all ones", "a0", (1 << 54) - 1)
    p.asm("csrw pmpaddr2, zero")
    # entry 0: R + TOR (0x09); entry 1: W only (reserved); entry 2: R + bits 6:5 set
    p.asm("li t0, 0x610209\ncsrw pmpcfg0, t0\ncsrr a0, pmpcfg0")
    p.rec("pmpcfg0 reserved fields", "a0", None)
    p.probe("pmpcfg1 does not exist on RV64", csrr(0x3A1), False)
    # entry 3: locked NAPOT over the scratch page, no permissions
    p.asm("la t0, scratch\nsrli t0, t0, 2\nori t0, t0, 0x1ff\ncsrw pmpaddr3, t0\n"
          "csrw pmpcfg0, zero\nli t0, 0x98 << 24\ncsrw pmpcfg0, t0\ncsrr a0, pmpcfg0")
    p.rec("pmpcfg0 with entry 3 locked", "a0", 0x98 << 24)
    p.asm("li t0, -1\ncsrw pmpcfg0, t0\ncsrr a0, pmpcfg0")
    p.rec("locked entry 3 ignores pmpcfg writes", "a0", None)
    p.asm("li t0, 0x1234\ncsrw pmpaddr3, t0\ncsrr a0, pmpaddr3\nla t0, scratch\nsrli t0, t0, 2\n"
          "ori t0, t0, 0x1ff\nsub a0, a0, t0")
    p.rec("locked entry 3 ignores pmpaddr writes", "a0", 0)
    r = p.run("csr-pmp", init_pmp=False)
    cfg = r.results[2]
    for i in range(3):
        b = (cfg >> (8 * i)) & 0xFF
        assert b & 3 != 2, f"pmp{i}cfg holds the reserved R=0,W=1 ({b:#x})"
        assert b & 0x60 == 0, f"pmp{i}cfg bits 6:5 not zero ({b:#x})"
    assert cfg & 0xFF == 0x09
    assert (r.results[7] >> 24) & 0xFF == 0x98, f"locked pmp3cfg changed: {r.results[7]:#x}"


def test_locked_pmp_entry_applies_to_m_mode() -> None:
    """A locked PMP entry without R/W enforces its permissions on M-mode accesses too
    (3.7.1.2: "If the L bit is set, these permissions are enforced for all privilege
    modes"): an M-mode load/store to the region is an access fault, mtval = address."""
    body = r"""
    la s2, scratch
    srli t0, s2, 2
    ori t0, t0, 0x1ff          /* NAPOT, 4 KiB at scratch */
    csrw pmpaddr3, t0
    li t0, 0x98 << 24          /* L | NAPOT, no R/W/X */
    csrw pmpcfg0, t0
    ld a0, 8(s2)
    TRAPS
    sd a0, 16(s2)
    TRAPS
    """
    r = K.run(body, "csr-pmp-lock-m", init_pmp=False)
    s = r.sym("scratch")
    K.expect_results(r, [("load count", 1), ("load cause", 5), ("load mtval", s + 8),
                         ("store count", 2), ("store cause", 7), ("store mtval", s + 16)])


def test_locked_tor_entry_locks_previous_pmpaddr() -> None:
    """3.7.1.2: "if PMP entry i is locked and pmpicfg.A is set to TOR, writes to
    pmpaddr(i-1) are ignored"."""
    body = r"""
    li t0, 0x100
    csrw pmpaddr4, t0
    li t0, 0x200
    csrw pmpaddr5, t0
    li t0, 0x89 << 40           /* entry 5: L | TOR | R, over [0x400, 0x800) */
    csrw pmpcfg0, t0
    li t0, 0x300
    csrw pmpaddr4, t0
    csrr a0, pmpaddr4
    REC a0
    csrr a0, pmpaddr5
    REC a0
    """
    K.expect_results(K.run(body, "csr-pmp-tor", init_pmp=False),
                     [("pmpaddr4 under a locked TOR entry 5", 0x100), ("pmpaddr5", 0x200)])


def test_read_only_and_nonexistent_csrs_are_illegal() -> None:
    """Writing a read-only CSR (address bits 11:10 = 3, 2.1) is illegal even when the value is
    zero or comes from a non-x0 register holding zero (Zicsr 9.1); reading is fine.
    Nonexistent CSRs and debug-mode-only CSRs (0x7b0) are illegal. mtval holds the encoding."""
    p = Probe()
    p.probe("csrr mhartid", csrr(MHARTID), True)
    p.asm("mv s2, a0")
    p.rec("mhartid", "s2", 0)
    p.probe("csrw mhartid", csrw(MHARTID), False)
    p.asm("li t1, 0")
    p.probe("csrrs mhartid with zero register", csr_insn(2, A0, T1, MHARTID), False)
    p.probe("csrrsi mhartid, 0 (no write)", csr_insn(6, A0, 0, MHARTID), True)
    p.probe("csrrci mhartid, 1", csr_insn(7, A0, 1, MHARTID), False)
    p.probe("csrrc mvendorid, x0 (no write)", csr_insn(3, A0, 0, MVENDORID), True)
    p.probe("csrrw mvendorid", csr_insn(1, A0, 0, MVENDORID), False)
    p.probe("csrw marchid", csrw(MARCHID), False)
    p.probe("csrw cycle", csrw(CYCLE), False)
    p.probe("csrw time", csrw(TIME), False)
    p.probe("csrr 0x123 (none)", csrr(0x123), False)
    p.probe("csrr 0x3ff (none)", csrr(0x3FF), False)
    p.probe("csrw 0x5a0 (none)", csrw(0x5A0), False)
    p.probe("csrr dcsr (debug only)", csrr(0x7B0), False)
    p.probe("csrr dpc (debug only)", csrr(0x7B1), False)
    p.run("csr-ro")


def test_privilege_of_csr_access() -> None:
    """CSR address bits 9:8 give the lowest privilege that may access it (2.1): S CSRs are
    illegal from U, M CSRs from S and U."""
    p = Probe()
    p.asm("ENTER_U")
    p.probe("U: csrr sstatus", csrr(SSTATUS), False)
    p.probe("U: csrr sscratch", csrr(SSCRATCH), False)
    p.probe("U: csrw stvec", csrw(STVEC), False)
    p.probe("U: csrr satp", csrr(SATP), False)
    p.probe("U: csrr mstatus", csrr(MSTATUS), False)
    p.probe("U: csrr mhartid", csrr(MHARTID), False)
    p.asm("TO_M\nENTER_S")
    p.probe("S: csrr sstatus", csrr(SSTATUS), True)
    p.probe("S: csrr sscratch", csrr(SSCRATCH), True)
    p.probe("S: csrr satp", csrr(SATP), True)
    p.probe("S: csrr mstatus", csrr(MSTATUS), False)
    p.probe("S: csrw mscratch", csrw(MSCRATCH), False)
    p.probe("S: csrr mhartid", csrr(MHARTID), False)
    p.probe("S: csrr misa", csrr(MISA), False)
    p.probe("S: csrr mip", csrr(MIP), False)
    p.asm("TO_M")
    p.probe("M: csrr sstatus", csrr(SSTATUS), True)
    p.run("csr-priv")


def test_mcycle_minstret_writes() -> None:
    """A value written to minstret is the value read by the next instruction (Zicsr 9.1);
    minstret counts one per instruction and wraps; instret/cycle mirror minstret/mcycle."""
    body = r"""
    li t0, 1000
    csrw minstret, t0
    csrr a0, minstret
    REC a0
    csrr a0, minstret
    csrr a1, minstret
    sub a0, a1, a0
    REC a0
    li t0, -1
    csrw minstret, t0
    csrr a0, minstret
    csrr a1, minstret
    REC a0
    REC a1
    csrr a0, minstret
    csrr a1, instret
    sub a0, a1, a0
    REC a0
    li t0, 1 << 40
    csrw mcycle, t0
    csrr a0, mcycle
    REC a0
    csrr a0, mcycle
    csrr a1, cycle
    sub a0, a1, a0
    REC a0
    """
    r = K.run(body, "csr-counters")
    K.expect_results(r, [("minstret written", 1000), ("minstret step", 1), ("minstret -1", -1),
                         ("minstret wraps", 0), ("instret mirrors minstret", 1),
                         ("mcycle written", None), ("cycle mirrors mcycle", None)])
    assert (1 << 40) <= r.results[5] < (1 << 40) + 16, f"mcycle after write: {r.results[5]:#x}"
    assert 0 < r.results[6] < 16, f"cycle - mcycle = {r.results[6]}"


def test_counter_access_from_s_and_u() -> None:
    """cycle/time/instret are accessible in S only when the mcounteren bit is set, in U only
    when both mcounteren and scounteren bits are set (3.1.11, 4.1.5)."""
    p = Probe()

    def mode(m: str, label: str, allowed: tuple[bool, bool, bool, bool]) -> None:
        p.asm(f"ENTER_{m}")
        for csr, ok in zip((CYCLE, TIME, INSTRET, HPM3), allowed):
            p.probe(f"{label} {m}: csrr {csr:#x}", csrr(csr), ok)
        p.asm("TO_M")

    p.asm("csrw mcounteren, zero\ncsrw scounteren, zero")
    mode("S", "mcounteren=0", (False, False, False, False))
    mode("U", "mcounteren=0", (False, False, False, False))
    p.asm("li t0, 7\ncsrw mcounteren, t0")
    mode("S", "mcounteren=7", (True, True, True, False))
    mode("U", "mcounteren=7 scounteren=0", (False, False, False, False))
    p.asm("li t0, 5\ncsrw scounteren, t0")
    mode("U", "mcounteren=7 scounteren=5", (True, False, True, False))
    p.asm("li t0, 2\ncsrw mcounteren, t0\nli t0, 7\ncsrw scounteren, t0")
    mode("S", "mcounteren=2", (False, True, False, False))
    mode("U", "mcounteren=2 scounteren=7", (False, True, False, False))
    p.asm("li t0, 8\ncsrw mcounteren, t0\nli t0, 8\ncsrw scounteren, t0")
    mode("U", "HPM3 enabled", (False, False, False, True))
    p.probe("M: csrr cycle regardless", csrr(CYCLE), True)
    p.probe("M: csrr time regardless", csrr(TIME), True)
    p.run("csr-counter-access")


def test_stimecmp_access_rules() -> None:
    """Sstc: stimecmp is always accessible in M; in S only with menvcfg.STCE=1 and
    mcounteren.TM=1, else illegal; in U always illegal (S CSR)."""
    p = Probe()
    p.asm("li t1, 1234")
    p.probe("M: csrw stimecmp (STCE=0)", csrw(STIMECMP), True)
    p.probe("M: csrr stimecmp", csrr(STIMECMP), True)
    p.rec("M: stimecmp read back", "a0", 1234)
    p.asm("li t0, 2\ncsrw mcounteren, t0\ncsrw menvcfg, zero\nENTER_S")
    p.probe("S STCE=0 TM=1: read", csrr(STIMECMP), False)
    p.probe("S STCE=0 TM=1: write", csrw(STIMECMP), False)
    p.asm("TO_M\nli t0, 1 << 63\ncsrw menvcfg, t0\ncsrw mcounteren, zero\nENTER_S")
    p.probe("S STCE=1 TM=0: read", csrr(STIMECMP), False)
    p.probe("S STCE=1 TM=0: write", csrw(STIMECMP), False)
    p.asm("TO_M\nli t0, 2\ncsrw mcounteren, t0\nENTER_S\nli t1, -1")
    p.probe("S STCE=1 TM=1: write", csrw(STIMECMP), True)
    p.probe("S STCE=1 TM=1: read", csrr(STIMECMP), True)
    p.rec("S: stimecmp read back", "a0", -1)
    p.asm("TO_M\nli t0, 7\ncsrw scounteren, t0\nENTER_U")
    p.probe("U: read", csrr(STIMECMP), False)
    p.asm("TO_M")
    p.run("csr-stimecmp")


def test_fp_csrs_need_fs() -> None:
    """With mstatus.FS=Off, fflags/frm/fcsr and FP instructions are illegal (3.1.6.5);
    with FS=Initial they work, and writing FP state makes FS Dirty (and SD=1)."""
    fadd_d = 0x02007053  # fadd.d f0, f0, f0, dyn
    p = Probe()
    p.asm("csrw mstatus, zero")
    p.probe("FS=0: csrr fcsr", csrr(FCSR), False)
    p.probe("FS=0: csrr fflags", csrr(FFLAGS), False)
    p.probe("FS=0: csrr frm", csrr(FRM), False)
    p.probe("FS=0: csrw fcsr", csrw(FCSR), False)
    p.probe("FS=0: fadd.d", fadd_d, False)
    p.asm("li t0, 1 << 13\ncsrs mstatus, t0")
    p.probe("FS=1: csrr fcsr", csrr(FCSR), True)
    p.asm(f"csrwi fflags, 0x11\ncsrr a0, mstatus\nli t0, {FS | SD}\nand a0, a0, t0")
    p.rec("FS/SD after writing fflags", "a0", FS | SD)
    p.asm("csrwi frm, 3\ncsrr a0, fcsr")
    p.rec("fcsr = frm << 5 | fflags", "a0", (3 << 5) | 0x11)
    p.asm("li t1, -1")
    p.probe("csrw fcsr, -1", csrw(FCSR), True)
    p.asm("csrr a0, fcsr")
    p.rec("fcsr keeps 8 bits", "a0", 0xFF)
    p.run("csr-fs")


def test_mip_seip_reads_the_external_line_but_rmw_uses_the_software_bit() -> None:
    """3.1.9: a csrr of mip returns SEIP = software bit OR the external interrupt line, while
    csrrs/csrrc use only the software-writable bit, so a read-modify-write does not latch the
    line into it. The line is driven from Python (the PLIC's wire, HW_IP slot 74)."""
    body = r"""
    csrr a0, mip
    REC a0
    li t0, 0x200
    csrc mip, t0
    csrr a0, mip
    REC a0
    li t0, 2
    csrs mip, t0
    la t1, scratch
1:  ld t2, 0(t1)
    beqz t2, 1b
    csrr a0, mip
    REC a0
    li t0, 0x200
    csrs mip, t0
    csrr a0, mip
    REC a0
    """
    from wirt.cpu import layout

    assert layout.HW_IP == 74
    r = K.load(body, "csr-mip-seip")
    r.m.hart.s[74] = 1 << 9
    first = r.m.run(5000)
    assert first.reason == "max-insns", first
    r.m.hart.s[74] = 0
    r.m.memory.write_u64(r.sym("scratch"), 1)
    K.finish(r, 20000)
    K.expect_results(r, [("line high", 0x200), ("csrc cannot clear the line", 0x200),
                         ("after the line drops: no latched SEIP", 0x2), ("software SEIP", 0x202)])
