"""Where the time of a virtio I/O benchmark goes: `wirt run` with its host-side paths timed.

    python bench/ioprofile.py --out FILE -- run [wirt run options] -- COMMAND

runs `wirt run` in this process with timers around the hart's run slices (the guest's own
instructions, guest kernel included), the MMIO bus (register emulation), the virtio
devices' request paths (blk and net transmit on the CPU thread; net receive on the backend
thread), the image's I/O calls, the backend's sends and the idle sleeps of WFI, plus counts
of MMIO exits, queue notifications, interrupts and requests, and the CPU time each thread
(and child process: passt) used, from the kernel's clocks. Every console line starting with
`diskio ` or `netio ` (bench/diskio.c, bench/netio.c) closes a phase: the figures between two
such lines are written to FILE as one JSON line per phase (see `phase_report`). bench/disk.py
and bench/net.py use it with `--profile`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable

_clock = time.perf_counter_ns
COUNTERS = ("t_cpu", "insns", "t_bus", "t_blk", "t_disk", "t_net_tx", "t_net_send", "t_net_rx", "t_idle",
            "mmio_exits", "notifies_blk", "notifies_net", "irqs_blk", "irqs_net", "requests_blk",
            "frames_tx", "frames_rx", "bytes_blk")


class Profile:
    """Counters (ns and events) and the phases closed so far."""

    def __init__(self, out: str) -> None:
        self.c = dict.fromkeys(COUNTERS, 0)
        self.lock = threading.Lock()
        self.out = out
        self.mark = (_clock(), dict(self.c), thread_cpu())
        self.pending = b""
        self.regs: dict[tuple[int, int], int] = {}  # (guest physical address, 1 for a store): accesses
        self.harts: set = set()                      # the harts run so far (their tier counters)
        self.tier = self.tier_counters()

    def tier_counters(self) -> dict[str, int]:
        """The translation tier's counters (cpu/layout.py JQ_*), summed over the harts."""
        from wirt.cpu import layout as L
        names = {"in translated code": L.JQ_INSNS, "regions entered": L.JQ_CALLS,
                 "side exits": L.JQ_SIDE, "translations": L.JQ_XN, "invalidations": L.JQ_INVAL}
        return {k: sum(int(h.jq[i]) for h in list(self.harts)) for k, i in names.items()}

    def add(self, key: str, value: int) -> None:
        with self.lock:
            self.c[key] += value

    def console(self, data: bytes) -> None:
        """Console output: a benchmark line closes the phase it reports."""
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(("diskio ", "netio ")):
                self.close_phase(line)

    def close_phase(self, line: str) -> None:
        now = _clock()
        with self.lock:
            snap = dict(self.c)
            regs, self.regs = self.regs, {}
        cpu = thread_cpu()
        tier, tier0 = self.tier_counters(), self.tier
        self.tier = tier
        t0, before, cpu0 = self.mark
        self.mark = (now, snap, cpu)
        delta = {k: snap[k] - before[k] for k in COUNTERS}
        threads = {name: ns - cpu0.get(name, 0) for name, ns in cpu.items()}
        with open(self.out, "a") as f:
            f.write(json.dumps({"line": line, "wall_ns": now - t0, **delta, "cpu_ns": threads,
                                "tier": {k: tier[k] - tier0.get(k, 0) for k in tier},
                                "regs": sorted(([f"{a:#x}{'w' if w else 'r'}", n] for (a, w), n in regs.items()),
                                               key=lambda r: -r[1])[:12]}) + "\n")


