"""Control and status registers, traps and interrupts (privileged spec 1.12, chapters 2-3).

CSR values live in the `c` array indexed by CSR number. Views (sstatus, sie, sip, frm,
fflags) and derived registers (counters, time, mip's timer bits) are computed here.
"""

from numba import njit

from wirt.cpu.layout import (
    CSR_CYCLE, CSR_FCSR, CSR_FFLAGS, CSR_FRM, CSR_INSTRET, CSR_MARCHID, CSR_MCAUSE,
    CSR_MCONFIGPTR, CSR_MCOUNTEREN, CSR_MCOUNTINHIBIT, CSR_MCYCLE, CSR_MEDELEG, CSR_MENVCFG,
    CSR_MEPC, CSR_MHARTID, CSR_MIDELEG, CSR_MIE, CSR_MIMPID, CSR_MINSTRET, CSR_MIP, CSR_MISA,
    CSR_MSCRATCH, CSR_MSTATUS, CSR_MTVAL, CSR_MTVEC, CSR_MVENDORID, CSR_PMPADDR0, CSR_PMPCFG0,
    CSR_SATP, CSR_SCAUSE, CSR_SCOUNTEREN, CSR_SENVCFG, CSR_SEPC, CSR_SIE, CSR_SIP,
    CSR_SSCRATCH, CSR_SSTATUS, CSR_STIMECMP, CSR_STVAL, CSR_STVEC, CSR_TIME, CSR_TSELECT,
    COUNTINHIBIT, CYCLE_OFF, EXT_IP, HARTID, HW_IP, ICOUNT, INHIBIT_CY, INHIBIT_IR, INSTRET_OFF, INTERRUPT_BIT,
    MEDELEG_MASK, MENVCFG_STCE, MENVCFG_WMASK, MIDELEG_MASK, MIE_MASK, MIP_MEIP, MIP_MSIP,
    MIP_MTIP, MIP_SEIP, MIP_SSIP, MIP_STIP, MISA_VALUE, MS_FS, MS_MIE, MS_MPIE, MS_MPP,
    MS_MPRV, MS_SD, MS_SIE, MS_SPIE, MS_SPP, MS_TSR, MS_TVM, MSTATUS_WMASK, MSTATUS_XL,
    MTIMECMP, PMP_ACTIVE, PMP_CFG, PMP_LOCKED, PMP_HI, PMP_LO, PRIV, PRV_M, PRV_S, PRV_U, SSTATUS_RMASK, SSTATUS_WMASK, TIME_BASE,
    TIME_ICOUNT, TIME_SHIFT, X0,
)
from wirt.cpu.mmu import tlb_flush

# Status codes returned by csr_instruction.
CSR_OK = 0
CSR_ILLEGAL = 1
CSR_OK_RECHECK = 2   # the write may have changed interrupt enables or translation state


@njit(cache=True, nogil=True)
def current_time(s):
    """mtime: the time base plus the ticks implied by instructions retired since it was set."""
    return s[TIME_BASE] + ((s[ICOUNT] - s[TIME_ICOUNT]) >> s[TIME_SHIFT])


@njit(cache=True, nogil=True)
def read_mip(s, c):
    """mip as software sees it: writable bits plus device lines and the timer comparators."""
    v = c[CSR_MIP] | s[HW_IP] | s[EXT_IP]
    t = current_time(s)
    if t >= s[MTIMECMP] and s[MTIMECMP] >= 0:
        v |= MIP_MTIP
    if c[CSR_MENVCFG] < 0:  # menvcfg.STCE: STIP is stimecmp's comparator (Sstc)
        v &= ~MIP_STIP
        if t >= c[CSR_STIMECMP] and c[CSR_STIMECMP] >= 0:
            v |= MIP_STIP
    return v


@njit(cache=True, nogil=True)
def read_mstatus(c):
    v = c[CSR_MSTATUS]
    if (v & MS_FS) == MS_FS:
        v |= MS_SD
    return v | MSTATUS_XL


