"""Snapshot commands: `wirt snapshot create|ls|restore|rm NAME [SNAP]` and `wirt fork NAME SNAP NEW`.

Thin: each turns into a `wirt.VM` method (vm/snapshots.py has the logic and the file layout).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from wirt.cli.target import get_vm
from wirt.units import human_size

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `snapshot` (with its sub-commands) and `fork`."""
    p = subparsers.add_parser(
        "snapshot", help="save, list, restore and delete VM snapshots",
        description="Snapshots of a running or paused VM are full (CPU, devices, RAM, disks); of a stopped VM "
                    "disk-only. Disks are kept by reference (frozen qcow2 layers), never copied.")
    sub = p.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="take a snapshot")
    c.add_argument("name", help="the VM")
    c.add_argument("snapshot", help="a name for the snapshot")
    c.set_defaults(func=_create)
    c = sub.add_parser("ls", help="list a VM's snapshots as a tree (* marks the current one)")
    c.add_argument("name")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=_ls)
    c = sub.add_parser("restore", help="go back to a snapshot (a running VM continues from it at once)")
    c.add_argument("name")
    c.add_argument("snapshot")
    c.set_defaults(func=_restore)
    c = sub.add_parser("rm", help="delete a snapshot")
    c.add_argument("name")
    c.add_argument("snapshot")
    c.set_defaults(func=_rm)

    p = subparsers.add_parser(
        "fork", help="make a new VM from a snapshot (memory mapped copy-on-write, disks as overlays)",
        description="The new VM shares the snapshot's files by hard links and gets its own disk overlays, "
                    "uuid and MAC address. It starts from the snapshot's running state (full snapshots) or "
                    "boots from its disks (disk-only snapshots).")
    p.add_argument("name", help="the source VM")
    p.add_argument("snapshot")
    p.add_argument("new_name", help="the new VM's name")
    p.add_argument("--no-start", action="store_true", help="create it but do not start it")
    p.set_defaults(func=_fork)


def _create(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    info = get_vm(args.name).snapshot(args.snapshot)
    what = (f"full: {human_size(info.memory_bytes)} of RAM stored" if info.kind == "full"
            else "disk-only: the VM is stopped")
    print(f"snapshot {info.name} of {args.name} taken ({what}) in {time.monotonic() - t0:.2f} s")
    return 0


def _ls(args: argparse.Namespace) -> int:
    vm = get_vm(args.name)
    snaps = vm.snapshots()
    if args.json:
        print(json.dumps([s.to_dict() for s in snaps], indent=1))
        return 0
    if not snaps:
        print(f"VM {args.name} has no snapshots; take one with `wirt snapshot create {args.name} SNAP`")
        return 0
    resume = vm.pending_resume()
    children: dict[str | None, list[Any]] = {}
    names = {s.name for s in snaps}
    for s in snaps:
        children.setdefault(s.parent if s.parent in names else None, []).append(s)
    print(f"{'SNAPSHOT':<32} {'KIND':<6} {'CREATED':<19} {'RAM':>10} {'DISK':>10}")

    def show(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.created):
            mark = "*" if s.current else " "
            label = ("  " * depth + s.name)[:30]
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created)) if s.created else "?"
            ram = human_size(s.memory_bytes) if s.kind == "full" else "-"
            extra = "  (resumes at next start)" if s.name == resume else ""
            print(f"{mark}{label:<31} {s.kind:<6} {when:<19} {ram:>10} {human_size(s.disk_bytes):>10}{extra}")
            show(s.name, depth + 1)

    show(None, 0)
    return 0


def _restore(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    how = get_vm(args.name).restore(args.snapshot)
    if how == "running":
        print(f"VM {args.name} restored to {args.snapshot} in {time.monotonic() - t0:.2f} s and running from it")
    elif how == "on next start":
        print(f"VM {args.name}: disks restored to {args.snapshot}; `wirt start {args.name}` resumes its saved state")
    else:
        print(f"VM {args.name}: disks restored to {args.snapshot}; it boots from them at the next start")
    return 0


def _rm(args: argparse.Namespace) -> int:
    get_vm(args.name).remove_snapshot(args.snapshot)
    print(f"snapshot {args.snapshot} of {args.name} deleted")
    return 0


def _fork(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    from wirt.cli.target import remote
    from wirt.vm.snapshots import vm_fork

    if remote():  # one REST call: forked (and started) on the server; its notes are not sent back
        new = get_vm(args.name).fork(args.snapshot, args.new_name, start=False)
        ports = new.config.network.ports
        notes = [f"port forwards moved to free host ports (the source keeps its own): "
                 f"{' '.join(map(str, ports))}; change them with `wirt set {args.new_name} --no-port --port ...`"
                 ] if ports else []
    else:
        new, notes = vm_fork(get_vm(args.name), args.snapshot, args.new_name)
    for n in notes:
        print(f"wirt: note: {n}")
    if args.no_start:
        print(f"VM {args.new_name} forked from {args.name}/{args.snapshot}; start it with `wirt start {args.new_name}`")
        return 0
    st = new.start()
    print(f"VM {args.new_name} forked from {args.name}/{args.snapshot} and running (pid {st.pid}) "
          f"in {time.monotonic() - t0:.2f} s")
    return 0