def thread_cpu() -> dict[str, int]:
    """CPU time (ns) so far of each thread of this process, by name (same names summed), and of
    its child processes (passt) as "child NAME", from the kernel's per-thread clocks and /proc."""
    out: dict[str, int] = {}
    for t in threading.enumerate():
        if t.ident is None:
            continue
        try:
            ns = time.clock_gettime_ns(time.pthread_getcpuclockid(t.ident))
        except (OSError, ProcessLookupError):
            continue
        name = "cpu (hart)" if t is threading.main_thread() else t.name.split(" ")[0]
        out[name] = out.get(name, 0) + ns
    tick = os.sysconf("SC_CLK_TCK")
    for child in _children():
        try:
            with open(f"/proc/{child}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ns = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // tick  # utime + stime
        out[f"child {comm}"] = out.get(f"child {comm}", 0) + ns
    return out


def _children() -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return kids


def _timed(prof: Profile, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kw: Any) -> Any:
        t0 = _clock()
        try:
            return fn(*args, **kw)
        finally:
            prof.add(key, _clock() - t0)
    return wrapper


def _timed_outer(prof: Profile, key: str, fn: Callable[..., Any], depth: list[int]) -> Callable[..., Any]:
    """`_timed` that counts a call made inside another of the same group once (depth[0] shared)."""
    def wrapper(*args: Any, **kw: Any) -> Any:
        depth[0] += 1
        t0 = _clock()
        try:
            return fn(*args, **kw)
        finally:
            depth[0] -= 1
            if not depth[0]:
                prof.add(key, _clock() - t0)
    return wrapper


def install(prof: Profile) -> None:
    """Wrap the host-side paths (class attributes, so every machine built afterwards is timed)."""
    from wirt.cpu.hart import Hart
    from wirt.devices.virtio.blk import VirtioBlk
    from wirt.devices.virtio.mmio import VirtioMmio
    from wirt.devices.virtio.net import VirtioNet
    from wirt.devices.virtio.virtqueue import Virtqueue
    from wirt.machine.board import Machine
    from wirt.machine.bus import MmioBus

    from wirt.cpu import layout as L

    hart_run, icount = Hart.run, L.ICOUNT

    def run(self: Any, budget: int) -> int:
        s = self.s
        prof.harts.add(self)
        i0, t0 = int(s[icount]), _clock()
        try:
            return hart_run(self, budget)
        finally:
            prof.add("t_cpu", _clock() - t0)
            prof.add("insns", int(s[icount]) - i0)
    Hart.run = run
    Machine._idle = _timed(prof, "t_idle", Machine._idle)
    write = MmioBus.write
    for name in ("read", "write"):
        orig = getattr(MmioBus, name)

        def bus(self: Any, *a: Any, _orig: Callable[..., Any] = orig) -> Any:
            prof.c["mmio_exits"] += 1
            key = (a[0], _orig is write)
            prof.regs[key] = prof.regs.get(key, 0) + 1
            t0 = _clock()
            try:
                return _orig(self, *a)
            finally:
                prof.add("t_bus", _clock() - t0)
        setattr(MmioBus, name, bus)

    blk_notify = VirtioBlk.queue_notify

    def blk(self: Any, q: Any) -> None:
        prof.add("notifies_blk", 1)
        t0 = _clock()
        try:
            blk_notify(self, q)
        finally:
            prof.add("t_blk", _clock() - t0)
    VirtioBlk.queue_notify = blk

    net_notify = VirtioNet.queue_notify

    def net(self: Any, q: Any) -> None:
        prof.add("notifies_net", 1)
        t0 = _clock()
        try:
            net_notify(self, q)
        finally:
            prof.add("t_net_tx", _clock() - t0)
    VirtioNet.queue_notify = net
    VirtioNet.receive_many = _timed(prof, "t_net_rx", VirtioNet.receive_many)

    attach = VirtioMmio.__init__

    def init(self: Any, device: Any, *a: Any, **kw: Any) -> None:
        attach(self, device, *a, **kw)
        kind = {"VirtioBlk": "blk", "VirtioNet": "net"}.get(type(device).__name__)
        for q in self.queues:
            q._prof_kind = kind
        if kind == "blk":
            disk = device.disk
            depth = [0]  # readv_iov may call readv (a format without its own): time the outer call only
            for m in ("readinto", "write", "flush", "discard", "write_zeroes", "readv", "writev", "readv_iov", "writev_iov"):
                if hasattr(disk, m):
                    setattr(disk, m, _timed_outer(prof, "t_disk", getattr(disk, m), depth))
        elif kind == "net":
            device._send_many = _timed(prof, "t_net_send", device._send_many)
    VirtioMmio.__init__ = init

    should = Virtqueue.should_interrupt

    def should_interrupt(self: Any) -> bool:
        r = should(self)
        kind = getattr(self, "_prof_kind", None)
        if r and kind:
            prof.add(f"irqs_{kind}", 1)
        return r
    Virtqueue.should_interrupt = should_interrupt

    push = Virtqueue.push_many

    def counted_push(self: Any, heads: list[int], written: list[int]) -> None:
        push(self, heads, written)
        kind = getattr(self, "_prof_kind", None)
        if kind == "blk":
            prof.add("requests_blk", len(heads))
        elif kind == "net":
            prof.add("frames_rx" if self.index == 0 else "frames_tx", len(heads))
    Virtqueue.push_many = counted_push


def phase_report(p: dict[str, Any]) -> str:
    """One phase's figures as a line: shares of wall time and events per second."""
    wall = p["wall_ns"] or 1
    cpu, bus, blk, tx, idle = (p[k] for k in ("t_cpu", "t_bus", "t_blk", "t_net_tx", "t_idle"))
    dev = blk + tx
    regs = bus - dev  # register emulation (virtio, PLIC, UART...) outside the request paths
    host = bus + p["t_net_rx"]
    other = wall - cpu - bus - idle
    sec = wall / 1e9
    parts = [f"{p['line'][:40]:40s} {sec:6.2f} s",
             f"guest CPU {cpu / wall:5.1%}", f"host device paths {dev / wall:5.1%}",
             f"(image I/O {p['t_disk'] / wall:5.1%}, backend send {p['t_net_send'] / wall:5.1%})",
             f"register MMIO {regs / wall:5.1%}", f"net rx thread {p['t_net_rx'] / wall:5.1%}",
             f"idle {idle / wall:5.1%}", f"run loop {other / wall:5.1%}",
             f"=> host side {host / wall:5.1%}",
             f"| per s: {p['mmio_exits'] / sec:7.0f} MMIO exits, "
             f"{(p['notifies_blk'] + p['notifies_net']) / sec:6.0f} notifies, "
             f"{(p['irqs_blk'] + p['irqs_net']) / sec:6.0f} irqs, {p['requests_blk'] / sec:6.0f} blk requests, "
             f"{p['frames_tx'] / sec:6.0f} tx / {p['frames_rx'] / sec:6.0f} rx frames"]
    events = p["requests_blk"] or p["frames_tx"] + p["frames_rx"]
    if p.get("insns") and cpu:
        # how much work the guest itself does for each request or frame, and how fast it runs
        per = f", {p['insns'] / events / 1000:.0f} K per {'request' if p['requests_blk'] else 'frame'}" if events else ""
        parts.append(f"| guest instructions: {p['insns'] / 1e6:.0f} M at {p['insns'] / cpu * 1e3:.0f} MIPS{per}")
        tier = p.get("tier") or {}
        if tier:
            parts.append(f"| translation tier: {tier.pop('in translated code') / p['insns']:.0%} in translated code, "
                         + ", ".join(f"{k} {v / sec:.0f}/s" for k, v in tier.items()))
    cpu_ns = p.get("cpu_ns") or {}
    if cpu_ns:
        shares = ", ".join(f"{name} {ns / wall:5.1%}" for name, ns in sorted(cpu_ns.items(), key=lambda kv: -kv[1])
                           if ns / wall >= 0.005)
        parts.append(f"| CPU time per thread (share of wall): {shares}")
    if p.get("regs") and p["mmio_exits"] / sec >= 1000:
        parts.append("| busiest registers per s: " + ", ".join(f"{a} {n / sec:.0f}" for a, n in p["regs"][:8]))
    return "  ".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "--out" or argv[2] != "--":
        print("usage: python bench/ioprofile.py --out FILE -- run [options] -- COMMAND", file=sys.stderr)
        return 2
    prof = Profile(argv[1])
    install(prof)
    import wirt.cli as cli
    from wirt.machine.board import Machine

    init = Machine.__init__

    def machine_init(self: Any, *a: Any, on_output: Callable[[bytes], None] | None = None, **kw: Any) -> None:
        def output(data: bytes) -> None:
            prof.console(data)
            if on_output is not None:
                on_output(data)
        init(self, *a, on_output=output, **kw)
    Machine.__init__ = machine_init
    return cli.main(argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
