"""Host instructions the core spends per guest instruction, counted exactly under valgrind.

Timing the core moves by +-10 % with the host's load and between builds; an instruction count
does not, so this is the measure for A/B comparisons of core changes (run it before and after).
Each program runs twice under `valgrind --tool=cachegrind`, with a short and a long round
count; the difference in host instructions over the difference in guest instructions removes
Python's start-up and the core's loading. Programs: the per-instruction loops of
bench/mips.py (add, fadd.d, fmul.d, fmadd.d, fdiv.d) and its integer and FP benchmarks.

The core is compiled for a fixed CPU model without AVX-512 (which valgrind cannot run), once
natively and cached, so the counted code is close to, but not exactly, the build a normal run
uses. Needs valgrind (`apt-get install valgrind`); takes about a minute per program.

Usage: python bench/insncount.py [PROGRAM ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys

# x86-64 features valgrind can execute (AVX2, FMA, BMI2; no AVX-512): a fixed target, so the
# native compile and the valgrind run share one numba cache entry.
CPU_NAME = "znver3"
CPU_FEATURES = ("+64bit,+adx,+aes,+avx,+avx2,+bmi,+bmi2,+cmov,+crc32,+cx16,+cx8,+f16c,+fma,"
                "+fxsr,+lzcnt,+mmx,+movbe,+pclmul,+popcnt,+sahf,+sse,+sse2,+sse3,+sse4.1,"
                "+sse4.2,+ssse3,+xsave")
# name -> (program, defines, march, short rounds, long rounds)
PROGRAMS = {
    "add": ("opcost", {"OPKIND": 0}, "rv64gc", 2, 1002),
    "fadd.d": ("opcost", {"OPKIND": 1}, "rv64gc", 2, 1002),
    "fmul.d": ("opcost", {"OPKIND": 2}, "rv64gc", 2, 1002),
    "fmadd.d": ("opcost", {"OPKIND": 3}, "rv64gc", 2, 1002),
    "fdiv.d": ("opcost", {"OPKIND": 4}, "rv64gc", 2, 1002),
    "intloop": ("intloop", {}, "rv64imac", 20, 220),
    "fploop": ("fploop", {}, "rv64gc", 20, 420),
}
CHILD = """
import sys
from wirt.demo import build_program
from wirt.machine.baremetal import BareMetal
name, march, defines = sys.argv[1], sys.argv[2], eval(sys.argv[3])
result = BareMetal(str(build_program(name, defines, march)), 16 << 20, output=lambda b: None).run()
print("guest-instructions", result.instructions)
"""


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONHASHSEED="0", NUMBA_CPU_NAME=CPU_NAME,
                NUMBA_CPU_FEATURES=CPU_FEATURES)


def run(program: str, defines: dict[str, int], march: str, valgrind: bool) -> tuple[int, int]:
    """(guest instructions, host instructions or 0) of one run of the program."""
    cmd = [sys.executable, "-c", CHILD, program, march, repr(defines)]
    if valgrind:
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
               "--cachegrind-out-file=/dev/null", *cmd]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    guest = re.search(r"guest-instructions (\d+)", proc.stdout)
    if proc.returncode != 0 or guest is None:
        raise SystemExit(f"running {program} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    host = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr) if valgrind else None
    return int(guest.group(1)), int(host.group(1).replace(",", "")) if host else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("programs", nargs="*", metavar="PROGRAM",
                    help=f"any of {', '.join(PROGRAMS)} (default: all)")
    args = ap.parse_args()
    unknown = [p for p in args.programs if p not in PROGRAMS]
    if unknown:
        raise SystemExit(f"unknown program {unknown[0]!r}; choose from {', '.join(PROGRAMS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found; install it with `apt-get install valgrind`")
    if platform.machine() != "x86_64":
        raise SystemExit("bench/insncount.py pins an x86-64 CPU model; this host is "
                         f"{platform.machine()}")
    names = args.programs or list(PROGRAMS)
    print("compiling the core for the counting CPU model (first run only)...", flush=True)
    run("opcost", {"OPKIND": 0, "ROUNDS": 1}, "rv64gc", valgrind=False)
    counts = {}
    for name in names:
        program, defines, march, short, long = PROGRAMS[name]
        g1, h1 = run(program, dict(defines, ROUNDS=short), march, valgrind=True)
        g2, h2 = run(program, dict(defines, ROUNDS=long), march, valgrind=True)
        counts[name] = (h2 - h1) / (g2 - g1)
        extra = f" ({counts[name] / counts['add']:.2f}x add)" if name != "add" and "add" in counts else ""
        print(f"{name:8s} {counts[name]:7.1f} host instructions per guest instruction{extra}",
              flush=True)


if __name__ == "__main__":
    main()
