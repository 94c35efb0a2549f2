"""The PLIC's state machine on a shared int64 array `pl` (layout.PL_*): the core serves the
guest's claims and completions itself, and devices/plic.py is the same machine seen from
Python (device lines, the other registers, snapshots).

Why in the core: an interrupt costs the guest kernel two claims (the second finds nothing), a
completion and, with Linux, a read of an enable word, each an MMIO exit through Python of about
2 us, plus the caches Python's exit path evicts; KVM keeps its interrupt controllers in the
kernel for the same reason. All state is in `pl`, changed only under its spinlock (`PL_LOCK`),
from hart threads without the GIL and from device threads through Python.

The same goes for the interrupt status registers bound to a source (virtio-mmio's
InterruptStatus, read at every interrupt, and InterruptACK, written: two more exits): their
bits live in `pl` too (PL_STATUS), the source's line is high while any is set, and an
acknowledgement only clears bits, so only lowers a line.

The model is the one devices/plic.py documents: level-triggered sources, a gateway that holds a
claimed source until completion (RISC-V PLIC specification v1.0.0, "Interrupt Gateways",
"Interrupt Claim Process", "Interrupt Completion"), ties to the lowest id. Each context's
notification (PL_OUT) is also written into its hart's s[EXT_IP] (MEIP for context 2h, SEIP for
2h+1), where read_mip finds it. A change that raises some hart's line returns a mask of those
harts, so the caller can wake them (only Python can: the core refuses such changes, see
`write32`).
"""

from numba import njit

from wirt.cpu.atomics import amo_swap, cas
from wirt.cpu.borrow import int64_at
from wirt.cpu.layout import (
    EXT_IP, MIP_MEIP, MIP_SEIP, PL_BASE, PL_BITS, PL_CLAIMED, PL_ENABLE, PL_HART_S, PL_LEVEL, PL_LOCK,
    PL_NCTX, PL_NDEV, PL_NHART, PL_NSTATUS, PL_OUT, PL_PENDING, PL_PMASK, PL_PRIORITY, PL_STATUS,
    PL_STATUS_W, PL_THRESHOLD, PL_WINDOW, PLIC_CONTEXT_BASE,
    PLIC_CONTEXT_STRIDE, PLIC_ENABLE_BASE, PLIC_ENABLE_STRIDE, PLIC_PENDING_BASE, S_SIZE,
)

__all__ = ["lock", "unlock", "update", "set_source", "status_change", "read32", "write32", "core_load",
           "core_store", "NOT_HERE"]

#: write32's answer to the core for a write only Python may make (it may raise a line)
NOT_HERE = -1


@njit(cache=True, nogil=True)
def lock(pl):
    """Take the spinlock (holders never block while holding it: a few hundred ns at most)."""
    while cas(pl, PL_LOCK, 0, 1) != 0:
        pass


@njit(cache=True, nogil=True)
def unlock(pl):
    amo_swap(pl, PL_LOCK, 0)


@njit(cache=True, nogil=True)
def _best(pl, ctx, threshold):
    """Highest-priority enabled pending source above `threshold` (ties: lowest id), or 0."""
    best = 0
    best_prio = threshold
    words = (pl[PL_NDEV] >> 5) + 1
    en = PL_ENABLE + ctx * PL_BITS
    for w in range(words):
        cand = pl[PL_PENDING + w] & pl[en + w]
        if cand == 0:
            continue
        for b in range(32):
            if (cand >> b) & 1:
                p = pl[PL_PRIORITY + 32 * w + b]
                if p > best_prio:  # strict '>' keeps the lowest id on ties
                    best = 32 * w + b
                    best_prio = p
    return best


