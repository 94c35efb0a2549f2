"""`wirt shell NAME` and the terminal end of `wirt exec -t` / `exec -i`: a guest command attached here.

The command runs through the guest agent (no network needed) with its stdin streamed from this
terminal; with a terminal (`shell`, `exec -t`) on a pseudo-terminal in the guest of this one's
size: this terminal is put in raw mode, so every key (Ctrl-C too) goes to the guest's line
discipline, and SIGWINCH here resizes the guest's terminal. The exit status is the command's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from typing import Any

from wirt.errors import WirtError

__all__ = ["register", "run_attached", "LOGIN_SHELL"]

# Root's login shell in the guest: bash when the image has it (the root disk), else sh.
LOGIN_SHELL = ("HOME=/root; export HOME; cd /root 2>/dev/null || cd /; "
               "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l")
DEFAULT_TERM = "xterm-256color"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "shell", help="an interactive root shell in a running VM (through its guest agent, no network)",
        description="Open root's login shell on a terminal in the guest, through the guest agent (works without "
                    "the network). The guest's terminal has this one's size and follows its resizes; Ctrl-C goes "
                    "to the guest program. Exits with the shell's exit status.")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the guest agent of a VM that is still booting (default 120)")
    p.set_defaults(func=_shell)


def _shell(args: argparse.Namespace) -> int:
    if args.timeout < 0:
        raise WirtError("--timeout must be a positive number of seconds")
    return run_attached(args.name, LOGIN_SHELL, tty=True, timeout=args.timeout)


def _terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    except OSError:
        pass
    return 24, 80


def run_attached(name: str, command: str, *, tty: bool, timeout: float, kill_after: float | None = None) -> int:
    """Run `command` in VM `name` with this process's stdin attached (on a guest terminal when
    `tty`); its output goes to stdout (and stderr without a terminal). Returns its exit status."""
    from wirt.cli.target import running_vm

    vm = running_vm(name)  # over --remote, a RemoteVM: the same session over the exec websocket
    stdin_fd = sys.stdin.fileno()
    local_tty = tty and os.isatty(stdin_fd)
    size = _terminal_size(stdin_fd) if tty else None
    if tty:
        term = os.environ.get("TERM") or DEFAULT_TERM
        if term == "dumb" or not term.replace("-", "").replace(".", "").replace("+", "").isalnum():
            term = DEFAULT_TERM
        command = f"TERM={shlex.quote(term)}; export TERM; {command}"
    session = vm.exec_attached(command, tty=size, timeout=timeout, kill_after=kill_after)
    saved: Any = None
    old_winch: Any = None
    if local_tty:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(stdin_fd)
        # Every key, Ctrl-C and Ctrl-D too, goes to the guest's terminal. TCSANOW: what was typed
        # ahead stays (TCSAFLUSH, setraw's default, would drop it).
        ttymod.setraw(stdin_fd, termios.TCSANOW)

        def on_winch(signum: int, frame: Any) -> None:
            with contextlib.suppress(WirtError):
                session.resize(*_terminal_size(stdin_fd))

        old_winch = signal.signal(signal.SIGWINCH, on_winch)

    def pump() -> None:
        """This process's stdin to the guest command, then end-of-file."""
        try:
            while True:
                data = os.read(stdin_fd, 4096)
                if not data:
                    break
                session.write(data)
            session.eof()
        except (OSError, WirtError):
            pass

    threading.Thread(target=pump, name="wirt-attach-stdin", daemon=True).start()
    out = sys.stdout.buffer
    try:
        for ev in session.events():
            if ev.kind == "exit":
                return ev.status
            stream = out if ev.kind == "stdout" else sys.stderr.buffer
            stream.write(ev.data)
            stream.flush()
        raise WirtError(f"VM {name!r} closed the exec stream before the command's exit status")
    finally:
        if local_tty:
            import termios

            signal.signal(signal.SIGWINCH, old_winch)
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        session.close()