@njit(cache=True, nogil=True)
def counter(s, which):
    """mcycle (which=0) or minstret (which=2), honouring mcountinhibit."""
    inhibit = s[INHIBIT_CY] if which == 0 else s[INHIBIT_IR]
    if which == 0 and (s[COUNTINHIBIT] & 1) != 0:
        return inhibit
    if which == 2 and (s[COUNTINHIBIT] & 4) != 0:
        return inhibit
    off = s[CYCLE_OFF] if which == 0 else s[INSTRET_OFF]
    return s[ICOUNT] + off


@njit(cache=True, nogil=True)
def counter_allowed(c, csr, priv):
    """cycle/time/instret from S or U mode need mcounteren (and scounteren for U), spec 3.1.11."""
    bit = csr & 0x1F
    if priv < PRV_M and ((c[CSR_MCOUNTEREN] >> bit) & 1) == 0:
        return False
    if priv == PRV_U and ((c[CSR_SCOUNTEREN] >> bit) & 1) == 0:
        return False
    return True


@njit(cache=True, nogil=True)
def csr_read(s, c, csr, priv):
    """Returns (value, ok). ok is False when the CSR does not exist or is not accessible."""
    if csr == CSR_SSTATUS:
        return read_mstatus(c) & SSTATUS_RMASK, True
    if csr == CSR_MSTATUS:
        return read_mstatus(c), True
    if csr == CSR_SIE:
        return c[CSR_MIE] & c[CSR_MIDELEG], True
    if csr == CSR_SIP:
        return read_mip(s, c) & c[CSR_MIDELEG], True
    if csr == CSR_MIP:
        return read_mip(s, c), True
    if csr == CSR_SATP:
        if priv == PRV_S and (c[CSR_MSTATUS] & MS_TVM) != 0:
            return 0, False
        return c[CSR_SATP], True
    if csr == CSR_FFLAGS or csr == CSR_FRM or csr == CSR_FCSR:
        if (c[CSR_MSTATUS] & MS_FS) == 0:
            return 0, False
        if csr == CSR_FFLAGS:
            return c[CSR_FCSR] & 0x1F, True
        if csr == CSR_FRM:
            return (c[CSR_FCSR] >> 5) & 7, True
        return c[CSR_FCSR] & 0xFF, True
    if csr >= CSR_CYCLE and csr <= 0xC1F:
        if not counter_allowed(c, csr, priv):
            return 0, False
        if csr == CSR_CYCLE:
            return counter(s, 0), True
        if csr == CSR_TIME:
            return current_time(s), True
        if csr == CSR_INSTRET:
            return counter(s, 2), True
        return 0, True  # hpmcounter3..31: not implemented, read as zero
    if csr == CSR_MCYCLE:
        return counter(s, 0), True
    if csr == CSR_MINSTRET:
        return counter(s, 2), True
    if (csr >= 0xB03 and csr <= 0xB1F) or (csr >= 0x323 and csr <= 0x33F):
        return 0, True  # mhpmcounter/mhpmevent: read-only zero (WARL)
    if csr == CSR_STIMECMP:
        if priv == PRV_S and (c[CSR_MENVCFG] >= 0 or (c[CSR_MCOUNTEREN] & 2) == 0):
            return 0, False
        return c[CSR_STIMECMP], True
    if csr == CSR_MHARTID:
        return s[HARTID], True
    if csr == CSR_MISA:
        return MISA_VALUE, True
    if csr == CSR_MVENDORID or csr == CSR_MARCHID or csr == CSR_MIMPID or csr == CSR_MCONFIGPTR:
        return 0, True
    if csr == CSR_MCOUNTINHIBIT:
        return s[COUNTINHIBIT], True
    if csr == CSR_PMPCFG0 or csr == CSR_PMPCFG0 + 2:
        return c[csr], True
    if csr >= CSR_PMPADDR0 and csr < CSR_PMPADDR0 + 16:
        return c[csr], True
    if csr >= CSR_PMPADDR0 + 16 and csr < CSR_PMPADDR0 + 64:
        return 0, True  # pmpaddr16..63: not implemented, read-only zero
    if csr >= CSR_TSELECT and csr <= CSR_TSELECT + 3:
        return 0, True  # no triggers: tselect and tdata1 (type 0, "none") read 0 (debug spec 5.7)
    if (csr == CSR_STVEC or csr == CSR_SCOUNTEREN or csr == CSR_SENVCFG or csr == CSR_SSCRATCH
            or csr == CSR_SEPC or csr == CSR_SCAUSE or csr == CSR_STVAL or csr == CSR_MEDELEG
            or csr == CSR_MIDELEG or csr == CSR_MIE or csr == CSR_MTVEC or csr == CSR_MCOUNTEREN
            or csr == CSR_MENVCFG or csr == CSR_MSCRATCH or csr == CSR_MEPC or csr == CSR_MCAUSE
            or csr == CSR_MTVAL):
        return c[csr], True
    return 0, False


