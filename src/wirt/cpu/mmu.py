"""Address translation (Sv39/Sv48 page walks with hardware A/D updates), the software TLB and PMP.

Privileged spec 1.12 section 4.3.2 (virtual address translation process) and 3.7 (PMP).
Every physical address is checked against RAM before the page-table walker indexes RAM.
"""

import numpy as np
from numba import njit

from wirt.cpu.layout import (
    ACC_FETCH, ACC_LOAD, ACC_STORE, CSR_SATP, EXC_INSN_ACCESS, EXC_INSN_PAGE,
    EXC_LOAD_ACCESS, EXC_LOAD_PAGE, EXC_STORE_ACCESS, EXC_STORE_PAGE, PRV_M, PRV_U, PTE_A, PTE_D,
    PMP_ACTIVE, PMP_CFG, PMP_HI, PMP_LO, PRV_S, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X, RAM_BASE, RAM_SIZE, TLB_ENTRIES, TLB_SIZE, TLB_SP_HI, TLB_SP_LO,
)

TLB_MASK = TLB_ENTRIES - 1
SP_NONE_LO = (1 << 63) - 1      # superpage bounds when none is filled: no page is between
SP_NONE_HI = -(1 << 63)
PPN_MASK = (1 << 44) - 1


@njit(cache=True, nogil=True)
def tlb_flush(tlb):
    """Forget every cached translation (sfence.vma, satp writes).

    -1 is also the tag of the top page of the address space (vaddr >> 12 == -1), which can
    only sit in the last slot: that slot's data word is cleared too, so a lookup there finds
    no permissions instead of a flushed entry's physical page. (Clearing every data word
    doubles the stores of a flush, which a Linux boot does ~100,000 times.)"""
    for i in range(TLB_ENTRIES):
        tlb[i] = -1
    tlb[TLB_ENTRIES + TLB_MASK] = 0
    tlb[TLB_SP_LO] = SP_NONE_LO
    tlb[TLB_SP_HI] = SP_NONE_HI


@njit(cache=True, nogil=True)
def tlb_flush_page(tlb, vaddr):
    """Forget the cached translations of one virtual address (sfence.vma with rs1 != x0):
    its 4 KiB entry, and every entry filled from the same superpage leaf PTE (the level is
    kept in bits 8-9 of an entry's data word), since that leaf maps the address too. Those
    are looked for only when the address lies between the superpages filled since the last
    flush (QEMU keeps the same bounds): Linux flushes user pages one by one, ~100,000 times
    a boot, and its superpages are the kernel's."""
    vpn = vaddr >> 12
    idx = vpn & TLB_MASK
    if tlb[idx] == vpn:
        tlb[idx] = -1
        tlb[TLB_ENTRIES + idx] = 0
    if vpn < tlb[TLB_SP_LO] or vpn > tlb[TLB_SP_HI]:
        return
    for i in range(TLB_ENTRIES):
        lvl = (tlb[TLB_ENTRIES + i] >> 8) & 3
        if lvl != 0 and (tlb[i] >> (9 * lvl)) == (vpn >> (9 * lvl)):
            tlb[i] = -1
            tlb[TLB_ENTRIES + i] = 0


@njit(cache=True, nogil=True)
def page_fault_cause(acc):
    if acc == ACC_FETCH:
        return EXC_INSN_PAGE
    if acc == ACC_STORE:
        return EXC_STORE_PAGE
    return EXC_LOAD_PAGE


@njit(cache=True, nogil=True)
def access_fault_cause(acc):
    if acc == ACC_FETCH:
        return EXC_INSN_ACCESS
    if acc == ACC_STORE:
        return EXC_STORE_ACCESS
    return EXC_LOAD_ACCESS


@njit(cache=True, nogil=True)
def pmp_allows(s, paddr, size, acc, priv):
    """PMP check (priv spec 3.7.1) on the ranges decoded by `csr.update_pmp`: the lowest-
    numbered matching entry decides; S/U accesses that match no entry fail when any entry is
    enabled. M-mode accesses are only checked against locked entries."""
    for i in range(16):
        cfg = s[PMP_CFG + i]
        if cfg == 0:
            continue
        lo = s[PMP_LO + i]
        hi = s[PMP_HI + i]
        if paddr >= lo and paddr + size <= hi:
            if priv == PRV_M and (cfg & 0x80) == 0:
                return True
            if acc == ACC_FETCH:
                return (cfg & 4) != 0
            if acc == ACC_STORE:
                return (cfg & 2) != 0
            return (cfg & 1) != 0
        if paddr < hi and paddr + size > lo:
            return False  # partial match fails (priv spec 3.7.1.1)
    return priv == PRV_M


