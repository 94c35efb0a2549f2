"""Websockets of a real server on the echo-firmware VM (no Linux): console both ways, Origin
checks, disconnects mid-stream, exec errors. tests/serve/test_slow_serve.py runs them on Debian."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from serverproc import tiny_body


def _session(server) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"})


async def _read_until(ws, text: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    async with asyncio.timeout(timeout):
        while text not in seen:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            seen += msg.data
    return seen


def test_console_echoes_and_resizes(server, firmware):
    c = server.unix
    assert c.post("/v1/vms", tiny_body("w", firmware)).status == 201
    assert c.post("/v1/vms/w/start").status == 200

    async def go() -> None:
        async with _session(server) as s:
            async with s.ws_connect(f"{server.base}/v1/vms/w/console") as ws:
                await ws.send_bytes(b"hello-ws")
                assert b"hello-ws" in await _read_until(ws, b"hello-ws")
                await ws.send_str(json.dumps({"input": "typed"}))
                await _read_until(ws, b"typed")
                # a size reaches the guest's tty through its agent (test_slow_serve); a bad one is refused
                await ws.send_str(json.dumps({"resize": [0, 40]}))
                assert "resize" in json.loads((await ws.receive(timeout=10)).data)["error"]
            # a client that vanishes mid-stream does not hurt the server or the VM
            ws = await s.ws_connect(f"{server.base}/v1/vms/w/console")
            await ws.send_bytes(b"x")
            ws._response.connection.transport.abort()
            async with s.ws_connect(f"{server.base}/v1/vms/w/console", origin=server.base) as ws:
                await ws.send_bytes(b"again")
                await _read_until(ws, b"again")  # replayed backlog plus the new echo

    asyncio.run(go())
    assert c.get("/v1/vms/w").json()["state"] == "running"
    # the guest powers off on "f": the console closes and the VM is stopped
    async def off() -> None:
        async with _session(server) as s:
            async with s.ws_connect(f"{server.base}/v1/vms/w/console") as ws:
                await ws.send_bytes(b"f")
                async with asyncio.timeout(30):
                    while (await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                        pass

    asyncio.run(off())


def test_websockets_check_origin_and_state(server, firmware):
    c = server.unix
    assert c.post("/v1/vms", tiny_body("o", firmware)).status == 201

    async def go() -> None:
        async with _session(server) as s:
            for path in ("console", "exec/ws"):
                try:
                    await s.ws_connect(f"{server.base}/v1/vms/o/{path}", origin="http://evil.example")
                    raise AssertionError("a foreign origin was let in")
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 403
            try:
                await s.ws_connect(f"{server.base}/v1/vms/o/console")
                raise AssertionError("the console of a stopped VM opened")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 409
        async with aiohttp.ClientSession() as s:  # no token
            try:
                await s.ws_connect(f"{server.base}/v1/vms/o/console")
                raise AssertionError("no token, but the websocket opened")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 401

    asyncio.run(go())


def test_exec_ws_reports_errors_as_one_line(server, firmware):
    c = server.unix
    assert c.post("/v1/vms", tiny_body("x", firmware)).status == 201
    assert c.post("/v1/vms/x/start").status == 200

    async def ask(req) -> dict:
        async with _session(server) as s:
            async with s.ws_connect(f"{server.base}/v1/vms/x/exec/ws") as ws:
                await ws.send_str(json.dumps(req) if not isinstance(req, str) else req)
                return json.loads((await ws.receive(timeout=60)).data)

    assert "not a JSON object" in asyncio.run(ask("[1"))["error"]
    assert "'bogus' is not a known option" in asyncio.run(ask({"command": "true", "bogus": 1}))["error"]
    # the echo firmware has no guest agent: the wait for it ends with a one-line error
    got = asyncio.run(ask({"command": "true", "timeout": 1}))
    assert "agent" in got["error"] and "\n" not in got["error"]
    got = asyncio.run(ask({"command": "cat", "stdin": True, "timeout": 1}))  # streamed stdin: the same
    assert "agent" in got["error"] and "\n" not in got["error"]
    assert c.post("/v1/vms/x/stop?force=true").status == 200


def test_exec_ws_tty_requests_are_checked(server, firmware):
    """A terminal request ("tty": [cols, rows] or true, "term") is checked before anything runs,
    and a session on a terminal accepts only stdin, {"eof": true} and {"resize": [COLS, ROWS]}."""
    c = server.unix
    assert c.post("/v1/vms", tiny_body("y", firmware)).status == 201
    assert c.post("/v1/vms/y/start").status == 200

    async def ask(req: dict, then: dict | None = None) -> dict:
        async with _session(server) as s:
            async with s.ws_connect(f"{server.base}/v1/vms/y/exec/ws") as ws:
                await ws.send_str(json.dumps(req))
                if then is not None:
                    await ws.send_str(json.dumps(then))
                return json.loads((await ws.receive(timeout=60)).data)

    for tty in ([0, 24], [80], [80, 5000], "80x24", [80.5, 24]):
        got = asyncio.run(ask({"command": "true", "tty": tty}))
        assert got["error"].startswith("tty: give [COLS, ROWS]"), (tty, got)
    assert "applies to a terminal" in asyncio.run(ask({"command": "true", "term": "vt100"}))["error"]
    got = asyncio.run(ask({"command": "true", "tty": True, "term": "x; reboot"}))
    assert "not a terminal type name" in got["error"]
    # the echo firmware has no agent: while the session waits for one, control frames are checked
    got = asyncio.run(ask({"command": "cat", "tty": [80, 24], "timeout": 60}, {"resize": [0, 24]}))
    assert "resize with" in got["error"] and "\n" not in got["error"], got
    got = asyncio.run(ask({"command": "cat", "stdin": True, "timeout": 60}, {"resize": [80, 24]}))
    assert got["error"] == "send stdin as binary frames, then {\"eof\": true}", got  # no terminal: no resize
    got = asyncio.run(ask({"command": "cat", "tty": True, "timeout": 1}))
    assert "agent" in got["error"] and "\n" not in got["error"]
    assert c.post("/v1/vms/y/stop?force=true").status == 200
