"""Host memory for guest RAM and the CPU's big tables: anonymous mappings on huge pages.

A guest touches its RAM all over, and the translation tier's code and lookup table are
megabytes: with 4 KiB host pages nearly every access past a few MiB of them misses the host's
TLB. Transparent huge pages (2 MiB) are asked for with madvise, as QEMU does for guest RAM;
where the host has THP off, or no madvise, the mapping works the same on small pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os

import numpy as np

__all__ = ["anonymous", "huge_pages", "release", "remap_fixed", "HUGE"]

HUGE = 2 << 20  # bytes in an x86-64 transparent huge page


def huge_pages(mm: mmap.mmap) -> None:
    """Ask for transparent huge pages over the whole mapping (again after it was remapped)."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None and hasattr(mm, "madvise"):
        try:
            mm.madvise(advice)
        except OSError:
            pass    # THP compiled out: small pages


def anonymous(size: int, executable: bool = False) -> np.ndarray:
    """`size` zeroed bytes of private anonymous memory (committed as touched) as a uint8 array
    that keeps the mapping alive; OSError or ValueError where the host refuses it."""
    prot = mmap.PROT_READ | mmap.PROT_WRITE | (mmap.PROT_EXEC if executable else 0)
    # A huge page needs a 2 MiB-aligned range: map one more and start at the aligned byte
    # (the slack is never touched, so never committed).
    slack = HUGE if size >= HUGE else 0
    mm = mmap.mmap(-1, size + slack, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=prot)
    huge_pages(mm)
    whole = np.frombuffer(mm, dtype=np.uint8)
    start = -whole.ctypes.data % HUGE if slack else 0
    return whole[start:start + size]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_MAP_FIXED = 0x10  # Linux mmap(2): replace whatever is mapped at the address


def remap_fixed(address: int, size: int, fd: int, flags: int) -> None:
    """mmap(2) read/write over [address, address + size) with MAP_FIXED (`fd` -1 with
    MAP_ANONYMOUS, or a file from offset 0): the range keeps its address, so every view of it
    stays valid. OSError where the host refuses."""
    got = _libc.mmap(address, size, mmap.PROT_READ | mmap.PROT_WRITE, flags | _MAP_FIXED, fd, 0)
    if got != address:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def release(array: np.ndarray, start: int) -> None:
    """Give the host back the whole pages of an `anonymous` array from byte `start` on: they
    read as zero again and are committed again only when touched (madvise MADV_DONTNEED)."""
    first = (array.ctypes.data + start + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
    end = (array.ctypes.data + array.nbytes) & ~(mmap.PAGESIZE - 1)
    if end > first:
        _libc.madvise(first, end - first, mmap.MADV_DONTNEED)
