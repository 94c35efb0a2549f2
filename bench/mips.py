"""Guest instructions per second of wirt's CPU core, beside QEMU on the same programs.

Runs wirt's own bare-metal benchmarks: integer (xorshift fill, insertion sort, multiply/divide
mix), branch-heavy (bytecode VM, quicksort, hash table, lexer), memory-bound, floating-point
(double and single multiply-add and divide chains) and call-heavy (small out-of-line functions:
list walks, a CRC fed a byte a call, a state machine, a matrix product), and prints:
- guest MIPS for each (wall time of the run loop only),
- the core's cold compile time (empty numba cache) and cached start time,
- the same programs under `qemu-system-riscv64 -M spike -bios none -kernel` when installed,
  with QEMU's start-up removed by subtracting a run of a twentieth of the rounds, and the
  ratio wirt/QEMU.

Each program runs with the translation tier off (a tenth of the rounds) and on (WIRT_JIT),
about 450 M instructions at the default; every figure is the best of three runs, wirt's and
QEMU's alike. The FP instruction costs are the interpreter's.

Usage: python bench/mips.py [--rounds N] [--skip-compile]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import guestbench as gb  # noqa: E402
from wirt.demo import build_program  # noqa: E402
from wirt.machine.baremetal import BareMetal  # noqa: E402

# (label, program, -march, rounds as a fraction of --rounds): about 450 M instructions each at
# the default, so that QEMU's run lasts 0.3-2 s and its start-up, removed by subtraction, and
# the host's noise are a few per cent of it (at a tenth of that, QEMU's figure moved by 2x
# between runs and once came out negative).
PROGRAMS = [("integer", "intloop", "rv64imac", 2.5),
            ("branch-heavy", "branchy", "rv64imac", 0.7),
            ("branch-heavy C", "branchy", "rv64imc", 0.7),
            ("memory-bound", "memloop", "rv64imac", 0.04),
            ("floating point", "fploop", "rv64gc", 15.0),
            ("call-heavy", "calls", "rv64imac", 2.0)]
TIERS = ("off", "on")


def run_wirt(path: str, clock=time.perf_counter, jit: str | None = None) -> tuple[int, float]:
    """Instructions and seconds of one run (the translation tier's compiles included)."""
    m = BareMetal(path, 16 << 20, output=lambda b: None, jit=jit)
    t = clock()
    result = m.run()
    dt = clock() - t
    if result.exit_code != 0:
        raise SystemExit(f"benchmark program {path} failed: {result}")
    return result.instructions, dt


def run_qemu(path: str) -> float:
    t = time.perf_counter()
    subprocess.run(["qemu-system-riscv64", "-M", "spike", "-bios", "none", "-nographic",
                    "-kernel", path], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - t


def compile_times() -> tuple[float, float]:
    """(cold compile, cached start) of the core in fresh processes, in seconds."""
    code = ("import time; t=time.perf_counter(); from wirt.cpu.hart import core_module; "
            "core_module(); print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = float(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                    capture_output=True, text=True).stdout)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        cached = time.perf_counter() - start
    return cold, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2000, help="benchmark rounds (default 2000)")
    ap.add_argument("--skip-compile", action="store_true", help="do not measure compile times")
    args = ap.parse_args()
    have_qemu = gb.qemu_exe() is not None
    print(gb.qemu_banner())
    results = {}
    print("guest MIPS, wirt's interpreter alone (tier off) and with the translation tier (on, "
          "its compile time included), beside QEMU TCG; ratio = QEMU's time / wirt's time")
    for label, name, march, frac in PROGRAMS:
        rounds = max(1, int(args.rounds * frac))
        long = str(build_program(name, {"ROUNDS": rounds}, march))
        short = str(build_program(name, {"ROUNDS": max(1, rounds // 20)}, march))
        tenth = str(build_program(name, {"ROUNDS": max(1, rounds // 10)}, march))
        run_wirt(short)  # load the core before timing
        line = f"{label:15s}"
        short_insns, _ = run_wirt(short, jit="off")
        for tier in TIERS:
            # The interpreter's speed does not depend on the length: it runs a tenth. Best of
            # three, as QEMU's below (each run starts with a cold translation cache).
            runs = [run_wirt(long if tier == "on" else tenth, jit=tier) for _ in range(3)]
            insns, dt = min(runs, key=lambda r: r[1])
            mips = insns / dt / 1e6
            results[(label, tier)] = mips
            line += f" | {tier} {mips:7.1f} MIPS"
        line += f" ({insns / 1e6:.0f} M instructions)"
        if have_qemu:
            # Best of three of each length, taken in turn, so a slow moment hits both alike.
            q_long = q_short = float("inf")
            for _ in range(3):
                q_long = min(q_long, run_qemu(long))
                q_short = min(q_short, run_qemu(short))
            if q_long - q_short < 0.1:
                raise SystemExit(f"{label}: QEMU's run was too short to time ({q_long:.3f} s); "
                                 "raise --rounds")
            q_mips = (insns - short_insns) / (q_long - q_short) / 1e6
            line += f" | QEMU {q_mips:7.1f} MIPS | ratio off {results[(label, 'off')] / q_mips:.2f}, " \
                    f"on {results[(label, 'on')] / q_mips:.2f}"
        print(line, flush=True)
    # Per-instruction cost: one instruction repeated 16 times per loop iteration (16 M of them),
    # thread CPU time (other processes on the host do not count), best of 5 rounds taken in turn
    # so that a slow moment of the host hits every kind alike.
    labels = ("add", "fadd.d", "fmul.d", "fmadd.d", "fdiv.d")
    paths = [str(build_program("opcost", {"ROUNDS": 1000, "OPKIND": kind}, "rv64gc")) for kind in range(5)]
    costs = {label: float("inf") for label in labels}
    for _ in range(5):
        for label, path in zip(labels, paths):
            insns, dt = run_wirt(path, time.thread_time, jit="off")
            costs[label] = min(costs[label], dt / insns * 1e9)
    base = costs["add"]
    print("interpreter ns per instruction (16-fold unrolled loop, thread CPU time, best of 5): " + ", ".join(
        f"{k} {v:.1f}" + ("" if k == "add" else f" ({v / base:.2f}x add)") for k, v in costs.items()))
    if not have_qemu:
        print("QEMU not installed: no comparison (apt-get install qemu-system-misc)")
    if not args.skip_compile:
        cold, cached = compile_times()
        print(f"core compile: cold {cold:.1f} s, cached start {cached:.2f} s (whole process)")


if __name__ == "__main__":
    main()
