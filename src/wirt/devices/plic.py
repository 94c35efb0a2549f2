"""SiFive Platform-Level Interrupt Controller (riscv,plic0), as on QEMU's virt board.

Register map (RISC-V PLIC specification v1.0.0, "Memory Map" chapter):
    0x000000 + 4*src        source priority (src 1..ndev; source 0 does not exist)
    0x001000 + 4*word       pending bits, 32 sources per word (read-only)
    0x002000 + 0x80*ctx     enable bits for context ctx, 32 sources per word
    0x200000 + 0x1000*ctx   priority threshold of context ctx
    0x200004 + 0x1000*ctx   claim (read) / complete (write) of context ctx
Contexts on virt: context 2*h is hart h in M-mode, 2*h+1 is hart h in S-mode.

All sources are level-triggered (virtio-mmio, 16550 and goldfish raise level lines).
The gateway (spec "Interrupt Gateways") forwards a high line as a pending request and
blocks the source from claim until completion; completion re-samples the line, so a
device that is still asserting becomes pending again at once. A line that drops before
the request is claimed withdraws it (the level-gateway behaviour QEMU also models), so
the guest is not sent after interrupts the device no longer asserts.

The state lives in one int64 array (`pl`, cpu/irqchip.py), so the harts' cores can serve the
guest's claims and completions without leaving (the cores and this class change it under one
spinlock). A context's notification reaches its hart through the hart's s[EXT_IP] word
(`bind_hart`); when a change made here raises a hart's line, `on_rise` hears which harts, so
the machine can wake them.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from wirt.cpu import irqchip
from wirt.cpu import layout as L
from wirt.devices.irq import IrqLine
from wirt.devices.mmio import read_lanes
from wirt.errors import WirtError

__all__ = ["Plic", "StatusLine", "PLIC_SIZE"]

#: Size of the MMIO window on QEMU's virt board (room for 1024 contexts).
PLIC_SIZE = 0x600000


class Plic:
    """The PLIC: `ndev` level-triggered sources routed to `num_contexts` contexts.

    Context c's notification (`output(c)`) is asserted while it has an enabled pending source
    whose priority exceeds its threshold (spec "Interrupt Notifications"). `base`: the guest
    physical address of the window, which lets the harts' cores serve claims and completions.
    """

    def __init__(
        self,
        num_contexts: int,
        ndev: int = 96,
        priority_bits: int = 3,
        size: int = PLIC_SIZE,
        base: int = 0,
        on_rise: Callable[[int], None] | None = None,
    ) -> None:
        if not 1 <= ndev < L.PL_MAX_SRC:
            raise WirtError(f"PLIC source count must be 1..{L.PL_MAX_SRC - 1}, not {ndev}")
        limit = min(L.PL_MAX_CTX, (size - L.PLIC_CONTEXT_BASE) // L.PLIC_CONTEXT_STRIDE)
        if not 1 <= num_contexts <= limit:
            raise WirtError(f"PLIC context count {num_contexts} must be 1..{limit} (two per hart)")
        self.size = size
        self.ndev = ndev
        self.num_contexts = num_contexts
        #: called with a mask of harts (bit h) whose line a change made here raised
        self.on_rise = on_rise
        self.pl = np.zeros(L.PL_SIZE, dtype=np.int64)
        self.pl[L.PL_BASE] = base
        self.pl[L.PL_WINDOW] = size
        self.pl[L.PL_NDEV] = ndev
        self.pl[L.PL_NCTX] = num_contexts
        self.pl[L.PL_PMASK] = (1 << priority_bits) - 1
        self._lines: list[IrqLine] = [IrqLine(self._make_sink(n), f"plic.{n}") for n in range(ndev + 1)]
        self.reset()

    # ---- wiring -------------------------------------------------------------------

    def _make_sink(self, src: int) -> Callable[[bool], None]:
        def sink(level: bool) -> None:
            self.set_source(src, level)

        return sink

    def line(self, n: int) -> IrqLine:
        """The input line of source `n` (1..ndev), for a device to drive."""
        if not 1 <= n <= self.ndev:
            raise WirtError(f"PLIC has no interrupt source {n} (valid: 1..{self.ndev})")
        return self._lines[n]

    def bind_hart(self, hart: int, s: np.ndarray) -> None:
        """Drive hart `hart`'s EXT_IP word in its state array `s` (contexts 2h and 2h+1);
        the caller keeps `s` alive as long as this PLIC."""
        if not 0 <= hart < L.PL_MAX_HARTS or s.dtype != np.int64 or len(s) != L.S_SIZE:
            raise ValueError("bind_hart needs a hart number below 64 and its int64 state array")
        pl = self.pl
        irqchip.lock(pl)
        pl[L.PL_HART_S + hart] = s.ctypes.data
        pl[L.PL_NHART] = max(int(pl[L.PL_NHART]), hart + 1)
        rose = irqchip.update(pl)
        irqchip.unlock(pl)
        self._rose(rose)

    def status_line(self, src: int, address: int) -> StatusLine:
        """An interrupt status register at guest physical `address` (its acknowledgement
        register 4 bytes above) whose bits drive source `src`: virtio-mmio's InterruptStatus
        and InterruptACK, which the harts' cores then serve themselves."""
        self.line(src)  # checks the number
        pl = self.pl
        irqchip.lock(pl)
        try:
            i = int(pl[L.PL_NSTATUS])
            if i == L.PL_MAX_STATUS:
                raise WirtError(f"the PLIC binds at most {L.PL_MAX_STATUS} interrupt status registers")
            e = L.PL_STATUS + i * L.PL_STATUS_W
            pl[e], pl[e + 1], pl[e + 2] = address, 0, src
            pl[L.PL_NSTATUS] = i + 1
        finally:
            irqchip.unlock(pl)
        return StatusLine(self, i)

    def output(self, ctx: int) -> bool:
        """Whether context `ctx`'s notification is asserted."""
        return bool(self.pl[L.PL_OUT + ctx])

    def _rose(self, harts: int) -> None:
        if harts and self.on_rise is not None:
            self.on_rise(harts)

    def set_source(self, src: int, level: bool) -> None:
        """Gateway input: source `src` line is now `level`."""
        self._rose(irqchip.set_source(self.pl, src, 1 if level else 0))

    def reset(self) -> None:
        """Power-on state: everything masked, nothing pending or in service."""
        pl = self.pl
        irqchip.lock(pl)
        pl[L.PL_PENDING: L.PL_HART_S] = 0  # pending, claimed, level
        pl[L.PL_THRESHOLD: L.PL_STATUS] = 0  # thresholds, notifications, priorities, enables
        # a line that is high stays high across reset: re-sample it
        high = [src for src in range(1, self.ndev + 1) if self._lines[src].level]
        for i in range(int(pl[L.PL_NSTATUS])):
            e = L.PL_STATUS + i * L.PL_STATUS_W
            if pl[e + 1]:
                high.append(int(pl[e + 2]))
        for src in high:
            pl[L.PL_LEVEL + (src >> 5)] |= 1 << (src & 31)
            pl[L.PL_PENDING + (src >> 5)] |= 1 << (src & 31)
        rose = irqchip.update(pl)
        irqchip.unlock(pl)
        self._rose(rose)

    def claim(self, ctx: int) -> int:
        """Claim for context `ctx` (spec "Interrupt Claim Process"): returns the id or 0."""
        return self._read32(L.PLIC_CONTEXT_BASE + L.PLIC_CONTEXT_STRIDE * ctx + 4)

    def complete(self, ctx: int, src: int) -> None:
        """Completion (spec "Interrupt Completion"); ignored unless src is enabled for ctx."""
        self._write32(L.PLIC_CONTEXT_BASE + L.PLIC_CONTEXT_STRIDE * ctx + 4, src)

    # ---- MMIO -----------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size == 4:  # claim, enable word: what drivers use
            return self._read32(offset)
        return read_lanes(self._read32, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        # The PLIC is a 32-bit device; narrower stores are ignored, 64-bit ones split.
        if size == 4:
            self._write32(offset, value & 0xFFFF_FFFF)
        elif size == 8:
            self._write32(offset, value & 0xFFFF_FFFF)
            self._write32(offset + 4, (value >> 32) & 0xFFFF_FFFF)

    def _read32(self, off: int) -> int:
        return int(irqchip.read32(self.pl, off))

    def _write32(self, off: int, value: int) -> None:
        self._rose(int(irqchip.write32(self.pl, off, value, False)))

    # ---- snapshots --------------------------------------------------------------

    def _bits(self, at: int) -> int:
        """A set of sources as one Python int (bit n = source n)."""
        return sum(int(w) << (32 * i) for i, w in enumerate(self.pl[at: at + L.PL_BITS]))

    def _set_bits(self, at: int, value: int) -> None:
        for i in range(L.PL_BITS):
            self.pl[at + i] = (value >> (32 * i)) & 0xFFFF_FFFF

    def state(self) -> dict[str, Any]:
        pl, n = self.pl, self.num_contexts
        irqchip.lock(pl)
        try:
            return {
                "ndev": self.ndev,
                "priority": [int(p) for p in pl[L.PL_PRIORITY: L.PL_PRIORITY + self.ndev + 1]],
                "enable": [hex(self._bits(L.PL_ENABLE + c * L.PL_BITS)) for c in range(n)],
                "threshold": [int(t) for t in pl[L.PL_THRESHOLD: L.PL_THRESHOLD + n]],
                "pending": hex(self._bits(L.PL_PENDING)),
                "claimed": hex(self._bits(L.PL_CLAIMED)),
                "level": hex(self._bits(L.PL_LEVEL)),
            }
        finally:
            irqchip.unlock(pl)

    def load_state(self, d: dict[str, Any]) -> None:
        if d.get("ndev") != self.ndev or len(d["enable"]) != self.num_contexts:
            raise WirtError("PLIC snapshot does not match this machine's PLIC configuration")
        pl = self.pl
        pmask = int(pl[L.PL_PMASK])
        valid = ((1 << (self.ndev + 1)) - 1) & ~1
        irqchip.lock(pl)
        try:
            pl[L.PL_PRIORITY: L.PL_PRIORITY + self.ndev + 1] = [int(p) & pmask for p in d["priority"]]
            pl[L.PL_PRIORITY] = 0
            for c, e in enumerate(d["enable"]):
                self._set_bits(L.PL_ENABLE + c * L.PL_BITS, int(e, 16) & valid)
            pl[L.PL_THRESHOLD: L.PL_THRESHOLD + self.num_contexts] = [int(t) & pmask for t in d["threshold"]]
            self._set_bits(L.PL_PENDING, int(d["pending"], 16) & valid)
            self._set_bits(L.PL_CLAIMED, int(d["claimed"], 16) & valid)
            self._set_bits(L.PL_LEVEL, int(d["level"], 16) & valid)
            rose = irqchip.update(pl)
        finally:
            irqchip.unlock(pl)
        self._rose(rose)


class StatusLine:
    """Bits of an interrupt status register driving a PLIC source, kept in the PLIC's shared
    state (`Plic.status_line`): the line is high while any bit is set. The same interface as
    devices/virtio/mmio.InterruptStatus, whose bits live in Python."""

    __slots__ = ("_plic", "_pl", "_i", "_at")

    def __init__(self, plic: Plic, index: int) -> None:
        self._plic, self._pl, self._i = plic, plic.pl, index
        self._at = L.PL_STATUS + index * L.PL_STATUS_W + 1

    @property
    def value(self) -> int:
        """The bits now set."""
        return int(self._pl[self._at])

    def change(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Clear `clear_bits`, then set `set_bits`; the line follows."""
        self._plic._rose(irqchip.status_change(self._pl, self._i, set_bits, clear_bits))
