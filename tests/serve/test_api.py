"""The REST API over the Unix socket and TCP, against a real `wirt serve` process."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest
from serverproc import Server, stop_all, tiny_body

from wirt.serve.client import Client


@pytest.mark.parametrize("via", ["unix", "tcp"])
def test_vm_crud(shared, firmware, via):
    c = getattr(shared, via)
    assert c.get("/v1/vms").json() == []
    r = c.post("/v1/vms", tiny_body("a", firmware))
    assert r.status == 201, r
    vm = r.json()
    assert vm["name"] == "a" and vm["state"] == "stopped" and vm["memory"] == 32 << 20
    assert vm["config"]["network"]["mode"] == "none"
    assert [x["name"] for x in c.get("/v1/vms").json()] == ["a"]
    assert c.get("/v1/vms/a").json()["config"]["memory"] == "32M"
    r = c.patch("/v1/vms/a", {"memory": "64M"})
    assert r.status == 200 and r.json()["vm"]["memory"] == 64 << 20 and r.json()["changes"] == ["memory 32M -> 64M"]
    assert c.patch("/v1/vms/a", {"memory": 5}).status == 400
    assert c.get("/v1/vms/a/disks").json()[0]["size"] == 1 << 20
    assert c.delete("/v1/vms/a").json() == {"removed": "a"}
    assert c.get("/v1/vms/a").status == 404
    assert c.get("/v1/vms").json() == []


@pytest.mark.parametrize("path,body,status,words", [
    ("/v1/vms", {"name": "b", "memroy": "1G"}, 400, "'memroy' is not a known option"),
    ("/v1/vms", {"name": "b", "memory": "lots"}, 400, "memory: 'lots' is not a size"),
    ("/v1/vms", {"name": "b", "cpus": "two"}, 400, "cpus: 'two' is not a whole number"),
    ("/v1/vms", {"memory": "1G"}, 400, "'name' is missing"),
    ("/v1/vms", {"name": "../x"}, 400, "VM name"),
    ("/v1/vms", [1, 2], 400, "not a JSON object"),
    ("/v1/vms/ghost/start", {}, 404, "no VM named 'ghost'"),
    ("/v1/vms/ghost/exec", {"command": "true"}, 404, "no VM named 'ghost'"),
    ("/v1/host/admission", {"memory": "900T"}, 200, ""),
])
def test_bad_requests_are_one_line_json(shared, path, body, status, words):
    r = shared.unix.post(path, body)
    assert r.status == status, r
    data = r.json()
    if status >= 400:
        assert words in data["error"] and "\n" not in data["error"] and "Traceback" not in data["error"]
    else:
        assert data["admitted"] is False and "memory" in data["reason"]


def test_bad_json_and_unknown_route(shared):
    r = shared.unix.request("POST", "/v1/vms", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and "not valid JSON" in r.json()["error"]
    assert shared.unix.get("/v1/nothing").status == 404
    assert shared.unix.request("PUT", "/v1/vms").status == 405


def test_tcp_needs_the_token(shared):
    assert Client(shared.base).get("/v1/vms").status == 401
    assert Client(shared.base, "wrong").get("/v1/vms").status == 401
    r = Client(shared.base, "wrong").post("/v1/vms", {"name": "x"})
    assert r.status == 401 and "bearer token" in r.json()["error"]
    assert shared.tcp.get("/v1/vms").status == 200
    assert not (shared.home / "vms" / "x").exists()


def test_socket_and_token_are_private(shared):
    assert stat.S_IMODE(os.stat(shared.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(shared.home / "serve" / "token").st_mode) == 0o600
    assert len(shared.token) >= 40


def test_openapi_document_covers_the_routes(shared):
    doc = shared.unix.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for p in ("/v1/vms", "/v1/vms/{name}", "/v1/vms/{name}/start", "/v1/vms/{name}/exec",
              "/v1/vms/{name}/snapshots", "/v1/vms/{name}/fork", "/v1/host", "/v1/images"):
        assert p in paths
    # the create body is the `wirt create` option table
    from wirt.vm.schema import CREATE_OPTIONS

    props = doc["components"]["schemas"]["VMCreate"]["properties"]
    assert set(props) == {"name"} | {o.name for o in CREATE_OPTIONS}
    page = shared.unix.get("/v1/docs")
    assert page.status == 200 and b"/v1/vms/{name}/fork" in page.body


def test_lifecycle_and_snapshots(server, firmware):
    c = server.unix
    assert c.post("/v1/vms", tiny_body("t", firmware)).status == 201
    r = c.post("/v1/vms/t/start")
    assert r.status == 200 and r.json()["state"] == "running", r
    assert c.post("/v1/vms/t/start").status == 409  # already running
    assert c.post("/v1/vms/t/pause").json()["state"] == "paused"
    assert c.post("/v1/vms/t/resume").json()["state"] == "running"
    r = c.post("/v1/vms/t/snapshots", {"name": "s1"})
    assert r.status == 201 and r.json()["kind"] == "full", r
    assert [s["name"] for s in c.get("/v1/vms/t/snapshots").json()] == ["s1"]
    r = c.post("/v1/vms/t/snapshots", {"name": "s1"})
    assert r.status in (400, 409) and "already has a snapshot 's1'" in r.json()["error"]
    assert c.delete("/v1/vms/t").status == 409  # running
    r = c.post("/v1/vms/t/fork", {"snapshot": "s1", "name": "t2"})
    assert r.status == 201 and r.json()["name"] == "t2"
    assert c.post("/v1/vms/t/stop?force=true").json()["state"] == "stopped"
    assert c.post("/v1/vms/t/snapshots/s1/restore").status == 200
    assert c.post("/v1/vms/t/snapshots/nope/restore").status == 404
    assert c.delete("/v1/vms/t2/snapshots/s1").status in (200, 404)
    assert c.delete("/v1/vms/t/snapshots/s1").json() == {"removed": "s1"}
    log = c.get("/v1/vms/t/logs")
    assert log.status == 200 and log.headers["content-type"].startswith("text/plain")


def test_killed_server_loses_no_vm(home, firmware):
    s = Server(home)
    try:
        assert s.unix.post("/v1/vms", tiny_body("k", firmware)).status == 201
        assert s.unix.post("/v1/vms/k/start").json()["state"] == "running"
        s.stop(signal.SIGKILL)
        s2 = Server(home)  # takes over the stale socket
        try:
            rows = s2.unix.get("/v1/vms").json()
            assert [(r["name"], r["state"]) for r in rows] == [("k", "running")]
            assert s2.unix.post("/v1/vms/k/stop", {}).json()["state"] == "stopped"
        finally:
            s2.stop()
    finally:
        s.stop()
        stop_all(home)


def test_without_the_extra_serve_says_how_to_install(home):
    code = ("import sys; sys.modules['aiohttp'] = None; import wirt.cli as c; sys.exit(c.main(['serve']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "pip install 'wirt[serve]'" in r.stderr and "Traceback" not in r.stderr


def test_web_console_files_and_cookie_login(shared):
    page = shared.unix.get("/ui/")
    assert page.status == 200 and b"vendor/xterm.js" in page.body and b"WIRT_LAST_EVENT" in page.body
    js = shared.unix.get("/ui/vendor/xterm.js")
    assert js.status == 200 and b"Terminal" in js.body  # from the npm package, served locally
    assert shared.unix.get("/ui/app.js").status == 200
    assert shared.unix.get("/ui/vendor/other.js").status == 404
    anon = Client(shared.base)
    assert anon.get("/ui/").status == 401
    assert anon.get("/ui/?token=wrong").status == 401
    r = anon.get(f"/ui/?token={shared.token}")
    assert r.status == 302 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    again = anon.get("/v1/vms", headers={"Cookie": cookie.split(";")[0]})
    assert again.status == 200


def test_tls_listener(home, tmp_path):
    """--tls-cert/--tls-key: HTTPS with the user's certificate; the token is still required."""
    import shutil
    import ssl

    openssl = shutil.which("openssl")
    assert openssl, "openssl not found (make test installs it)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    s = Server(home, ("--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        assert s.base.startswith("https://")
        assert Client(s.base, s.token, ssl_context=ctx).get("/v1/vms").json() == []
        assert Client(s.base, None, ssl_context=ctx).get("/v1/vms").status == 401
        with pytest.raises(ssl.SSLError):  # not trusted without the certificate
            Client(s.base, s.token).get("/v1/vms")
    finally:
        s.stop()


