"""Zicsr instructions for translated code: one C-callable function over the state arrays.

Template regions (jit/x64) call it for csrrw/csrrs/csrrc and their immediate forms instead of
leaving to the interpreter: the kernel's trap entry and exit, and its interrupt enable and
disable, are full of them. It runs exactly the interpreter's code (csr.csr_instruction), with
s[PC] and s[ICOUNT] written by the caller first (the counters read from ICOUNT).
"""

from numba import carray, cfunc, types

from wirt.cpu.csr import CSR_OK, CSR_OK_RECHECK, csr_instruction
from wirt.cpu.layout import (
    CSR_MCAUSE, CSR_MEPC, CSR_MSCRATCH, CSR_MSTATUS, CSR_MTVAL, CSR_SCAUSE, CSR_SEPC, CSR_SSCRATCH,
    CSR_SSTATUS, CSR_STVAL, MS_FS, MS_MIE, MS_MPRV, MS_MXR, MS_SIE, MS_SUM, PRIV, S_SIZE,
    TLB_SIZE,
)

# mstatus bits the translation mode depends on (core.run's jmode)
_MODE_BITS = MS_MPRV | MS_SUM | MS_MXR | MS_FS

_SIG = types.int64(types.CPointer(types.int64), types.CPointer(types.int64),
                   types.CPointer(types.int64), types.int64)


@cfunc(_SIG, cache=True, nopython=True, nogil=True)
def csr_exec(sp, cp, tp, inst):
    """Execute CSR instruction `inst` on the hart's arrays; returns csr.CSR_OK, CSR_ILLEGAL
    (nothing written: the interpreter raises the exception) or CSR_OK_RECHECK (the write may
    have changed the translation mode or enabled an interrupt: the core must look)."""
    s = carray(sp, (S_SIZE,))
    c = carray(cp, (4096,))
    tlb = carray(tp, (TLB_SIZE,))
    before = c[CSR_MSTATUS]
    r = csr_instruction(s, c, tlb, inst, s[PRIV])
    if r != CSR_OK_RECHECK:
        return r
    # The core needs to look again only if the write can change what it caches: most of the
    # kernel's writes are to scratch and trap registers, or disable interrupts, or prepare
    # SPP/SPIE for an sret; none of those changes the mode or makes an interrupt takeable.
    csr = (inst >> 20) & 0xFFF
    if (csr == CSR_SSCRATCH or csr == CSR_SEPC or csr == CSR_SCAUSE or csr == CSR_STVAL
            or csr == CSR_MSCRATCH or csr == CSR_MEPC or csr == CSR_MCAUSE or csr == CSR_MTVAL):
        return CSR_OK
    if csr == CSR_SSTATUS or csr == CSR_MSTATUS:
        diff = before ^ c[CSR_MSTATUS]
        if (diff & _MODE_BITS) == 0 and (diff & c[CSR_MSTATUS] & (MS_SIE | MS_MIE)) == 0:
            return CSR_OK
    return r
