"""The command line of the cluster: `wirt cluster up|status|down`, `wirt migrate NAME NODE`, and
`wirt --cluster ADDR create|start|ls|stop|exec|console|rm` (or WIRT_CLUSTER=ADDR) routed to
the cluster instead of this host. Loaded without Ray: every command says how to install the
extra when it is missing (wirt.cluster.require_ray).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from wirt.errors import WirtError
from wirt.units import human_size
from wirt.vm.top import format_table

__all__ = ["register", "route", "REMOTE_COMMANDS"]

REMOTE_COMMANDS = ("create", "start", "ls", "stop", "exec", "console", "rm")
# commands on this host's VMs that have no cluster form: with a cluster address they would act on
# this host's store without a word, so they are refused (on the VM's node they work as ever)
_HOST_VM_COMMANDS = ("status", "restart", "pause", "resume", "logs", "set", "top", "shell", "ssh", "cp",
                     "snapshot", "fork")
# commands that read --cluster/WIRT_CLUSTER themselves
_CLUSTER_AWARE = ("cluster", "migrate")
_PLACEMENT = ("label", "affinity", "anti_affinity", "node_label", "policy", "on", "restart_policy")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cluster` and `migrate`, and the placement options of `create` (used with --cluster)."""
    p = subparsers.add_parser("cluster", help="a fleet of hosts on Ray: up, status, down (extra wirt[cluster])",
                              description="Run wirt on several hosts as one pool (needs `pip install 'wirt[cluster]'`). "
                                          "`up` starts a cluster (this host its head) or, with --address, joins one; "
                                          "then `wirt --cluster ADDR create|start|ls|...` (or WIRT_CLUSTER=ADDR) acts on it.")
    sub = p.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    u = sub.add_parser("up", help="start a cluster here, or join one with --address")
    u.add_argument("--address", help="HOST:PORT of the cluster's head to join (default: start a new cluster)")
    u.add_argument("--port", type=int, default=6379, help="the head's port when starting a cluster (default 6379)")
    u.add_argument("--name", help="this node's name (default: the host name)")
    u.add_argument("--node-ip-address", metavar="IP",
                   help="the address this node's Ray processes listen on and other hosts reach it at "
                        "(default: a new cluster stays on 127.0.0.1, this host only; pass this host's "
                        "address so other hosts can join)")
    u.add_argument("--label", action="append", default=[], metavar="K=V", help="a node label (repeatable)")
    u.set_defaults(func=_up)
    s = sub.add_parser("status", help="nodes, their capacity and allocation, lost VMs")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
    d = sub.add_parser("down", help="stop this host's node (its agent, and the controller on the head)")
    d.add_argument("--force", "-f", action="store_true", help="even while VMs are placed here")
    d.set_defaults(func=_down)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    m = subparsers.add_parser("migrate", help="move a VM to another cluster node (running: live, with a short pause)")
    m.add_argument("name")
    m.add_argument("node")
    m.add_argument("--offline", action="store_true", help="refuse to move a running VM (only stopped ones)")
    m.set_defaults(func=_migrate)

    for name, sp in subparsers.choices.items():  # `exec` and `ssh` have a "command" that hides args.command
        sp.set_defaults(wirt_command=name)
        if name in REMOTE_COMMANDS:
            sp.set_defaults(vm_command=name)
    create = subparsers.choices.get("create")
    if create is not None:
        g = create.add_argument_group("placement (with --cluster or WIRT_CLUSTER)")
        g.add_argument("--label", action="append", default=[], metavar="K=V", help="a label of this VM (repeatable)")
        g.add_argument("--affinity", action="append", default=[], metavar="K=V",
                       help="place beside a VM labelled K=V")
        g.add_argument("--anti-affinity", action="append", default=[], metavar="K=V",
                       help="never on a node with a VM labelled K=V")
        g.add_argument("--node-label", action="append", default=[], metavar="K=V", help="only on nodes labelled K=V")
        g.add_argument("--policy", choices=("spread", "pack"), help="spread (default) or pack")
        g.add_argument("--on", metavar="NODE", help="on this node")
        g.add_argument("--restart-policy", choices=("never", "on-node-failure"),
                       help="on-node-failure: start it again elsewhere if its node dies")


