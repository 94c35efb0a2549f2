"""Guest RAM: an mmap exposed to the core as a numpy uint8 array.

The mapping is anonymous at power-on. A snapshot restore or fork replaces it in place with a
private (copy-on-write) mapping of the snapshot's memory image (`map_image`): same virtual
address, so the core's views of RAM stay valid, no page is copied until the guest writes it.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from wirt.errors import WirtError
from wirt.hostmem import huge_pages, remap_fixed

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
        huge_pages(self._map)   # 2 MiB host pages: far fewer host TLB misses (hostmem.py)
        # One word per page for the CPU's translation tier (cpu/layout.py, "jpg"): odd while
        # translations may hold code from the page. Writes from outside the core go through
        # `code_written` so no stale translation of the old bytes is entered again.
        self.code_pages = np.zeros(size // PAGE, dtype=np.int64)
        self.image_mapped = False  # True while RAM is a copy-on-write view of a snapshot image

    @property
    def address(self) -> int:
        """Host virtual address of guest RAM (fixed for the life of the object)."""
        return self.array.ctypes.data

    def _remap(self, fd: int, flags: int) -> None:
        """mmap(2) over our own range with MAP_FIXED: the numpy views keep their address."""
        try:
            remap_fixed(self.address, self.size, fd, flags)
        except OSError as exc:
            raise WirtError(f"cannot map guest memory: {exc.strerror}") from None

    def code_written(self, off: int, length: int) -> None:
        """Bytes [off, off+length) of RAM changed behind the core's back (DMA, loading, restore)."""
        if length <= 0:
            return
        seg = self.code_pages[off // PAGE: (off + length - 1) // PAGE + 1]
        seg += seg & 1  # odd (translated) -> the next even generation; even pages stay

    def zero(self) -> None:
        """All of RAM reads as zero again: a fresh anonymous mapping (pages freed lazily)."""
        self._remap(-1, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        huge_pages(self._map)
        self.code_written(0, self.size)
        self.image_mapped = False

    def touched_pages(self) -> np.ndarray | None:
        """Which pages may hold data (bool per page), from /proc/self/pagemap, or None if unknown.

        A page of an anonymous private mapping that is neither present nor swapped out has
        never been written since the mapping was made: it reads as zero (proc(5), pagemap bits
        63 and 62). After `map_image` untouched pages come from the image, so None.
        """
        if self.image_mapped:
            return None
        npages = self.size // PAGE
        try:
            fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            raw = os.pread(fd, npages * 8, self.address // PAGE * 8)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(raw) != npages * 8:
            return None
        entries = np.frombuffer(raw, dtype=np.uint64)
        return (entries & np.uint64(0xC000_0000_0000_0000)) != 0

    def map_image(self, fd: int) -> None:
        """RAM becomes a copy-on-write view of a memory image file of exactly `size` bytes.

        The file must not change while mapped (snapshot images are never rewritten: a new
        snapshot is a new file), and it must be this long: pages past its end would fault.
        """
        st = os.fstat(fd)
        if st.st_size != self.size:
            raise WirtError(f"memory image is {st.st_size} bytes, guest RAM is {self.size}")
        self._remap(fd, mmap.MAP_PRIVATE)
        self.code_written(0, self.size)
        self.image_mapped = True

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.base <= addr and addr + length <= self.base + self.size

    def write(self, addr: int, data: bytes) -> None:
        """Copy data into RAM at a guest physical address (bounds checked)."""
        if not self.contains(addr, len(data)):
            raise WirtError(f"{len(data)} bytes at {addr:#x} do not fit in guest RAM "
                            f"({self.base:#x}-{self.base + self.size:#x}); give the VM more memory")
        off = addr - self.base
        self.array[off: off + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self.code_written(off, len(data))

    def read(self, addr: int, length: int) -> bytes:
        if not self.contains(addr, length):
            raise ValueError(f"read of {length} bytes at {addr:#x} is outside guest RAM")
        off = addr - self.base
        return self.array[off: off + length].tobytes()

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & ((1 << 64) - 1)).to_bytes(8, "little"))
