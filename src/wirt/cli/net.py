"""`wirt net`: host-side pieces of VM networking.

    wirt net hub PATH       run a virtual Ethernet hub on the Unix socket PATH (foreground)

VMs join it with `wirt run --net socket:PATH`; every frame one member sends reaches all the
others (wirt.netback.socket.SocketHub; frames carry QEMU's stream framing, a 4-byte big-endian
length before each frame). Two VMs can also be linked without a hub: one with
`--net socket-listen:PATH`, the other with `--net socket:PATH`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from wirt.errors import WirtError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `wirt net` and its sub-commands."""
    p = subparsers.add_parser("net", help="host-side networking for VMs (socket hub)",
                              description="Host-side networking for VMs.")
    sub = p.add_subparsers(dest="net_command", metavar="SUBCOMMAND")
    hub = sub.add_parser("hub", help="run a virtual Ethernet hub on a Unix socket (VMs join with --net socket:PATH)",
                         description="Run a virtual Ethernet hub in the foreground on the Unix socket "
                                     "PATH until Ctrl-C or SIGTERM; VMs join it with "
                                     "`wirt run --net socket:PATH`. The socket file is removed on exit.")
    hub.add_argument("path", metavar="PATH", help="the hub's Unix socket (created; a stale one is replaced)")
    hub.add_argument("--quiet", "-q", action="store_true", help="do not report members joining and leaving")
    hub.set_defaults(func=_hub)
    p.set_defaults(func=_usage(p))


def _usage(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2
    return show


def _hub(args: argparse.Namespace) -> int:
    """Serve a SocketHub until interrupted; report membership changes on stderr."""
    from wirt.netback.socket import SocketHub

    if not args.path.strip():
        raise WirtError("wirt net hub: give the socket's path, e.g. /tmp/lab.sock")
    stop = threading.Event()
    hub = SocketHub(args.path)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"wirt: hub listening on {args.path} (VMs join with --net socket:{args.path}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    try:
        members = 0
        while not stop.wait(0.2):
            now = hub.members
            if now != members and not args.quiet:
                print(f"wirt: hub {args.path}: {now} member{'s' if now != 1 else ''}", file=sys.stderr, flush=True)
            members = now
    finally:
        hub.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
