"""Host atomic operations on guest RAM, for AMOs and SC across harts on several host threads.

Each function is a numba intrinsic that emits one LLVM `atomicrmw` or `cmpxchg` (sequentially
consistent) on an element of a numpy array, the same pattern as cpu/jit/call.py. On x86-64
they become `lock xadd` / `lock cmpxchg` / `xchg`, which are also full barriers (docs/cpu.md,
"SMP memory model"). The ops follow the A extension's AMOs (unprivileged spec 8.4).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["amo_swap", "amo_add", "amo_xor", "amo_and", "amo_or", "amo_min", "amo_max",
           "amo_minu", "amo_maxu", "cas", "host_fence"]


def _element(context, builder, aryty, ary, idx):
    """Pointer to ary[idx] (no bounds check: the core checked the RAM offset)."""
    a = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, a, [idx], wraparound=False)


def _rmw(op: str):
    """An intrinsic `f(ary, idx, value) -> old`: atomically ary[idx] = op(ary[idx], value)."""

    @intrinsic
    def rmw(typingctx, ary, idx, value):
        sig = ary.dtype(ary, idx, value)

        def codegen(context, builder, signature, args):
            aryv, idxv, val = args
            ptr = _element(context, builder, signature.args[0], aryv, idxv)
            lty = ptr.type.pointee
            v = context.cast(builder, val, signature.args[2], signature.args[0].dtype)
            if v.type != lty:
                v = builder.trunc(v, lty) if v.type.width > lty.width else builder.sext(v, lty)
            return builder.atomic_rmw(op, ptr, v, "seq_cst")

        return sig, codegen

    return rmw


amo_swap = _rmw("xchg")
amo_add = _rmw("add")
amo_xor = _rmw("xor")
amo_and = _rmw("and")
amo_or = _rmw("or")
amo_min = _rmw("min")
amo_max = _rmw("max")
amo_minu = _rmw("umin")
amo_maxu = _rmw("umax")


@intrinsic
def cas(typingctx, ary, idx, expected, value):
    """`cas(ary, idx, expected, value) -> old`: store value at ary[idx] if it holds expected."""
    sig = ary.dtype(ary, idx, expected, value)

    def codegen(context, builder, signature, args):
        aryv, idxv, exp, val = args
        ptr = _element(context, builder, signature.args[0], aryv, idxv)
        lty = ptr.type.pointee
        vals = []
        for v, ty in ((exp, signature.args[2]), (val, signature.args[3])):
            v = context.cast(builder, v, ty, signature.args[0].dtype)
            if v.type != lty:
                v = builder.trunc(v, lty) if v.type.width > lty.width else builder.sext(v, lty)
            vals.append(v)
        pair = builder.cmpxchg(ptr, vals[0], vals[1], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return sig, codegen


@intrinsic
def host_fence(typingctx):
    """A sequentially consistent host fence (`mfence` on x86-64): orders earlier stores
    before later loads, the one reordering x86-TSO allows and RVWMO's FENCE W,R forbids."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen
