"""Guest time: mtime at 10 MHz, in real-time or deterministic mode, and the CLINT's view of it.

The core derives mtime from its instruction count within a time slice:
    mtime = s[TIME_BASE] + ((s[ICOUNT] - s[TIME_ICOUNT]) >> s[TIME_SHIFT])
so timer interrupts need no exit. Between slices the machine moves the anchor:

- real-time mode: on every entry mtime is re-anchored to the host's monotonic clock
  (never backwards: if the guest ran ahead within a slice it keeps its time). TIME_SHIFT
  follows the fastest recent slice, rounded up, so that in-slice time runs slower than the
  host clock; the re-anchor then only ever jumps forward, and the harts of one machine
  agree on mtime to within about a slice.
- deterministic mode: mtime comes from the instruction count alone (fixed TIME_SHIFT);
  a WFI fast-forwards mtime to the next deadline, so a run repeats instruction for
  instruction no matter how fast the host is (DESIGN.md "engine contract").
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from wirt.cpu import layout as L

__all__ = ["TIMEBASE_HZ", "GuestClock", "HartTimer"]

TIMEBASE_HZ = 10_000_000  # DT /cpus/timebase-frequency, as on QEMU's virt
NS_PER_TICK = 1_000_000_000 // TIMEBASE_HZ
DETERMINISTIC_SHIFT = 4   # one tick every 16 instructions: a 160 MIPS "virtual" hart
MAX_SHIFT = 12
SLICE_TICKS = 10_000      # mtime a hart's slice may cover (1 ms) when several run at once
MEASURED_SLICE = 20_000  # shorter slices (ended by an exit) time too coarsely to count
MAX_LEAD = 10_000         # mtime a lone hart may run ahead of the host (1 ms) before it slows
_M64 = (1 << 64) - 1


def _signed(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >= 1 << 63 else v


class GuestClock:
    """mtime of one hart's state array `s`, kept in step with the host or the instruction count."""

    def __init__(self, s: np.ndarray, deterministic: bool = False,
                 monotonic_ns=time.monotonic_ns, primary: "GuestClock | None" = None) -> None:
        """`primary`: hart 0's clock, for another hart of the same machine: host time and
        guest mtime writes are then shared, so all harts read one mtime (priv spec 3.2.1)."""
        self.s = s
        self.primary = primary if primary is not None else self
        self.deterministic = deterministic
        self._mono = monotonic_ns
        self._host0 = monotonic_ns()
        self._offset = 0  # guest ticks = host ticks since _host0 + _offset (real-time mode)
        # speed measurement for TIME_SHIFT (real-time mode)
        self._meas_max = 0.0  # fastest slice of the window, in instructions per tick
        self._meas_insns = 0
        #: the harts of a machine with several must agree on mtime (Machine sets it)
        self.agree = False
        self._meas_ns = 0
        self.reset()

    def reset(self) -> None:
        """mtime = 0 at reset (QEMU's virt does the same)."""
        s = self.s
        s[L.TIME_BASE] = 0
        s[L.TIME_ICOUNT] = s[L.ICOUNT]
        s[L.TIME_SHIFT] = DETERMINISTIC_SHIFT  # real-time mode adapts it to the core speed
        s[L.WFI_SKIPPED] = 0
        self._host0 = self._mono()
        self._offset = 0

    # ---- reading and writing mtime ----------------------------------------------------
    def now(self) -> int:
        """mtime as the core sees it right now (DESIGN.md time formula)."""
        s = self.s
        return int(s[L.TIME_BASE]) + ((int(s[L.ICOUNT]) - int(s[L.TIME_ICOUNT])) >> int(s[L.TIME_SHIFT]))

    def _anchor(self, value: int) -> None:
        s = self.s
        s[L.TIME_BASE] = _signed(value)
        s[L.TIME_ICOUNT] = s[L.ICOUNT]

    def set(self, value: int) -> None:
        """A guest write to mtime (CLINT): time continues from `value`."""
        value &= _M64
        self._anchor(value)
        if not self.deterministic:
            self.primary._offset = value - self._host_ticks_raw()

    def anchor(self, value: int) -> None:
        """Make mtime `value` at this hart's current instruction count (deterministic SMP:
        the machine gives every hart the same time at the start of each round)."""
        self._anchor(value)

    def _host_ticks_raw(self) -> int:
        p = self.primary
        return (p._mono() - p._host0) // NS_PER_TICK

    def host_ticks(self) -> int:
        """Where mtime should be by the host clock (real-time mode)."""
        return self._host_ticks_raw() + self.primary._offset

    # ---- slices -----------------------------------------------------------------------
    def before_slice(self) -> None:
        """Re-anchor before the core runs: catch up with the host clock, never go back."""
        if self.deterministic:
            return
        now = self.now()
        host = self.host_ticks()
        self._anchor(host if host > now else now)

    def account(self, insns: int, elapsed_ns: int) -> None:
        """Record core speed; every ~0.25 s of core time pick TIME_SHIFT to match it: the mean
        speed for a lone hart, the fastest slice where harts must agree (`agree`, see below)."""
        if self.deterministic:
            return
        shift = int(self.s[L.TIME_SHIFT])
        ticks = elapsed_ns // NS_PER_TICK
        self._meas_insns += insns
        if insns >= MEASURED_SLICE and ticks > 0:
            # With the translation tier one slice runs 10x faster than another (a user loop
            # against kernel code). A shift fitted to the average speed let fast slices move this
            # hart's mtime tens of ms ahead of the host and of the other harts, whose times
            # Linux takes to agree (a synchronized clocksource): with 2 vCPUs its scheduler
            # then left tasks runnable but unrun for minutes. So a slice that ran ahead raises
            # the shift at once, and with several harts the shift follows the fastest slice.
            # A lone hart raises it only once its mtime is MAX_LEAD ahead of the host: from the
            # reset shift (160 MIPS) a boot's mtime ran up to 0.8 s ahead of the host, and the
            # guest's clock then stood still while the host caught up (a 100 ms disk phase timed
            # in the guest took 24 ms).
            per_tick = insns / ticks
            if per_tick > (1 << shift) and (self.agree or self.now() - self.host_ticks() > MAX_LEAD):
                self._anchor(self.now())
                shift = self.s[L.TIME_SHIFT] = min(MAX_SHIFT, math.ceil(math.log2(per_tick)))
            if self.agree:
                self._meas_max = max(self._meas_max, per_tick)
        self._meas_ns += elapsed_ns
        if self._meas_ns < 250_000_000:
            return
        # A lone hart keeps the mean: with the fastest slice, time in its slower slices ran
        # slow and a Linux boot took 0.3 s (10%) longer, waiting for timers.
        per_tick = self._meas_max if self.agree else self._meas_insns * NS_PER_TICK / self._meas_ns
        self._meas_max = 0.0
        self._meas_ns = self._meas_insns = 0
        if per_tick <= 0:
            return
        new = 0 if per_tick <= 1 else min(MAX_SHIFT, math.ceil(math.log2(per_tick)))
        if new != shift:
            self._anchor(self.now())
            self.s[L.TIME_SHIFT] = new

    def slice_budget(self) -> int:
        """Instructions in which in-slice mtime covers SLICE_TICKS: a hart that runs faster than
        its TIME_SHIFT assumes gets at most that far ahead of the host and of the other harts."""
        return SLICE_TICKS << int(self.s[L.TIME_SHIFT])

    def poll_interval(self, least: int) -> int:
        """Instructions between device polls: `least`, or about a millisecond of host time
        where the core runs faster (real-time mode). A hot loop at 3,000 MIPS otherwise left
        the core 1,500 times a second, each time through Python."""
        if self.deterministic:
            return least   # from the instruction count alone, so that a run repeats
        return max(least, self.slice_budget())

    def fast_forward(self, target: int) -> None:
        """Deterministic WFI: jump mtime to `target` (no-op if it is not in the future)."""
        now = self.now()
        if target > now:
            self.s[L.TIME_BASE] += target - now
            self.s[L.WFI_SKIPPED] += target - now

    def seconds_until(self, target: int) -> float:
        """Host seconds until mtime reaches `target` (real-time mode), 0 if already there."""
        return max(0, target - max(self.now(), self.host_ticks())) / TIMEBASE_HZ

    def state(self) -> dict:
        return {"deterministic": self.deterministic, "offset": self._offset,
                "host_ticks": self.host_ticks()}


