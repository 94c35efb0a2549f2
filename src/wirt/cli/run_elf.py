"""`wirt run-elf`: run a bare-metal RISC-V program with HTIF console and exit code."""

from __future__ import annotations

import argparse
import sys
import time

from wirt.errors import WirtError
from wirt.units import parse_size


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run-elf", help="run a bare-metal RISC-V ELF program (HTIF console and exit code)",
        description="Load a bare-metal RV64 ELF at 0x80000000, run it in M-mode from its entry "
                    "point and exit with its HTIF exit code (0 = pass).")
    p.add_argument("file", nargs="?", help="the ELF program")
    p.add_argument("--demo", action="store_true", help="build and run wirt's own demo program")
    p.add_argument("--trace", action="store_true", help="print pc, raw bits and privilege of each retired instruction")
    p.add_argument("--max-insns", type=int, metavar="N", help="stop after N instructions")
    p.add_argument("--ram", default="64M", help="RAM size (default 64M)")
    p.add_argument("--jit", choices=["on", "off", "force"], default=None,
                   help="the CPU's translation tier (default: WIRT_JIT, else on)")
    p.add_argument("--stats", action="store_true",
                   help="print instructions, MIPS and the translation tier's counters to stderr at exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from wirt.machine.baremetal import BareMetal

    if args.demo == bool(args.file):
        raise WirtError("give either an ELF file or --demo (e.g. `wirt run-elf --demo`)")
    if args.max_insns is not None and args.max_insns <= 0:
        raise WirtError("--max-insns must be a positive number of instructions")
    ram = parse_size(args.ram)
    if ram < 4096 or ram % 4096:
        raise WirtError(f"--ram {args.ram}: must be a multiple of 4 KiB and at least 4K")
    path = args.file
    if args.demo:
        from wirt.demo import build_demo

        path = str(build_demo())
    try:
        machine = BareMetal(path, ram, jit=args.jit)
    except ValueError as exc:  # a bad WIRT_JIT
        raise WirtError(str(exc)) from None
    t0 = time.perf_counter()
    result = machine.run(args.max_insns, trace=sys.stderr if args.trace else None)
    if args.stats:
        dt = time.perf_counter() - t0
        js = machine.hart.jit_stats()
        print(f"wirt: {result.instructions} instructions in {dt:.3f} s "
              f"({result.instructions / max(dt, 1e-9) / 1e6:.1f} MIPS)", file=sys.stderr)
        print("wirt: translation tier: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in js.items()),
            file=sys.stderr)
    if result.reason == "max-insns":
        print(f"wirt: stopped after {result.instructions} instructions (--max-insns); the program did not exit",
              file=sys.stderr)
        return 124
    if result.reason == "fatal":
        print(f"wirt: {result.detail}", file=sys.stderr)
        return 125
    return int(result.exit_code or 0)
