"""Websockets (RFC 6455): the VM console and streamed exec.

GET /v1/vms/{name}/console: bidirectional. Binary frames are console bytes both ways (the
control socket's `console-attach`, which first replays the recent output); a text frame is a
JSON control message: `{"input": "text"}` types text, `{"resize": [cols, rows]}` sets the size
of the guest's console tty (VM.console_resize: the UART has no size channel, so the guest agent
sets it) and is answered `{"resized": [cols, rows]}` once the guest has it, or `{"error": ...}`.
Resizes are applied one at a time, latest first (a browser sends many while a window is dragged).

GET /v1/vms/{name}/exec/ws: the first text frame is the request, as the body of POST .../exec
(`{"command": ..., "timeout": ..., "kill_after": ...}`, plus `"stdin": true` to send standard
input). Then binary frames are stdin until `{"eof": true}`; the guest agent takes a command's
stdin with the command (wirt.vm.agent), so the command starts at EOF (at once without stdin).
The server sends `{"stream": "stdout"|"stderr", "data": BASE64}` as output arrives and
`{"exit": STATUS}` last; an error is `{"error": "one line"}` and a close.

Browsers send Origin: it must be this server's own (a page elsewhere must not drive the VM
with the user's cookie). Clients that send no Origin are programs holding the token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from wirt.errors import StateError, WirtError
from wirt.serve.app import error, exec_request, run, the_vm
from wirt.vm.agent import MAX_STDIN, ExecEvent

__all__ = ["register"]


def origin_ok(request: web.Request) -> bool:
    """No Origin (a program), or exactly this server's scheme://host[:port]."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


async def _open(request: web.Request) -> web.WebSocketResponse | web.Response:
    if not origin_ok(request):
        return error(403, f"websocket from origin {request.headers.get('Origin')!r} refused; "
                          "open the console from this server's own page")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    return ws


class _Sizer:
    """Applies a console's resize requests in the background, one at a time, the latest only."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, vm: Any) -> None:
        self.request, self.ws, self.vm = request, ws, vm
        self.size: tuple[int, int] | None = None
        self.task: asyncio.Task[None] | None = None

    def want(self, cols: int, rows: int) -> None:
        self.size = (cols, rows)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._apply())

    async def _apply(self) -> None:
        while self.size is not None:
            (cols, rows), self.size = self.size, None
            try:
                await run(self.request, self.vm.console_resize, cols, rows)
                reply: dict[str, Any] = {"resized": [cols, rows]}
            except WirtError as exc:
                reply = {"error": f"resize: {str(exc).splitlines()[0]}"}
            if self.size is None:  # a newer size is on its way: only its answer matters
                with contextlib.suppress(ConnectionResetError):
                    await self.ws.send_str(json.dumps(reply))


async def console(request: web.Request) -> web.StreamResponse:
    if not origin_ok(request):
        return await _open(request)  # the 403
    vm = the_vm(request)
    st = await run(request, vm.status)
    if st.state not in ("running", "paused"):
        raise StateError(f"VM {vm.name!r} is {st.state}; start it first")
    client = await run(request, vm.control, 5.0)
    try:
        await run(request, client.request, "console-attach")
    except BaseException:
        client.close()
        raise
    ws = await _open(request)
    if not isinstance(ws, web.WebSocketResponse):
        client.close()
        return ws
    sock = client.sock
    early = client.leftover()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    async def pump() -> None:
        """Console output -> the websocket, until the VM closes the console (it stopped)."""
        with contextlib.suppress(ConnectionResetError, OSError):
            if early:
                await ws.send_bytes(early)
            while True:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    break
                await ws.send_bytes(data)
        with contextlib.suppress(ConnectionResetError):
            await ws.close(message=b"the VM console closed")

    out = asyncio.create_task(pump())
    sizer = _Sizer(request, ws, vm)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await loop.sock_sendall(sock, msg.data)
            elif msg.type == WSMsgType.TEXT:
                try:
                    ctl = json.loads(msg.data)
                except ValueError:
                    ctl = None
                if isinstance(ctl, dict) and isinstance(ctl.get("input"), str):
                    await loop.sock_sendall(sock, ctl["input"].encode())
                elif (isinstance(ctl, dict) and isinstance(ctl.get("resize"), list) and len(ctl["resize"]) == 2
                      and all(isinstance(x, int) and 0 < x < 10000 for x in ctl["resize"])):
                    sizer.want(*ctl["resize"])
                else:
                    await ws.send_str(json.dumps({"error": "send binary console input, {\"input\": TEXT} "
                                                           "or {\"resize\": [COLS, ROWS]}"}))
    except (ConnectionResetError, OSError):
        pass  # the client or the VM went away mid-stream: the server carries on
    finally:
        for task in (out, sizer.task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        client.close()
    return ws


def _is_eof(text: str) -> bool:
    try:
        return json.loads(text) == {"eof": True}
    except ValueError:
        return False


async def exec_ws(request: web.Request) -> web.StreamResponse:
    vm = the_vm(request)
    ws = await _open(request)
    if not isinstance(ws, web.WebSocketResponse):
        return ws
    loop = asyncio.get_running_loop()

    async def fail(message: str) -> web.WebSocketResponse:
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(json.dumps({"error": message.splitlines()[0]}))
            await ws.close()
        return ws

    try:
        first = await ws.receive(timeout=60.0)
    except asyncio.TimeoutError:
        return await fail("send the exec request as the first text frame within 60 s")
    if first.type != WSMsgType.TEXT:
        return await fail("the first frame must be the exec request as JSON text")
    try:
        req = json.loads(first.data)
        if not isinstance(req, dict):
            raise ValueError
    except ValueError:
        return await fail("the exec request is not a JSON object")
    wants_stdin = req.pop("stdin", False)
    if not isinstance(wants_stdin, bool):
        return await fail("stdin: write true (stdin follows as binary frames until {\"eof\": true}) or false")
    try:
        kw = exec_request(req)
    except WirtError as exc:
        return await fail(str(exc))
    stdin = bytearray()
    while wants_stdin:
        msg = await ws.receive()
        if msg.type == WSMsgType.BINARY:
            stdin += msg.data
            if len(stdin) > MAX_STDIN:
                return await fail(f"stdin: longer than {MAX_STDIN} bytes")
        elif msg.type == WSMsgType.TEXT and _is_eof(msg.data):
            break
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws
        else:
            return await fail("send stdin as binary frames, then {\"eof\": true}")
    kw["stdin"] = bytes(stdin)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_event(ev: ExecEvent) -> None:
        if ev.kind in ("stdout", "stderr"):
            msg = {"stream": ev.kind, "data": base64.b64encode(ev.data).decode()}
            loop.call_soon_threadsafe(queue.put_nowait, msg)

    async def sender() -> None:
        while True:
            msg = await queue.get()
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(json.dumps(msg))
            if "exit" in msg or "error" in msg:
                return

    send = asyncio.create_task(sender())
    try:
        result = await run(request, vm.exec, on_event=on_event, **kw)
        queue.put_nowait({"exit": result.status})
    except WirtError as exc:
        queue.put_nowait({"error": str(exc).splitlines()[0]})
    await send
    with contextlib.suppress(ConnectionResetError):
        await ws.close()
    return ws


def register(app: web.Application) -> None:
    app.router.add_get("/v1/vms/{name}/console", console)
    app.router.add_get("/v1/vms/{name}/exec/ws", exec_ws)
