"""The MMIO bus: maps guest physical address ranges to device models.

The CPU core exits to Python for every load/store outside RAM; the machine then calls
`MmioBus.read`/`write`. Lookup is a bisect over the sorted device bases with a one-entry
cache of the last hit, because guests hammer one device at a time (UART, PLIC claim).

Unmapped accesses: `read`/`write` raise `BusFault` (and `find` returns None). The machine
turns a `BusFault` into a guest load/store access fault (mcause 5 / 7), as a real bus
error would.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from wirt.devices.mmio import MmioDevice
from wirt.errors import WirtError

__all__ = ["MmioBus", "BusFault"]


class BusFault(Exception):
    """A guest access hit no device (or straddled a device's end): an access fault."""

    def __init__(self, addr: int, size: int, is_write: bool) -> None:
        super().__init__(f"{'store' if is_write else 'load'} of {size} bytes at {addr:#x}: no device")
        self.addr = addr
        self.size = size
        self.is_write = is_write


class MmioBus:
    """Offset-relative device map over the guest physical address space."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._ends: list[int] = []  # exclusive
        self._devices: list[Any] = []
        self._names: list[str] = []
        # one-entry last-hit cache
        self._c_base = 0
        self._c_end = 0
        self._c_dev: Any = None

    def add(self, base: int, device: MmioDevice, name: str = "") -> None:
        """Map `device` at [base, base + device.size); overlapping or empty ranges are refused."""
        size = int(getattr(device, "size", 0))
        label = name or type(device).__name__
        if size <= 0:
            raise WirtError(f"cannot map {label} at {base:#x}: device size is {size}")
        if base < 0 or base + size > 1 << 64:
            raise WirtError(f"cannot map {label} at {base:#x}: outside the 64-bit address space")
        end = base + size
        i = bisect_right(self._bases, base)
        if i > 0 and self._ends[i - 1] > base:
            raise WirtError(
                f"cannot map {label} at {base:#x}-{end - 1:#x}: overlaps {self._names[i - 1]} "
                f"at {self._bases[i - 1]:#x}-{self._ends[i - 1] - 1:#x}"
            )
        if i < len(self._bases) and self._bases[i] < end:
            raise WirtError(
                f"cannot map {label} at {base:#x}-{end - 1:#x}: overlaps {self._names[i]} "
                f"at {self._bases[i]:#x}-{self._ends[i] - 1:#x}"
            )
        self._bases.insert(i, base)
        self._ends.insert(i, end)
        self._devices.insert(i, device)
        self._names.insert(i, label)

    def find(self, addr: int) -> tuple[Any, int] | None:
        """The device mapped at `addr` and the offset into it, or None when unmapped."""
        if self._c_base <= addr < self._c_end:
            return self._c_dev, addr - self._c_base
        i = bisect_right(self._bases, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        base = self._bases[i]
        self._c_base, self._c_end, self._c_dev = base, self._ends[i], self._devices[i]
        return self._c_dev, addr - base

    def _locate(self, addr: int, size: int, is_write: bool) -> tuple[Any, int]:
        if not (self._c_base <= addr and addr + size <= self._c_end):
            i = bisect_right(self._bases, addr) - 1
            if i < 0 or addr + size > self._ends[i]:
                raise BusFault(addr, size, is_write)
            self._c_base, self._c_end, self._c_dev = self._bases[i], self._ends[i], self._devices[i]
        return self._c_dev, addr - self._c_base

    def read(self, addr: int, size: int) -> int:
        """Load `size` bytes at `addr` from its device; raises BusFault when unmapped."""
        if self._c_base <= addr and addr + size <= self._c_end:
            return self._c_dev.read(addr - self._c_base, size)
        dev, off = self._locate(addr, size, False)
        return dev.read(off, size)

    def write(self, addr: int, size: int, value: int) -> None:
        """Store `size` bytes at `addr` to its device; raises BusFault when unmapped."""
        if self._c_base <= addr and addr + size <= self._c_end:
            self._c_dev.write(addr - self._c_base, size, value)
            return
        dev, off = self._locate(addr, size, True)
        dev.write(off, size, value)

    def devices(self) -> list[tuple[int, int, str, Any]]:
        """All mappings as (base, size, name, device), sorted by base."""
        return [
            (b, e - b, n, d) for b, e, n, d in zip(self._bases, self._ends, self._names, self._devices)
        ]

    def __repr__(self) -> str:
        return "MmioBus(" + ", ".join(f"{n}@{b:#x}" for b, _, n, _ in self.devices()) + ")"
