"""Shell completion for bash and zsh through argcomplete: `wirt completion bash|zsh` prints the script.

    eval "$(wirt completion bash)"        # in ~/.bashrc
    eval "$(wirt completion zsh)"         # in ~/.zshrc (after compinit)

The shell runs `wirt` itself with argcomplete's environment to get the candidates, so VM and
snapshot names come from the store ($WIRT_HOME) at the moment of completion.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "add_completers", "autocomplete"]

#: Argument names (dest) that take the name of an existing VM, in any command but `create`.
VM_ARGS = ("name",)
#: Commands whose `name` is a new VM (no completion of existing names).
NEW_NAME_COMMANDS = ("create",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("completion", help="print the shell completion script (bash or zsh)",
                              description="Print a completion script: eval \"$(wirt completion bash)\" in "
                                          "~/.bashrc, or eval \"$(wirt completion zsh)\" in ~/.zshrc after compinit.")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=_completion)


def _completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["wirt"], shell=args.shell))
    return 0


def vm_names(prefix: str = "", **_: Any) -> list[str]:
    """Names of the VMs in the store that start with `prefix`."""
    from wirt.vm.store import VMStore

    try:
        return [n for n in VMStore().names() if n.startswith(prefix)]
    except Exception:  # noqa: BLE001 -- completion must never print a traceback into the shell
        return []


def snapshot_names(prefix: str = "", parsed_args: argparse.Namespace | None = None, **_: Any) -> list[str]:
    """Snapshots of the VM named earlier on the command line."""
    name = getattr(parsed_args, "name", None)
    if not isinstance(name, str):
        return []
    try:
        from wirt.vm.api import VM

        return [s.name for s in VM(name).snapshots() if s.name.startswith(prefix)]
    except Exception:  # noqa: BLE001
        return []


def vm_paths(prefix: str = "", **_: Any) -> list[str]:
    """`wirt cp` operands: VM names followed by ':' and host files."""
    import argcomplete

    out = [f"{n}:" for n in vm_names(prefix)]
    return out + list(argcomplete.completers.FilesCompleter()(prefix))


def add_completers(parser: argparse.ArgumentParser, command: str = "") -> None:
    """Attach the completers above to every sub-command's VM and snapshot arguments."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                add_completers(sub, name)
        elif action.dest in VM_ARGS and command not in NEW_NAME_COMMANDS:
            action.completer = vm_names  # type: ignore[attr-defined]
        elif action.dest == "snapshot":
            action.completer = snapshot_names  # type: ignore[attr-defined]
        elif action.dest in ("src", "dest") and command == "cp":
            action.completer = vm_paths  # type: ignore[attr-defined]


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this run is one (argcomplete's env)."""
    import os

    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    add_completers(parser)
    argcomplete.autocomplete(parser)
