"""The RV64 hart's interpreter loop, compiled by numba (DESIGN.md "engine contract").

`run(...)` executes instructions until the budget is used up or something needs the
machine (an MMIO access, WFI with nothing pending, an HTIF write, a fatal error), writes
the reason into the exit record and returns it. Every guest physical address is checked
against RAM before it indexes the RAM arrays: anything outside RAM leaves as an exit.
"""

import numpy as np
from numba import njit

from wirt.cpu.alu import div, divu, ltu, mulh, mulhsu, mulhu, rem, remu, sext32, srl
from wirt.cpu.atomics import (
    amo_add, amo_and, amo_max, amo_maxu, amo_min, amo_minu, amo_or, amo_swap, amo_xor, cas, host_fence,
)
from wirt.cpu.csr import (
    CSR_ILLEGAL, CSR_OK_RECHECK, csr_instruction, mret, pending_interrupt, read_mip, sret,
    take_trap,
)
from wirt.cpu.fpu import FP_WRITE_F, FP_WRITE_X, fp_compute
from wirt.cpu.irqchip import NOT_HERE as IRQ_NOT_HERE
from wirt.cpu.irqchip import core_load as irq_load
from wirt.cpu.irqchip import core_store as irq_store
from wirt.cpu.layout import (
    ACC_FETCH, ACC_LOAD, ACC_STORE, ATTENTION, CSR_FCSR, CSR_MIE, CSR_MSTATUS, CSR_SATP, CSR_STIMECMP,
    EX_ADDR, EX_KIND, EX_PC, EX_RD, EX_REASON, EX_SIZE_B, EX_STORE, EX_VADDR, EX_VALUE, EXC_BREAKPOINT,
    EXC_ECALL_U, EXC_ILLEGAL, EXC_INSN_ACCESS, EXC_LOAD_ACCESS, EXC_LOAD_MISALIGNED,
    EXC_STORE_ACCESS, EXC_STORE_MISALIGNED, EXIT_BUDGET, EXIT_HTIF, EXIT_MMIO, EXIT_WFI,
    F0, ICOUNT, KIND_FP_D, KIND_FP_S, KIND_SIGNED, KIND_UNSIGNED, MS_FS, MS_MPRV, MS_TSR, MS_TVM, MS_TW, MTIMECMP, PC,
    PL_BASE, PL_NSTATUS, PMP_ACTIVE, PMP_LOCKED, PRIV, PRV_M, PRV_S, PRV_U, PTE_D, PTE_R, PTE_U, PTE_W, PTE_X,
    RAM_BASE, RAM_SIZE,
    RES_VALUE, RESERVATION, ROM_BASE, ROM_SIZE, RUN_WORDS, TIME_BASE, TIME_ICOUNT, TIME_SHIFT, TLB_ENTRIES, TOHOST,
)
from wirt.cpu.borrow import int32_at, int64_at, uint8_at, uint16_at
from wirt.cpu.jit.call import call_block
from wirt.cpu.jit.table import slot as jt_slot
from wirt.cpu.jit.x64.translate import MAX_CODE as X_MAX_CODE, SCRATCH as X_SCRATCH
from wirt.cpu.jit.x64.translate import translate as x_translate
from wirt.cpu.layout import (
    JQ_CALLS, JQ_CAP, JQ_COUNT, JQ_ENTRY, JQ_FORCE, JQ_HEAD, JQ_INVAL, JQ_LIMIT, JQ_SIDE,
    JQ_HOT, JQ_INSNS, JQ_LEVEL2, JQ_STEP, JQ_THRESHOLD, JQ_XBASE, JQ_XFLUSH, JQ_XFP, JQ_XN, JQ_XJT, JQ_XJQ,
    JQ_XCSR, JQ_XFMA, JR_MODE, JIT_LAST, JIT_LAST_IC,
    JQ_XPOS, JQ_XTHR, JR_END, JR_SIDE, JT_MODE_SHIFT, JT_SLOTS, JT_W,
)
from wirt.cpu.mmu import pmp_fill, tlb_flush, tlb_flush_page, walk

TLB_MASK = TLB_ENTRIES - 1
NAN_BOX = -(1 << 32)
# How many instructions may run between checks of the attention flag and interrupts.
CHUNK = 1 << 14
HOT_MASK = (1 << 48) - 1   # a table slot's count word: the resident's hot count ...
CONTEND_SHIFT = 48         # ... and above it, misses of another entry that wants the slot
CONTEND = 256              # misses that take a slot from another region


@njit(cache=True, nogil=True)
def translate(s, c, tlb, ram64, addr, acc, priv, sum_, mxr, vm):
    """Virtual to physical for one access: TLB, then page walk; PMP for untranslated S/U.

    Returns (physical address, cause) with cause -1 on success. A TLB hit is used under
    the same conditions and permission rules as the core's inline lookups.
    """
    pmp = s[PMP_ACTIVE] != 0 and (priv != PRV_M or s[PMP_LOCKED] != 0)
    if vm or pmp:
        idx = (addr >> 12) & TLB_MASK
        if tlb[idx] == (addr >> 12):
            e = tlb[TLB_ENTRIES + idx]
            if acc == ACC_FETCH:
                ok = (e & PTE_X) != 0 and ((e & PTE_U) != 0) == (priv == PRV_U)
            else:
                if acc == ACC_STORE:
                    ok = (e & (PTE_W | PTE_D)) == (PTE_W | PTE_D)
                else:
                    ok = (e & PTE_R) != 0 or (mxr != 0 and (e & PTE_X) != 0)
                if priv == PRV_U:
                    ok = ok and (e & PTE_U) != 0
                elif sum_ == 0:
                    ok = ok and (e & PTE_U) == 0
            if ok:
                return (e & ~0xFFF) | (addr & 0xFFF), -1
    if vm:
        return walk(s, c, ram64, tlb, addr, acc, priv, sum_, mxr)
    if pmp:
        cause = pmp_fill(s, tlb, addr, acc, priv)
        if cause >= 0:
            return 0, cause
    return addr, -1


@njit(cache=True, nogil=True)
def load_bytes(s, c, tlb, ram8, ram64, addr, size, priv, sum_, mxr, vm):
    """A misaligned load, byte by byte (each byte translated; may straddle pages).

    Returns (value, cause, tval); cause -1 on success, -2 if some byte is not RAM.
    """
    v = 0
    base = s[RAM_BASE]
    n = s[RAM_SIZE]
    for i in range(size):
        pa, cause = translate(s, c, tlb, ram64, addr + i, ACC_LOAD, priv, sum_, mxr, vm)
        if cause >= 0:
            return 0, cause, addr + i
        off = pa - base
        if off < 0 or off >= n:
            return 0, -2, addr + i  # tval: the first byte that is not RAM (priv spec 3.1.16)
        v |= ram8[off] << (8 * i)
    return v, -1, 0


