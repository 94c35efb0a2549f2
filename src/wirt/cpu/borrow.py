"""Arrays the core borrows for one call: made from host addresses, without reference counts.

The core's caller (cpu/hart.py) owns every array and holds it for the whole call, and passes
the core one int64: the address of a small table of (address, length) pairs, one for each array
(layout.RUN_ARRAYS gives their order). Two reasons:

- numba converts each array argument on entry (0.03 us an array: 0.54 us for 14 arrays against
  0.14 us for two integers), and the core is entered again at every MMIO exit, tens of
  thousands of times a second under I/O;
- arrays made here carry no meminfo, so numba passes them to the helpers it does not inline
  (the page walker, PMP, CSR and trap code) without the atomic increment and decrement of a
  reference count per array per call, which cost 7 % of a hart's time on a Debian python3
  workload.

Only the caller can make this safe: the table must describe live, C-contiguous arrays of the
dtypes named here (Hart._pack builds it from the arrays themselves).
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array


def _array_at(dtype: types.Type):
    """An intrinsic `f(address, length)`: the 1-D C-contiguous `dtype` array of `length`
    items at host `address`, with no meminfo and no parent object."""
    arr_t = types.Array(dtype, 1, "C")

    @intrinsic
    def at(typingctx, address, length):
        if not isinstance(address, types.Integer) or not isinstance(length, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            addr = context.cast(builder, args[0], signature.args[0], types.intp)
            n = context.cast(builder, args[1], signature.args[1], types.intp)
            out = context.make_array(arr_t)(context, builder)
            item = context.get_data_type(dtype)
            size = context.get_constant(types.intp, context.get_abi_sizeof(item))
            populate_array(out, data=builder.inttoptr(addr, item.as_pointer()),
                           shape=cgutils.pack_array(builder, [n]),
                           strides=cgutils.pack_array(builder, [size]),
                           itemsize=size, meminfo=None)
            return out._getvalue()

        return arr_t(address, length), codegen

    return at


int64_at = _array_at(types.int64)
int32_at = _array_at(types.int32)
uint16_at = _array_at(types.uint16)
uint8_at = _array_at(types.uint8)