def _given(args: argparse.Namespace) -> list[str]:
    return [k for k in _PLACEMENT if getattr(args, k, None) not in (None, [], False)]


def route(args: argparse.Namespace) -> int | None:
    """Run a VM command on the cluster when --cluster/WIRT_CLUSTER is set; None: not ours."""
    from wirt.cluster.services import cluster_address

    address = cluster_address(getattr(args, "cluster", None))
    command = getattr(args, "vm_command", None)
    if address is None:
        if command == "create" and _given(args):
            opts = ", ".join("--" + k.replace("_", "-") for k in _given(args))
            raise WirtError(f"{opts}: placement options need a cluster; add --cluster ADDR or set WIRT_CLUSTER")
        return None
    if command not in REMOTE_COMMANDS:
        top = getattr(args, "wirt_command", None)
        given = "--cluster" if getattr(args, "cluster", None) else "WIRT_CLUSTER"
        if top in _HOST_VM_COMMANDS:
            raise WirtError(f"`wirt {top}` acts on this host's VMs and has no cluster form (with {given}: "
                            f"{', '.join(REMOTE_COMMANDS)}, migrate); run it on the VM's node (`wirt ls` shows "
                            f"which){', or unset WIRT_CLUSTER' if given == 'WIRT_CLUSTER' else ''}")
        if given == "--cluster" and top not in _CLUSTER_AWARE:
            raise WirtError(f"--cluster does not apply to `wirt {top}`, which runs on this host; drop it")
        return None
    if getattr(args, "remote", None) or os.environ.get("WIRT_REMOTE"):
        raise WirtError("give either --cluster (WIRT_CLUSTER) or --remote (WIRT_REMOTE), not both")
    from wirt.cluster import services

    services.connect(address)
    return int(_REMOTE[command](args) or 0)


def _connect_any(args: argparse.Namespace) -> Any:
    """Connect for `cluster status`/`migrate`: --cluster, WIRT_CLUSTER, or this host's own node."""
    from wirt.cluster import require_ray, services
    from wirt.cluster.node import local_node

    require_ray()
    address = services.cluster_address(getattr(args, "cluster", None))
    if address is None:
        st = local_node()
        if st is None:
            raise WirtError("which cluster? give --cluster ADDR, set WIRT_CLUSTER, or `wirt cluster up` here")
        address = st["address"]
    services.connect(address)
    return services


# ---- wirt cluster ... ----------------------------------------------------------------------------
def _up(args: argparse.Namespace) -> int:
    from wirt.cluster import node
    from wirt.cluster.placement import parse_labels
    from wirt.cluster.services import is_loopback

    st = node.up(args.address, args.port, args.name, parse_labels(args.label, "--label"),
                 node_ip=args.node_ip_address, say=lambda text: print(f"wirt: {text}", file=sys.stderr))
    print(f"node {st['name']} is up in cluster {st['address']} (WIRT_HOME {st.get('home')})")
    if st["head"] and is_loopback(st["address"]):
        print(f"this cluster listens on loopback only (this host); to let other hosts join, start it "
              f"with --node-ip-address THIS_HOST_IP; use it with `wirt --cluster {st['address']} ...` "
              f"or WIRT_CLUSTER={st['address']}")
    elif st["head"]:
        print(f"join other hosts with `wirt cluster up --address {st['address']}`; "
              f"use it with `wirt --cluster {st['address']} ...` or WIRT_CLUSTER={st['address']}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from wirt.cluster import node, require_ray

    require_ray()
    print(f"node {node.down(args.force)} stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    services = _connect_any(args)
    ctl = services.controller()
    nodes = services.call(ctl.nodes.remote(), "the controller")
    rows = services.call(ctl.ls.remote(), "the controller")
    if args.json:
        print(json.dumps({"nodes": nodes, "vms": rows}, indent=1))
        return 0
    table = [("NODE", "STATE", "VCPUS USED/TOTAL", "MEMORY USED/TOTAL", "LABELS", "VMS")]
    for n in nodes:
        table.append((n["name"], "up" if n["alive"] else "down", f"{n['used_vcpus']:g}/{n['vcpus']:g}",
                      f"{human_size(int(n['used_memory_mib']) << 20)}/{human_size(int(n['memory_mib']) << 20)}",
                      ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())) or "-", str(len(n["vms"]))))
    print(format_table(table))
    for r in rows:
        if r["state"] in ("lost", "unrecoverable"):
            print(f"{r['name']}: {r['state']} ({r.get('reason', '')})")
    for e in services.call(ctl.recent_events.remote(), "the controller")[-5:]:
        print(f"event: {e}")
    return 0