@njit(cache=True, nogil=True, inline="always")
def code_written(jpg, off):
    """A store reached RAM offset `off`: if translations hold code from its page, drop them.

    The page word's low bit says translations may exist; adding one makes the generation new
    (layout.py, "jpg"), so no translation made from the old contents is entered again.
    """
    w = jpg[off >> 12]
    if (w & 1) != 0:
        jpg[off >> 12] = w + 1
        return True
    return False


@njit(cache=True, nogil=True)
def store_bytes(s, c, tlb, ram8, ram64, addr, size, value, priv, sum_, mxr, vm, jpg):
    """A misaligned store, byte by byte; all bytes are translated before any is written."""
    base = s[RAM_BASE]
    n = s[RAM_SIZE]
    for i in range(size):
        pa, cause = translate(s, c, tlb, ram64, addr + i, ACC_STORE, priv, sum_, mxr, vm)
        if cause >= 0:
            return cause, addr + i
        off = pa - base
        if off < 0 or off >= n:
            return -2, addr + i
    for i in range(size):
        pa, cause = translate(s, c, tlb, ram64, addr + i, ACC_STORE, priv, sum_, mxr, vm)
        off = pa - base
        if cause < 0 and off >= 0 and off < n:  # same result as above; checked all the same
            ram8[off] = (value >> (8 * i)) & 0xFF
            code_written(jpg, off)
    return -1, 0


@njit(cache=True, nogil=True)
def fetch_slow(s, c, tlb, ram16, ram64, rom8, rvc, pc, priv, vm):
    """Fetch when pc is not on the cached page: translate, read ROM, or straddle pages.

    Returns (inst, ilen, cause, tval, page_offset): page_offset is the RAM offset of pc's
    page when it can be cached for the fast path, else -1.
    """
    pa, cause = translate(s, c, tlb, ram64, pc, ACC_FETCH, priv, 0, 0, vm)
    if cause >= 0:
        return 0, 0, cause, pc, -1
    base = s[RAM_BASE]
    n = s[RAM_SIZE]
    off = pa - base
    if off >= 0 and off <= n - 2:
        lo = ram16[off >> 1]
        page = off - (pc & 0xFFF)
        if (lo & 3) != 3:
            return np.int64(rvc[lo]), 2, -1, np.int64(lo), page
        if (pc & 0xFFF) != 0xFFE:
            if off > n - 4:
                return 0, 0, EXC_INSN_ACCESS, pc, -1
            return sext32(lo | (ram16[(off >> 1) + 1] << 16)), 4, -1, 0, page
        # The upper half lives on the next page: translate it separately.
        pa2, cause = translate(s, c, tlb, ram64, pc + 2, ACC_FETCH, priv, 0, 0, vm)
        if cause >= 0:
            return 0, 0, cause, pc + 2, -1
        off2 = pa2 - base
        if off2 < 0 or off2 > n - 2:
            return 0, 0, EXC_INSN_ACCESS, pc + 2, -1
        return sext32(lo | (ram16[off2 >> 1] << 16)), 4, -1, 0, -1
    roff = pa - s[ROM_BASE]
    if roff >= 0 and roff <= s[ROM_SIZE] - 2:
        lo = rom8[roff] | (rom8[roff + 1] << 8)
        if (lo & 3) != 3:
            return np.int64(rvc[lo]), 2, -1, np.int64(lo), -1
        if roff > s[ROM_SIZE] - 4:
            return 0, 0, EXC_INSN_ACCESS, pc, -1
        hi = rom8[roff + 2] | (rom8[roff + 3] << 8)
        return sext32(lo | (hi << 16)), 4, -1, 0, -1
    return 0, 0, EXC_INSN_ACCESS, pc, -1


@njit(cache=True, nogil=True)
def next_deadline(s, c, icount, limit):
    """The instruction count at which mtime reaches the nearest timer compare value."""
    shift = s[TIME_SHIFT]
    now = s[TIME_BASE] + ((icount - s[TIME_ICOUNT]) >> shift)
    for cmp in (s[MTIMECMP], c[CSR_STIMECMP]):
        if cmp > now:
            at = s[TIME_ICOUNT] + ((cmp - s[TIME_BASE]) << shift)
            if at < limit:
                limit = at
    return limit


@njit(cache=True, nogil=True)
def x_flush(jt, jq, xc):
    """Empty the hart's template code buffer: forget every table entry pointing into it."""
    lo = jq[JQ_XBASE]
    size = len(xc)
    for i in range(JT_SLOTS):
        fn = jt[i * JT_W + 1]
        if fn >= lo and fn < lo + size:
            jt[i * JT_W] = -1
            jt[i * JT_W + 1] = 0
    jq[JQ_XPOS] = X_SCRATCH
    xc[:8192] = 0      # the translator's record of shared exit code (translate.W_DISP, W_TAILS)
    jq[JQ_XFLUSH] += 1


@njit(cache=True, nogil=True, inline="always")
def credit(jt, jq, b, n, pc):
    """Add n instructions to the hot count of table slot b; queue the region for the optimizing
    level when the count crosses jq[JQ_HOT]."""
    hot = (jt[b + 3] & HOT_MASK) + n
    if hot > HOT_MASK:
        hot = HOT_MASK
    jt[b + 3] = hot | (jt[b + 3] & ~HOT_MASK)
    if hot >= jq[JQ_HOT] and hot - n < jq[JQ_HOT] and jq[JQ_HOT] > 0:
        k = jq[JQ_COUNT]
        if k < JQ_CAP:
            e = JQ_HEAD + k * JQ_ENTRY
            jq[e] = jt[b] & ((1 << JT_MODE_SHIFT) - 1)
            jq[e + 1] = (jt[b] >> JT_MODE_SHIFT) | JQ_LEVEL2
            jq[e + 2] = pc
            jq[e + 3] = jt[b + 2]
            jq[JQ_COUNT] = k + 1


