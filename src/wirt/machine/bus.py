"""The MMIO bus: maps guest physical address ranges to device models.

The CPU core exits to Python for every load/store outside RAM; the machine then calls
`MmioBus.read`/`write`. Lookup is one dict probe by 4 KiB page (`_pages`), else a bisect
over the sorted device bases. (A one-entry cache of the last hit, used before, missed at most
exits of a driver's interrupt handler, which alternates between devices: PLIC claim, virtio
InterruptStatus and InterruptACK, PLIC complete.)

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

PAGE_SHIFT = 12
#: Devices up to this many pages get page entries (the PLIC has 1536); larger ones are bisected.
MAX_PAGES = 4096


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
        #: page number -> (base, end, device) of a device overlapping that page
        self._pages: dict[int, tuple[int, int, Any]] = {}

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
        if size <= MAX_PAGES << PAGE_SHIFT:
            # An entry is used only when the access lies inside its device, so a page that two
            # small devices share keeps the first one's and the other's accesses take the bisect.
            entry = (base, end, device)
            for page in range(base >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
                self._pages.setdefault(page, entry)

    def find(self, addr: int) -> tuple[Any, int] | None:
        """The device mapped at `addr` and the offset into it, or None when unmapped."""
        i = bisect_right(self._bases, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        return self._devices[i], addr - self._bases[i]

    def _locate(self, addr: int, size: int, is_write: bool) -> tuple[Any, int]:
        i = bisect_right(self._bases, addr) - 1
        if i < 0 or addr + size > self._ends[i]:
            raise BusFault(addr, size, is_write)
        return self._devices[i], addr - self._bases[i]

    def read(self, addr: int, size: int) -> int:
        """Load `size` bytes at `addr` from its device; raises BusFault when unmapped."""
        entry = self._pages.get(addr >> PAGE_SHIFT)
        if entry is not None:
            base, end, dev = entry
            if base <= addr and addr + size <= end:
                return dev.read(addr - base, size)
        dev, off = self._locate(addr, size, False)
        return dev.read(off, size)

    def write(self, addr: int, size: int, value: int) -> None:
        """Store `size` bytes at `addr` to its device; raises BusFault when unmapped."""
        entry = self._pages.get(addr >> PAGE_SHIFT)
        if entry is not None:
            base, end, dev = entry
            if base <= addr and addr + size <= end:
                dev.write(addr - base, size, value)
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