def test_bad_tls_and_listen_options_are_one_line(home, tmp_path):
    for args, words in ((["--listen", "nowhere"], "write HOST:PORT"),
                        (["--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "no.pem")], "both --tls-cert and"),
                        (["--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "no.pem"), "--tls-key",
                          str(tmp_path / "no.key")], "cannot load them")):
        r = subprocess.run([sys.executable, "-m", "wirt", "serve", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_concurrent_requests_on_one_vm_are_serialized(server, firmware):
    """Two starts at once: one starts the VM, the other is refused (already running or busy)."""
    from concurrent.futures import ThreadPoolExecutor

    assert server.unix.post("/v1/vms", tiny_body("c", firmware)).status == 201
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: server.unix.post("/v1/vms/c/start"), range(2)))
    assert sorted(r.status for r in replies) == [200, 409], replies
    loser = next(r for r in replies if r.status == 409).json()["error"]
    assert "already running" in loser or "busy" in loser
    assert server.unix.post("/v1/vms/c/stop?force=true").status == 200


def test_every_route_is_in_the_openapi_document(home):
    from wirt.serve.app import make_app
    from wirt.serve.openapi import document

    app = make_app(home, token="t")
    doc = document()["paths"]
    skip = {"/", "/ui/", "/ui/{file}", "/ui/vendor/{file}", "/v1/openapi.json", "/v1/docs"}
    for route in app.router.routes():
        path = route.resource.canonical
        if path in skip or route.method == "HEAD":
            continue
        paths = ([path.replace("{action}", a) for a in ("start", "stop", "restart", "pause", "resume")]
                 if "{action}" in path else [path])
        for p in paths:
            assert route.method.lower() in doc.get(p, {}), f"{route.method} {p} is not documented"


def test_web_console_is_pinned_by_its_lockfile_and_loads_nothing_from_the_internet():
    """Every front-end package is pinned to one exact version in package.json and locked with an
    integrity hash in the lockfile npm wrote at setup (neither it nor node_modules is committed),
    and the page's own files reference no outside address."""
    import json
    import re

    from wirt.serve.webui import STATIC, VENDOR, WEB

    deps = json.loads((WEB / "package.json").read_text())["dependencies"]
    lock = json.loads((WEB / "package-lock.json").read_text())["packages"]
    assert lock[""]["dependencies"] == deps
    for name, version in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
        entry = lock[f"node_modules/{name}"]
        assert entry["version"] == version and entry["integrity"].startswith("sha512-"), entry
    assert {path.split("/lib/")[0].split("/css/")[0] for path in VENDOR.values()} == set(deps)
    for name in ("index.html", *STATIC):
        assert not re.search(r"https?://|src=[\"']//|href=[\"']//", (WEB / name).read_text()), name
