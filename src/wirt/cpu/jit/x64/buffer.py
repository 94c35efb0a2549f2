"""Executable memory for the template tier: one buffer per hart, written only by its thread."""

from __future__ import annotations

import numpy as np

from wirt.hostmem import anonymous

DEFAULT_SIZE = 256 << 20  # bytes per hart; pages are committed only as code is written
                          # (a Debian python3 workload filled 64 MiB twice; QEMU allows 1 GiB)


def code_buffer(size: int = DEFAULT_SIZE) -> np.ndarray | None:
    """A writable, executable uint8 array of `size` bytes (the mapping lives as long as the
    array), or None where the host forbids such mappings."""
    try:
        return anonymous(size, executable=True)     # huge pages: megabytes of hot code
    except (OSError, ValueError):
        return None


def address(buf: np.ndarray) -> int:
    """Host address of the buffer's first byte."""
    return int(buf.ctypes.data)
