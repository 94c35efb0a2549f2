"""The translation table's hash, shared by the core (numba) and the Python side."""

from numba import njit

from wirt.cpu.layout import JT_SLOTS


def slot_of(off: int, mode: int) -> int:
    """Slot of a region entry: RAM offset and mode number (core.run computes the mode)."""
    return ((off >> 1) ^ (off >> 11) ^ (mode * 0x51)) & (JT_SLOTS - 1)


# The core's copy. The Python side calls slot_of itself: calling a numba function from Python
# can make numba use LLVM on this thread while the compiler thread does (see compiler.py).
slot = njit(cache=True, nogil=True, inline="always")(slot_of)
