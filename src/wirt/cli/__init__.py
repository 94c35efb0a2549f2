"""The `wirt` command line: a thin layer that turns arguments into calls on the layers below.

Each sub-command lives in its own module with `register(subparsers)`; errors a user can fix
(`WirtError`) are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from wirt.errors import WirtError

# Modules under wirt.cli that contribute sub-commands, in help order.
COMMAND_MODULES = ["run", "vm", "shell", "ssh", "cp", "run_elf", "image", "disk", "net", "snapshot", "complete", "serve"]
# Command plug-ins of the layers above the CLI (DESIGN.md "Layers"), loaded by name: each has
# `register(subparsers)` and `route(args)`, which runs a command itself or returns None.
PLUGIN_MODULES = ["wirt.cluster.cli"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with `command`, registration stops at the module that provides it: each
    module imports what its commands need, and `wirt run` need not pay for the rest."""
    parser = argparse.ArgumentParser(prog="wirt", description="wirt: RISC-V virtual machines in Python")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    parser.add_argument("--remote", metavar="URL",
                        help="run the VM commands on a `wirt serve`: unix:/path/api.sock or http(s)://HOST:PORT "
                             "(also WIRT_REMOTE; the token from WIRT_TOKEN or $WIRT_HOME/serve/token)")
    parser.add_argument("--cluster", metavar="ADDR",
                        help="act on the wirt cluster at ADDR (HOST:PORT; also WIRT_CLUSTER): create, start, ls, "
                             "stop, exec, console, rm")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"wirt.cli.{name}").register(sub)
        if command is not None and command in sub.choices:
            break
    for name in PLUGIN_MODULES:  # after the commands: a plug-in may add options to them
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


# Global options that take a value (build_parser): skipped when looking for the command's name.
_VALUED_OPTIONS = ("--remote", "--cluster")


def _command_name(argv: list[str]) -> str | None:
    """The sub-command `argv` names, or None (help, --version, or nothing given)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            if arg.split("=", 1)[0] not in _VALUED_OPTIONS:
                return None
            i += 1
        else:
            return arg
    return None


def _routed(args: argparse.Namespace) -> int | None:
    """A plug-in that runs this command itself (e.g. on a cluster), or None."""
    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        result = module.route(args)
        if result is not None:
            return result
    return None


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs 20 ms of every start."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"wirt {version()}")
        parser.exit()


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("wirt")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    from wirt.gcpolicy import defer_collections, skip_final_collection

    defer_collections()
    skip_final_collection()
    if argv is None:
        argv = sys.argv[1:]
    completing = "_ARGCOMPLETE" in os.environ  # a shell asks for completions: all commands
    parser = build_parser(None if completing else _command_name(argv))
    from wirt.cli.complete import autocomplete

    autocomplete(parser)  # a shell asking for completions (argcomplete's environment): answers and exits
    args = parser.parse_args(argv)
    if getattr(args, "remote", None):
        os.environ["WIRT_REMOTE"] = args.remote
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        routed = _routed(args)
        return routed if routed is not None else int(args.func(args) or 0)
    except WirtError as exc:
        print(f"wirt: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wirt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """Stop quietly when the reader of stdout went away (`wirt ls --json | head -1`), as a
    command killed by SIGPIPE would; stdout goes to /dev/null so the exit's flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for such a command
