"""Helpers of the `wirt serve` tests: a real server process on a private WIRT_HOME (Unix socket and TCP on
127.0.0.1), and the echo-firmware VM of tests/vm (no Linux boot) to drive through it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from wirt.serve.client import Client  # noqa: E402


def echo_firmware() -> bytes:
    """tests/vm's echo firmware (UART echo; 'f' powers off), loaded from there (one copy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vm_conftest", Path(__file__).parent.parent / "vm" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.echo_firmware()


_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


class Server:
    """One `wirt serve` process: .unix and .tcp clients (the TCP one with the token), .stop()."""

    def __init__(self, home: Path, extra: tuple[str, ...] = ()) -> None:
        self.home = home
        env = dict(os.environ, WIRT_HOME=str(home), WIRT_ZYGOTE="0", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-c", _MAIN, "serve", "--listen", "127.0.0.1:0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, text=True)
        self.lines: list[str] = []
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("wirt serve ended: " + "".join(self.lines))
            self.lines.append(line)
            m = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, self.lines
        self.port = port
        self.socket = home / "serve" / "api.sock"
        self.token = (home / "serve" / "token").read_text().strip()
        scheme = "https" if "--tls-cert" in extra else "http"
        self.base = f"{scheme}://127.0.0.1:{port}"
        self.unix = Client(f"unix:{self.socket}")
        self.tcp = Client(self.base, self.token)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc.stdout.close()


def tiny_body(name: str, firmware: Path) -> dict:
    """The REST body of an echo-firmware VM (`wirt create` option names)."""
    return {"name": name, "memory": "32M", "disk": "1M", "image": "none", "net": "none", "firmware": str(firmware)}


def stop_all(home: Path) -> None:
    from wirt.vm.api import VM

    for vm in VM.list(home):
        try:
            if vm.status(query=False).running:
                vm.stop(force=True)
        except Exception:
            pass


def sse_events(url: str, token: str | None, count: int, last_id: int | None = None, timeout: float = 60.0,
               vm: str | None = None) -> list[dict]:
    """Read `count` events from GET /v1/events as a Server-Sent Events stream (resuming after
    `last_id` with Last-Event-ID), then hang up; each is its parsed data plus the `id:` line."""
    import http.client
    import json
    import socket as so
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if url.startswith("unix:"):
        from wirt.serve.client import _UnixConnection

        conn: http.client.HTTPConnection = _UnixConnection(url[5:], timeout)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    conn.request("GET", "/v1/events" + (f"?vm={vm}" if vm else ""), headers=headers)
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    out: list[dict] = []
    field: dict[str, str] = {}
    try:
        while len(out) < count:
            line = r.fp.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if not line:
                if "data" in field:
                    ev = json.loads(field["data"])
                    assert str(ev["id"]) == field["id"] and ev["type"] == field["event"]
                    out.append(ev)
                field = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                field[k] = v
    except (so.timeout, TimeoutError):
        pass
    finally:
        conn.close()
    return out
