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


def test_remote_console_and_streamed_exec(server, firmware, tmp_path):
    """`wirt --remote URL console` carries the console both ways over the console websocket (the
    echo firmware types back what it gets) and ends when the VM stops; exec -i and -t stream over
    the exec websocket (here the firmware has no agent: a one-line error)."""
    import threading
    import time

    assert server.unix.post("/v1/vms", tiny_body("rcon", firmware)).status == 201
    assert server.unix.post("/v1/vms/rcon/start").json()["state"] == "running"
    env = dict(os.environ, WIRT_HOME=str(tmp_path / "client-home"), WIRT_REMOTE=server.base, WIRT_TOKEN=server.token)
    p = subprocess.Popen([sys.executable, "-c", _MAIN, "console", "rcon"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    seen = bytearray()

    def read() -> None:
        while data := p.stdout.read1(4096):
            seen.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        p.stdin.write(b"hello-remote")
        p.stdin.flush()
        deadline = time.monotonic() + 60
        while b"hello-remote" not in seen and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert b"hello-remote" in seen, (bytes(seen), p.poll())
        assert server.unix.post("/v1/vms/rcon/stop?force=true").status == 200
        assert p.wait(60) == 0
        reader.join(10)
        assert b"the VM stopped" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    r = wirt("console", "rcon", env=env)  # stopped now: refused in one line
    assert r.returncode == 2 and "is stopped" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert server.unix.post("/v1/vms/rcon/start").status == 200
    for flag in ("-i", "-t"):
        r = wirt("exec", "--timeout", "1", flag, "rcon", "--", "cat", env=env)
        assert r.returncode == 2 and "agent" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert server.unix.post("/v1/vms/rcon/stop?force=true").status == 200
