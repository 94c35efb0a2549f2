"""The translation table's hash, shared by the core (numba) and the Python side."""

from numba import njit

from wirt.cpu.layout import JT_SLOTS


@njit(cache=True, nogil=True, inline="always")
def slot(off, mode):
    """Slot of a region entry: RAM offset and mode number (core.run computes the mode)."""
    return ((off >> 1) ^ (off >> 11) ^ (mode * 0x51)) & (JT_SLOTS - 1)
