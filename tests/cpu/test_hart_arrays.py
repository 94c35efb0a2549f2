"""The table of arrays the core is entered with (Hart._pack, cpu/borrow.py): the core trusts
it, so only arrays of the dtype, shape and layout it assumes may get into it."""

from __future__ import annotations

import numpy as np
import pytest

from wirt.cpu import layout as L
from wirt.cpu.hart import Hart


def _hart() -> Hart:
    return Hart(np.zeros(1 << 16, dtype=np.uint8), jit="off")


def test_table_describes_the_arrays() -> None:
    h = _hart()
    table = np.frombuffer((h._arrays[0]).data, dtype=np.int64)
    for i, name in enumerate(L.RUN_ARRAYS):
        if name == "rvc":
            continue
        a = getattr(h, name)
        assert table[2 * i] == a.ctypes.data and table[2 * i + 1] == len(a), name


@pytest.mark.parametrize("name, bad", [
    ("ex", np.zeros(L.EX_SIZE, dtype=np.int32)),              # another dtype
    ("tlb", np.zeros((2, 4), dtype=np.int64)),                 # another shape
    ("s", np.zeros(2 * L.S_SIZE, dtype=np.int64)[::2]),        # not contiguous
])
def test_an_array_the_core_would_misread_is_refused(name: str, bad: np.ndarray) -> None:
    h = _hart()
    setattr(h, name, bad)
    with pytest.raises(ValueError, match=name):
        h._pack()


def test_a_run_reads_through_the_table() -> None:
    """Registers written in the state array are what the core computes with: addi a0, a0, 1."""
    h = _hart()
    h.ram8[0:4] = np.frombuffer((0x00150513).to_bytes(4, "little"), dtype=np.uint8)
    h.s[L.PC] = 0x8000_0000
    h.s[10] = 41
    h.run(1)
    assert h.s[10] == 42 and h.s[L.PC] == 0x8000_0004