@njit(cache=True, nogil=True)
def update(pl):
    """Recompute every context's notification and the harts' EXT_IP words (lock held);
    returns the mask of harts whose EXT_IP gained a bit."""
    nctx = pl[PL_NCTX]
    for ctx in range(nctx):
        pl[PL_OUT + ctx] = 1 if _best(pl, ctx, pl[PL_THRESHOLD + ctx]) != 0 else 0
    rose = 0
    for h in range(pl[PL_NHART]):
        addr = pl[PL_HART_S + h]
        if addr == 0 or 2 * h + 1 >= nctx:
            continue
        v = (MIP_MEIP if pl[PL_OUT + 2 * h] != 0 else 0) | (MIP_SEIP if pl[PL_OUT + 2 * h + 1] != 0 else 0)
        s = int64_at(addr, S_SIZE)
        old = s[EXT_IP]
        if v != old:
            s[EXT_IP] = v
            if (v & ~old) != 0:
                rose |= 1 << h
    return rose


@njit(cache=True, nogil=True)
def _drive(pl, src, level):
    """The gateway (lock held): source `src`'s line is now `level` (0 or 1); returns whether
    the notifications must be recomputed (they depend on pending, not on the level)."""
    w = PL_PENDING + (src >> 5)
    bit = 1 << (src & 31)
    before = pl[w]
    if level != 0:
        pl[PL_LEVEL + (src >> 5)] |= bit
        if (pl[PL_CLAIMED + (src >> 5)] & bit) == 0:
            pl[w] |= bit
    else:
        pl[PL_LEVEL + (src >> 5)] &= ~bit
        pl[w] &= ~bit  # withdrawn before it was claimed
    return pl[w] != before


@njit(cache=True, nogil=True)
def set_source(pl, src, level):
    """Gateway input: source `src`'s line is now `level` (0 or 1). Returns the harts raised."""
    lock(pl)
    rose = update(pl) if _drive(pl, src, level) else 0
    unlock(pl)
    return rose


@njit(cache=True, nogil=True)
def status_change(pl, i, set_bits, clear_bits):
    """Status register i's bits become (bits & ~clear_bits) | set_bits, and its source's line
    follows (high while any bit is set). Returns the harts raised (none when only clearing)."""
    e = PL_STATUS + i * PL_STATUS_W
    lock(pl)
    v = (pl[e + 1] & ~clear_bits) | set_bits
    pl[e + 1] = v
    rose = update(pl) if _drive(pl, pl[e + 2], 1 if v != 0 else 0) else 0
    unlock(pl)
    return rose


@njit(cache=True, nogil=True)
def core_load(pl, pa):
    """A 32-bit load at guest physical address `pa` (aligned) that the core serves: a PLIC
    register, or a bound interrupt status register; -1 for anything else (an exit)."""
    base = pl[PL_BASE]
    if base != 0 and pa >= base and pa - base < pl[PL_WINDOW]:
        return read32(pl, pa - base)
    for i in range(pl[PL_NSTATUS]):
        e = PL_STATUS + i * PL_STATUS_W
        if pa == pl[e]:
            return pl[e + 1]
    return -1


@njit(cache=True, nogil=True)
def core_store(pl, pa, value):
    """A 32-bit store at `pa` (aligned) from a hart's core: a PLIC write that cannot raise a
    line (write32), or an acknowledgement (a write 4 bytes above a bound status register:
    virtio-mmio's InterruptACK clears the bits written). NOT_HERE, nothing changed: an exit."""
    base = pl[PL_BASE]
    if base != 0 and pa >= base and pa - base < pl[PL_WINDOW]:
        return write32(pl, pa - base, value, True)
    for i in range(pl[PL_NSTATUS]):
        if pa == pl[PL_STATUS + i * PL_STATUS_W] + 4:
            return status_change(pl, i, 0, value & 0xFFFFFFFF)
    return NOT_HERE


@njit(cache=True, nogil=True)
def _claim(pl, ctx):
    """Claim for context `ctx`: the id or 0. The claim ignores the threshold, but priority-0
    sources never interrupt. Notifications only fall."""
    lock(pl)
    src = _best(pl, ctx, 0)
    if src != 0:
        bit = 1 << (src & 31)
        pl[PL_PENDING + (src >> 5)] &= ~bit
        pl[PL_CLAIMED + (src >> 5)] |= bit
        update(pl)
    unlock(pl)
    return src


