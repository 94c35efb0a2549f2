"""`wirt --remote URL` runs the CLI's VM commands against a real `wirt serve` (Unix socket and TCP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from serverproc import tiny_body

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env=env)


def test_cli_drives_a_server(server, firmware, tmp_path):
    # the client has its own (empty) home: everything it sees comes from the server
    env = dict(os.environ, WIRT_HOME=str(tmp_path / "client-home"), WIRT_REMOTE=f"unix:{server.socket}")
    r = wirt("create", "rc", "--image", "none", "--disk", "none", "--memory", "32M", "--net", "none",
             "--firmware", str(firmware), env=env)
    assert r.returncode == 0 and "created VM rc" in r.stdout, r.stderr
    assert (server.home / "vms" / "rc" / "vm.toml").is_file() and not (tmp_path / "client-home" / "vms").exists()
    r = wirt("ls", "--json", env=env)
    assert [(x["name"], x["state"]) for x in json.loads(r.stdout)] == [("rc", "stopped")]
    assert wirt("start", "rc", env=env).returncode == 0
    r = wirt("status", "rc", env=env)
    assert "state:    running" in r.stdout, r.stdout + r.stderr
    assert wirt("pause", "rc", env=env).returncode == 0
    assert server.unix.get("/v1/vms/rc").json()["state"] == "paused"
    assert wirt("resume", "rc", env=env).returncode == 0
    r = wirt("console", "rc", env=env)
    assert r.returncode == 2 and "web console" in r.stderr
    r = wirt("snapshot", "create", "rc", "s1", env=env)
    assert r.returncode == 0 and "full" in r.stdout, r.stderr
    r = wirt("snapshot", "ls", "rc", "--json", env=env)
    assert [s["name"] for s in json.loads(r.stdout)] == ["s1"]
    r = wirt("fork", "rc", "s1", "rc2", "--no-start", env=env)
    assert r.returncode == 0 and (server.home / "vms" / "rc2").is_dir(), r.stderr
    r = wirt("stop", "--force", "rc", env=env)
    assert r.returncode == 0 and server.unix.get("/v1/vms/rc").json()["state"] == "stopped"
    assert wirt("logs", "rc", env=env).returncode == 0
    # errors keep their one-line form and exit status; over TCP the token is needed
    r = wirt("start", "ghost", env=env)
    assert r.returncode == 2 and "no VM named 'ghost'" in r.stderr and "Traceback" not in r.stderr
    tcp = dict(env, WIRT_REMOTE=server.base, WIRT_TOKEN="wrong")
    r = wirt("ls", env=tcp)
    assert r.returncode == 2 and "bearer token" in r.stderr
    r = wirt("--remote", server.base, "rm", "rc2", env=dict(tcp, WIRT_TOKEN=server.token))
    assert r.returncode == 0, r.stderr
    assert not (server.home / "vms" / "rc2").exists()
