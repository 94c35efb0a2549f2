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

Bit sets are Python ints (bit n = source n), which keeps the hot paths (line changes,
claim) to a few integer operations even with 1023 sources.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from wirt.devices.irq import IrqLine
from wirt.devices.mmio import read_lanes
from wirt.errors import WirtError

__all__ = ["Plic", "PLIC_SIZE"]

PRIORITY_BASE = 0x000000
PENDING_BASE = 0x001000
ENABLE_BASE = 0x002000
ENABLE_STRIDE = 0x80
CONTEXT_BASE = 0x200000
CONTEXT_STRIDE = 0x1000

#: Size of the MMIO window on QEMU's virt board (room for 1024 contexts).
PLIC_SIZE = 0x600000


class Plic:
    """The PLIC: `ndev` level-triggered sources routed to one output line per context.

    `outputs[c]` is driven high while context c has an enabled pending source whose
    priority exceeds the context's threshold (spec "Interrupt Notifications").
    """

    def __init__(
        self,
        outputs: Sequence[IrqLine],
        ndev: int = 96,
        priority_bits: int = 3,
        size: int = PLIC_SIZE,
    ) -> None:
        if not 1 <= ndev <= 1023:
            raise WirtError(f"PLIC source count must be 1..1023, not {ndev}")
        nctx = len(outputs)
        if not 1 <= nctx <= (size - CONTEXT_BASE) // CONTEXT_STRIDE:
            raise WirtError(f"PLIC context count {nctx} does not fit a {size:#x}-byte window")
        self.size = size
        self.ndev = ndev
        self.num_contexts = nctx
        self.outputs = list(outputs)
        self._prio_mask = (1 << priority_bits) - 1
        # bits 1..ndev exist; source 0 is reserved (spec: "no interrupt")
        self._valid = ((1 << (ndev + 1)) - 1) & ~1
        self._lock = threading.RLock()
        self._lines: list[IrqLine] = [IrqLine(self._make_sink(n), f"plic.{n}") for n in range(ndev + 1)]
        self.reset()

    # ---- wiring -------------------------------------------------------------------

    def _make_sink(self, src: int):
        def sink(level: bool) -> None:
            self.set_source(src, level)

        return sink

    def line(self, n: int) -> IrqLine:
        """The input line of source `n` (1..ndev), for a device to drive."""
        if not 1 <= n <= self.ndev:
            raise WirtError(f"PLIC has no interrupt source {n} (valid: 1..{self.ndev})")
        return self._lines[n]

    def set_source(self, src: int, level: bool) -> None:
        """Gateway input: source `src` line is now `level`."""
        bit = 1 << src
        with self._lock:
            before = self._pending
            if level:
                self._level |= bit
                if not self._claimed & bit:
                    self._pending |= bit
            else:
                self._level &= ~bit
                self._pending &= ~bit
            if self._pending != before:  # the outputs depend on pending, not on the level
                self._update()

    # ---- core logic ---------------------------------------------------------------

    def reset(self) -> None:
        """Power-on state: everything masked, nothing pending or in service."""
        with self._lock:
            n = self.num_contexts
            self._priority = [0] * (self.ndev + 1)
            self._enable = [0] * n
            self._threshold = [0] * n
            self._pending = 0
            self._claimed = 0
            self._level = 0
            # a line that is high stays high across reset: re-sample it
            for src in range(1, self.ndev + 1):
                if self._lines[src].level:
                    self._level |= 1 << src
                    self._pending |= 1 << src
            self._update()

    def _best(self, ctx: int, threshold: int) -> int:
        """Highest-priority enabled pending source above `threshold` (ties: lowest id), or 0."""
        cand = self._pending & self._enable[ctx]
        best, best_prio = 0, threshold
        prio = self._priority
        while cand:
            low = cand & -cand
            src = low.bit_length() - 1
            p = prio[src]
            if p > best_prio:  # strict '>' keeps the lowest id on ties
                best, best_prio = src, p
            cand ^= low
        return best

    def _update(self) -> None:
        pending, enable, threshold = self._pending, self._enable, self._threshold
        for ctx, out in enumerate(self.outputs):
            # nothing enabled pending (most contexts, most of the time): no search
            out.set(bool(pending & enable[ctx]) and self._best(ctx, threshold[ctx]) != 0)

    def claim(self, ctx: int) -> int:
        """Claim for context `ctx` (spec "Interrupt Claim Process"): returns the id or 0.

        The claim ignores the threshold, but priority-0 sources never interrupt.
        """
        with self._lock:
            src = self._best(ctx, 0)
            if src:
                bit = 1 << src
                self._pending &= ~bit
                self._claimed |= bit
                self._update()
            return src

    def complete(self, ctx: int, src: int) -> None:
        """Completion (spec "Interrupt Completion"); ignored unless src is enabled for ctx."""
        if not 1 <= src <= self.ndev:
            return
        bit = 1 << src
        with self._lock:
            if not self._enable[ctx] & bit:
                return
            self._claimed &= ~bit
            if self._level & bit:  # still asserted: pending again at once
                self._pending |= bit
                self._update()

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
        if off >= CONTEXT_BASE:
            ctx, reg = divmod(off - CONTEXT_BASE, CONTEXT_STRIDE)
            if ctx >= self.num_contexts:
                return 0
            if reg == 4:
                return self.claim(ctx)
            if reg == 0:
                return self._threshold[ctx]
            return 0
        if off < PENDING_BASE:
            src = off >> 2
            return self._priority[src] if src <= self.ndev else 0
        if off < ENABLE_BASE:
            word = (off - PENDING_BASE) >> 2
            return (self._pending >> (32 * word)) & 0xFFFF_FFFF
        ctx, woff = divmod(off - ENABLE_BASE, ENABLE_STRIDE)
        if ctx >= self.num_contexts:
            return 0
        return (self._enable[ctx] >> (8 * woff)) & 0xFFFF_FFFF

    def _write32(self, off: int, value: int) -> None:
        if off >= CONTEXT_BASE:
            ctx, reg = divmod(off - CONTEXT_BASE, CONTEXT_STRIDE)
            if ctx >= self.num_contexts:
                return
            if reg == 4:
                self.complete(ctx, value)
            elif reg == 0:
                with self._lock:
                    self._threshold[ctx] = value & self._prio_mask
                    self._update()
            return
        if off < PENDING_BASE:
            src = off >> 2
            if 1 <= src <= self.ndev:
                with self._lock:
                    self._priority[src] = value & self._prio_mask
                    self._update()
            return
        if off < ENABLE_BASE:
            return  # pending bits are read-only here
        ctx, woff = divmod(off - ENABLE_BASE, ENABLE_STRIDE)
        if ctx >= self.num_contexts:
            return
        shift = 8 * woff  # woff is a byte offset, multiple of 4
        with self._lock:
            en = self._enable[ctx] & ~(0xFFFF_FFFF << shift)
            self._enable[ctx] = (en | (value << shift)) & self._valid
            self._update()

    # ---- snapshots --------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ndev": self.ndev,
                "priority": list(self._priority),
                "enable": [hex(e) for e in self._enable],
                "threshold": list(self._threshold),
                "pending": hex(self._pending),
                "claimed": hex(self._claimed),
                "level": hex(self._level),
            }

    def load_state(self, d: dict[str, Any]) -> None:
        if d.get("ndev") != self.ndev or len(d["enable"]) != self.num_contexts:
            raise WirtError("PLIC snapshot does not match this machine's PLIC configuration")
        with self._lock:
            self._priority = [int(p) & self._prio_mask for p in d["priority"]]
            self._enable = [int(e, 16) & self._valid for e in d["enable"]]
            self._threshold = [int(t) & self._prio_mask for t in d["threshold"]]
            self._pending = int(d["pending"], 16) & self._valid
            self._claimed = int(d["claimed"], 16) & self._valid
            self._level = int(d["level"], 16) & self._valid
            self._update()
