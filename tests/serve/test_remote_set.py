"""`wirt --remote URL set` changes ports and host folders on the server's VM like a local `set`, and
`wirt --remote URL cp` is refused in one line (it needs the VM's own host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from wirt.units import parse_size

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env=env)


def _config(server, name: str) -> dict:
    return server.unix.get(f"/v1/vms/{name}").json()["config"]


def test_set_ports_and_mounts_over_remote(server, firmware, tmp_path):
    env = dict(os.environ, WIRT_HOME=str(tmp_path / "client-home"), WIRT_REMOTE=f"unix:{server.socket}")
    r = wirt("create", "rs", "--image", "none", "--disk", "none", "--memory", "32M", "--net", "user",
             "--firmware", str(firmware), env=env)
    assert r.returncode == 0, r.stderr

    r = wirt("set", "rs", "--memory", "48M", "--port", "18080:80", "--port", "0.0.0.0:18443:443", env=env)
    assert r.returncode == 0 and "ports" in r.stdout and "memory" in r.stdout, r.stderr
    cfg = _config(server, "rs")
    assert parse_size(str(cfg["memory"])) == 48 << 20 and cfg["network"]["ports"] == ["18080:80", "0.0.0.0:18443:443"]
    r = wirt("set", "rs", "--port", "18080:8080", env=env)  # replaces the one on host port 18080
    assert r.returncode == 0, r.stderr
    assert _config(server, "rs")["network"]["ports"] == ["0.0.0.0:18443:443", "18080:8080"]
    r = wirt("set", "rs", "--no-port", "--port", "5353:53/udp", env=env)
    assert r.returncode == 0, r.stderr
    assert _config(server, "rs")["network"]["ports"] == ["5353:53/udp"]
    assert wirt("set", "rs", "--no-port", env=env).returncode == 0
    assert _config(server, "rs")["network"]["ports"] == []

    share = tmp_path / "share"
    share.mkdir()
    r = wirt("set", "rs", "--mount", f"{share}:/mnt/share:ro", env=env)
    assert r.returncode == 0 and "mounts" in r.stdout, r.stderr
    assert _config(server, "rs")["mounts"] == [{"host": str(share), "guest": "/mnt/share", "read_only": True}]
    r = wirt("status", "--json", "rs", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["network"]["ports"] == [], r.stderr
    # HOSTDIR names a folder on the server's host: a relative one is refused here, in one line
    r = wirt("set", "rs", "--mount", "share:/mnt/other", env=env)
    assert r.returncode == 2 and "absolute path" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert wirt("set", "rs", "--no-mount", env=env).returncode == 0
    assert _config(server, "rs").get("mounts", []) == []

    r = wirt("set", "rs", "--port", "1:2:3", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "port" in r.stderr

    # a fork keeps the forwards on free host ports, and says so over --remote too
    assert wirt("set", "rs", "--port", "18080:80", env=env).returncode == 0
    assert wirt("snapshot", "create", "rs", "s1", env=env).returncode == 0
    r = wirt("fork", "rs", "s1", "rs2", "--no-start", env=env)
    assert r.returncode == 0, r.stderr
    twin = _config(server, "rs2")["network"]["ports"]
    assert len(twin) == 1 and twin[0].endswith(":80") and twin[0] != "18080:80"
    assert "moved to free host ports" in r.stdout and twin[0] in r.stdout, r.stdout


def test_cp_over_remote_is_refused_in_one_line(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    env = dict(os.environ, WIRT_HOME=str(tmp_path / "home"), WIRT_REMOTE="unix:/nonexistent/api.sock")
    for args in (("cp", str(f), "web:/root/"), ("cp", "web:/etc/hostname", str(tmp_path))):
        r = wirt(*args, env=env)
        assert r.returncode == 2 and "own host" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
