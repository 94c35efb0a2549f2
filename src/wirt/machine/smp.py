"""Running a machine with several harts: a host thread per hart, or all interleaved on one.

Real-time mode: hart h runs on its own host thread (the numba core releases the GIL, so the
harts run truly in parallel, as QEMU's MTTCG vCPU threads do); the caller's thread runs hart
0 and the periodic device polls. Guest RAM is shared; AMOs and SC are host atomics
(cpu/atomics.py). Device model calls from MMIO exits are serialized by one machine lock,
`Machine.device_lock` (like QEMU's big lock): device state stays consistent whichever hart's
thread exits, and devices need no locking of their own against the harts. A hart in WFI with
nothing pending sleeps on its own `threading.Event` until its next timer deadline; the
interrupt sinks (PLIC contexts, CLINT MSIP) set that event, so an IPI or a device interrupt
wakes exactly the hart it is routed to.

Deterministic mode: all harts run on the caller's thread in a fixed order, QUANTUM
instructions each per round. Every hart starts a round at the same mtime, which advances
by QUANTUM >> TIME_SHIFT per round; when every hart sleeps in WFI, mtime jumps to the
earliest deadline. Nothing depends on the host's speed, so a run repeats exactly.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from wirt.cpu import layout as L
from wirt.cpu.hart import Hart
from wirt.machine.timebase import DETERMINISTIC_SHIFT

if TYPE_CHECKING:
    from wirt.machine.board import Machine, MachineExit

__all__ = ["run", "QUANTUM"]

# Instructions a hart runs per turn in deterministic mode: short enough that a spinning hart
# hands over soon (spinlocks, OpenSBI's boot wait), long enough to keep the switch cost low.
QUANTUM = 1 << 14


def run(m: Machine, max_insns: int | None) -> MachineExit:
    """Run `m`'s harts until the guest powers off, fails, resets, `stop()` or max_insns."""
    try:
        if m.deterministic:
            return _interleaved(m, max_insns)
        return _threads(m, max_insns)
    finally:
        m._local.hart = 0
        m.flush_output()


def _serve(m: Machine, hart: Hart, reason: int) -> MachineExit | None:
    """Handle one exit of `hart` other than WFI and budget; a MachineExit ends the run."""
    from wirt.machine.board import MachineExit

    ex = hart.ex
    if reason == L.EXIT_MMIO:
        with m.device_lock:
            m._servers[int(hart.s[L.HARTID])]()
    elif reason == L.EXIT_FATAL:
        return MachineExit("fatal", 0, m.instructions,
                           f"CPU core error on hart {int(hart.s[L.HARTID])} at pc {hart.pc:#x} "
                           f"(detail {int(ex[L.EX_VALUE])})")
    elif reason == L.EXIT_POWEROFF:
        return MachineExit("poweroff", 0, m.instructions)
    elif reason == L.EXIT_RESET:
        return MachineExit("reset", 0, m.instructions)
    return None


def _stopped(m: Machine) -> MachineExit:
    from wirt.machine.board import MachineExit

    m._stop = False
    with m._ip_lock:
        for h in m.harts:
            h.s[L.ATTENTION] &= ~2  # consumed here if a core did not see it
    return MachineExit("stopped", 0, m.instructions)


# ---- deterministic: one thread, fixed quanta ---------------------------------------------------
def _interleaved(m: Machine, max_insns: int | None) -> MachineExit:
    from wirt.machine.board import SLICE, MachineExit

    limit = max_insns if max_insns is not None else 1 << 62
    harts = m.harts
    asleep = [False] * len(harts)
    now = max(c.now() for c in m.clocks)  # the mtime every hart starts the next round at
    next_poll = m.instructions + SLICE
    while True:
        if m._exit is not None:
            return m._exit
        if m._stop:
            return _stopped(m)
        done = m.instructions
        if done >= limit:
            return MachineExit("limit", 0, done)
        if done >= next_poll:
            next_poll = done + SLICE
            m._poll()
        ran = False
        for i, hart in enumerate(harts):
            m.clocks[i].anchor(now)
            if asleep[i]:
                if not m._pending(i):
                    continue
                asleep[i] = False
            ran = True
            m._local.hart = i
            turn_end = hart.instret + min(QUANTUM, max(1, limit - m.instructions))
            while hart.instret < turn_end and m._exit is None and not m._stop:
                reason = hart.run(turn_end - hart.instret)
                if reason == L.EXIT_WFI:
                    m.stats["wfi_exits"] += 1
                    asleep[i] = not m._pending(i)
                    if asleep[i]:
                        break
                elif reason == L.EXIT_BUDGET:
                    m.stats["slices"] += 1
                    if int(hart.s[L.ATTENTION]) & 2 or m._stop:
                        break
                else:
                    result = _serve(m, hart, reason)
                    if result is not None:
                        return result
            if m._exit is not None or m._stop:
                break
        if ran:
            now += QUANTUM >> DETERMINISTIC_SHIFT
            continue
        # Every hart sleeps: jump to the earliest deadline, or wait for outside input.
        m._poll()
        deadlines = [d for d in (m.next_deadline(i) for i in range(len(harts))) if d is not None]
        if deadlines:
            now = max(now, min(deadlines))
            for c in m.clocks:
                c.anchor(now)
            m.rtc.poll()
        else:  # only outside input can wake a hart now (it may be routed to any hart)
            m.wake.wait(0.1)
            m.wake.clear()