@njit(cache=True, nogil=True)
def read32(pl, off):
    """The 32-bit register at offset `off` of the window (a claim claims)."""
    nctx = pl[PL_NCTX]
    if off >= PLIC_CONTEXT_BASE:
        ctx = (off - PLIC_CONTEXT_BASE) // PLIC_CONTEXT_STRIDE
        reg = (off - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE
        if ctx >= nctx:
            return 0
        if reg == 4:
            return _claim(pl, ctx)
        if reg == 0:
            return pl[PL_THRESHOLD + ctx]
        return 0
    if off < PLIC_PENDING_BASE:
        src = off >> 2
        return pl[PL_PRIORITY + src] if src <= pl[PL_NDEV] else 0
    if off < PLIC_ENABLE_BASE:
        w = (off - PLIC_PENDING_BASE) >> 2
        return pl[PL_PENDING + w] if w < PL_BITS else 0
    ctx = (off - PLIC_ENABLE_BASE) // PLIC_ENABLE_STRIDE
    w = ((off - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >> 2
    if ctx >= nctx or w >= PL_BITS:
        return 0
    return pl[PL_ENABLE + ctx * PL_BITS + w]


@njit(cache=True, nogil=True)
def _valid(pl, w):
    """The bits of source word w that exist (sources 1..ndev; source 0 is reserved)."""
    lo = 32 * w
    n = pl[PL_NDEV] + 1 - lo  # sources of this word that exist, counted from bit 0
    if n <= 0:
        return 0
    v = 0xFFFFFFFF if n >= 32 else (1 << n) - 1
    return v & ~1 if w == 0 else v


@njit(cache=True, nogil=True)
def _set(pl, index, value):
    """A threshold, priority or enable word changed: store it and re-evaluate the outputs under
    the lock; the contexts whose line rose (see update)."""
    lock(pl)
    pl[index] = value
    rose = update(pl)
    unlock(pl)
    return rose


@njit(cache=True, nogil=True)
def write32(pl, off, value, core):
    """Write the 32-bit register at `off`; returns the harts whose line rose. With `core` set
    (a hart thread, which cannot wake another), only a completion whose source's line is low
    is made, and NOT_HERE is returned, with nothing changed, for every other write."""
    nctx = pl[PL_NCTX]
    value &= 0xFFFFFFFF
    if off >= PLIC_CONTEXT_BASE:
        ctx = (off - PLIC_CONTEXT_BASE) // PLIC_CONTEXT_STRIDE
        reg = (off - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE
        if ctx >= nctx or (reg != 0 and reg != 4):
            return 0
        if reg == 0:
            if core:
                return NOT_HERE
            return _set(pl, PL_THRESHOLD + ctx, value & pl[PL_PMASK])
        # completion: ignored unless the source is enabled for the context
        src = value
        if src < 1 or src > pl[PL_NDEV]:
            return 0
        w = src >> 5
        bit = 1 << (src & 31)
        rose = 0
        lock(pl)
        if (pl[PL_ENABLE + ctx * PL_BITS + w] & bit) != 0:
            if (pl[PL_LEVEL + w] & bit) != 0:
                # still asserted: pending again at once, which may raise a line
                if core:
                    unlock(pl)
                    return NOT_HERE
                pl[PL_CLAIMED + w] &= ~bit
                pl[PL_PENDING + w] |= bit
                rose = update(pl)
            else:
                pl[PL_CLAIMED + w] &= ~bit
        unlock(pl)
        return rose
    if off < PLIC_PENDING_BASE:
        src = off >> 2
        if src < 1 or src > pl[PL_NDEV]:
            return 0
        if core:
            return NOT_HERE
        return _set(pl, PL_PRIORITY + src, value & pl[PL_PMASK])
    if off < PLIC_ENABLE_BASE:
        return 0  # pending bits are read-only
    ctx = (off - PLIC_ENABLE_BASE) // PLIC_ENABLE_STRIDE
    w = ((off - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >> 2
    if ctx >= nctx or w >= PL_BITS:
        return 0
    if core:
        return NOT_HERE
    return _set(pl, PL_ENABLE + ctx * PL_BITS + w, value & _valid(pl, w))