# a transfer shows a progress bar (on stderr) from this size on; smaller ones are over at once
PROGRESS_MIN = 32 << 20


def _await(ref: Any, name: str) -> Any:
    """The controller's answer `ref` for a command on VM `name`; meanwhile a progress bar of any
    long transfer for it (a base image being fetched, its files being moved) on stderr."""
    import ray

    from wirt.cluster import services

    ctl = services.controller()
    bar = task = shown = None
    try:
        while not ray.wait([ref], timeout=0.5)[0]:
            try:
                p = services.call(ctl.progress.remote(name), "the controller", timeout=10)
            except WirtError:
                p = None
            if not p or p["total"] < PROGRESS_MIN:
                continue
            if bar is None:
                from wirt.images import ui

                bar = ui.byte_progress()
                bar.start()
            if p["what"] != shown:
                task = bar.add_task(p["what"], total=p["total"])
                shown = p["what"]
            bar.update(task, completed=p["moved"], total=p["total"])
    finally:
        if bar is not None:
            bar.stop()
    return services.call(ref, "the controller")


def _say_fetched(fetched: list[dict[str, Any]], node: str) -> None:
    for f in fetched:
        print(f"wirt: fetched base image {f['image']} ({human_size(f['bytes'])}) from node {f['from']} to {node} "
              f"in {f['seconds']:.1f} s; sha256 {f['sha256'][:16]}... verified", file=sys.stderr)


def _migrate(args: argparse.Namespace) -> int:
    services = _connect_any(args)
    print(f"wirt: moving {args.name} to {args.node} ...", file=sys.stderr)
    r = _await(services.controller().migrate.remote(args.name, args.node, not args.offline), args.name)
    _say_fetched(r.get("fetched", []), r["target"])
    how = (f"running; guest paused {r['downtime_seconds']:.2f} s (snapshot {r['snapshot_seconds']:.2f} s, transfer "
           f"{r['transfer_seconds']:.2f} s, resume {r['resume_seconds']:.2f} s)" if r["running"] else "stopped")
    print(f"migrated VM {r['name']} {r['source']} -> {r['target']} in {r['total_seconds']:.2f} s, "
          f"{human_size(r['bytes'])} moved, {how}")
    return 0


# ---- VM commands on the cluster ------------------------------------------------------------------
def _ctl() -> Any:
    from wirt.cluster import services

    return services.controller()


def _where(name: str) -> tuple[Any, str]:
    from wirt.cluster import services

    rec = services.call(_ctl().locate.remote(name), "the controller")
    return services.agent(rec["node"]), rec["node"]


def _create(args: argparse.Namespace) -> int:
    from wirt.cluster.placement import parse_labels
    from wirt.vm.schema import CREATE_OPTIONS, create_arguments

    if args.cpu_affinity:
        raise WirtError("--cpu-affinity names one host's CPUs; it cannot be used with --cluster")
    spec = dict(create_arguments({o.name: getattr(args, o.name) for o in CREATE_OPTIONS}), name=args.name)
    wishes = {"labels": parse_labels(args.label, "--label"), "affinity": parse_labels(args.affinity, "--affinity"),
              "anti_affinity": parse_labels(args.anti_affinity, "--anti-affinity"),
              "node_labels": parse_labels(args.node_label, "--node-label"), "policy": args.policy or "spread"}
    rec = _await(_ctl().create.remote(spec, wishes, args.on, args.restart_policy or "never"), args.name)
    _say_fetched(rec.get("fetched", []), rec["node"])
    print(f"created VM {rec['name']} on node {rec['node']}: {rec['cpus']} CPU, {human_size(rec['memory'])} RAM"
          + (f", restart policy {rec['restart_policy']}" if rec["restart_policy"] != "never" else ""))
    return 0


