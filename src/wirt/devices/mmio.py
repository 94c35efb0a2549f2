"""The MMIO device protocol that every memory-mapped device model follows.

The machine places a device at a base address on the bus (`wirt.machine.bus.MmioBus`)
and forwards guest loads and stores to it with offsets relative to that base.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["MmioDevice", "ACCESS_SIZES", "size_mask", "read_lanes"]

#: Access widths in bytes that the CPU core can produce.
ACCESS_SIZES = (1, 2, 4, 8)

_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}


def size_mask(size: int) -> int:
    """The value mask for an access of `size` bytes."""
    return _MASKS[size]


def read_lanes(read32: Callable[[int], int], offset: int, size: int) -> int:
    """A read of `size` bytes from registers decoded as 32-bit lanes (`read32(lane offset)`): 8 bytes
    join two lanes, 1 or 2 bytes are a slice of one (CLINT and PLIC answer any width this way)."""
    if size == 8:
        return read32(offset) | (read32(offset + 4) << 32)
    if size == 4:
        return read32(offset)
    word = read32(offset & ~3)
    return (word >> ((offset & 3) * 8)) & ((1 << (size * 8)) - 1)


@runtime_checkable
class MmioDevice(Protocol):
    """What the bus expects from a memory-mapped device.

    Contract (mirrors real hardware, never an exception to the guest):
    - `read(offset, size)` returns an int that fits in `size` bytes; unmapped or
      write-only registers read as 0.
    - `write(offset, size, value)` ignores unmapped and read-only registers.
    - `offset` is relative to the device base, `size` is 1, 2, 4 or 8 bytes, and the
      bus guarantees `offset + size <= self.size`.
    - `state()` returns plain JSON-able data; `load_state()` accepts what it returned.
    """

    size: int

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...

    def reset(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, d: dict[str, Any]) -> None: ...
