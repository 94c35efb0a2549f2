"""Arrays the core borrows for one call, without numba's reference counting.

numba passes an array to a helper it does not inline (the page walker, PMP, CSR and trap code)
with an atomic increment and decrement of the array's reference count: a `lock`ed instruction
per array per call, 7 % of a hart's time on a Debian python3 workload. The arrays `run`
receives live for the whole call (the caller holds them), so the core works on views that carry
no reference count (a null meminfo, which numba's NRT_incref/decref skip).
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def borrowed(typingctx, a):
    """The same array (data, shape, strides) with no meminfo and no parent object."""
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(a)(context, builder, value=args[0])
        out = context.make_array(a)(context, builder)
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        out.nitems = src.nitems
        out.itemsize = src.itemsize
        out.data = src.data
        out.shape = src.shape
        out.strides = src.strides
        return out._getvalue()

    return a(a), codegen