def _start(args: argparse.Namespace) -> int:
    from wirt.cluster import services

    agent, node = _where(args.name)
    row = services.call(agent.start.remote(args.name), f"the agent of {node}")
    print(f"started VM {args.name} on node {node} (pid {row['pid']})")
    if args.console:
        return _console(args)
    return 0


def _stop(args: argparse.Namespace) -> int:
    from wirt.cluster import services

    agent, node = _where(args.name)
    services.call(agent.stop.remote(args.name, args.force, args.timeout), f"the agent of {node}")
    print(f"VM {args.name} stopped (node {node})")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from wirt.cluster import services

    for name in args.name:
        services.call(_ctl().remove.remote(name, args.force), "the controller")
        print(f"removed VM {name}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from wirt.cluster import services

    rows = services.call(_ctl().ls.remote(), "the controller")
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no VMs in the cluster; create one with `wirt --cluster ADDR create NAME`")
        return 0
    table = [("NAME", "NODE", "STATE", "CPUS", "MEMORY", "LABELS")]
    for r in rows:
        table.append((r["name"], r["node"], r["state"], str(r["cpus"]), human_size(r["memory"]),
                      ",".join(f"{k}={v}" for k, v in sorted((r.get("labels") or {}).items())) or "-"))
    print(format_table(table))
    for r in rows:
        if r.get("reason"):
            print(f"{r['name']}: {r['reason']}", file=sys.stderr)
    return 0


def _exec(args: argparse.Namespace) -> int:
    import shlex

    from wirt.cli.vm import _exec_options, _OptionParser
    from wirt.cluster import services
    from wirt.vm.agent import MAX_STDIN

    argv = list(args.command)
    if "--" in argv and argv[0].startswith("-"):
        cut = argv.index("--")
        _exec_options(_OptionParser).parse_args(argv[:cut], namespace=args)
        argv = argv[cut + 1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise WirtError("exec: give the command after the VM name, e.g. `wirt exec web -- uname -a`")
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    if getattr(args, "tty", False):
        raise WirtError("exec -t needs the VM's own host; on a cluster run it on the VM's node")
    stdin = sys.stdin.buffer.read(MAX_STDIN + 1) if args.stdin else b""
    if len(stdin) > MAX_STDIN:
        raise WirtError(f"--stdin: standard input is longer than {MAX_STDIN} bytes")
    agent, node = _where(args.name)
    out, err, status = services.call(agent.exec.remote(args.name, command, args.timeout, args.kill_after, stdin),
                                     f"the agent of {node}")
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.buffer.write(err)
    sys.stderr.flush()
    return int(status)


def _console(args: argparse.Namespace) -> int:
    """The console of a VM on another node: its log polled through the agent, keys sent as input
    (C-a d detaches)."""
    import select

    from wirt.cluster import services
    from wirt.machine.console import EscapeParser, raw_terminal

    agent, node = _where(args.name)
    offset = max(0, services.call(agent.console_size.remote(args.name), f"the agent of {node}") - 4096)
    parser = EscapeParser()
    reason = "detached"
    stdin_open = True
    try:
        with raw_terminal(0) as interactive:
            print(f"wirt: attached to {args.name}'s console on node {node} -- C-a d detaches\r", file=sys.stderr)
            while True:
                data, offset, state = services.call(agent.console_read.remote(args.name, offset),
                                                    f"the agent of {node}")
                if data:
                    sys.stdout.buffer.write(data)
                    sys.stdout.flush()
                if state not in ("running", "paused", "starting"):
                    reason = f"the VM is {state}"
                    break
                ready = select.select([0], [], [], 0.1)[0] if stdin_open else (time.sleep(0.1) or [])
                if ready:
                    keys = os.read(0, 1024)
                    if not keys:
                        stdin_open = False
                        continue
                    to_guest, cmds = parser.feed(keys) if interactive else (keys, [])
                    if to_guest:
                        services.call(agent.console_input.remote(args.name, to_guest), f"the agent of {node}")
                    if "d" in cmds or "x" in cmds:
                        break
    except KeyboardInterrupt:
        pass
    print(f"\nwirt: {reason}", file=sys.stderr)
    return 0


_REMOTE = {"create": _create, "start": _start, "ls": _ls, "stop": _stop, "exec": _exec, "console": _console,
           "rm": _rm}
