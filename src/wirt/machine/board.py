"""The virt board: RV64 harts (1 to 64), RAM, the boot ROM and the devices of DESIGN.md's memory map.

`Machine` is the emulated computer, usable in-process from Python:

    m = Machine(firmware=fw, kernel=image, initrd=cpio, bootargs="console=ttyS0",
                on_output=sys.stdout.buffer.write)
    result = m.run()          # until poweroff / reset / failure / m.stop()

It owns guest memory, wires devices to addresses and interrupt lines, builds the device
tree, places firmware/kernel/initrd/DTB, and turns the core's exits into device calls
(DESIGN.md "engine contract"). Interrupts reach a core through its s[HW_IP] (MSIP from the
CLINT) and s[EXT_IP] (MEIP/SEIP from PLIC contexts 2h and 2h+1, whose claims and completions
the cores serve themselves: cpu/irqchip.py) plus s[ATTENTION] so a running slice notices
them soon; a `threading.Event` per hart wakes it when it sleeps in WFI. Several harts run
in machine/smp.py (a host thread per hart, or interleaved in deterministic mode).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from wirt.cpu import layout as L
from wirt.cpu.hart import Hart
from wirt.devices.clint import Clint
from wirt.devices.finisher import TestFinisher
from wirt.devices.plic import Plic
from wirt.devices.rtc import GoldfishRtc
from wirt.devices.uart import Uart16550
from wirt.errors import WirtError
from wirt.gcpolicy import settle_collections
from wirt.machine import devicetree as dt
from wirt.machine.bootrom import FW_OPTION_NO_BOOT_PRINTS, ROM_BASE, BootRom, build_boot_rom
from wirt.machine.bus import BusFault, MmioBus
from wirt.machine.memory import GuestMemory
from wirt.machine.placement import Layout, check_kernel_image, kernel_footprint, plan_layout
from wirt.machine.timebase import NS_PER_TICK, GuestClock, HartTimer

__all__ = ["Machine", "MachineExit", "VirtioSlot", "BootPlan", "plan_boot", "FW_OPTION_NO_BOOT_PRINTS",
           "DEFAULT_MEMORY", "SLICE", "MAX_HARTS"]

DEFAULT_MEMORY = 512 << 20
MAX_HARTS = 64
# Instructions per time slice: between slices the loop polls devices (RTC alarm, output).
SLICE = 2_000_000
# Host time a slice may go on serving MMIO exits before it re-anchors mtime (Machine.run).
MMIO_RUN_NS = 200_000
OUTPUT_DELAY_NS = 20_000_000  # console output without a newline waits at most about this long
# Fixed wall-clock epoch of the RTC in deterministic mode (2026-01-01T00:00:00Z).
DETERMINISTIC_EPOCH_NS = 1_767_225_600 * 1_000_000_000
_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}


@dataclass(frozen=True)
class MachineExit:
    """Why `Machine.run` returned.

    reason: "poweroff" (code 0), "fail" (finisher failure with `code`), "reset" (the guest
    asked for a reboot), "stopped" (`Machine.stop()`), "limit" (max_insns reached),
    "fatal" (the core gave up; `detail` says why).
    """

    reason: str
    code: int = 0
    instructions: int = 0
    detail: str = ""


@dataclass(frozen=True)
class BootPlan:
    """The device tree of a machine and where its images go in RAM."""

    config: dt.VirtConfig
    layout: Layout
    dtb: bytes


def plan_boot(memory_size: int, firmware_size: int, kernel: bytes | None, initrd_size: int,
              bootargs: str = "", rng_seed: bytes | None = None, num_harts: int = 1) -> BootPlan:
    """Build the device tree and place firmware/kernel/initrd/DTB (no hart, no RAM needed).

    Raises WirtError when the images do not fit in `memory_size` bytes of RAM.
    """
    if kernel is not None:
        check_kernel_image(kernel)
    config = dt.VirtConfig(ram_size=memory_size, bootargs=bootargs, rng_seed=rng_seed, num_harts=num_harts)
    kernel_size = kernel_footprint(kernel) if kernel else 0
    if initrd_size:  # the DTB's size does not depend on the initrd's address
        config.initrd = (dt.RAM_BASE, dt.RAM_BASE + initrd_size)
    probe = dt.build_virt_dtb(config)
    layout = plan_layout(dt.RAM_BASE, memory_size, firmware_size, kernel_size, initrd_size, len(probe))
    if initrd_size:
        config.initrd = (layout.initrd, layout.initrd_end)
    return BootPlan(config, layout, dt.build_virt_dtb(config))


class VirtioSlot:
    """One virtio-mmio window (virtio spec 1.1 section 4.2.2). Empty until a device is plugged.

    An empty slot answers like QEMU's: magic "virt", version 2, DeviceID 0 ("no device"),
    which Linux's virtio_mmio driver skips quietly. `device` may be replaced by a virtio
    device model implementing the MMIO protocol (the virtio work plugs in here).
    """

    MAGIC = 0x74726976  # "virt"
    size = dt.VIRTIO_STRIDE

    def __init__(self) -> None:
        self.device = None

    @property
    def device(self) -> Any:
        """The device model plugged in, or None."""
        return self._device

    @device.setter
    def device(self, device: Any) -> None:
        # The bus calls slot.read/slot.write: bound straight to the device's own, so a register
        # access of a plugged device costs no extra call.
        self._device = device
        self.read = self._empty_read if device is None else device.read  # type: ignore[method-assign]
        self.write = self._empty_write if device is None else device.write  # type: ignore[method-assign]

    def _empty_read(self, offset: int, size: int) -> int:
        if size == 4:
            if offset == 0x000:
                return self.MAGIC
            if offset == 0x004:
                return 2
            if offset == 0x00C:
                return 0x7472_6977  # VendorID "wirt"
        return 0

    def _empty_write(self, offset: int, size: int, value: int) -> None:
        pass

    # The MmioDevice protocol's methods, rebound per instance by the device setter.
    read = _empty_read
    write = _empty_write

    def reset(self) -> None:
        if self.device is not None:
            self.device.reset()

    def state(self) -> dict[str, Any]:
        return self.device.state() if self.device is not None else {}

    def load_state(self, d: dict[str, Any]) -> None:
        if self.device is not None:
            self.device.load_state(d)


class Machine:
    """A QEMU-virt-compatible RISC-V computer with `num_harts` harts sharing its RAM.

    firmware: raw binary loaded at RAM base and entered in M-mode by the boot ROM
    (OpenSBI fw_dynamic.bin, or any bare-metal program); kernel: RISC-V Image placed at
    RAM base + 2 MiB; initrd: placed below the device tree near the top of RAM.
    on_output receives console (UART) output in chunks; deterministic selects the time
    mode (see `wirt.machine.timebase`); firmware_options goes to fw_dynamic_info.options
    (`FW_OPTION_NO_BOOT_PRINTS` silences OpenSBI's banner).
    """

    def __init__(
        self,
        firmware: bytes,
        kernel: bytes | None = None,
        initrd: bytes | None = None,
        *,
        memory_size: int = DEFAULT_MEMORY,
        bootargs: str = "",
        deterministic: bool = False,
        on_output: Callable[[bytes], None] | None = None,
        num_harts: int = 1,
        rng_seed: bytes | None = None,
        firmware_options: int = 0,
        jit: str | None = None,
    ) -> None:
        """`jit`: the CPU's translation tier, "on", "off" or "force" (default: WIRT_JIT, else on)."""
        if not 1 <= num_harts <= MAX_HARTS:
            raise WirtError(f"a machine has 1 to {MAX_HARTS} CPUs, not {num_harts}")
        self.num_harts = num_harts
        if not firmware:
            raise WirtError("the firmware image is empty; give OpenSBI's fw_dynamic.bin")
        self.firmware = bytes(firmware)
        self.kernel = bytes(kernel) if kernel is not None else None
        self.initrd = bytes(initrd) if initrd is not None else None
        self.deterministic = deterministic
        self.on_output = on_output

        # ---- device tree and placement -------------------------------------------------
        if rng_seed is None:
            rng_seed = bytes(32) if deterministic else os.urandom(32)
        plan = plan_boot(memory_size, len(self.firmware), self.kernel, len(self.initrd or b""),
                         bootargs, rng_seed, num_harts)
        self.config, self.layout, self.dtb = plan.config, plan.layout, plan.dtb
        rom = build_boot_rom(self.layout.firmware, self.layout.dtb, self.layout.kernel,
                             options=firmware_options)
        self.rom = np.frombuffer(rom, dtype=np.uint8).copy()
        self.memory = GuestMemory(memory_size, dt.RAM_BASE)

        # ---- harts, time and interrupt plumbing --------------------------------------------
        self.hart = Hart(self.memory.array, dt.RAM_BASE, 0, self.rom, ROM_BASE,
                         code_pages=self.memory.code_pages, jit=jit)
        # The harts share RAM and the translation cache; each has its own state and tables.
        self.harts = [self.hart] + [Hart(self.memory.array, dt.RAM_BASE, h, self.rom, ROM_BASE,
                                         code_pages=self.memory.code_pages, jit=self.hart.jit)
                                    for h in range(1, num_harts)]
        self.clock = GuestClock(self.hart.s, deterministic)
        self.clocks = [self.clock] + [GuestClock(h.s, deterministic, primary=self.clock) for h in self.harts[1:]]
        for clock in self.clocks:
            clock.agree = num_harts > 1
        self.wakes = [threading.Event() for _ in self.harts]  # set by device events while a hart sleeps
        self.wake = self.wakes[0]
        self._ip_lock = threading.Lock()       # serializes writers of s[HW_IP] and s[ATTENTION]
        #: held around every MMIO access when several hart threads run (machine/smp.py)
        self.device_lock = threading.RLock()
        self._local = threading.local()        # .hart: the hart the current thread runs
        self._epoch_ns = DETERMINISTIC_EPOCH_NS if deterministic else time.time_ns()

        # PLIC context 2h: hart h in M-mode, 2h+1: in S-mode. Its state is shared with the
        # harts' cores, which serve claims and completions themselves (cpu/irqchip.py).
        self.plic = Plic(2 * num_harts, ndev=self.config.plic_ndev, base=dt.PLIC_BASE, on_rise=self._kick)
        for h, hart in enumerate(self.harts):
            self.plic.bind_hart(h, hart.s)
            hart.attach_irqchip(self.plic.pl)
        self.uart = Uart16550(self.plic.line(dt.UART_IRQ), on_output=self._uart_byte)
        self.rtc = GoldfishRtc(self.plic.line(dt.RTC_IRQ), clock=self._rtc_clock)
        self.finisher = TestFinisher(self._finisher_event)
        self.clint = Clint(HartTimer(self.clocks, self._ip_lock, self.wakes, self.current_hart), num_harts)
        self.virtio = [VirtioSlot() for _ in range(dt.VIRTIO_MAX)]

        self.bus = MmioBus()
        self.bus.add(ROM_BASE, BootRom(rom), "rom")
        self.bus.add(dt.TEST_BASE, self.finisher, "test")
        self.bus.add(dt.RTC_BASE, self.rtc, "rtc")
        self.bus.add(dt.CLINT_BASE, self.clint, "clint")
        self.bus.add(dt.PLIC_BASE, self.plic, "plic")
        self.bus.add(dt.UART_BASE, self.uart, "uart")
        for n, slot in enumerate(self.virtio):
            self.bus.add(dt.VIRTIO_BASE + n * dt.VIRTIO_STRIDE, slot, f"virtio{n}")

        self._out = bytearray()
        self._out_since = 0    # perf_counter_ns when _out became non-empty
        #: exit counters and host seconds spent asleep in WFI (for benchmarks and `stats`)
        self.stats: dict[str, Any] = {"mmio_exits": 0, "wfi_exits": 0, "slices": 0, "idle_seconds": 0.0}
        self._exit: MachineExit | None = None
        self._stop = False
        #: per hart: the server of that hart's MMIO exits (`_server`)
        self._servers = [self._server(h) for h in self.harts]
        self.reset()

    # ---- wiring helpers ---------------------------------------------------------------
    def _kick(self, harts: int) -> None:
        """The PLIC raised the external interrupt line of the harts in the mask `harts` (bit h):
        make each re-check its interrupts soon, and wake it if it sleeps in WFI."""
        lock, attention = self._ip_lock, L.ATTENTION
        h = 0
        while harts:
            if harts & 1:
                with lock:
                    self.harts[h].state_view[attention] |= 1  # re-check interrupts soon (cpu/layout.py)
                # Set after the write above: a hart that cleared its event then sees the line
                # when it checks for pending interrupts before it sleeps. A set event needs no
                # second set (its lock and notify cost 1 us, twice an I/O request).
                wake = self.wakes[h]
                if not wake.is_set():
                    wake.set()
            harts >>= 1
            h += 1

    def current_hart(self) -> int:
        """The hart whose exit the calling thread is serving (0 outside a run)."""
        return getattr(self._local, "hart", 0)

    @property
    def instructions(self) -> int:
        """Instructions retired by all harts since reset."""
        return sum(h.instret for h in self.harts)

    def _rtc_clock(self) -> int:
        """The RTC's clock in ns since the epoch, derived from mtime (so both modes agree)."""
        return self._epoch_ns + self.clock.now() * NS_PER_TICK

    def _uart_byte(self, byte: int) -> None:
        out = self._out
        if not out:
            self._out_since = time.perf_counter_ns()
        out.append(byte)
        if byte == 10 or len(out) >= 4096:
            self.flush_output()

    def flush_stale_output(self) -> None:
        """Hand over a partial line (a prompt, an echoed key) that has waited OUTPUT_DELAY_NS:
        a guest polling the UART may not finish a slice for seconds. Called at MMIO exits,
        where the caller tests `_out` first (most exits have no output waiting)."""
        if time.perf_counter_ns() - self._out_since >= OUTPUT_DELAY_NS:
            self.flush_output()

    def _finisher_event(self, kind: str, code: int) -> None:
        if self._exit is None:
            self._exit = MachineExit(kind, code, self.instructions)

    # ---- public control -----------------------------------------------------------------
    def flush_output(self) -> None:
        """Hand buffered console output to `on_output`."""
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            if self.on_output is not None:
                self.on_output(data)

    def feed_input(self, data: bytes) -> None:
        """Console input for the guest (any thread)."""
        self.uart.feed(data)
        self.wake.set()

    def stop(self) -> None:
        """Ask `run` to return soon with reason "stopped" (any thread)."""
        self._stop = True
        with self._ip_lock:
            for h in self.harts:
                h.s[L.ATTENTION] |= 2  # makes the core return from its slice
        for w in self.wakes:
            w.set()

    def reset(self) -> None:
        """Power-on state: images reloaded, hart at the boot ROM, devices reset, mtime 0."""
        mem = self.memory
        mem.zero()  # also drops a snapshot image mapped by a restore
        lay = self.layout
        mem.write(lay.firmware, self.firmware)
        if self.kernel:
            mem.write(lay.kernel, self.kernel)
        if self.initrd:
            mem.write(lay.initrd, self.initrd)
        mem.write(lay.dtb, self.dtb)
        with self._ip_lock:
            for h in self.harts:
                h.reset(ROM_BASE)
                h.s[L.HW_IP] = 0
                h.s[L.ATTENTION] = 0
        for clock in self.clocks:
            clock.reset()
        for dev in (self.uart, self.rtc, self.plic, *self.virtio):
            dev.reset()
        self._exit = None
        self._stop = False

    # ---- the run loop -----------------------------------------------------------------------
    def run(self, max_insns: int | None = None) -> MachineExit:
        """Run until the guest powers off, fails, resets, `stop()` is called or max_insns retire
        (counted over all harts)."""
        settle_collections()
        if self.num_harts > 1:
            from wirt.machine import smp

            return smp.run(self, max_insns)
        hart = self.hart
        s, ex = hart.s, hart.ex
        clock = self.clock
        limit = max_insns if max_insns is not None else 1 << 62
        next_poll = hart.instret + SLICE
        stats = self.stats
        stuck = 0
        try:
            while True:
                if self._exit is not None:
                    return self._exit
                if self._stop:
                    self._stop = False
                    s[L.ATTENTION] &= ~2  # consumed here if the core did not see it
                    return MachineExit("stopped", 0, hart.instret)
                done = int(s[L.ICOUNT])
                if done >= limit:
                    return MachineExit("limit", 0, done)
                if done >= next_poll:
                    next_poll = done + clock.poll_interval(SLICE)
                    self._poll()
                clock.before_slice()
                reason, core_ns = self.run_slice(hart, min(next_poll, limit), self._servers[0], self._halted)
                clock.account(int(s[L.ICOUNT]) - done, core_ns)
                # EXIT_MMIO here: a burst of accesses outlasted MMIO_RUN_NS, served; a new slice
                if reason == L.EXIT_WFI:
                    stats["wfi_exits"] += 1
                    self._poll()
                    self._idle()
                elif reason == L.EXIT_BUDGET:
                    stats["slices"] += 1
                    # A slice that retires nothing means every attempt traps. (Once can be
                    # a stale stop request in s[ATTENTION]; three times in a row cannot.)
                    if int(s[L.ICOUNT]) == done and not self._stop:
                        stuck += 1
                        if stuck >= 3:
                            return self._stuck()
                    else:
                        stuck = 0
                elif reason == L.EXIT_FATAL:
                    return MachineExit("fatal", 0, hart.instret,
                                       f"CPU core error at pc {hart.pc:#x} (detail {int(ex[L.EX_VALUE])})")
                elif reason == L.EXIT_POWEROFF:
                    return MachineExit("poweroff", 0, hart.instret)
                elif reason == L.EXIT_RESET:
                    return MachineExit("reset", 0, hart.instret)
                # EXIT_HTIF / EXIT_BREAKPOINT: no HTIF mailbox or debugger on this board
        finally:
            self.flush_output()

    def _halted(self) -> bool:
        return self._exit is not None or self._stop

    @staticmethod
    def run_slice(hart: Hart, end: int, serve: Callable[[], None],
                  halted: Callable[[], bool]) -> tuple[int, int]:
        """Run `hart` until its instruction count reaches `end` or it exits; returns the exit
        reason and the nanoseconds spent in the core.

        An MMIO exit is served by `serve()` and the slice resumed at once, without a new time
        anchor, for up to MMIO_RUN_NS of host time (or until `halted()`): a driver's register
        accesses (PLIC claim and complete, virtio status and acknowledge) come in bursts, and
        each trip round the run loop cost 1-2 us of the 5.5 us an exit took. Only the time in
        the core counts for its speed (TIME_SHIFT): with the device's time in it too, the shift
        fell and in-slice mtime ran ahead of the host.
        """
        sv, icount, mmio, run = hart.state_view, L.ICOUNT, L.EXIT_MMIO, hart.run
        perf = time.perf_counter_ns
        t0 = perf()
        reason = run(end - sv[icount])
        core_ns = perf() - t0
        stop = t0 + MMIO_RUN_NS
        while reason == mmio:
            serve()
            left = end - sv[icount]
            t1 = perf()
            if left <= 0 or t1 > stop or halted():
                break
            reason = run(left)
            core_ns += perf() - t1
        return reason, core_ns

    def _server(self, hart: Hart) -> Callable[[], None]:
        """The function that performs the MMIO access `hart` exited for (its ex[] slots) on the
        bus, an access the bus refuses becoming the hart's access-fault exception (the caller
        holds the device lock where other harts run). Made once per hart: it reads the exit
        record through a memoryview of the hart's array (its own for life), a Python int each,
        where numpy scalars cost 1-1.5 us an exit; a load's value goes to `Hart.complete_load`."""
        exv = memoryview(hart.ex)
        stats, bus, complete_load = self.stats, self.bus, hart.complete_load
        masks = _MASKS
        ex_addr, ex_size, ex_store, ex_value = L.EX_ADDR, L.EX_SIZE_B, L.EX_STORE, L.EX_VALUE

        def serve() -> None:
            stats["mmio_exits"] += 1
            addr, size = exv[ex_addr], exv[ex_size]
            try:
                if exv[ex_store]:
                    bus.write(addr, size, exv[ex_value] & masks[size])
                else:
                    complete_load(bus.read(addr, size))
            except BusFault:
                hart.access_fault()
            if self._out:
                self.flush_stale_output()

        return serve

    def _stuck(self) -> MachineExit:
        """A whole slice retired nothing: every attempt traps (e.g. mtvec points at no memory)."""
        c = self.hart.c
        detail = (f"the hart is stuck in a trap loop at pc {self.hart.pc:#x} "
                  f"(mcause {int(c[L.CSR_MCAUSE]) & 0xFFFF_FFFF_FFFF_FFFF:#x}, "
                  f"mepc {int(c[L.CSR_MEPC]) & 0xFFFF_FFFF_FFFF_FFFF:#x}, "
                  f"mtval {int(c[L.CSR_MTVAL]) & 0xFFFF_FFFF_FFFF_FFFF:#x})")
        return MachineExit("fatal", 0, self.hart.instret, detail)

    def _poll(self) -> None:
        """Between slices: fire a due RTC alarm, hand over console output."""
        self.rtc.poll()
        self.flush_output()

    def _pending(self, hart: int = 0) -> bool:
        """Hart `hart` has an enabled interrupt pending (it would leave WFI)."""
        s, c = self.harts[hart].s, self.harts[hart].c
        from wirt.cpu.csr import read_mip
        return (int(read_mip(s, c)) & int(c[L.CSR_MIE])) != 0

    def next_deadline(self, hart: int = 0) -> int | None:
        """The mtime of the next timer event that could wake hart `hart`, or None.

        Counted: mtimecmp (if MTIE is enabled), stimecmp (with Sstc on and STIE enabled)
        and, for hart 0 (whose loop polls it), the RTC alarm. Comparators already due but
        masked cannot wake it and are skipped.
        """
        s, c = self.harts[hart].s, self.harts[hart].c
        now = self.clocks[hart].now()
        mie = int(c[L.CSR_MIE])
        best: int | None = None
        cands = []
        if mie & L.MIP_MTIP:
            cands.append(int(s[L.MTIMECMP]))
        if int(c[L.CSR_MENVCFG]) < 0 and mie & L.MIP_STIP:
            cands.append(int(c[L.CSR_STIMECMP]))
        alarm = self.rtc.next_deadline() if hart == 0 else None
        if alarm is not None:
            cands.append(max(0, -(-(alarm - self._epoch_ns) // NS_PER_TICK)))
        for t in cands:
            if t > now and (best is None or t < best):
                best = t
        return best

    def _idle(self) -> None:
        """WFI with nothing pending: sleep until the next deadline or a device event."""
        self.flush_output()
        self.wake.clear()
        if self._pending() or self._stop or self._exit is not None:
            return
        deadline = self.next_deadline()
        if self.deterministic:
            if deadline is not None:
                self.clock.fast_forward(deadline)
                self.rtc.poll()
                return
            self.wake.wait(1.0)  # only outside input can wake the guest now
            return
        timeout = 1.0 if deadline is None else min(1.0, self.clock.seconds_until(deadline))
        if timeout > 0:
            t0 = time.perf_counter()
            self.wake.wait(timeout)
            self.stats["idle_seconds"] += time.perf_counter() - t0
        self.rtc.poll()

    # ---- inspection -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain-data state of the hart and devices (guest RAM is saved separately).

        Call it between `run()` calls: the hart is not running then, and every device's
        guest-visible work is done: requests are served on the CPU thread, and virtio-net's
        transmit thread has its pending notification served by the device's `state` first
        (frames it already took may still be on their way to the backend, as on a wire).
        """
        self.flush_output()
        more = {"smp": [h.state() for h in self.harts[1:]]} if self.num_harts > 1 else {}
        return {
            **more,
            "hart": self.hart.state(),
            "clock": self.clock.state(),
            "plic": self.plic.state(),
            "uart": self.uart.state(),
            "rtc": self.rtc.state(),
            "finisher": self.finisher.state(),
            "virtio": [v.state() for v in self.virtio],
        }

    def signature(self) -> dict[str, Any]:
        """What a saved state must match to be loaded here: RAM size, harts, the virtio devices."""
        from wirt.devices.virtio import spec

        names = {spec.ID_NET: "net", spec.ID_BLOCK: "blk", spec.ID_CONSOLE: "console", spec.ID_RNG: "rng"}
        slots: list[dict[str, Any] | None] = []
        for slot in self.virtio:
            dev = getattr(slot.device, "device", None)
            slots.append(None if dev is None else {"device": names.get(dev.device_id, str(dev.device_id))})
        while slots and slots[-1] is None:
            slots.pop()
        return {"memory_size": self.memory.size, "harts": self.num_harts, "virtio": slots}

    def load_state(self, d: dict[str, Any]) -> None:
        """Load `state()` output (guest RAM separately, see machine/snapshot.py).

        Devices first, the PLIC after its sources (their load may raise lines), the hart last
        (its interrupt-pending word is the saved one). In real-time mode mtime continues from the
        saved value (the guest's monotonic clock has no gap, as with QEMU's loadvm) while the RTC
        is brought forward to the host's wall clock.
        """
        self._out.clear()
        self.uart.load_state(d["uart"])
        self.rtc.load_state(d["rtc"])
        if "finisher" in d:
            self.finisher.load_state(d["finisher"])
        for slot, vs in zip(self.virtio, d["virtio"]):
            if vs:
                slot.load_state(vs)
        self.plic.load_state(d["plic"])
        with self._ip_lock:
            for h, hs in zip(self.harts, [d["hart"], *d.get("smp", [])]):
                h.load_state(hs)
                h.s[L.ATTENTION] = 1  # re-check interrupts before the first instruction
        if not self.deterministic:
            now = self.clock.now()
            self.clock.set(now)  # host clock anchor: time runs on from the saved mtime
            for clock in self.clocks[1:]:  # the other harts' anchors are already in their state
                clock.before_slice()
            self._epoch_ns = time.time_ns() - now * NS_PER_TICK
        self._exit = None
        self._stop = False
        for w in self.wakes:
            w.set()
