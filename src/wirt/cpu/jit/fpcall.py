"""F and D arithmetic for translated code: one C-callable function over the state arrays.

Translated regions call it for every OP-FP and fused multiply-add instruction instead of
leaving to the interpreter, so FP loops stay in generated code. It runs exactly the
interpreter's code (fpu.fp_compute, exact IEEE 754 in all rounding modes) and commits the
same way: the destination register, fcsr's new flags, mstatus.FS = Dirty.
"""

from numba import carray, cfunc, types

from wirt.cpu.fpu import FP_WRITE_F, FP_WRITE_X, fp_compute
from wirt.cpu.layout import CSR_FCSR, CSR_MSTATUS, F0, MS_FS, S_SIZE

_SIG = types.int64(types.CPointer(types.int64), types.CPointer(types.int64), types.int64)


@cfunc(_SIG, cache=True, nopython=True, nogil=True)
def fp_exec(sp, cp, inst):
    """Execute FP instruction `inst` on the hart's arrays; 1 if it is illegal (nothing written),
    0 otherwise. The caller has checked mstatus.FS != Off (part of the region's mode)."""
    s = carray(sp, (S_SIZE,))
    c = carray(cp, (4096,))
    rd = (inst >> 7) & 31
    rs1 = (inst >> 15) & 31
    rs2 = (inst >> 20) & 31
    fcsr = c[CSR_FCSR]
    act, v, flags = fp_compute(inst, s[F0 + rs1], s[F0 + rs2], s[F0 + ((inst >> 27) & 31)],
                               s[rs1], fcsr)
    if act == FP_WRITE_F:
        s[F0 + rd] = v
    elif act == FP_WRITE_X:
        if rd != 0:
            s[rd] = v
    else:
        return 1
    if (fcsr | flags) != fcsr:
        c[CSR_FCSR] = fcsr | flags
    mst = c[CSR_MSTATUS]
    if (mst & MS_FS) != MS_FS:
        c[CSR_MSTATUS] = mst | MS_FS
    return 0
