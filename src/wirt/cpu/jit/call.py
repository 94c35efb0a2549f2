"""Calling generated code from the numba core: a function pointer read from a table.

The pointer is a run-time value (an int64 in the translation table), so the compiled core
stays cacheable (`cache=True`) and needs no recompile per block (DESIGN.md "translation tier").
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def call_block(typingctx, fn, s, c, tlb, ram8, jpg, limit):
    """`fn(s, c, tlb, ram, jpg, limit) -> int64`: run one translated region (see emit.py)."""
    sig = types.int64(fn, s, c, tlb, ram8, jpg, limit)

    def codegen(context, builder, signature, args):
        fnv, sv, cv, tv, rv, pv, lv = args
        ptrs = []
        for ty, v in zip(signature.args[1:6], (sv, cv, tv, rv, pv)):
            ary = context.make_array(ty)(context, builder, v)
            ptrs.append(builder.bitcast(ary.data, ir.IntType(8).as_pointer()))
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(64), [i8p] * 5 + [ir.IntType(64)])
        target = builder.inttoptr(fnv, fnty.as_pointer())
        return builder.call(target, ptrs + [lv])

    return sig, codegen

