"""wirt.serve.wsclient (the standard-library websocket client of `wirt --remote`) against a real
aiohttp websocket server: frames of every length encoding both ways, text and binary, pings,
close, and a refused upgrade."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web

from wirt.serve.client import Client
from wirt.serve.wsclient import BINARY, TEXT, Refused, WebSocket


@pytest.fixture
def echo_server(tmp_path: Path):
    """An aiohttp server on a Unix socket: /echo sends every message back after a ping; /no answers
    401 before the upgrade."""
    path = tmp_path / "ws.sock"
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.ping(b"are-you-there")
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "no token"}, status=401)

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/no", refuse)
    runner = web.AppRunner(app)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, str(path)).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(30)
    yield Client(f"unix:{path}")
    loop.call_soon_threadsafe(loop.stop)
    t.join(30)


def test_frames_of_every_length_both_ways(echo_server):
    ws = WebSocket(echo_server, "/echo")
    try:
        for n in (0, 5, 125, 126, 300, 65535, 65536, 200_000):  # 7-bit, 16-bit and 64-bit lengths
            data = bytes(range(256)) * (n // 256) + bytes(n % 256)
            ws.send_bytes(data)
            assert ws.receive() == (BINARY, data), n  # the ping before it was answered on the way
        ws.send_text("héllo")
        assert ws.receive() == (TEXT, "héllo".encode())
    finally:
        ws.close()
    assert ws.receive() is None


def test_a_refused_upgrade_carries_the_servers_answer(echo_server):
    with pytest.raises(Refused) as exc:
        WebSocket(echo_server, "/no")
    assert exc.value.reply.status == 401 and exc.value.reply.json() == {"error": "no token"}