class HartTimer:
    """The CLINT `TimerPort` on top of the harts' states: mtime, s[MTIMECMP], MSIP in s[HW_IP].

    `clocks[h]` is hart h's `GuestClock` (its state array is `clocks[h].s`); `current()` names
    the hart whose access this is (mtime is read through that hart's clock, so it never runs
    behind what the same hart read with rdtime). A negative s[MTIMECMP] means "never" to the
    core, which is what mtimecmp values of 2**63 and above (in practice: all ones,
    "disarmed") mean in unsigned arithmetic too.
    """

    def __init__(self, clocks: list[GuestClock], ip_lock: threading.Lock, wakes: list[threading.Event],
                 current=lambda: 0) -> None:
        self.clocks = clocks
        self._lock = ip_lock
        self._wakes = wakes
        self._current = current

    def read_mtime(self) -> int:
        return self.clocks[self._current()].now() & _M64

    def write_mtime(self, value: int) -> None:
        for clock in self.clocks:
            clock.set(value)

    def read_mtimecmp(self, hart: int) -> int:
        return int(self.clocks[hart].s[L.MTIMECMP]) & _M64 if hart < len(self.clocks) else _M64

    def write_mtimecmp(self, hart: int, value: int) -> None:
        if hart < len(self.clocks):
            self.clocks[hart].s[L.MTIMECMP] = _signed(value)
            # the writing hart's core re-reads the deadline on its next entry (this write was an
            # exit); another hart's slice is cut short so that it does too
            if hart != self._current():
                with self._lock:
                    self.clocks[hart].s[L.ATTENTION] |= 1
                self._wakes[hart].set()

    def read_msip(self, hart: int) -> int:
        return int(self.clocks[hart].s[L.HW_IP] >> L.IRQ_MSI) & 1 if hart < len(self.clocks) else 0

    def write_msip(self, hart: int, value: int) -> None:
        """An IPI (priv spec 3.1.9 MSIP, set through the CLINT): reaches hart `hart` at once."""
        if hart >= len(self.clocks):
            return
        s = self.clocks[hart].s
        with self._lock:
            if value & 1:
                s[L.HW_IP] |= L.MIP_MSIP
            else:
                s[L.HW_IP] &= ~L.MIP_MSIP
            s[L.ATTENTION] |= 1
        self._wakes[hart].set()
