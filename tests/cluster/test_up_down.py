"""`wirt cluster up|status|down` as a user runs them: a real Ray head node started by the CLI on
this machine with its own WIRT_HOME (its agent works there), its status, then stopped -- only
its own Ray processes end. VM commands on a cluster: test_fleet.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cluster.conftest import free_port, off_loopback_sockets
from wirt.cluster.local import DEAD_PROXY_ENV


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wirt", *argv], capture_output=True, text=True, env=env,
                          timeout=400)


def test_up_status_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = dict(os.environ, WIRT_HOME=str(home), WIRT_ZYGOTE="0", **DEAD_PROXY_ENV)  # Ray's cloud probe
    env.pop("WIRT_CLUSTER", None)
    r = run(env, "cluster", "up", "--name", "solo", "--port", str(free_port()), "--label", "zone=z")
    try:
        assert r.returncode == 0, r.stderr
        assert "node solo is up in cluster" in r.stdout and f"(WIRT_HOME {home})" in r.stdout  # the agent's
        state = json.loads((home / "cluster" / "node.json").read_text())
        address, pid = state["address"], state["pid"]
        assert address.startswith("127.0.0.1:") and "listens on loopback only" in r.stdout  # no --node-ip-address
        assert off_loopback_sockets(pid) == []  # the head's Ray processes: loopback only
        r = run(env, "cluster", "status", "--json")
        assert r.returncode == 0, r.stderr
        nodes = json.loads(r.stdout[r.stdout.index("{"):])["nodes"]
        assert [(n["name"], n["alive"], n["labels"]) for n in nodes] == [("solo", True, {"zone": "z"})]
        assert nodes[0]["vcpus"] >= 1 and nodes[0]["memory_mib"] > 0  # this host's admission budgets
        r = run(env, "cluster", "down")
        assert r.returncode == 0 and "node solo stopped" in r.stdout, r.stderr
        assert not Path(f"/proc/{pid}").exists() or b"ray" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert not (home / "cluster" / "node.json").exists()
        r = run(env, "cluster", "down")
        assert r.returncode == 2 and "nothing to stop" in r.stderr
    finally:
        if (home / "cluster" / "node.json").exists():
            run(env, "cluster", "down", "--force")
