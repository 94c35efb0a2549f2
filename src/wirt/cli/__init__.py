"""The `wirt` command line: a thin layer that turns arguments into calls on the layers below.

Each sub-command lives in its own module with `register(subparsers)`; errors a user can fix
(`WirtError`) are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wirt.errors import WirtError

# Modules under wirt.cli that contribute sub-commands, in help order.
COMMAND_MODULES = ["run", "vm", "run_elf", "image", "disk", "net", "snapshot"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirt", description="wirt: RISC-V virtual machines in Python")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"wirt.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"wirt.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except WirtError as exc:
        print(f"wirt: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wirt: interrupted", file=sys.stderr)
        return 130
