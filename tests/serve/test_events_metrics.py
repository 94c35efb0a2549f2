"""The event stream (SSE with ids, resumable), per-VM event logs and /metrics on a real server."""

from __future__ import annotations

import re

from serverproc import sse_events, tiny_body

from wirt.vm import events as ev


def test_event_log_ids_are_consecutive(home):
    a = ev.emit(home, "x", "created")
    b = ev.emit(home, "x", "paused")
    assert (a["id"], b["id"]) == (1, 2) and ev.last_id(home) == 2
    found, offset = ev.read_events(ev.host_log(home), after=1)
    assert [e["type"] for e in found] == ["paused"]
    assert ev.read_events(ev.host_log(home), 0, offset) == ([], offset)


def test_stream_reports_start_and_stop_and_resumes(server, firmware):
    c = server.unix
    assert c.post("/v1/vms", tiny_body("e", firmware)).status == 201
    assert c.post("/v1/vms/e/start").json()["state"] == "running"
    assert c.post("/v1/vms/e/stop", {}).json()["state"] == "stopped"
    # created, started, stopped, over TCP with the token
    got = sse_events(server.base, server.token, 3)
    assert [(e["vm"], e["type"]) for e in got] == [("e", "created"), ("e", "started"), ("e", "stopped")]
    assert got[2]["reason"] == "poweroff"
    ids = [e["id"] for e in got]
    assert ids == sorted(ids) and len(set(ids)) == 3
    # a client that saw only the first event resumes from its id and misses nothing
    resumed = sse_events(f"unix:{server.socket}", None, 2, last_id=ids[0])
    assert [e["id"] for e in resumed] == ids[1:]
    # live: a stream opened now sees the next start as it happens
    import threading

    box: list = []
    t = threading.Thread(target=lambda: box.extend(sse_events(server.base, server.token, 1, last_id=ids[-1])))
    t.start()
    assert c.post("/v1/vms/e/start").json()["state"] == "running"
    t.join(60)
    assert [(e["type"], e["id"]) for e in box] == [("started", ids[-1] + 1)]
    # JSON form (polling) and the per-VM log
    assert [e["type"] for e in c.get(f"/v1/events?after={ids[0]}").json()][:3] == ["started", "stopped", "started"]
    assert [e["type"] for e in c.get("/v1/vms/e/events").json()] == ["created", "started", "stopped", "started"]
    assert c.get("/v1/events?after=x").status == 400
    assert c.post("/v1/vms/e/stop?force=true").status == 200


def test_admission_refusal_is_an_event(server, firmware):
    c = server.unix
    body = tiny_body("big", firmware) | {"memory": "900T"}
    assert c.post("/v1/vms", body).status == 400  # beyond MAX_MEMORY: refused at create
    (server.home / "config.toml").write_text("[resources]\nmemory_reserve = \"1T\"\n")
    assert c.post("/v1/vms", tiny_body("big", firmware)).status == 201
    r = c.post("/v1/vms/big/start")
    assert r.status == 409 and "memory" in r.json()["error"]
    types = [e["type"] for e in c.get("/v1/vms/big/events").json()]
    assert types == ["created", "admission-refused"]


def _value(text: str, series: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)\{([^}]*)\} (\S+)", line)
        if m and m.group(1) == series and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return None


def test_metrics(server, firmware):
    c = server.unix
    assert c.post("/v1/vms", tiny_body("m", firmware)).status == 201
    assert c.post("/v1/vms", tiny_body("n", firmware)).status == 201
    assert c.post("/v1/vms/m/start").status == 200
    r = c.get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    assert _value(text, "wirt_vm_state", vm="m", state="running") == 1.0
    assert _value(text, "wirt_vm_state", vm="m", state="stopped") == 0.0
    assert _value(text, "wirt_vm_state", vm="n", state="stopped") == 1.0
    assert _value(text, "wirt_vm_memory_bytes", vm="m") == 32 << 20
    assert _value(text, "wirt_vm_instructions_total", vm="m") > 0
    assert _value(text, "wirt_vm_rss_bytes", vm="m") > 0
    assert _value(text, "wirt_vm_disk_read_ops_total", vm="m") is not None
    assert _value(text, "wirt_vm_instructions_total", vm="n") is None  # not running: no counters
    assert server.tcp.get("/metrics").status == 200
    from wirt.serve.client import Client

    assert Client(server.base).get("/metrics").status == 401
    c.post("/v1/vms/m/stop?force=true")


def test_panic_watch_sees_a_split_panic_line_once():
    seen, out = [], []
    w = ev.PanicWatch(out.append, seen.append)
    for chunk in (b"[ 1.0] sysrq: Trigger a crash\r\n[ 1.1] Kernel pa", b"nic - not sync", b"ing: sysrq triggered crash\r\n",
                  b"more output\r\n"):
        w(chunk)
    assert seen == ["Kernel panic - not syncing: sysrq triggered crash"]
    assert b"".join(out).count(b"Kernel panic") == 1  # the output itself passes through untouched


def test_a_panic_printed_by_a_confined_vm_is_an_event(server, firmware):
    """The VM process is confined to its own folder (Landlock) when the guest runs, so the host
    event log is written for it by its monitor: the echo firmware prints what is typed, here a
    kernel's panic line, and the panic event shows up in both logs."""
    import time

    from wirt.vm.api import VM

    c = server.unix
    assert c.post("/v1/vms", tiny_body("p", firmware)).status == 201
    assert c.post("/v1/vms/p/start").json()["state"] == "running"
    VM.get("p", server.home).console_input("Kernel panic - not syncing: typed\r\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        panics = [e for e in c.get("/v1/vms/p/events").json() if e["type"] == "panic"]
        if panics:
            break
        time.sleep(0.2)
    assert [e["line"] for e in panics] == ["Kernel panic - not syncing: typed"]
    assert [e["type"] for e in c.get("/v1/events").json() if e["vm"] == "p"] == ["created", "started", "panic"]
    assert c.post("/v1/vms/p/stop?force=true").status == 200
