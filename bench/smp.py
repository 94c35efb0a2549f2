"""SMP speed-up: a CPU-bound parallel guest workload on 1, 2 and 4 vCPUs, beside QEMU -smp N.

The guest program bench/smpwork.c forks 4 processes of pure integer work (no memory traffic, no
system calls) and times them in the guest (CLOCK_MONOTONIC), once the kernel's crypto self-tests
(cryptomgr_test threads, seconds of CPU after boot) are done. The default is a few seconds of work:
with the translation tier a shorter run measures mostly translation and start-up. The total work is the same at every
vCPU count, so speed-up = time on 1 vCPU / time on N vCPUs. QEMU runs the same firmware, kernel,
initramfs and command with `-smp N -accel tcg,thread=multi` (MTTCG: a host thread per vCPU).

It also reports the cost of an idle extra vCPU: the hypervisor process's host CPU % while the
guest sleeps for --idle seconds after the work (read from /proc/PID/stat), at 1 and 2 vCPUs. The
idle window starts --settle seconds after the work: a freshly booted kernel runs its crypto
self-tests (cryptomgr_test) for a while and is not idle before.

Each configuration runs --repeat times (wirt and QEMU alternating, so that a change in the host's
load falls on both) and the median is reported with the range: one run of either hypervisor moves
by a few per cent with the guest scheduler's placement of the 4 jobs. The idle window is measured
in the first round only.

Usage: python bench/smp.py [--iterations 250000000] [--cpus 1,2,4] [--repeat 3] [--idle 10] [--settle 40]
                           [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import guestbench as gb  # noqa: E402

JOBS = 4
WAIT_SELFTESTS = 'while ps | grep -q "[c]ryptomgr"; do sleep 0.2; done'


def _cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, all its threads (proc(5) fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], idle: int, timeout: float = 1800) -> tuple[float | None, float | None, str]:
    """Run a hypervisor; returns (work seconds in the guest, host CPU % while the guest idles, output)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         text=True, errors="replace")
    out: list[str] = []
    work = idle_pct = None
    mark: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    for line in p.stdout:
        out.append(line)
        if line.startswith("smpwork ") and len(line.split()) == 5:
            work = int(line.split()[3]) / 1e9
        elif "IDLE-START" in line and "echo" not in line:
            mark = (time.monotonic(), _cpu_seconds(p.pid))
        elif "IDLE-END" in line and "echo" not in line and mark is not None:
            idle_pct = 100 * (_cpu_seconds(p.pid) - mark[1]) / (time.monotonic() - mark[0])
        if time.monotonic() > deadline:
            p.kill()
            break
    p.wait()
    return work, idle_pct, "".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=250_000_000,
                    help="hash rounds per job (4 jobs; about 3 s on 1 vCPU)")
    ap.add_argument("--cpus", default="1,2,4", help="vCPU counts to run (default 1,2,4)")
    ap.add_argument("--idle", type=int, default=10, help="seconds the guest sleeps after the work (1 and 2 vCPUs)")
    ap.add_argument("--settle", type=int, default=40, help="seconds between the work and the idle window")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each configuration (median reported)")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    counts = [int(c) for c in args.cpus.split(",")]
    print(gb.host_load())
    program = gb.build_guest_program(Path(__file__).with_name("smpwork.c"))
    with tempfile.TemporaryDirectory() as tmp:
        initrd = gb.initrd_with({"bin/smpwork": program}, Path(tmp))
        names = ["wirt"] + (["qemu"] if gb.qemu_exe() and not args.no_qemu else [])
        works: dict[str, dict[int, list[float]]] = {name: {n: [] for n in counts} for name in names}
        idles: dict[str, dict[int, float]] = {name: {} for name in names}
        for round_ in range(max(1, args.repeat)):
            for n in counts:
                idle = args.idle if n <= 2 and round_ == 0 else 0
                # The kernel's crypto self-tests (cryptomgr_test threads) run for seconds after boot:
                # on one vCPU they took the CPU from the work and made its time 20x QEMU's.
                command = f"{WAIT_SELFTESTS}; smpwork {JOBS} {args.iterations}" + (
                    f"; sleep {args.settle}; echo IDLE-START; sleep {idle}; echo IDLE-END" if idle else "")
                for name in names:
                    if name == "wirt":
                        cmd = gb.wirt_cmd(command, "--initrd", str(initrd), "--cpus", str(n))
                    else:
                        cmd = gb.qemu_cmd(command, initrd=str(initrd), cpus=n)
                    print(f"{name} {n} vCPU, round {round_ + 1}: running ...", file=sys.stderr, flush=True)
                    work, idle_pct, out = measure(cmd, idle)
                    if work is None:
                        print(f"{name} {n} vCPU: no result\n{out[-1500:]}", file=sys.stderr)
                    else:
                        works[name][n].append(work)
                    if idle_pct is not None:
                        idles[name][n] = idle_pct
        print(gb.host_load())
        print(f"{JOBS} jobs x {args.iterations} rounds; guest seconds (median of {args.repeat}, range), "
              "speed-up vs 1 vCPU")
        med = {name: {n: statistics.median(v) for n, v in rows.items() if v} for name, rows in works.items()}
        for name in names:
            base = med[name].get(1)
            for n in counts:
                runs = works[name][n]
                if not runs:
                    print(f"  {name:4} {n} vCPU: no result")
                    continue
                work = med[name][n]
                speed = f"{base / work:.2f}x" if base else "-"
                idle_s = f", idle guest: host CPU {idles[name][n]:.1f} %" if n in idles[name] else ""
                print(f"  {name:4} {n} vCPU: {work:.2f} s ({min(runs):.2f}-{max(runs):.2f}), "
                      f"speed-up {speed}{idle_s}")
        w, q = med["wirt"], med.get("qemu", {})
        for n in counts:
            if n > 1 and all(k in w for k in (1, n)) and all(k in q for k in (1, n)):
                ws, qs = w[1] / w[n], q[1] / q[n]
                print(f"  {n} vCPUs: wirt speed-up / QEMU speed-up = {ws / qs:.2f}; "
                      f"wirt time / QEMU time = {w[n] / q[n]:.2f}")
        for name in names:
            if 1 in idles[name] and 2 in idles[name]:
                print(f"  an idle extra vCPU costs {name} {idles[name][2] - idles[name][1]:+.1f} % of a host CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