# ---- real time: a host thread per hart ---------------------------------------------------------
def _threads(m: Machine, max_insns: int | None) -> MachineExit:
    from wirt.machine.board import MachineExit

    limit = max_insns if max_insns is not None else 1 << 62
    halt = threading.Event()
    outcome: list[MachineExit] = []

    def finish(result: MachineExit) -> None:
        with m.device_lock:
            if not outcome:
                outcome.append(result)
        halt.set()
        _kick(m)

    def worker(i: int) -> None:
        try:
            result = _hart_loop(m, i, halt, limit)
        except Exception as exc:  # a device model bug on a hart thread ends the run, not the thread alone
            result = MachineExit("fatal", 0, m.instructions, f"hart {i}: {type(exc).__name__}: {exc}")
        if result is not None:
            finish(result)

    threads = [threading.Thread(target=worker, args=(i,), name=f"wirt-hart{i}", daemon=True)
               for i in range(1, len(m.harts))]
    for t in threads:
        t.start()
    try:
        worker(0)
    finally:
        halt.set()
        _kick(m)
        for t in threads:
            t.join()
        with m._ip_lock:
            for h in m.harts:
                h.s[L.ATTENTION] &= ~2
    return outcome[0]


def _kick(m: Machine) -> None:
    """Make every hart leave its slice or WFI sleep soon."""
    with m._ip_lock:
        for h in m.harts:
            h.s[L.ATTENTION] |= 2
    for w in m.wakes:
        w.set()


def _hart_loop(m: Machine, i: int, halt: threading.Event, limit: int) -> MachineExit | None:
    """One hart's thread: run slices, serve exits, sleep in WFI; hart 0 also polls devices."""
    from wirt.machine.board import SLICE, MachineExit

    m._local.hart = i
    hart, clock = m.harts[i], m.clocks[i]
    s = hart.s

    lock, serve_mmio = m.device_lock, m._servers[i]

    def serve() -> None:
        with lock:
            serve_mmio()

    def halted() -> bool:
        return halt.is_set() or m._exit is not None or m._stop

    next_poll = hart.instret + SLICE
    while not halt.is_set():
        if m._exit is not None:
            return m._exit
        if m._stop:
            if i == 0:
                return _stopped(m)
            return None
        done = int(s[L.ICOUNT])
        if i == 0:
            total = m.instructions
            if total >= limit:
                return MachineExit("limit", 0, total)
            if done >= next_poll:
                next_poll = done + clock.poll_interval(SLICE)
                with m.device_lock:
                    m._poll()
        clock.before_slice()
        # A slice covers SLICE_TICKS of in-slice mtime, so harts agree on mtime within about a
        # slice. Capping it at SLICE instructions as well (which a lone hart's loop, Machine.run,
        # does not) made every slice of a hart at 3,000 MIPS 0.6 ms instead of about 1.5, and the
        # returns to Python cost a 2-vCPU run 1-3 % and a 4-vCPU run on two host cores 2-3 %.
        budget = clock.slice_budget()
        end = done + (min(next_poll - done, budget) if i == 0 else budget)
        reason, core_ns = m.run_slice(hart, end, serve, halted)
        clock.account(int(s[L.ICOUNT]) - done, core_ns)
        if reason == L.EXIT_MMIO:
            pass    # a burst of accesses outlasted MMIO_RUN_NS, served: a new slice
        elif reason == L.EXIT_WFI:
            m.stats["wfi_exits"] += 1
            if i == 0:
                with m.device_lock:
                    m._poll()
            _sleep(m, i, halt)
        elif reason == L.EXIT_BUDGET:
            m.stats["slices"] += 1
        else:
            result = _serve(m, hart, reason)
            if result is not None:
                return result
    return None


def _sleep(m: Machine, i: int, halt: threading.Event) -> None:
    """WFI with nothing pending: sleep on the host until the hart's next deadline or a wake-up
    (its interrupt lines, an IPI, a stop). Hart 0 also fires a due RTC alarm afterwards."""
    wake = m.wakes[i]
    wake.clear()
    if m._pending(i) or halt.is_set() or m._stop or m._exit is not None:
        return
    deadline = m.next_deadline(i)
    timeout = 1.0 if deadline is None else min(1.0, m.clocks[i].seconds_until(deadline))
    if timeout > 0:
        t0 = time.perf_counter()
        wake.wait(timeout)
        with m.device_lock:
            m.stats["idle_seconds"] += time.perf_counter() - t0
    if i == 0:
        with m.device_lock:
            m.rtc.poll()
