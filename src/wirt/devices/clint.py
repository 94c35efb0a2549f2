"""SiFive Core-Local Interruptor (riscv,clint0 / sifive,clint0).

Register map (SiFive FU540-C000 manual, chapter "Core Local Interruptor"):
    0x0000 + 4*h   msip[h]      bit 0 = machine software interrupt of hart h
    0x4000 + 8*h   mtimecmp[h]  64-bit timer compare of hart h
    0xBFF8         mtime        64-bit timer, 10 MHz on virt (DT timebase-frequency)
The 64-bit registers accept 32-bit accesses to their low (+0) and high (+4) halves.

The CLINT holds no state of its own: mtime, mtimecmp and msip live in the CPU core,
which compares mtime with mtimecmp itself so that timer interrupts need no exit.
The device only decodes registers and talks to a `TimerPort`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from wirt.devices.mmio import read_lanes
from wirt.errors import WirtError

__all__ = ["Clint", "TimerPort", "SimpleTimer", "CLINT_SIZE", "MTIMECMP_BASE", "MTIME_OFFSET"]

MSIP_BASE = 0x0000
MTIMECMP_BASE = 0x4000
MTIME_OFFSET = 0xBFF8
CLINT_SIZE = 0x10000
MAX_HARTS = 4095  # msip array ends at 0x3FFC

_M32 = 0xFFFF_FFFF
_M64 = 0xFFFF_FFFF_FFFF_FFFF


@runtime_checkable
class TimerPort(Protocol):
    """The CPU core's timer state as the CLINT sees it (implemented on the hart by the lead)."""

    def read_mtime(self) -> int: ...

    def write_mtime(self, value: int) -> None: ...

    def read_mtimecmp(self, hart: int) -> int: ...

    def write_mtimecmp(self, hart: int, value: int) -> None: ...

    def read_msip(self, hart: int) -> int: ...

    def write_msip(self, hart: int, value: int) -> None: ...


class SimpleTimer:
    """A pure-Python `TimerPort`: mtime advanced by hand, MTIP = mtime >= mtimecmp.

    Useful for unit tests and for driving a CLINT without a CPU core. mtimecmp resets
    to all ones (no interrupt) because the privileged spec leaves it unspecified.
    """

    def __init__(self, num_harts: int = 1) -> None:
        self.num_harts = num_harts
        self.mtime = 0
        self.mtimecmp = [_M64] * num_harts
        self.msip_bits = [0] * num_harts

    def advance(self, ticks: int) -> None:
        """Move mtime forward by `ticks` (wrapping at 2**64)."""
        self.mtime = (self.mtime + ticks) & _M64

    def mtip(self, hart: int) -> bool:
        """Machine timer interrupt pending (privileged spec: mtime >= mtimecmp)."""
        return self.mtime >= self.mtimecmp[hart]

    def msip(self, hart: int) -> bool:
        """Machine software interrupt pending."""
        return bool(self.msip_bits[hart])

    def read_mtime(self) -> int:
        return self.mtime

    def write_mtime(self, value: int) -> None:
        self.mtime = value & _M64

    def read_mtimecmp(self, hart: int) -> int:
        return self.mtimecmp[hart]

    def write_mtimecmp(self, hart: int, value: int) -> None:
        self.mtimecmp[hart] = value & _M64

    def read_msip(self, hart: int) -> int:
        return self.msip_bits[hart]

    def write_msip(self, hart: int, value: int) -> None:
        self.msip_bits[hart] = value & 1

    def state(self) -> dict[str, Any]:
        return {"mtime": self.mtime, "mtimecmp": list(self.mtimecmp), "msip": list(self.msip_bits)}

    def load_state(self, d: dict[str, Any]) -> None:
        self.mtime = int(d["mtime"]) & _M64
        self.mtimecmp = [int(v) & _M64 for v in d["mtimecmp"]]
        self.msip_bits = [int(v) & 1 for v in d["msip"]]
        self.num_harts = len(self.mtimecmp)


class Clint:
    """CLINT register decoder in front of a `TimerPort` for `num_harts` harts."""

    def __init__(self, timer: TimerPort, num_harts: int = 1, size: int = CLINT_SIZE) -> None:
        if not 1 <= num_harts <= MAX_HARTS:
            raise WirtError(f"CLINT supports 1..{MAX_HARTS} harts, not {num_harts}")
        self.timer = timer
        self.num_harts = num_harts
        self.size = size

    # The registers are decoded as 32-bit lanes; 64-bit accesses to mtime/mtimecmp
    # are taken whole so that the value is read or written atomically.

    def read(self, offset: int, size: int) -> int:
        if size == 8:
            if offset == MTIME_OFFSET:
                return self.timer.read_mtime() & _M64
            if MTIMECMP_BASE <= offset < MTIMECMP_BASE + 8 * self.num_harts and not offset & 7:
                return self.timer.read_mtimecmp((offset - MTIMECMP_BASE) >> 3) & _M64
        return read_lanes(self._read32, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            if offset == MTIME_OFFSET:
                self.timer.write_mtime(value & _M64)
                return
            if MTIMECMP_BASE <= offset < MTIMECMP_BASE + 8 * self.num_harts and not offset & 7:
                self.timer.write_mtimecmp((offset - MTIMECMP_BASE) >> 3, value & _M64)
                return
            self._write32(offset, value & _M32)
            self._write32(offset + 4, (value >> 32) & _M32)
        elif size == 4:
            self._write32(offset, value & _M32)
        else:  # narrow store: read-modify-write of the containing 32-bit lane
            lane = offset & ~3
            shift = (offset & 3) * 8
            mask = ((1 << (size * 8)) - 1) << shift
            old = self._read32(lane)
            self._write32(lane, (old & ~mask) | ((value << shift) & mask))

    def _read32(self, off: int) -> int:
        if off < MTIMECMP_BASE:
            hart = off >> 2
            return self.timer.read_msip(hart) & 1 if hart < self.num_harts and not off & 3 else 0
        if off < MTIMECMP_BASE + 8 * self.num_harts:
            v = self.timer.read_mtimecmp((off - MTIMECMP_BASE) >> 3)
            return (v >> 32) & _M32 if off & 4 else v & _M32
        if off == MTIME_OFFSET:
            return self.timer.read_mtime() & _M32
        if off == MTIME_OFFSET + 4:
            return (self.timer.read_mtime() >> 32) & _M32
        return 0

    def _write32(self, off: int, value: int) -> None:
        if off < MTIMECMP_BASE:
            hart = off >> 2
            if hart < self.num_harts and not off & 3:
                self.timer.write_msip(hart, value & 1)
            return
        if off < MTIMECMP_BASE + 8 * self.num_harts:
            hart = (off - MTIMECMP_BASE) >> 3
            old = self.timer.read_mtimecmp(hart)
            if off & 4:
                new = (old & _M32) | (value << 32)
            else:
                new = (old & ~_M32 & _M64) | value
            self.timer.write_mtimecmp(hart, new)
            return
        if off == MTIME_OFFSET or off == MTIME_OFFSET + 4:
            old = self.timer.read_mtime()
            if off & 4:
                new = (old & _M32) | (value << 32)
            else:
                new = (old & ~_M32 & _M64) | value
            self.timer.write_mtime(new)

    def reset(self) -> None:
        """Nothing to reset here: the timer state belongs to the harts."""

    def state(self) -> dict[str, Any]:
        return {"num_harts": self.num_harts}

    def load_state(self, d: dict[str, Any]) -> None:
        if int(d.get("num_harts", self.num_harts)) != self.num_harts:
            raise WirtError("CLINT snapshot is for a different number of harts")
