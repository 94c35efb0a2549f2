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
COMMAND_MODULES = ["run", "vm", "cp", "run_elf", "image", "disk", "net", "snapshot", "complete", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirt", description="wirt: RISC-V virtual machines in Python")
    parser.add_argument("--version", action="version", version=f"wirt {version()}")
    parser.add_argument("--remote", metavar="URL",
                        help="run the VM commands on a `wirt serve`: unix:/path/api.sock or http(s)://HOST:PORT "
                             "(also WIRT_REMOTE; the token from WIRT_TOKEN or $WIRT_HOME/serve/token)")
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


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("wirt")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    from wirt.cli.complete import autocomplete

    autocomplete(parser)  # a shell asking for completions (argcomplete's environment): answers and exits
    args = parser.parse_args(argv)
    if getattr(args, "remote", None):
        import os

        os.environ["WIRT_REMOTE"] = args.remote
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