@njit(cache=True, nogil=True)
def walk(s, c, ram64, tlb, vaddr, acc, priv, sum_, mxr):
    """Translate vaddr for an access of type acc at effective privilege priv.

    Returns (physical address, cause): cause is -1 on success, else the exception code.
    On success the 4 KiB translation is cached in the TLB with its PTE flags.
    """
    satp = c[CSR_SATP]
    mode = (satp >> 60) & 0xF
    if mode == 8:
        levels = 3
    else:
        levels = 4
    va_bits = 12 + 9 * levels
    # Virtual addresses must be sign-extended from bit va_bits-1 (spec 4.4.1, 4.5.1).
    top = vaddr >> (va_bits - 1)
    if top != 0 and top != -1:
        return 0, page_fault_cause(acc)
    base = s[RAM_BASE]
    size = s[RAM_SIZE]
    a = (satp & PPN_MASK) << 12
    for lvl in range(levels - 1, -1, -1):
        vpn = (vaddr >> (12 + 9 * lvl)) & 0x1FF
        pte_addr = a + vpn * 8
        off = pte_addr - base
        if off < 0 or off > size - 8:
            return 0, access_fault_cause(acc)
        if s[PMP_ACTIVE] != 0 and not pmp_allows(s, pte_addr, 8, ACC_LOAD, PRV_S):
            return 0, access_fault_cause(acc)
        pte = ram64[off >> 3]
        if (pte & PTE_V) == 0 or ((pte & PTE_R) == 0 and (pte & PTE_W) != 0):
            return 0, page_fault_cause(acc)
        # Bits 63..54 (N, PBMT, reserved) must be zero without Svnapot/Svpbmt.
        if (pte >> 54) != 0:
            return 0, page_fault_cause(acc)
        if (pte & (PTE_R | PTE_X)) == 0:
            if lvl == 0:
                return 0, page_fault_cause(acc)
            if (pte & (PTE_D | PTE_A | PTE_U)) != 0:
                return 0, page_fault_cause(acc)  # non-leaf PTE with leaf-only bits (4.3.2 step 4)
            a = ((pte >> 10) & PPN_MASK) << 12
            continue
        # Leaf: permission checks (4.3.2 step 5).
        if acc == ACC_FETCH:
            ok = (pte & PTE_X) != 0
            if priv == PRV_U:
                ok = ok and (pte & PTE_U) != 0
            else:
                ok = ok and (pte & PTE_U) == 0
        else:
            if acc == ACC_STORE:
                ok = (pte & PTE_W) != 0
            else:
                ok = (pte & PTE_R) != 0 or (mxr and (pte & PTE_X) != 0)
            if priv == PRV_U:
                ok = ok and (pte & PTE_U) != 0
            elif (pte & PTE_U) != 0 and not sum_:
                ok = False
        if not ok:
            return 0, page_fault_cause(acc)
        ppn = (pte >> 10) & PPN_MASK
        if lvl > 0 and (ppn & ((1 << (9 * lvl)) - 1)) != 0:
            return 0, page_fault_cause(acc)  # misaligned superpage (step 6)
        # Hardware A/D update (step 7): done as one store of the PTE word, which is atomic
        # with respect to this single hart.
        newpte = pte | PTE_A
        if acc == ACC_STORE:
            newpte |= PTE_D
        if newpte != pte:
            ram64[off >> 3] = newpte
        low_mask = (1 << (12 + 9 * lvl)) - 1
        phys = ((ppn << 12) & ~low_mask) | (vaddr & low_mask)
        if s[PMP_ACTIVE] != 0 and priv != PRV_M and not pmp_allows(s, phys & ~0xFFF, 4096, acc, priv):
            return 0, access_fault_cause(acc)
        idx = (vaddr >> 12) & TLB_MASK
        tlb[idx] = vaddr >> 12
        tlb[TLB_ENTRIES + idx] = (phys & ~0xFFF) | (newpte & 0xFF) | (lvl << 8)
        if lvl > 0:
            first = (vaddr >> (12 + 9 * lvl)) << (9 * lvl)      # the superpage's page numbers
            if first < tlb[TLB_SP_LO]:
                tlb[TLB_SP_LO] = first
            if first + (1 << (9 * lvl)) - 1 > tlb[TLB_SP_HI]:
                tlb[TLB_SP_HI] = first + (1 << (9 * lvl)) - 1
        return phys, -1
    return 0, page_fault_cause(acc)


@njit(cache=True, nogil=True)
def pmp_fill(s, tlb, addr, acc, priv):
    """Untranslated S/U access with PMP on: check it, and cache the page's PMP permissions in
    the TLB as an identity mapping so later accesses to the page need no PMP walk.

    Returns the exception cause, or -1 when allowed.
    """
    page = addr & ~0xFFF
    flags = PTE_V | PTE_A | PTE_D
    if pmp_allows(s, page, 4096, ACC_LOAD, priv):
        flags |= PTE_R
    if pmp_allows(s, page, 4096, ACC_STORE, priv):
        flags |= PTE_W
    if pmp_allows(s, page, 4096, ACC_FETCH, priv):
        flags |= PTE_X
    if priv == PRV_U:
        flags |= PTE_U  # matches the U-bit rule a hit applies in U mode
    need = PTE_X if acc == ACC_FETCH else (PTE_W if acc == ACC_STORE else PTE_R)
    if (flags & need) == 0:
        # The page is not uniformly allowed: decide this access alone, cache nothing.
        if pmp_allows(s, addr, 1, acc, priv):
            return -1
        return access_fault_cause(acc)
    idx = (addr >> 12) & TLB_MASK
    tlb[idx] = addr >> 12
    tlb[TLB_ENTRIES + idx] = page | flags
    return -1


def new_tlb() -> np.ndarray:
    """An empty TLB array (tags, data, superpage bounds)."""
    t = np.zeros(TLB_SIZE, dtype=np.int64)
    reset_tlb(t)
    return t


def reset_tlb(t: np.ndarray) -> None:
    """Empty a TLB array in place (hart reset, state restore): data words too (see tlb_flush)."""
    t[:] = 0
    t[:TLB_ENTRIES] = -1
    t[TLB_SP_LO] = SP_NONE_LO
    t[TLB_SP_HI] = SP_NONE_HI
