"""VM lifecycle commands: create, ls, start, stop, restart, pause, resume, console, exec, logs, set, rm, top.

Thin: each command turns its arguments into a call on `wirt.vm.api.VM` (the Python API has the
same operations), and prints the result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from wirt.errors import WirtError
from wirt.cli.target import get_vm, remote, running_vm, vm_class
from wirt.units import human_size
from wirt.vm.schema import CREATE_OPTIONS, SET_OPTIONS, Option, create_arguments, set_arguments
from wirt.vm.top import format_table

__all__ = ["register", "add_options"]


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """Add the flags of an option table (wirt.vm.schema: the same table validates REST bodies)."""
    for o in options:
        kw: dict[str, Any] = {"dest": o.name, "help": o.help, "default": o.default}
        if o.kind == "integer":
            kw["type"] = int
        if o.kind == "list":
            kw.update(action="append", default=[], metavar="[ADDR:]H:G[/udp]")
        if o.kind == "boolean":
            kw.update(action="store_true", default=False)
        parser.add_argument(*o.cli_flags(), **kw)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the VM lifecycle commands as top-level sub-commands."""
    p = subparsers.add_parser("create", help="create a VM (configuration and disk)",
                              description="Create a VM in $WIRT_HOME/vms/NAME. Image debian (default): the disk "
                                          "is a qcow2 overlay on the Debian root disk of `wirt image build` (built "
                                          "now if not cached) and the VM boots from it. Image initramfs: the kernel "
                                          "and busybox initramfs only (fast to boot), with a blank disk.")
    p.add_argument("name")
    add_options(p, CREATE_OPTIONS)
    p.set_defaults(func=_create)

    p = subparsers.add_parser("ls", help="list VMs: state, CPUs, memory, disk, IP, uptime")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_ls)

    p = subparsers.add_parser("status", help="show one VM in detail")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/cli.md)")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("start", help="start a VM in the background")
    p.add_argument("name")
    p.add_argument("--console", "-c", action="store_true", help="attach to the console once started")
    p.add_argument("--wait", "-w", action="store_true",
                   help="return only when the guest agent answers (the guest has booted)")
    p.add_argument("--timeout", "-t", type=float, default=120.0,
                   help="with --wait: seconds to wait for the agent (default 120)")
    p.set_defaults(func=_start)

    p = subparsers.add_parser("stop", help="power a VM off (asks the guest; --force halts it)")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the guest (default 30)")
    p.add_argument("--force", "-f", action="store_true", help="halt from the host side, kill if needed")
    p.set_defaults(func=_stop)

    p = subparsers.add_parser("restart", help="stop and start a VM")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--force", "-f", action="store_true")
    p.set_defaults(func=_restart)

    for cmd, helptext in (("pause", "freeze a running VM"), ("resume", "continue a paused VM")):
        p = subparsers.add_parser(cmd, help=helptext)
        p.add_argument("name")
        p.set_defaults(func=_pause if cmd == "pause" else _resume)

    p = subparsers.add_parser("console", help="attach to a running VM's console (C-a d detaches)")
    p.add_argument("name")
    p.set_defaults(func=_console)

    p = subparsers.add_parser(
        "exec", help="run a command in a running VM through its guest agent", parents=[_exec_options()],
        description="Run CMD in the guest (with sh -c; several words are quoted into one command line), "
                    "print its stdout and stderr here and exit with its exit status. Waits up to --timeout "
                    "seconds for the guest agent of a VM that is still booting. Options may come before or "
                    "after NAME, before the --.")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="command to run in the guest")
    p.set_defaults(func=_exec)

    p = subparsers.add_parser("logs", help="print a VM's console log")
    p.add_argument("name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new output")
    p.set_defaults(func=_logs)

    p = subparsers.add_parser("set", help="change a VM's resources (applies at the next start)")
    p.add_argument("name")
    add_options(p, SET_OPTIONS)
    p.set_defaults(func=_set)

    p = subparsers.add_parser("rm", help="delete a VM and its disks")
    p.add_argument("name", nargs="+")
    p.add_argument("--force", "-f", action="store_true", help="also a running VM (it is killed)")
    p.set_defaults(func=_rm)

    p = subparsers.add_parser("top", help="live CPU, memory, MIPS, disk and network of running VMs")
    p.add_argument("--interval", "-n", type=float, default=1.0, help="seconds between updates (default 1)")
    p.add_argument("--once", action="store_true", help="print one sample and exit")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output: one JSON array per sample, one per line (docs/cli.md)")
    p.set_defaults(func=_top)


class _OptionParser(argparse.ArgumentParser):
    """An argument parser whose errors are one-line WirtErrors (for options found in a remainder)."""

    def error(self, message: str):  # type: ignore[override]
        raise WirtError(f"exec: {message}; options go before --, see `wirt exec --help`")


def _exec_options(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `wirt exec` (also parsed again from between NAME and --)."""
    p = cls(add_help=False, prog="wirt exec")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the guest agent to come up (default 120)")
    p.add_argument("--kill-after", type=float, metavar="SECONDS",
                   help="end the command if it runs longer than this (default: no limit)")
    p.add_argument("--stdin", "-i", action="store_true",
                   help="stream this command's standard input to the guest command as it comes")
    p.add_argument("--tty", "-t", action="store_true",
                   help="run the command on a terminal in the guest, attached to this one (size, resizes, "
                        "Ctrl-C); its stdout and stderr both come back on stdout")
    return p


# ---- create / ls / status -----------------------------------------------------------------------
def _create(args: argparse.Namespace) -> int:
    vm = vm_class().create(args.name, **create_arguments({o.name: getattr(args, o.name) for o in CREATE_OPTIONS}))
    cfg = vm.config
    note = vm.paths.root / "disk0.note"
    disk = f", disk {human_size(cfg.disks[0].size)} ({note.read_text().strip()})" if cfg.disks and note.exists() else ""
    print(f"created VM {cfg.name}: {cfg.cpus} CPU, {human_size(cfg.memory)} RAM{disk}, network {cfg.network.mode}")
    return 0


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _ls(args: argparse.Namespace) -> int:
    rows = [vm.summary() for vm in vm_class().list()]
    if args.json:
        import json

        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no VMs; create one with `wirt create NAME`")
        return 0
    head = ("NAME", "STATE", "CPUS", "MEMORY", "DISK USED/SIZE", "IP", "UPTIME")
    table = [head]
    for r in rows:
        if r["state"] == "invalid":
            table.append((r["name"], "invalid", "-", "-", "-", "-", "-"))
            continue
        table.append((r["name"], r["state"], str(r["cpus"]), human_size(r["memory"]),
                      f"{human_size(r['disk_used'])}/{human_size(r['disk_size'])}" if r["disk_size"] else "-",
                      r["ip"] or "-", _uptime(r["uptime"])))
    print(format_table(table))
    for r in rows:
        if r.get("reason"):
            print(f"{r['name']}: {r['reason']}", file=sys.stderr)
    return 0


def status_dict(vm: Any) -> dict[str, Any]:
    """`wirt status --json`: the VM's configuration and run state under stable names (docs/cli.md)."""
    st = vm.status()
    cfg = vm.config
    used, _ = vm.disk_usage()
    return {
        "name": cfg.name, "uuid": cfg.uuid, "state": st.state, "pid": st.pid if st.running else None,
        "uptime": st.uptime, "reason": st.reason or "", "cpus": cfg.cpus, "cpu_affinity": list(cfg.cpu_affinity),
        "memory": cfg.memory, "image": cfg.image, "boots_from_disk": cfg.boot.root,
        "disks": [{"path": str(vm.paths.disk(d.path)), "format": d.format, "size": d.size,
                   "read_only": d.read_only} for d in cfg.disks],
        "disk_used": used,
        "network": {"mode": cfg.network.mode, "mac": cfg.network.mac,
                    "ports": [str(p) for p in cfg.network.ports], "ip": st.live.get("ip")},
        "agent": bool(st.live.get("agent")) if st.running else False,
        "warnings": list(st.live.get("warnings", [])),
        "limits": st.live.get("limits"),
    }


def _status(args: argparse.Namespace) -> int:
    vm = get_vm(args.name)
    if args.json:
        import json

        print(json.dumps(status_dict(vm), indent=1))
        return 0
    st = vm.status()
    cfg = vm.config
    print(f"name:     {cfg.name} ({cfg.uuid})")
    print(f"state:    {st.state}" + (f" (pid {st.pid}, up {_uptime(st.uptime)})" if st.pid and st.running else ""))
    if st.reason:
        print(f"last:     {st.reason}")
    print(f"cpus:     {cfg.cpus}" + (f" (pinned to {','.join(map(str, cfg.cpu_affinity))})" if cfg.cpu_affinity else ""))
    print(f"memory:   {human_size(cfg.memory)}")
    for i, d in enumerate(cfg.disks):
        print(f"disk{i}:    {d.path} {d.format} {human_size(d.size)}" + (" read-only" if d.read_only else ""))
    net = cfg.network
    print(f"network:  {net.mode} mac {net.mac}" + (f" ports {' '.join(map(str, net.ports))}" if net.ports else "")
          + (f" ssh 127.0.0.1:{net.ssh_port} (wirt ssh {cfg.name})" if net.ssh_port else "")
          + (f" ip {st.live['ip']}" if st.live.get("ip") else ""))
    print(f"image:    {cfg.image}" + (f" (boots from disk0, init {cfg.boot.init})" if cfg.boot.root else ""))
    if st.running:
        print(f"agent:    {'up' if st.live.get('agent') else 'not up (yet)'}")
    for w in st.live.get("warnings", []):
        print(f"warning:  {w}")
    if st.live.get("limits"):
        lim = st.live["limits"]
        print(f"limits:   {lim['method']}: {', '.join(lim['details'])}")
    tail = (st.last_exit or {}).get("console_tail") if st.state == "crashed" else None
    if tail:
        print("console (last lines):")
        for line in tail[-10:]:
            print(f"  {line}")
    return 0


# ---- lifecycle ------------------------------------------------------------------------------------
def _start(args: argparse.Namespace) -> int:
    vm = get_vm(args.name)
    if args.timeout <= 0:
        raise WirtError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    st = vm.start()
    for w in st.live.get("warnings", []):
        print(f"wirt: warning: {w}", file=sys.stderr)
    if args.wait:
        t0 = time.monotonic()
        st = vm.wait_agent(timeout=args.timeout)
        ip = st.live.get("ip")
        print(f"started VM {args.name} (pid {st.pid}); guest agent up after {time.monotonic() - t0:.1f} s"
              + (f", ip {ip}" if ip else ""))
    else:
        print(f"started VM {args.name} (pid {st.pid})")
    if args.console:
        return _attach(vm)
    return 0


def _stop(args: argparse.Namespace) -> int:
    st = get_vm(args.name).stop(force=args.force, timeout=args.timeout)
    print(f"VM {args.name} stopped" + (f" ({st.reason})" if st.reason else ""))
    return 0


def _restart(args: argparse.Namespace) -> int:
    st = get_vm(args.name).restart(force=args.force, timeout=args.timeout)
    print(f"restarted VM {args.name} (pid {st.pid})")
    return 0


def _pause(args: argparse.Namespace) -> int:
    get_vm(args.name).pause()
    print(f"VM {args.name} paused")
    return 0


def _resume(args: argparse.Namespace) -> int:
    get_vm(args.name).resume()
    print(f"VM {args.name} resumed")
    return 0


def _set(args: argparse.Namespace) -> int:
    changes = get_vm(args.name).set(**set_arguments({o.name: getattr(args, o.name) for o in SET_OPTIONS}))
    if not changes:
        raise WirtError("nothing to change; give --memory, --cpus, --disk-size, --cpu-affinity, --port or --no-port")
    print(f"VM {args.name}: " + ", ".join(changes) + " (applies at the next start)")
    return 0


def _rm(args: argparse.Namespace) -> int:
    for name in args.name:
        get_vm(name).remove(force=args.force)
        print(f"removed VM {name}")
    return 0


# ---- console and logs --------------------------------------------------------------------------------
def _console(args: argparse.Namespace) -> int:
    return _attach(running_vm(args.name))


def _attach(vm: Any) -> int:
    """Raw terminal <-> the VM console over its control socket. C-a d detaches (VM keeps running)."""
    import select
    import socket

    from wirt.machine.console import EscapeParser, raw_terminal

    client = vm.control(timeout=5.0)
    client.request("console-attach")
    sock: socket.socket = client.sock
    sock.settimeout(None)
    out = sys.stdout.buffer
    early = client.leftover()
    if early:
        out.write(early)
        out.flush()
    parser = EscapeParser()
    reason = "detached"
    stdin_open = True
    try:
        with raw_terminal(0) as interactive:
            print(f"wirt: attached to {vm.name}'s console -- C-a d detaches, C-a h for help\r", file=sys.stderr)
            while True:
                fds = [sock] + ([0] if stdin_open else [])
                ready, _, _ = select.select(fds, [], [])
                if sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        reason = "the VM stopped"
                        break
                    out.write(data)
                    out.flush()
                if 0 in ready:
                    data = os.read(0, 1024)
                    if not data:
                        stdin_open = False  # EOF on a pipe: keep showing output until the VM ends
                        continue
                    to_guest, cmds = parser.feed(data) if interactive else (data, [])
                    if to_guest:
                        sock.sendall(to_guest)
                    if "d" in cmds or "x" in cmds:
                        break
                    if "h" in cmds:
                        out.write(b"\r\nC-a d    detach (the VM keeps running)\r\nC-a C-a  send C-a to the guest\r\n")
                        out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    print(f"\nwirt: {reason}", file=sys.stderr)
    return 0


def _exec(args: argparse.Namespace) -> int:
    """`wirt exec NAME -- CMD`: stream the guest command's output, exit with its status."""
    import shlex

    from wirt.vm.agent import ExecEvent

    argv = list(args.command)
    if "--" in argv and argv[0].startswith("-"):  # options between NAME and -- stay in the remainder
        cut = argv.index("--")
        _exec_options(_OptionParser).parse_args(argv[:cut], namespace=args)
        argv = argv[cut + 1:]
    if not argv:
        raise WirtError("exec: give the command after the VM name, e.g. `wirt exec web -- uname -a`")
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    if args.timeout < 0 or (args.kill_after is not None and args.kill_after <= 0):
        raise WirtError("--timeout and --kill-after must be positive numbers of seconds")
    if args.tty or args.stdin:  # streamed (over --remote through the exec websocket)
        from wirt.cli.shell import run_attached

        return run_attached(args.name, command, tty=args.tty, timeout=args.timeout, kill_after=args.kill_after)
    vm = running_vm(args.name)

    def show(ev: ExecEvent) -> None:
        if ev.kind in ("stdout", "stderr"):
            out = sys.stdout.buffer if ev.kind == "stdout" else sys.stderr.buffer
            out.write(ev.data)
            out.flush()

    result = vm.exec(command, timeout=args.timeout, kill_after=args.kill_after, on_event=show)
    return result.status


def _logs(args: argparse.Namespace) -> int:
    if args.follow and remote():
        raise WirtError("logs --follow needs the VM's own host; over --remote use the web console at /ui/")
    vm = get_vm(args.name)
    path = vm.log_path()
    if not path.exists():
        raise WirtError(f"VM {args.name!r} has no console log yet; start it first")
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        while True:
            data = f.read(65536)
            if data:
                out.write(data)
                out.flush()
                continue
            if not args.follow:
                return 0
            if not vm.status(query=False).running:
                data = f.read()  # the last words written before the process ended
                out.write(data)
                out.flush()
                return 0
            time.sleep(0.2)


# ---- top --------------------------------------------------------------------------------------------------
def _top(args: argparse.Namespace) -> int:
    from wirt.vm.top import json_rows, render, sample_all

    if remote():
        raise WirtError("top needs the VMs' own host; over --remote read the server's /metrics")
    if args.interval <= 0:
        raise WirtError("--interval must be positive")
    rows, prev = sample_all({})
    try:
        while True:
            time.sleep(args.interval)  # rates need two samples
            rows, prev = sample_all(prev)
            if args.json:
                import json

                print(json.dumps(json_rows(rows)), flush=True)
                if args.once:
                    return 0
                continue
            if args.once:
                print(render(rows))
                return 0
            if os.isatty(1):
                sys.stdout.write("\x1b[H\x1b[2J")
            print(render(rows), flush=True)
    except KeyboardInterrupt:
        return 0
