"""`wirt ssh NAME [-- CMD]`: log in to a running VM over SSH (its loopback port forward), no prompt."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ssh", help="log in to a running VM over SSH (or run CMD there)",
        description="ssh to the VM as root through its forwarded loopback port. The guest agent installs "
                    "your public key and hands over the guest's host key first, so there is no password and "
                    "no host-key prompt. Waits for a booting guest's SSH server. Needs systemd as the init.")
    p.add_argument("name")
    p.add_argument("--ssh-key", metavar="FILE",
                   help="private key (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa; else wirt's own key)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="command to run instead of a shell")
    p.set_defaults(func=_ssh)


def _ssh(args: argparse.Namespace) -> int:
    from wirt.vm.api import VM

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    argv = VM.get(args.name).ssh_command(command or None, key=args.ssh_key)
    os.execv(argv[0], argv)
    return 0  # not reached
