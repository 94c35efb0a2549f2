"""`wirt cluster up/down`: this host's Ray node, run as `ray start --block` in its own session.

The node advertises its wirt budgets as Ray resources (resources.node_resources, from this
host's inventory and WIRT_HOME/config.toml) and its labels; once it has joined, its host agent
(and on the head, the controller) is started as a detached actor. `down` ends exactly the Ray
processes `up` started here: it signals the recorded `ray start --block` process, which takes
its raylet and workers with it (never `ray stop`, which would end every Ray process of the host).
State: $WIRT_HOME/cluster/node.json {pid, name, address, head}; the node's log beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wirt.cluster import require_ray
from wirt.cluster.resources import check_node_name, node_name_of, node_resources
from wirt.errors import WirtError
from wirt.fileio import atomic_write
from wirt.vm.store import read_json, wirt_home

__all__ = ["up", "down", "local_node", "JOIN_TIMEOUT"]

JOIN_TIMEOUT = 180.0


def _state_file(home: Path) -> Path:
    return home / "cluster" / "node.json"


def _alive(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ray.scripts.scripts" in cmd and b"start" in cmd


def local_node(home: Path | None = None) -> dict[str, Any] | None:
    """The node `wirt cluster up` started from this WIRT_HOME, if it still runs."""
    st = read_json(_state_file(home or wirt_home()))
    return st if st and _alive(int(st.get("pid", 0))) else None


def up(address: str | None = None, port: int = 6379, name: str | None = None,
       labels: dict[str, str] | None = None, node_ip: str | None = None, say: Any = print) -> dict[str, Any]:
    """Start (no address: a new cluster, this host its head) or join a cluster; returns the state.
    A new cluster without `node_ip` listens on 127.0.0.1 only (services.loopback_only)."""
    require_ray()
    from wirt.cluster import services
    from wirt.vm.inventory import host_inventory
    from wirt.vm.settings import load_settings

    home = wirt_home()
    if local_node(home):
        raise WirtError(f"this WIRT_HOME ({home}) already runs a cluster node; `wirt cluster down` first")
    name = check_node_name(name or socket.gethostname().split(".")[0])
    res = node_resources(name, host_inventory(home), load_settings(home))
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
           "--resources", json.dumps(res)]
    if labels:
        cmd += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
    cmd += ["--address", address] if address else ["--head", "--port", str(port), "--include-dashboard", "false"]
    if address is None and node_ip is None:
        services.loopback_only()  # before Popen: `ray start` inherits it
        node_ip = services.LOOPBACK
    if node_ip:
        cmd += ["--node-ip-address", node_ip]
    (home / "cluster").mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = home / "cluster" / "ray-node.log"
    say(f"starting Ray node {name} ({'joining ' + address if address else 'head, port ' + str(port)}); log: {log_path}")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=dict(os.environ, WIRT_HOME=str(home)))
    state = {"pid": proc.pid, "name": name, "head": address is None, "address": address}
    atomic_write(_state_file(home), json.dumps(state))
    deadline = time.monotonic() + JOIN_TIMEOUT
    while address is None:
        text = log_path.read_text(errors="replace")
        m = re.findall(r"--address='([^']+)'", text)
        if m or (node_ip and "Ray runtime started" in text):  # single-host Ray prints no --address
            state["address"] = address = m[-1] if m else f"{node_ip}:{port}"
            break
        _check_running(proc, log_path, deadline)
        time.sleep(0.3)
    atomic_write(_state_file(home), json.dumps(state))
    ray = services.connect(address)
    while not any(n.get("Alive") and node_name_of(n.get("Resources") or {}) == name for n in ray.nodes()):
        _check_running(proc, log_path, deadline)
        time.sleep(0.3)
    say(f"node {name} joined; starting its host agent" + (" and the controller" if state["head"] else ""))
    if state["head"]:
        services.start_controller(name)
    info = services.start_agent(name)
    state["home"] = info["home"]
    return state


def _check_running(proc: subprocess.Popen, log_path: Path, deadline: float) -> None:
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise WirtError(f"the Ray node exited ({proc.returncode}): {' | '.join(tail)}; full log: {log_path}")
    if time.monotonic() > deadline:
        raise WirtError(f"the Ray node did not come up within {JOIN_TIMEOUT:g} s; see {log_path}")


def down(force: bool = False) -> str:
    """Stop this host's node: refuse while VMs placed here exist (unless `force`), end its agent
    (and the controller on the head), then its Ray processes."""
    home = wirt_home()
    st = local_node(home)
    if st is None:
        with contextlib.suppress(FileNotFoundError):
            _state_file(home).unlink()
        raise WirtError(f"no cluster node runs from this WIRT_HOME ({home}); nothing to stop")
    from wirt.cluster import services

    name = st["name"]
    here: list[str] = []
    ray = None
    with contextlib.suppress(WirtError):
        ray = services.connect(st["address"])
        here = [r["name"] for r in services.call(services.controller().ls.remote(), "the controller")
                if r["node"] == name]
    if here and not force:
        raise WirtError(f"node {name} still holds VMs {', '.join(here)}; migrate or remove them, "
                        "or `wirt cluster down --force` (they are then lost to the cluster)")
    if ray is not None:
        for get in [lambda: services.agent(name)] + ([services.controller] if st.get("head") else []):
            with contextlib.suppress(Exception):
                ray.kill(get())
    # the node's processes share the process group of `ray start` (its own session); the VM
    # processes have sessions of their own and are not touched
    pid = int(st["pid"])
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(pid):
            break
    with contextlib.suppress(FileNotFoundError):
        _state_file(home).unlink()
    return name