@njit(cache=True, nogil=True)
def set_counter(s, which, value):
    """Write mcycle/minstret so that the writing instruction's own retirement is not counted
    (the next read returns value)."""
    if which == 0:
        s[CYCLE_OFF] = value - s[ICOUNT] - 1
        s[INHIBIT_CY] = value
    else:
        s[INSTRET_OFF] = value - s[ICOUNT] - 1
        s[INHIBIT_IR] = value


@njit(cache=True, nogil=True)
def update_pmp(s, c):
    """Decode pmpcfg/pmpaddr into byte ranges (priv spec 3.7.1, table 3.9): TOR uses the
    previous pmpaddr as the base, NA4 is 4 bytes, NAPOT's size comes from the trailing ones."""
    active = 0
    locked = 0
    for i in range(16):
        cfg = (c[CSR_PMPCFG0 + (i // 8) * 2] >> ((i % 8) * 8)) & 0xFF
        a = (cfg >> 3) & 3
        addr = c[CSR_PMPADDR0 + i]
        lo = 0
        hi = 0
        if a == 1:  # TOR
            lo = (c[CSR_PMPADDR0 + i - 1] << 2) if i > 0 else 0
            hi = addr << 2
        elif a == 2:  # NA4
            lo = addr << 2
            hi = lo + 4
        elif a == 3:  # NAPOT
            t = 0
            v = addr
            while (v & 1) == 1 and t < 54:
                v >>= 1
                t += 1
            lo = (addr & ~((1 << t) - 1)) << 2
            hi = lo + (1 << (t + 3))
            if t >= 54:
                lo = 0
                hi = 0x7FFFFFFFFFFFFFFF  # the whole address space
        if a == 0 or hi <= lo:
            s[PMP_CFG + i] = 0
        else:
            s[PMP_CFG + i] = cfg | 0x100  # bit 8 marks "on" even when R/W/X are all clear
            active = 1
            if (cfg & 0x80) != 0:
                locked = 1
        s[PMP_LO + i] = lo
        s[PMP_HI + i] = hi
    s[PMP_ACTIVE] = active
    s[PMP_LOCKED] = locked


@njit(cache=True, nogil=True)
def csr_write(s, c, tlb, csr, v, priv):
    """Write a CSR whose access was already checked. Returns False if the write is illegal."""
    if csr == CSR_MSTATUS or csr == CSR_SSTATUS:
        mask = MSTATUS_WMASK if csr == CSR_MSTATUS else SSTATUS_WMASK
        old = c[CSR_MSTATUS]
        new = (old & ~mask) | (v & mask)
        if ((new >> 11) & 3) == 2:  # MPP is WARL: the reserved value 2 keeps the old MPP
            new = (new & ~MS_MPP) | (old & MS_MPP)
        c[CSR_MSTATUS] = new
        if ((old ^ new) & (MS_MPRV | MS_MPP | (1 << 18) | (1 << 19))) != 0:
            pass  # TLB entries carry PTE flags; permission is rechecked on every hit
        return True
    if csr == CSR_SATP:
        mode = (v >> 60) & 0xF
        if mode != 0 and mode != 8 and mode != 9:
            return True  # unsupported mode: the write is ignored (WARL, spec 4.1.11)
        c[CSR_SATP] = v & ((0xF << 60) | (0xFFFF << 44) | ((1 << 44) - 1))
        tlb_flush(tlb)
        return True
    if csr == CSR_MIE:
        c[CSR_MIE] = v & MIE_MASK
        return True
    if csr == CSR_SIE:
        m = c[CSR_MIDELEG]
        c[CSR_MIE] = (c[CSR_MIE] & ~m) | (v & m)
        return True
    if csr == CSR_MIP:
        m = MIP_SSIP | MIP_STIP | MIP_SEIP
        if c[CSR_MENVCFG] < 0:
            m = MIP_SSIP | MIP_SEIP
        c[CSR_MIP] = (c[CSR_MIP] & ~m) | (v & m)
        return True
    if csr == CSR_SIP:
        m = MIP_SSIP & c[CSR_MIDELEG]
        c[CSR_MIP] = (c[CSR_MIP] & ~m) | (v & m)
        return True
    if csr == CSR_MIDELEG:
        c[CSR_MIDELEG] = v & MIDELEG_MASK
        return True
    if csr == CSR_MEDELEG:
        c[CSR_MEDELEG] = v & MEDELEG_MASK
        return True
    if csr == CSR_MTVEC or csr == CSR_STVEC:
        if (v & 3) >= 2:
            v = v & ~3  # reserved modes are WARL: fall back to direct
        c[csr] = v
        return True
    if csr == CSR_MEPC or csr == CSR_SEPC:
        c[csr] = v & ~1  # IALIGN=16 with C: bit 0 is always zero (spec 3.1.14)
        return True
    if csr == CSR_MCOUNTEREN or csr == CSR_SCOUNTEREN:
        c[csr] = v & 0xFFFFFFFF
        return True
    if csr == CSR_MENVCFG:
        c[CSR_MENVCFG] = v & MENVCFG_WMASK
        return True
    if csr == CSR_SENVCFG:
        c[CSR_SENVCFG] = v & 1
        return True
    if csr == CSR_STIMECMP:
        if priv == PRV_S and (c[CSR_MENVCFG] >= 0 or (c[CSR_MCOUNTEREN] & 2) == 0):
            return False
        c[CSR_STIMECMP] = v
        return True
    if csr == CSR_FFLAGS:
        c[CSR_FCSR] = (c[CSR_FCSR] & ~0x1F) | (v & 0x1F)
        c[CSR_MSTATUS] |= MS_FS
        return True
    if csr == CSR_FRM:
        c[CSR_FCSR] = (c[CSR_FCSR] & 0x1F) | ((v & 7) << 5)
        c[CSR_MSTATUS] |= MS_FS
        return True
    if csr == CSR_FCSR:
        c[CSR_FCSR] = v & 0xFF
        c[CSR_MSTATUS] |= MS_FS
        return True
    if csr == CSR_MCYCLE:
        set_counter(s, 0, v)
        return True
    if csr == CSR_MINSTRET:
        set_counter(s, 2, v)
        return True
    if csr == CSR_MCOUNTINHIBIT:
        old = s[COUNTINHIBIT]
        new = v & 0xFFFFFFFD  # bit 1 (TM) is read-only zero
        for which in (0, 2):
            bit = 1 << which
            if (old & bit) == 0 and (new & bit) != 0:  # freeze at the current value
                if which == 0:
                    s[INHIBIT_CY] = counter(s, 0)
                else:
                    s[INHIBIT_IR] = counter(s, 2)
            elif (old & bit) != 0 and (new & bit) == 0:  # resume from the frozen value
                if which == 0:
                    s[CYCLE_OFF] = s[INHIBIT_CY] - s[ICOUNT] - 1
                else:
                    s[INSTRET_OFF] = s[INHIBIT_IR] - s[ICOUNT] - 1
        s[COUNTINHIBIT] = new
        return True
    if csr == CSR_PMPCFG0 or csr == CSR_PMPCFG0 + 2:
        old = c[csr]
        new = 0
        for b in range(8):
            ocfg = (old >> (8 * b)) & 0xFF
            ncfg = (v >> (8 * b)) & 0x9F  # bits 6:5 are reserved zero
            if (ocfg & 0x80) != 0:
                ncfg = ocfg  # locked entries ignore writes (3.7.1.2)
            elif (ncfg & 3) == 2:
                ncfg &= ~2  # R=0, W=1 is reserved: drop W
            new |= ncfg << (8 * b)
        c[csr] = new
        update_pmp(s, c)
        tlb_flush(tlb)
        return True
    if csr >= CSR_PMPADDR0 and csr < CSR_PMPADDR0 + 16:
        i = csr - CSR_PMPADDR0
        cfg = (c[CSR_PMPCFG0 + (i // 8) * 2] >> ((i % 8) * 8)) & 0xFF
        nxt = 0
        if i < 15:
            nxt = (c[CSR_PMPCFG0 + ((i + 1) // 8) * 2] >> (((i + 1) % 8) * 8)) & 0xFF
        # A locked entry ignores writes to its pmpaddr, and a locked TOR entry also to the
        # previous one, which is its base (priv spec 3.7.1.2).
        if (cfg & 0x80) == 0 and (nxt & 0x98) != 0x88:
            c[csr] = v & ((1 << 54) - 1)
            update_pmp(s, c)
            tlb_flush(tlb)
        return True
    if (csr >= 0xB03 and csr <= 0xB1F) or (csr >= 0x323 and csr <= 0x33F) or csr == CSR_MISA:
        return True  # read-only-zero counters/events and fixed misa: writes ignored (WARL)
    if csr >= CSR_PMPADDR0 + 16 and csr < CSR_PMPADDR0 + 64:
        return True
    if csr >= CSR_TSELECT and csr <= CSR_TSELECT + 3:
        return True  # tselect/tdata1-3 are hard-wired: writes ignored
    if (csr == CSR_SSCRATCH or csr == CSR_MSCRATCH or csr == CSR_SCAUSE or csr == CSR_MCAUSE
            or csr == CSR_STVAL or csr == CSR_MTVAL):
        c[csr] = v
        return True
    return False


@njit(cache=True, nogil=True)
def csr_instruction(s, c, tlb, inst, priv):
    """Execute a Zicsr instruction (csrrw/s/c and their immediate forms). Returns a status."""
    rd = (inst >> 7) & 31
    f3 = (inst >> 12) & 7
    rs1 = (inst >> 15) & 31
    csr = (inst >> 20) & 0xFFF
    if f3 >= 5:
        src = rs1  # zimm
    else:
        src = s[X0 + rs1]
    op = f3 & 3
    writes = op == 1 or rs1 != 0
    if priv < ((csr >> 8) & 3):
        return CSR_ILLEGAL
    if writes and (csr >> 10) == 3:
        return CSR_ILLEGAL  # read-only CSR (spec 2.1)
    old = 0
    if op != 1 or rd != 0:
        old, ok = csr_read(s, c, csr, priv)
        if not ok:
            return CSR_ILLEGAL
    else:
        _, ok = csr_read(s, c, csr, priv)
        if not ok:
            return CSR_ILLEGAL
    if writes:
        if op == 1:
            new = src
        elif op == 2:
            new = old | src
        else:
            new = old & ~src
        if csr == CSR_MIP or csr == CSR_SIP:
            # Read-modify-write of mip acts on the software-writable bits only.
            if op != 1:
                base = c[CSR_MIP]
                new = (base | src) if op == 2 else (base & ~src)
        if not csr_write(s, c, tlb, csr, new, priv):
            return CSR_ILLEGAL
    if rd != 0:
        s[X0 + rd] = old
    if writes:
        return CSR_OK_RECHECK
    return CSR_OK


@njit(cache=True, nogil=True)
def take_trap(s, c, cause, tval, pc):
    """Enter the trap handler for cause (negative = interrupt) raised at pc.

    Handles delegation (medeleg/mideleg, spec 3.1.8) and vectored mode; returns the new pc.
    """
    priv = s[PRIV]
    interrupt = cause < 0
    code = cause & 63
    if interrupt:
        deleg = c[CSR_MIDELEG]
    else:
        deleg = c[CSR_MEDELEG]
    st = c[CSR_MSTATUS]
    if priv <= PRV_S and ((deleg >> code) & 1) != 0:
        c[CSR_SCAUSE] = cause
        c[CSR_SEPC] = pc
        c[CSR_STVAL] = tval
        spie = MS_SPIE if (st & MS_SIE) != 0 else 0
        st = (st & ~(MS_SPIE | MS_SIE | MS_SPP)) | spie | (MS_SPP if priv == PRV_S else 0)
        c[CSR_MSTATUS] = st
        s[PRIV] = PRV_S
        vec = c[CSR_STVEC]
    else:
        c[CSR_MCAUSE] = cause
        c[CSR_MEPC] = pc
        c[CSR_MTVAL] = tval
        mpie = MS_MPIE if (st & MS_MIE) != 0 else 0
        st = (st & ~(MS_MPIE | MS_MIE | MS_MPP)) | mpie | (priv << 11)
        c[CSR_MSTATUS] = st
        s[PRIV] = PRV_M
        vec = c[CSR_MTVEC]
    base = vec & ~3
    if interrupt and (vec & 3) == 1:
        return base + 4 * code
    return base


@njit(cache=True, nogil=True)
def pending_interrupt(s, c):
    """The interrupt to take now, as a cause value (with the interrupt bit), or 0 for none.

    Priority (spec 3.1.9): higher destination privilege first; within one privilege
    MEI, MSI, MTI, SEI, SSI, STI.
    """
    pend = read_mip(s, c) & c[CSR_MIE]
    if pend == 0:
        return 0
    priv = s[PRIV]
    st = c[CSR_MSTATUS]
    mideleg = c[CSR_MIDELEG]
    m_pend = pend & ~mideleg
    if m_pend != 0 and (priv < PRV_M or (st & MS_MIE) != 0):
        for irq in (11, 3, 7, 9, 1, 5):
            if (m_pend >> irq) & 1:
                return INTERRUPT_BIT | irq
    s_pend = pend & mideleg
    if s_pend != 0 and (priv < PRV_S or (priv == PRV_S and (st & MS_SIE) != 0)):
        for irq in (11, 3, 7, 9, 1, 5):
            if (s_pend >> irq) & 1:
                return INTERRUPT_BIT | irq
    return 0


@njit(cache=True, nogil=True)
def mret(s, c):
    """mret (spec 3.3.2): returns the new pc."""
    st = c[CSR_MSTATUS]
    mpp = (st >> 11) & 3
    mie = MS_MIE if (st & MS_MPIE) != 0 else 0
    st = (st & ~(MS_MIE | MS_MPP)) | mie | MS_MPIE
    if mpp != PRV_M:
        st &= ~MS_MPRV
    c[CSR_MSTATUS] = st
    s[PRIV] = mpp
    return c[CSR_MEPC]


@njit(cache=True, nogil=True)
def sret(s, c):
    """sret (spec 3.3.2): returns the new pc."""
    st = c[CSR_MSTATUS]
    spp = PRV_S if (st & MS_SPP) != 0 else PRV_U
    sie = MS_SIE if (st & MS_SPIE) != 0 else 0
    st = (st & ~(MS_SIE | MS_SPP | MS_MPRV)) | sie | MS_SPIE
    c[CSR_MSTATUS] = st
    s[PRIV] = spp
    return c[CSR_SEPC]
