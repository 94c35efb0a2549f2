"""Goldfish real-time clock (google,goldfish-rtc), as used by QEMU's virt board.

Registers (Android emulator "GOLDFISH-VIRTUAL-HARDWARE.TXT", goldfish-rtc section),
all 32 bits wide:
    0x00 TIME_LOW         read: low half of ns since the epoch; latches TIME_HIGH
    0x04 TIME_HIGH        read: the latched high half
    0x08 ALARM_LOW        write: arms the alarm at (ALARM_HIGH << 32) | value
    0x0c ALARM_HIGH       high half of the alarm time
    0x10 IRQ_ENABLED      bit 0 enables the alarm interrupt
    0x14 CLEAR_ALARM      write: disarms the alarm
    0x18 ALARM_STATUS     read: 1 while the alarm is armed
    0x1c CLEAR_INTERRUPT  write: acknowledges the alarm interrupt
Writes to TIME_LOW / TIME_HIGH set that half of the guest's clock, which is kept as an
offset from the host clock (so a guest setting its clock never touches the host's).

The alarm is checked when the machine calls `poll()`; `next_deadline()` tells it when
the next check is due (in the clock callable's units), so a sleeping hart can wake up.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from wirt.devices.irq import IrqLine

__all__ = ["GoldfishRtc"]

TIME_LOW = 0x00
TIME_HIGH = 0x04
ALARM_LOW = 0x08
ALARM_HIGH = 0x0C
IRQ_ENABLED = 0x10
CLEAR_ALARM = 0x14
ALARM_STATUS = 0x18
CLEAR_INTERRUPT = 0x1C

_M32 = 0xFFFF_FFFF
_M64 = 0xFFFF_FFFF_FFFF_FFFF


class GoldfishRtc:
    """The RTC: guest time = clock() + offset, in ns since the Unix epoch."""

    def __init__(
        self,
        irq: IrqLine | None = None,
        clock: Callable[[], int] = time.time_ns,
        size: int = 0x1000,
    ) -> None:
        self.size = size
        self.irq = irq if irq is not None else IrqLine()
        self.clock = clock
        self.offset = 0
        self.reset()

    def reset(self) -> None:
        """Disarm and mask the alarm; the guest clock offset survives (it is wall time)."""
        self._time_high = 0
        self._alarm_high = 0
        self._alarm = 0
        self._alarm_armed = False
        self._irq_enabled = False
        self._irq_pending = False
        self._update_irq()

    def now(self) -> int:
        """Guest wall-clock time in ns."""
        return (self.clock() + self.offset) & _M64

    def _set_now(self, value: int) -> None:
        self.offset = value - self.clock()

    def _update_irq(self) -> None:
        self.irq.set(self._irq_pending and self._irq_enabled)

    # ---- alarm --------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """Clock value (host ns) at which the armed alarm fires, or None."""
        if not self._alarm_armed:
            return None
        return self._alarm - self.offset

    def poll(self, now_ns: int | None = None) -> None:
        """Fire the alarm if it is due; `now_ns` is a clock() value (default: read it)."""
        if not self._alarm_armed:
            return
        host_now = self.clock() if now_ns is None else now_ns
        if host_now + self.offset >= self._alarm:
            self._alarm_armed = False
            self._irq_pending = True
            self._update_irq()

    # ---- MMIO -----------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size == 8 and offset == TIME_LOW:
            t = self.now()
            self._time_high = t >> 32
            return t
        if offset == TIME_LOW:
            t = self.now()
            self._time_high = t >> 32
            return t & _M32
        if offset == TIME_HIGH:
            return self._time_high
        if offset == ALARM_LOW:
            return self._alarm & _M32
        if offset == ALARM_HIGH:
            return self._alarm >> 32
        if offset == IRQ_ENABLED:
            return int(self._irq_enabled)
        if offset == ALARM_STATUS:
            return int(self._alarm_armed)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8 and offset in (TIME_LOW, ALARM_LOW):
            self.write(offset + 4, 4, (value >> 32) & _M32)
            value &= _M32
        value &= _M32
        if offset == TIME_LOW:
            self._set_now((self.now() & ~_M32 & _M64) | value)
        elif offset == TIME_HIGH:
            self._set_now((self.now() & _M32) | (value << 32))
        elif offset == ALARM_LOW:
            self._alarm = (self._alarm_high << 32) | value
            self._alarm_armed = True
            self.poll()  # an alarm in the past fires at once
        elif offset == ALARM_HIGH:
            self._alarm_high = value
        elif offset == IRQ_ENABLED:
            self._irq_enabled = bool(value & 1)
            self._update_irq()
        elif offset == CLEAR_ALARM:
            self._alarm_armed = False
        elif offset == CLEAR_INTERRUPT:
            self._irq_pending = False
            self._update_irq()

    # ---- snapshots --------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "time_high": self._time_high,
            "alarm_high": self._alarm_high,
            "alarm": self._alarm,
            "alarm_armed": self._alarm_armed,
            "irq_enabled": self._irq_enabled,
            "irq_pending": self._irq_pending,
        }

    def load_state(self, d: dict[str, Any]) -> None:
        self.offset = int(d["offset"])
        self._time_high = int(d["time_high"]) & _M32
        self._alarm_high = int(d["alarm_high"]) & _M32
        self._alarm = int(d["alarm"]) & _M64
        self._alarm_armed = bool(d["alarm_armed"])
        self._irq_enabled = bool(d["irq_enabled"])
        self._irq_pending = bool(d["irq_pending"])
        self._update_irq()