@njit(cache=True, nogil=True, inline="always")
def retire_exit(s, ex, reason, pc, npc, icount):
    """Leave the core for the machine with the instruction at `pc` retired and pc past it
    (an MMIO access the machine completes, a store to HTIF's tohost, a WFI that sleeps); the
    rest of the exit record (layout.py EX_*) is already written."""
    ex[EX_REASON] = reason
    ex[EX_PC] = pc
    s[PC] = npc
    s[ICOUNT] = icount + 1
    return reason


@njit(cache=True, nogil=True, inline="always")
def mmio_exit(s, ex, pa, vaddr, size, store, pc, npc, icount):
    """Leave the core for the machine to call the device at `pa` (a load's destination and
    kind, a store's value, are already in the exit record)."""
    ex[EX_ADDR] = pa
    ex[EX_VADDR] = vaddr
    ex[EX_SIZE_B] = size
    ex[EX_STORE] = store
    return retire_exit(s, ex, EXIT_MMIO, pc, npc, icount)


@njit(cache=True, nogil=True)
def run(arrays, budget):
    """Run the hart for at most `budget` instructions; returns the exit reason (see layout).

    `arrays`: host address of the hart's table of (address, length) pairs, one for each of
    its arrays in layout.RUN_ARRAYS order (Hart._pack): the state s, CSRs c, tlb, RAM as
    8/16/32/64-bit words, the boot ROM, the RVC expansion table, the exit record ex, and for
    the translation tier this hart's table jt and request queue jq, the machine's code-page
    words jpg and the hart's template-tier code buffer xc; last the machine's PLIC state pl
    (cpu/irqchip.py; PL_BASE 0 and no status registers: none). With jq[JQ_THRESHOLD] == 0 the translation tier is off.
    """
    # The caller holds every array for the whole call: the core works on views made from
    # their addresses, which cost nothing to pass and carry no reference counts (cpu/borrow.py).
    a = int64_at(arrays, RUN_WORDS)
    s = int64_at(a[0], a[1])
    c = int64_at(a[2], a[3])
    tlb = int64_at(a[4], a[5])
    ram8 = uint8_at(a[6], a[7])
    ram16 = uint16_at(a[8], a[9])
    ram32 = int32_at(a[10], a[11])
    ram64 = int64_at(a[12], a[13])
    rom8 = uint8_at(a[14], a[15])
    rvc = int32_at(a[16], a[17])
    ex = int64_at(a[18], a[19])
    jt = int64_at(a[20], a[21])
    jq = int64_at(a[22], a[23])
    jpg = int64_at(a[24], a[25])
    xc = uint8_at(a[26], a[27])
    pl = int64_at(a[28], a[29])
    nirq = pl[PL_BASE] != 0 or pl[PL_NSTATUS] != 0  # interrupt registers served here
    pc = s[PC]
    icount = s[ICOUNT]
    end = icount + budget
    base = s[RAM_BASE]
    nram = s[RAM_SIZE]
    tohost = s[TOHOST]
    limit = icount  # check interrupts before the first instruction
    fpage = -1      # virtual page number of the cached fetch page
    foff = 0        # RAM offset of that page
    priv = s[PRIV]
    # Translation/permission state, recomputed whenever privilege or mstatus/satp change.
    recompute = True
    fvm = False
    dvm = False
    ftlb = False
    dtlb = False
    mode_key = -1
    dpriv = priv
    sum_ = 0
    mxr = 0
    rmask = PTE_R
    forbid_u = 0
    forbid_fu = 0
    jthr = jq[JQ_THRESHOLD]
    xthr = jq[JQ_XTHR] if len(xc) > X_SCRATCH + 2 * X_MAX_CODE else 0
    jst = 0         # translation tier: 1 = look up a region at this pc, 2 = after this instruction
    jfwd = 1        # ... and that pc is where code resumes, not a jump's target (x_translate)
    jmode = 0
    jkey = 0
    hard = 0        # the limit the budget and the timers set (limit: that or the chunk's end)
    while True:
        if recompute:
            recompute = False
            priv = s[PRIV]
            st = c[CSR_MSTATUS]
            on = ((c[CSR_SATP] >> 60) & 0xF) != 0
            dpriv = priv
            if priv == PRV_M and (st & MS_MPRV) != 0:
                dpriv = (st >> 11) & 3
            fvm = on and priv != PRV_M
            dvm = on and dpriv != PRV_M
            # The TLB also caches PMP permissions of untranslated S/U accesses (identity).
            pmp_on = s[PMP_ACTIVE] != 0
            locked = s[PMP_LOCKED] != 0
            ftlb = fvm or (pmp_on and (priv != PRV_M or locked))
            dtlb = dvm or (pmp_on and (dpriv != PRV_M or locked))
            if locked and priv * 4 + dpriv != mode_key:
                # M-mode fills carry M's PMP view: keep them apart from S/U's by flushing.
                tlb_flush(tlb)
            mode_key = priv * 4 + dpriv
            sum_ = (st >> 18) & 1
            mxr = (st >> 19) & 1
            rmask = PTE_R | (PTE_X if mxr else 0)
            # A TLB hit is allowed when the entry's U bit differs from the forbidden value.
            if dpriv == PRV_U:
                forbid_u = 0
            elif sum_:
                forbid_u = -1
            else:
                forbid_u = PTE_U
            forbid_fu = 0 if priv == PRV_U else PTE_U
            fpage = -1
            # What a translation depends on besides its bytes (jit/emit.Mode.from_key).
            jmode = (priv | (dpriv << 2) | (sum_ << 4) | (mxr << 5) | (np.int64(dvm) << 6)
                     | (np.int64(dtlb) << 7) | (np.int64((st & MS_FS) != 0) << 8))
            jkey = jmode << JT_MODE_SHIFT
            if jthr > 0:
                jst = 1
                jfwd = 1
        if icount >= limit:
            s[ICOUNT] = icount
            s[PC] = pc
            if icount >= end:
                ex[EX_REASON] = EXIT_BUDGET
                return EXIT_BUDGET
            att = s[ATTENTION]
            if att != 0:
                s[ATTENTION] = 0
                if (att & 2) != 0:
                    ex[EX_REASON] = EXIT_BUDGET
                    return EXIT_BUDGET
            cause = pending_interrupt(s, c)
            if cause != 0:
                s[RESERVATION] = -1
                pc = take_trap(s, c, cause, 0, pc)
                recompute = True
                limit = icount
                continue
            # The budget and the timers are hard limits: both tiers stop exactly there. The
            # chunk's end only polls for other threads' news and is not visible to the guest.
            hard = next_deadline(s, c, icount, end)
            limit = hard
            if icount + CHUNK < limit:
                limit = icount + CHUNK
            if limit <= icount:
                limit = icount + 1

        # ---- fetch ---------------------------------------------------------------------
        if (pc >> 12) == fpage and (pc & 0xFFF) != 0xFFE:
            if jst == 1:
                # ---- translation tier: enter a compiled region here if there is one -----------
                jst = 0
                joff = foff + (pc & 0xFFF)
                jb = jt_slot(joff, jmode) * JT_W
                jgen = jpg[joff >> 12]
                if jt[jb] == (joff | jkey) and jt[jb + 2] == jgen:
                    fn = jt[jb + 1]
                    if fn != 0:
                        s[PC] = pc
                        s[ICOUNT] = icount
                        r = call_block(fn, s, c, tlb, ram8, jpg, limit)
                        pc = s[PC]
                        ran = s[ICOUNT] - icount
                        icount += ran
                        jq[JQ_CALLS] += 1
                        jq[JQ_INSNS] += ran
                        # Regions that keep running are compiled again at the optimizing level.
                        # (the word's top bits count another entry's misses: see below)
                        # Each region is credited with what it ran itself: the entered one up
                        # to its first chained exit, the last one chained into (the dispatcher
                        # names its slot) from there on. Crediting all to the entered region
                        # left code reached only by chaining at the first tier for good.
                        last = s[JIT_LAST]
                        if last != 0:
                            s[JIT_LAST] = 0
                            first = s[JIT_LAST_IC] - (icount - ran)
                            credit(jt, jq, jb, first, pc)
                            lb = (last - jq[JQ_XJT]) >> 3
                            if 0 <= lb <= len(jt) - JT_W and (lb & (JT_W - 1)) == 0:
                                credit(jt, jq, lb, ran - first, pc)
                        else:
                            credit(jt, jq, jb, ran, pc)
                        if r == JR_END:
                            jst = 1
                            jfwd = 0
                        elif r == JR_MODE:
                            # A CSR write in the region: as the interpreter does after one.
                            recompute = True
                            limit = 0
                            jst = 1
                        elif r == JR_SIDE:
                            jst = 2
                            jq[JQ_SIDE] += 1
                        else:
                            jq[JQ_LIMIT] += 1
                            if limit < hard:
                                # Only the chunk ended (the next block would cross it): poll
                                # now and re-enter at this block, rather than interpret up to
                                # the chunk's end and resume in the middle of the block.
                                limit = icount
                                jst = 1
                                jfwd = 0
                            else:
                                jst = 2
                        if jq[JQ_STEP] != 0:
                            ex[EX_REASON] = EXIT_BUDGET
                            return EXIT_BUDGET
                        continue
                else:
                    cnt = jt[jb + 3]
                    if cnt >= 0 and jt[jb] != (joff | jkey) and jt[jb + 1] != 0:
                        # The slot holds another region, whose hot count is the word's low bits.
                        # Our misses count in its top bits, kept while the resident runs: after
                        # CONTEND of them we take the slot. Counting from the hot count replaced
                        # the resident at once (two regions sharing a slot retranslated each
                        # other at every lookup); counting from 0 at each miss never did, and a
                        # hot user loop whose slot a kernel region held stayed interpreted.
                        misses = (cnt >> CONTEND_SHIFT) + 1
                        if misses < CONTEND:
                            jt[jb + 3] = (cnt & HOT_MASK) | (misses << CONTEND_SHIFT)
                            cnt = -1     # not yet
                        else:
                            cnt = 1 << 30   # take the slot now, at either tier's threshold
                    elif cnt < 0 and (jt[jb] != (joff | jkey) or jt[jb + 2] != jgen):
                        cnt = 0    # another entry's "nothing here" or back-off: not ours
                    if cnt == -1:
                        pass
                    else:
                        cnt += 1
                        jt[jb + 3] = cnt
                    if xthr > 0 and cnt >= xthr:
                        # Template tier: translate here and now (microseconds), enter at once.
                        # First mark the page (layout.py, jpg): from then on a store to it makes
                        # a new generation, so a store racing with the translation (another
                        # hart's) leaves it stale, never valid. Compare-and-swap, as another
                        # hart may bump the word meanwhile: an old value must not come back.
                        if (jgen & 1) == 0:
                            if cas(jpg, joff >> 12, jgen, jgen | 1) != jgen:
                                continue           # the page changed under us: next time
                            jgen = jgen | 1
                            host_fence()
                        if jq[JQ_XPOS] > len(xc) - X_MAX_CODE:
                            x_flush(jt, jq, xc)
                        xp = max(jq[JQ_XPOS], X_SCRATCH)
                        xs, xe = x_translate(xc, xp, ram16, rvc, foff, pc & 0xFFF, jmode, base,
                                             nram, jq[JQ_XFP], jq[JQ_XJT], jq[JQ_XBASE],
                                             jq[JQ_XJQ], jq[JQ_XCSR], jfwd != 0,
                                             jq[JQ_XFMA] != 0)
                        if xe > xp:
                            jq[JQ_XPOS] = (xe + 15) & ~15
                        if xe > xs:
                            jq[JQ_XN] += 1
                            jt[jb] = joff | jkey
                            jt[jb + 1] = jq[JQ_XBASE] + xs
                            jt[jb + 2] = jgen
                            jt[jb + 3] = 0
                            jst = 1
                            continue
                        # Nothing to translate at this entry: remember it as an entry with no
                        # code (key, generation, fn 0), so its lookups stop counting, and only
                        # its own: the mark once stayed on the slot for whatever hashed there
                        # later, new code in a reused page too, and kept that interpreted.
                        jt[jb] = joff | jkey
                        jt[jb + 1] = 0
                        jt[jb + 2] = jgen
                        jt[jb + 3] = -(1 << 40)
                    elif xthr == 0 and cnt >= jthr:
                        jt[jb + 3] = -(jthr << 4)  # back off until the request is served
                        n = jq[JQ_COUNT]
                        if n < JQ_CAP:
                            # From now on a store to the page invalidates (layout.py, jpg).
                            jgen = jgen | 1
                            jpg[joff >> 12] = jgen
                            e = JQ_HEAD + n * JQ_ENTRY
                            jq[e] = joff
                            jq[e + 1] = jmode
                            jq[e + 2] = pc
                            jq[e + 3] = jgen
                            jq[JQ_COUNT] = n + 1
                            if jq[JQ_FORCE] != 0:
                                s[PC] = pc
                                s[ICOUNT] = icount
                                ex[EX_REASON] = EXIT_BUDGET
                                return EXIT_BUDGET
            # foff was range-checked when fpage was set: an unsigned index spares numba's
            # negative-index wraparound on the hottest load of the loop.
            hw = np.uint64((foff + (pc & 0xFFF)) >> 1)
            lo = ram16[hw]
            if (lo & 3) != 3:
                inst = np.int64(rvc[lo])
                ilen = 2
                raw = np.int64(lo)
                if inst == 0:
                    s[ICOUNT] = icount
                    pc = take_trap(s, c, EXC_ILLEGAL, lo, pc)
                    recompute = True
                    end -= 1  # a trap uses budget too, so a trap loop still returns
                    limit = 0
                    continue
            else:
                inst = sext32(lo | (ram16[hw + np.uint64(1)] << 16))
                ilen = 4
                raw = 0
        else:
            if ftlb:
                idx = (pc >> 12) & TLB_MASK
                e = tlb[TLB_ENTRIES + idx]
                if (tlb[idx] == (pc >> 12) and (e & PTE_X) != 0 and (e & PTE_U) != forbid_fu):
                    pa = (e & ~0xFFF) | (pc & 0xFFF)
                    off = pa - base
                    if off >= 0 and off <= nram - 4096 and (pc & 0xFFF) != 0xFFE:
                        fpage = pc >> 12
                        foff = off - (pc & 0xFFF)
                        continue
            inst, ilen, cause, tval, page = fetch_slow(s, c, tlb, ram16, ram64, rom8, rvc, pc,
                                                       priv, fvm)
            raw = np.int64(tval)
            if cause >= 0:
                s[ICOUNT] = icount
                pc = take_trap(s, c, cause, tval, pc)
                recompute = True
                end -= 1  # a trap uses budget too, so a trap loop still returns
                limit = 0
                continue
            if inst == 0:
                s[ICOUNT] = icount
                pc = take_trap(s, c, EXC_ILLEGAL, tval, pc)
                recompute = True
                end -= 1  # a trap uses budget too, so a trap loop still returns
                limit = 0
                continue
            if page >= 0 and page <= nram - 4096:
                fpage = pc >> 12
                foff = page
                if jst == 1 and (pc & 0xFFF) != 0xFFE:
                    # A jump's target on a new page (untranslated fetch: M mode, no paging):
                    # look for its region first, as the TLB path above does, instead of
                    # running this instruction here and looking one instruction later.
                    continue

        npc = pc + ilen
        op = inst & 0x7F
        rd = (inst >> 7) & 31
        rs1 = (inst >> 15) & 31
        rs2 = (inst >> 20) & 31
        f3 = (inst >> 12) & 7
        illegal = False

        if op == 0x13:  # OP-IMM
            a = s[rs1]
            imm = inst >> 20
            if f3 == 0:
                v = a + imm
            elif f3 == 1:
                if (imm >> 6) != 0:
                    illegal = True
                v = a << (imm & 63)
            elif f3 == 2:
                v = 1 if a < imm else 0
            elif f3 == 3:
                v = 1 if ltu(a, imm) else 0
            elif f3 == 4:
                v = a ^ imm
            elif f3 == 5:
                sh = imm & 63
                hi = (imm >> 6) & 0x3F
                if hi == 0:
                    v = srl(a, sh)
                elif hi == 0x10:
                    v = a >> sh
                else:
                    illegal = True
                    v = 0
            elif f3 == 6:
                v = a | imm
            else:
                v = a & imm
            if not illegal:
                s[rd] = v
        elif op == 0x33:  # OP
            a = s[rs1]
            b = s[rs2]
            f7 = (inst >> 25) & 0x7F
            if f7 == 0:
                if f3 == 0:
                    v = a + b
                elif f3 == 1:
                    v = a << (b & 63)
                elif f3 == 2:
                    v = 1 if a < b else 0
                elif f3 == 3:
                    v = 1 if ltu(a, b) else 0
                elif f3 == 4:
                    v = a ^ b
                elif f3 == 5:
                    v = srl(a, b & 63)
                elif f3 == 6:
                    v = a | b
                else:
                    v = a & b
                s[rd] = v
            elif f7 == 0x20:
                if f3 == 0:
                    s[rd] = a - b
                elif f3 == 5:
                    s[rd] = a >> (b & 63)
                else:
                    illegal = True
            elif f7 == 1:  # M extension
                if f3 == 0:
                    v = a * b
                elif f3 == 1:
                    v = mulh(a, b)
                elif f3 == 2:
                    v = mulhsu(a, b)
                elif f3 == 3:
                    v = mulhu(a, b)
                elif f3 == 4:
                    v = div(a, b)
                elif f3 == 5:
                    v = divu(a, b)
                elif f3 == 6:
                    v = rem(a, b)
                else:
                    v = remu(a, b)
                s[rd] = v
            else:
                illegal = True
        elif op == 0x03 or op == 0x07:  # LOAD, LOAD-FP (flw, fld)
            addr = s[rs1] + (inst >> 20)
            size = 1 << (f3 & 3)
            fp = op == 0x07
            dest = rd
            if fp:
                dest = F0 + rd
                if (f3 != 2 and f3 != 3) or (c[CSR_MSTATUS] & MS_FS) == 0:
                    illegal = True
            elif f3 == 7:
                illegal = True
            if not illegal:
                hit = False
                pa = addr
                if dtlb:
                    idx = (addr >> 12) & TLB_MASK
                    e = tlb[TLB_ENTRIES + idx]
                    if tlb[idx] == (addr >> 12) and (e & rmask) != 0 and (e & PTE_U) != forbid_u:
                        pa = (e & ~0xFFF) | (addr & 0xFFF)
                        hit = True
                if dtlb and not hit:
                    pa, cause = translate(s, c, tlb, ram64, addr, ACC_LOAD, dpriv, sum_, mxr, dvm)
                    if cause >= 0:
                        s[ICOUNT] = icount
                        pc = take_trap(s, c, cause, addr, pc)
                        recompute = True
                        end -= 1  # a trap uses budget too, so a trap loop still returns
                        limit = 0
                        continue
                off = pa - base
                if off >= 0 and off <= nram - size and (off & (size - 1)) == 0:
                    if f3 == 3:
                        v = ram64[off >> 3]
                    elif f3 == 2:
                        v = ram32[off >> 2]
                    elif f3 == 6:
                        v = ram32[off >> 2] & 0xFFFFFFFF
                    elif f3 == 1:
                        v = ram16[off >> 1]
                        v = (v ^ 0x8000) - 0x8000
                    elif f3 == 5:
                        v = ram16[off >> 1]
                    elif f3 == 0:
                        v = ram8[off]
                        v = (v ^ 0x80) - 0x80
                    else:
                        v = ram8[off]
                    if fp:
                        if f3 == 2:
                            v = (v & 0xFFFFFFFF) | NAN_BOX  # flw NaN-boxes (spec 14.2)
                        c[CSR_MSTATUS] |= MS_FS
                    s[dest] = v
                elif (addr & (size - 1)) != 0:
                    if off >= 0 and off <= nram - size and (addr & 0xFFF) <= 4096 - size:
                        # Misaligned within one page: one translation covers every byte.
                        v = 0
                        for i in range(size):
                            v |= ram8[off + i] << (8 * i)
                    else:
                        v, cause, tval = load_bytes(s, c, tlb, ram8, ram64, addr, size, dpriv,
                                                    sum_, mxr, dvm)
                        if cause == -2:
                            cause = EXC_LOAD_ACCESS
                        if cause >= 0:
                            s[ICOUNT] = icount
                            pc = take_trap(s, c, cause, tval, pc)
                            recompute = True
                            end -= 1  # a trap uses budget too, so a trap loop still returns
                            limit = 0
                            continue
                    if fp:
                        if f3 == 2:
                            v = (v & 0xFFFFFFFF) | NAN_BOX
                        c[CSR_MSTATUS] |= MS_FS
                    elif f3 < 4 and size < 8:
                        sb = 1 << (8 * size - 1)
                        v = (v ^ sb) - sb
                    s[dest] = v
                else:
                    v = -1
                    if nirq and size == 4 and not fp and (pa & 3) == 0:
                        # The PLIC or an interrupt status register, served here
                        # (cpu/irqchip.py): lw sign-extends, lwu does not.
                        v = irq_load(pl, pa)
                    if v >= 0:
                        if f3 == 2:
                            v = (v ^ 0x80000000) - 0x80000000
                        s[dest] = v
                    else:
                        # Outside RAM: leave the core so the machine can call the device.
                        ex[EX_RD] = dest
                        if fp:
                            ex[EX_KIND] = KIND_FP_S if f3 == 2 else KIND_FP_D
                        else:
                            ex[EX_KIND] = KIND_UNSIGNED if f3 >= 4 else KIND_SIGNED
                        return mmio_exit(s, ex, pa, addr, size, 0, pc, npc, icount)
        elif op == 0x23 or op == 0x27:  # STORE, STORE-FP (fsw, fsd)
            addr = s[rs1] + (((inst >> 25) << 5) | ((inst >> 7) & 31))
            if op == 0x27 and ((f3 != 2 and f3 != 3) or (c[CSR_MSTATUS] & MS_FS) == 0):
                illegal = True
            elif f3 > 3:
                illegal = True
            else:
                size = 1 << f3
                val = s[rs2] if op == 0x23 else s[F0 + rs2]
                hit = False
                pa = addr
                if dtlb:
                    idx = (addr >> 12) & TLB_MASK
                    e = tlb[TLB_ENTRIES + idx]
                    if (tlb[idx] == (addr >> 12) and (e & (PTE_W | PTE_D)) == (PTE_W | PTE_D)
                            and (e & PTE_U) != forbid_u):
                        pa = (e & ~0xFFF) | (addr & 0xFFF)
                        hit = True
                if dtlb and not hit:
                    pa, cause = translate(s, c, tlb, ram64, addr, ACC_STORE, dpriv, sum_, mxr, dvm)
                    if cause >= 0:
                        s[ICOUNT] = icount
                        pc = take_trap(s, c, cause, addr, pc)
                        recompute = True
                        end -= 1  # a trap uses budget too, so a trap loop still returns
                        limit = 0
                        continue
                off = pa - base
                if off >= 0 and off <= nram - size and (off & (size - 1)) == 0:
                    if f3 == 3:
                        ram64[off >> 3] = val
                    elif f3 == 2:
                        ram32[off >> 2] = val
                    elif f3 == 1:
                        ram16[off >> 1] = val
                    else:
                        ram8[off] = val
                    if code_written(jpg, off):
                        jq[JQ_INVAL] += 1
                    if pa == tohost:
                        ex[EX_VALUE] = val
                        return retire_exit(s, ex, EXIT_HTIF, pc, npc, icount)
                elif (addr & (size - 1)) != 0:
                    if off >= 0 and off <= nram - size and (addr & 0xFFF) <= 4096 - size:
                        # Misaligned within one page: one translation covers every byte.
                        for i in range(size):
                            ram8[off + i] = (val >> (8 * i)) & 0xFF
                        if code_written(jpg, off) | code_written(jpg, off + size - 1):
                            jq[JQ_INVAL] += 1
                        cause = -1
                    else:
                        cause, tval = store_bytes(s, c, tlb, ram8, ram64, addr, size, val, dpriv,
                                                  sum_, mxr, dvm, jpg)
                    if cause == -2:
                        cause = EXC_STORE_ACCESS
                    if cause >= 0:
                        s[ICOUNT] = icount
                        pc = take_trap(s, c, cause, tval, pc)
                        recompute = True
                        end -= 1  # a trap uses budget too, so a trap loop still returns
                        limit = 0
                        continue
                elif nirq and size == 4 and (pa & 3) == 0 and irq_store(pl, pa, val) != IRQ_NOT_HERE:
                    pass  # a completion or acknowledgement made here (cpu/irqchip.py)
                else:
                    ex[EX_VALUE] = val
                    return mmio_exit(s, ex, pa, addr, size, 1, pc, npc, icount)
        elif op == 0x63:  # BRANCH
            a = s[rs1]
            b = s[rs2]
            if f3 == 0:
                t = a == b
            elif f3 == 1:
                t = a != b
            elif f3 == 4:
                t = a < b
            elif f3 == 5:
                t = a >= b
            elif f3 == 6:
                t = ltu(a, b)
            elif f3 == 7:
                t = not ltu(a, b)
            else:
                t = False
                illegal = True
            if t:
                imm = ((((inst >> 31) << 12) | (((inst >> 7) & 1) << 11)
                        | (((inst >> 25) & 0x3F) << 5) | (((inst >> 8) & 0xF) << 1)))
                npc = pc + imm
                if jthr > 0:
                    jst = 1
                    jfwd = 0
        elif op == 0x37:  # LUI
            s[rd] = (inst >> 12) << 12
        elif op == 0x17:  # AUIPC
            s[rd] = pc + ((inst >> 12) << 12)
        elif op == 0x6F:  # JAL
            imm = (((inst >> 31) << 20) | (((inst >> 12) & 0xFF) << 12)
                   | (((inst >> 20) & 1) << 11) | (((inst >> 21) & 0x3FF) << 1))
            s[rd] = npc
            npc = pc + imm
            if jthr > 0:
                jst = 1
                jfwd = 0
        elif op == 0x67:  # JALR
            if f3 != 0:
                illegal = True
            else:
                t = (s[rs1] + (inst >> 20)) & ~1
                s[rd] = npc
                npc = t
                if jthr > 0:
                    jst = 1
                    jfwd = 0
        elif op == 0x1B:  # OP-IMM-32
            a = s[rs1]
            imm = inst >> 20
            if f3 == 0:
                s[rd] = sext32(a + imm)
            elif f3 == 1:
                if (imm >> 5) != 0:
                    illegal = True
                else:
                    s[rd] = sext32(a << (imm & 31))
            elif f3 == 5:
                sh = imm & 31
                hi = (imm >> 5) & 0x7F
                if hi == 0:
                    s[rd] = sext32((a & 0xFFFFFFFF) >> sh)
                elif hi == 0x20:
                    s[rd] = sext32(a) >> sh
                else:
                    illegal = True
            else:
                illegal = True
        elif op == 0x3B:  # OP-32
            a = s[rs1]
            b = s[rs2]
            f7 = (inst >> 25) & 0x7F
            if f7 == 0:
                if f3 == 0:
                    s[rd] = sext32(a + b)
                elif f3 == 1:
                    s[rd] = sext32(a << (b & 31))
                elif f3 == 5:
                    s[rd] = sext32((a & 0xFFFFFFFF) >> (b & 31))
                else:
                    illegal = True
            elif f7 == 0x20:
                if f3 == 0:
                    s[rd] = sext32(a - b)
                elif f3 == 5:
                    s[rd] = sext32(a) >> (b & 31)
                else:
                    illegal = True
            elif f7 == 1:
                a32 = sext32(a)
                b32 = sext32(b)
                if f3 == 0:
                    s[rd] = sext32(a32 * b32)
                elif f3 == 4:
                    if b32 == 0:
                        s[rd] = -1
                    elif a32 == -(1 << 31) and b32 == -1:
                        s[rd] = a32
                    else:
                        s[rd] = sext32(div(a32, b32))
                elif f3 == 5:
                    ua = a & 0xFFFFFFFF
                    ub = b & 0xFFFFFFFF
                    s[rd] = -1 if ub == 0 else sext32(ua // ub)
                elif f3 == 6:
                    if b32 == 0:
                        s[rd] = a32
                    elif a32 == -(1 << 31) and b32 == -1:
                        s[rd] = 0
                    else:
                        s[rd] = sext32(rem(a32, b32))
                elif f3 == 7:
                    ua = a & 0xFFFFFFFF
                    ub = b & 0xFFFFFFFF
                    s[rd] = a32 if ub == 0 else sext32(ua % ub)
                else:
                    illegal = True
            else:
                illegal = True
        elif op == 0x2F:  # AMO (A extension)
            f5 = (inst >> 27) & 0x1F
            # Legal funct5 values (unpriv spec 8.4); illegal outranks address exceptions.
            if f3 != 2 and f3 != 3:
                illegal = True
            elif f5 == 2 and rs2 != 0:
                illegal = True
            elif not (f5 <= 4 or f5 == 8 or f5 == 12 or f5 == 16 or f5 == 20 or f5 == 24
                      or f5 == 28):
                illegal = True
            else:
                size = 4 if f3 == 2 else 8
                addr = s[rs1]
                acc = ACC_LOAD if f5 == 2 else ACC_STORE
                if (addr & (size - 1)) != 0:
                    s[ICOUNT] = icount
                    cause = EXC_LOAD_MISALIGNED if f5 == 2 else EXC_STORE_MISALIGNED
                    pc = take_trap(s, c, cause, addr, pc)
                    recompute = True
                    end -= 1  # a trap uses budget too, so a trap loop still returns
                    limit = 0
                    continue
                pa, cause = translate(s, c, tlb, ram64, addr, acc, dpriv, sum_, mxr,
                                      dvm)
                if cause >= 0:
                    s[ICOUNT] = icount
                    pc = take_trap(s, c, cause, addr, pc)
                    recompute = True
                    end -= 1  # a trap uses budget too, so a trap loop still returns
                    limit = 0
                    continue
                off = pa - base
                if off < 0 or off > nram - size:
                    s[ICOUNT] = icount
                    cause = EXC_LOAD_ACCESS if f5 == 2 else EXC_STORE_ACCESS
                    pc = take_trap(s, c, cause, addr, pc)
                    recompute = True
                    end -= 1  # a trap uses budget too, so a trap loop still returns
                    limit = 0
                    continue
                if f5 == 2:  # LR: reserve the (aligned) address, remember the value loaded
                    if size == 4:
                        old = np.int64(ram32[off >> 2])
                    else:
                        old = ram64[off >> 3]
                    s[RESERVATION] = pa
                    s[RES_VALUE] = old
                    s[rd] = old
                elif f5 == 3:
                    # SC (unpriv spec 8.2): succeeds only on a valid reservation for this address
                    # and, as in QEMU, only if the word still holds what LR loaded: one host
                    # cmpxchg, so a store by another hart (thread) in between makes it fail.
                    ok = False
                    if s[RESERVATION] == pa:
                        exp = s[RES_VALUE]
                        if size == 4:
                            ok = np.int64(cas(ram32, off >> 2, exp, s[rs2])) == exp
                        else:
                            ok = cas(ram64, off >> 3, exp, s[rs2]) == exp
                    if ok:
                        if code_written(jpg, off):
                            jq[JQ_INVAL] += 1
                        s[rd] = 0
                    else:
                        s[rd] = 1
                    s[RESERVATION] = -1
                else:
                    # AMOs (unpriv spec 8.4) as host atomic read-modify-writes (cpu/atomics.py):
                    # atomic with respect to the other harts' threads.
                    b = s[rs2]
                    if size == 4:
                        b = sext32(b)
                        ix = off >> 2
                        if f5 == 1:
                            old = np.int64(amo_swap(ram32, ix, b))
                        elif f5 == 0:
                            old = np.int64(amo_add(ram32, ix, b))
                        elif f5 == 4:
                            old = np.int64(amo_xor(ram32, ix, b))
                        elif f5 == 12:
                            old = np.int64(amo_and(ram32, ix, b))
                        elif f5 == 8:
                            old = np.int64(amo_or(ram32, ix, b))
                        elif f5 == 16:
                            old = np.int64(amo_min(ram32, ix, b))
                        elif f5 == 20:
                            old = np.int64(amo_max(ram32, ix, b))
                        elif f5 == 24:
                            old = np.int64(amo_minu(ram32, ix, b))
                        else:
                            old = np.int64(amo_maxu(ram32, ix, b))
                    else:
                        ix = off >> 3
                        if f5 == 1:
                            old = amo_swap(ram64, ix, b)
                        elif f5 == 0:
                            old = amo_add(ram64, ix, b)
                        elif f5 == 4:
                            old = amo_xor(ram64, ix, b)
                        elif f5 == 12:
                            old = amo_and(ram64, ix, b)
                        elif f5 == 8:
                            old = amo_or(ram64, ix, b)
                        elif f5 == 16:
                            old = amo_min(ram64, ix, b)
                        elif f5 == 20:
                            old = amo_max(ram64, ix, b)
                        elif f5 == 24:
                            old = amo_minu(ram64, ix, b)
                        else:
                            old = amo_maxu(ram64, ix, b)
                    if code_written(jpg, off):
                        jq[JQ_INVAL] += 1
                    s[rd] = old
        elif op == 0x53 or op == 0x43 or op == 0x47 or op == 0x4B or op == 0x4F:  # F and D
            mst = c[CSR_MSTATUS]
            if (mst & MS_FS) == 0:
                illegal = True  # FS = Off: FP instructions are illegal (priv spec 3.1.6.6)
            else:
                fcsr = c[CSR_FCSR]
                act, v, flags = fp_compute(inst, s[F0 + rs1], s[F0 + rs2], s[F0 + ((inst >> 27) & 31)],
                                           s[rs1], fcsr)
                if act == FP_WRITE_F:
                    s[F0 + rd] = v
                elif act == FP_WRITE_X:
                    s[rd] = v
                else:
                    illegal = True
                if not illegal:
                    # Store only what changes: most FP code keeps NX set and FS Dirty.
                    if (fcsr | flags) != fcsr:
                        c[CSR_FCSR] = fcsr | flags
                    if (mst & MS_FS) != MS_FS:
                        c[CSR_MSTATUS] = mst | MS_FS  # FP state changed: FS = Dirty
        elif op == 0x0F:  # MISC-MEM: fence, fence.i
            # The interpreter fetches from RAM every time, so fence.i needs nothing here. A FENCE
            # ordering earlier stores before later loads (pred W, succ R) is the one ordering
            # x86-TSO does not give: a host mfence then (docs/cpu.md "SMP memory model").
            if f3 > 1:
                illegal = True
            elif f3 == 0 and (inst & 0x01000000) != 0 and (inst & 0x00200000) != 0:
                host_fence()
        elif op == 0x73:  # SYSTEM
            if f3 == 0:
                f12 = (inst >> 20) & 0xFFF
                f7 = (inst >> 25) & 0x7F
                if f7 == 0x09 and rd == 0:  # sfence.vma
                    if priv == PRV_U or (priv == PRV_S and (c[CSR_MSTATUS] & MS_TVM) != 0):
                        illegal = True
                    elif rs1 != 0:
                        # Only the translations of the address in rs1 (priv spec 4.2.1; for
                        # any ASID, a superset of what rs2 selects): Linux does this ~100,000
                        # times a boot, and a full flush costs every hot page a new walk.
                        tlb_flush_page(tlb, s[rs1])
                        fpage = -1
                    else:
                        tlb_flush(tlb)
                        fpage = -1
                elif rs1 != 0 or rd != 0:
                    illegal = True
                elif f12 == 0:  # ecall
                    s[ICOUNT] = icount
                    pc = take_trap(s, c, EXC_ECALL_U + priv, 0, pc)
                    s[RESERVATION] = -1
                    recompute = True
                    end -= 1
                    limit = 0
                    continue
                elif f12 == 1:  # ebreak
                    s[ICOUNT] = icount
                    pc = take_trap(s, c, EXC_BREAKPOINT, pc, pc)
                    recompute = True
                    end -= 1  # a trap uses budget too, so a trap loop still returns
                    limit = 0
                    continue
                elif f12 == 0x302:  # mret
                    if priv != PRV_M:
                        illegal = True
                    else:
                        npc = mret(s, c)
                        recompute = True
                        limit = 0
                elif f12 == 0x102:  # sret
                    if priv == PRV_U or (priv == PRV_S and (c[CSR_MSTATUS] & MS_TSR) != 0):
                        illegal = True
                    else:
                        npc = sret(s, c)
                        recompute = True
                        limit = 0
                elif f12 == 0x105:  # wfi
                    if priv == PRV_U or (priv == PRV_S and (c[CSR_MSTATUS] & MS_TW) != 0):
                        illegal = True
                    else:
                        s[ICOUNT] = icount + 1  # first: the timer comparators read the time from it
                        if (read_mip(s, c) & c[CSR_MIE]) == 0:
                            return retire_exit(s, ex, EXIT_WFI, pc, npc, icount)
                        limit = 0
                else:
                    illegal = True
            elif f3 == 4:
                illegal = True
            else:
                s[ICOUNT] = icount
                s[PC] = pc
                r = csr_instruction(s, c, tlb, inst, priv)
                if r == CSR_ILLEGAL:
                    illegal = True
                elif r == CSR_OK_RECHECK:
                    recompute = True
                    limit = 0
        else:
            illegal = True

        if illegal:
            s[ICOUNT] = icount
            # tval holds the faulting encoding: 32 bits, or the original 16 for RVC (spec 3.1.16).
            tval = inst & 0xFFFFFFFF if ilen == 4 else raw
            pc = take_trap(s, c, EXC_ILLEGAL, tval, pc)
            recompute = True
            end -= 1  # a trap uses budget too, so a trap loop still returns
            limit = 0
            continue
        s[0] = 0
        pc = npc
        icount += 1
        if jst == 2:
            jst = 1
            jfwd = 1
