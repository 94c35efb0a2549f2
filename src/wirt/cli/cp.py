"""`wirt cp [-r] SRC DST`: copy files and trees between the host and a running VM (NAME:/path).

Thin: `VM.copy_in` / `VM.copy_out` (wirt.vm.filecopy) do the work; this parses the operands and
shows a progress bar when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from wirt.errors import WirtError

__all__ = ["register", "split_operand"]

_REMOTE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*):(.*)", re.S)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cp", help="copy files between the host and a running VM (NAME:/path on one side)",
        description="Copy SRC to DST; exactly one of them is NAME:/path in a running VM. A DST that is a "
                    "directory receives SRC inside it. Modes, times and symlinks are kept; the data is "
                    "streamed through the VM's data port (never held in memory).")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DST")
    p.add_argument("-r", "--recursive", action="store_true", help="copy directories and everything under them")
    p.add_argument("--timeout", "-t", type=float, default=120.0,
                   help="seconds to wait for the guest agent of a booting VM (default 120)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cp)


def split_operand(text: str) -> tuple[str | None, str]:
    """'NAME:/path' -> (NAME, '/path'); a host path -> (None, path). './a:b' stays a host path."""
    m = _REMOTE.fullmatch(text)
    if m and "/" not in m.group(1):
        return m.group(1), m.group(2)
    return None, text


def _cp(args: argparse.Namespace) -> int:
    from wirt.cli.target import remote
    from wirt.vm.api import VM

    if remote():  # else a VM of the same name on this host would be the one copied to
        raise WirtError("cp needs the VM's own host (it streams through the VM's data socket); "
                        "over --remote run `wirt cp` on the server's host")
    (svm, spath), (dvm, dpath) = split_operand(args.src), split_operand(args.dest)
    if (svm is None) == (dvm is None):
        raise WirtError("give exactly one side as NAME:/path in a VM, e.g. `wirt cp file.txt web:/root/`"
                        if svm is None else "copying from one VM to another is not supported; go through the host")
    if args.timeout <= 0:
        raise WirtError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    vm = VM.get(svm or dvm)  # type: ignore[arg-type]
    st = vm.status()
    if st.state not in ("running", "paused"):
        raise WirtError(f"VM {vm.name!r} is {st.state}; start it with `wirt start {vm.name}`")
    total = 0
    if dvm is not None:
        from wirt.vm.filecopy import tree_size

        if os.path.lexists(spath):
            total = tree_size(__import__("pathlib").Path(spath))
    bar = _Bar(f"{args.src} -> {args.dest}", total) if not args.quiet and sys.stderr.isatty() else None
    t0 = time.monotonic()
    try:
        if dvm is not None:
            moved = vm.copy_in(spath, dpath or "/", recursive=args.recursive, timeout=args.timeout,
                               progress=bar.update if bar else None)
        else:
            moved = vm.copy_out(spath, dpath, recursive=args.recursive, timeout=args.timeout,
                                progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    if bar is not None:
        dt = max(time.monotonic() - t0, 1e-6)
        from wirt.units import human_size

        print(f"wirt: copied {human_size(moved)} in {dt:.1f} s ({moved / dt / 1e6:.1f} MB/s)", file=sys.stderr)
    return 0


class _Bar:
    """A rich progress bar on stderr (wirt.images.ui.byte_progress)."""

    def __init__(self, label: str, total: int) -> None:
        from wirt.images.ui import byte_progress

        self.progress: Any = byte_progress()
        self.progress.start()
        self.task = self.progress.add_task(label, total=total or None)

    def update(self, done: int) -> None:
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        self.progress.stop()
