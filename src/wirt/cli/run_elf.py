"""`wirt run-elf`: run a bare-metal RISC-V program with HTIF console and exit code."""

from __future__ import annotations

import argparse
import sys

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
    machine = BareMetal(path, ram)
    result = machine.run(args.max_insns, trace=sys.stderr if args.trace else None)
    if result.reason == "max-insns":
        print(f"wirt: stopped after {result.instructions} instructions (--max-insns); the program did not exit",
              file=sys.stderr)
        return 124
    if result.reason == "fatal":
        print(f"wirt: {result.detail}", file=sys.stderr)
        return 125
    return int(result.exit_code or 0)
