"""Guest RAM: an anonymous mmap exposed to the core as a numpy uint8 array."""

from __future__ import annotations

import mmap

import numpy as np

from wirt.errors import WirtError

PAGE = 4096


class GuestMemory:
    """RAM at a guest physical base. Pages are allocated lazily by the host kernel."""

    def __init__(self, size: int, base: int = 0x8000_0000) -> None:
        if size <= 0 or size % PAGE:
            raise WirtError(f"memory size {size} is not a positive multiple of 4 KiB; use e.g. 512M")
        self.base = base
        self.size = size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.array = np.frombuffer(self._map, dtype=np.uint8)

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.base <= addr and addr + length <= self.base + self.size

    def write(self, addr: int, data: bytes) -> None:
        """Copy data into RAM at a guest physical address (bounds checked)."""
        if not self.contains(addr, len(data)):
            raise WirtError(f"{len(data)} bytes at {addr:#x} do not fit in guest RAM "
                            f"({self.base:#x}-{self.base + self.size:#x}); give the VM more memory")
        off = addr - self.base
        self.array[off: off + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read(self, addr: int, length: int) -> bytes:
        if not self.contains(addr, length):
            raise ValueError(f"read of {length} bytes at {addr:#x} is outside guest RAM")
        off = addr - self.base
        return self.array[off: off + length].tobytes()

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & ((1 << 64) - 1)).to_bytes(8, "little"))
