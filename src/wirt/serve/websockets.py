"""Websockets (RFC 6455): the VM console and streamed exec.

GET /v1/vms/{name}/console: bidirectional. Binary frames are console bytes both ways (the
control socket's `console-attach`, which first replays the recent output); a text frame is a
JSON control message: `{"input": "text"}` types text, `{"resize": [cols, rows]}` sets the size
of the guest's console tty (VM.console_resize: the UART has no size channel, so the guest agent
sets it) and is answered `{"resized": [cols, rows]}` once the guest has it, or `{"error": ...}`.
Resizes are applied one at a time, only the latest waiting one (a browser sends many while a
window is dragged).

GET /v1/vms/{name}/exec/ws: the first text frame is the request, as the body of POST .../exec
(`{"command": ..., "timeout": ..., "kill_after": ...}`), plus `"stdin": true` to stream standard
input. The command starts at once. With stdin, binary frames reach it as they arrive
(VM.exec_attached: the guest agent acknowledges each chunk, so a client faster than the reader
is slowed down, not buffered without end) until `{"eof": true}`. `"tty": [cols, rows]` (or
`true`: 80x24) runs the command on a pseudo-terminal in the guest, as `wirt exec -t` does: stdin
is streamed, stdout and stderr are one stream, `"term"` sets TERM (default xterm-256color), and
`{"resize": [cols, rows]}` resizes the terminal (the guest program gets SIGWINCH).
The server sends `{"stream": "stdout"|"stderr", "data": BASE64}` as output arrives and
`{"exit": STATUS}` last; an error is `{"error": "one line"}` and a close. A client that hangs up
ends the command in the guest.

Browsers send Origin: it must be this server's own (a page elsewhere must not drive the VM
with the user's cookie). Clients that send no Origin are programs holding the token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shlex
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from wirt.errors import StateError, WirtError
from wirt.serve.app import error, exec_request, run, the_vm
from wirt.vm.agent import ExecEvent

__all__ = ["register", "window_size"]

DEFAULT_TERM = "xterm-256color"  # what xterm.js (and `wirt shell`'s default) understands
TTY_MAX = 4096  # the agent's limit on a pseudo-terminal's rows and columns (docs/control-protocol.md)


def window_size(value: Any, hi: int = 9999) -> tuple[int, int] | None:
    """[cols, rows] of a resize or tty request as a tuple, or None when it is not two whole numbers from 1 to hi."""
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= hi for x in value)):
        return value[0], value[1]
    return None


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
                ctl = _control(msg.data)
                size = window_size(ctl.get("resize")) if ctl is not None else None
                if ctl is not None and isinstance(ctl.get("input"), str):
                    await loop.sock_sendall(sock, ctl["input"].encode())
                elif size is not None:
                    sizer.want(*size)
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


def _control(text: str) -> dict[str, Any] | None:
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


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
    req = _control(first.data)
    if req is None:
        return await fail("the exec request is not a JSON object")
    wants_stdin = req.pop("stdin", False)
    if not isinstance(wants_stdin, bool):
        return await fail("stdin: write true (stdin follows as binary frames until {\"eof\": true}) or false")
    try:
        tty = _tty_request(req)
        kw = exec_request(req)
    except WirtError as exc:
        return await fail(str(exc))
    if tty is not None:  # a terminal reads its keys as they are typed: stdin is always streamed
        wants_stdin = True
        cmd = kw["command"] if isinstance(kw["command"], str) else shlex.join(kw["command"])
        kw["command"] = f"TERM={tty[2]}; export TERM; {cmd}"
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def put(msg: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    def output(ev: ExecEvent) -> None:
        if ev.kind in ("stdout", "stderr"):
            put({"stream": ev.kind, "data": base64.b64encode(ev.data).decode()})
        elif ev.kind == "exit":
            put({"exit": ev.status})

    async def sender() -> None:
        while True:
            msg = await queue.get()
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(json.dumps(msg))
            if "exit" in msg or "error" in msg:
                return

    if not wants_stdin:  # nothing to stream in: the buffered exec, output streamed
        send = asyncio.create_task(sender())
        try:
            await run(request, vm.exec, on_event=output, **kw)
        except WirtError as exc:
            put({"error": str(exc).splitlines()[0]})
        await send
    else:
        await _attached(request, ws, vm, kw, output, put, sender, tty)
    with contextlib.suppress(ConnectionResetError):
        await ws.close()
    return ws


def _tty_request(req: dict[str, Any]) -> tuple[int, int, str] | None:
    """Take "tty" ([cols, rows] or true) and "term" out of an exec request: (cols, rows, TERM), or None."""
    tty, term = req.pop("tty", False), req.pop("term", None)
    if tty is False or tty is None:
        if term is not None:
            raise WirtError("term: applies to a terminal; give \"tty\" too")
        return None
    size = (80, 24) if tty is True else window_size(tty, TTY_MAX)
    if size is None:
        raise WirtError(f"tty: give [COLS, ROWS] (whole numbers from 1 to {TTY_MAX}) or true for 80x24")
    if term is None:
        term = DEFAULT_TERM
    if not isinstance(term, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}", term):
        raise WirtError(f"term: {term!r} is not a terminal type name such as xterm-256color")
    return size[0], size[1], term


async def _attached(request: web.Request, ws: web.WebSocketResponse, vm: Any, kw: dict[str, Any],
                    output: Callable[[ExecEvent], None],
                    put: Callable[[dict[str, Any]], None], sender: Callable[[], Any],
                    tty: tuple[int, int, str] | None = None) -> None:
    """Stdin streamed: binary frames reach the running command as they come (VM.exec_attached,
    which the guest agent acknowledges chunk by chunk, so a fast client waits for a slow reader);
    with `tty` on a guest pseudo-terminal that `{"resize": [cols, rows]}` frames resize."""
    try:
        att = await run(request, vm.exec_attached, kw["command"], timeout=kw["timeout"],
                        kill_after=kw["kill_after"], tty=None if tty is None else (tty[1], tty[0]))
    except WirtError as exc:
        put({"error": str(exc).splitlines()[0]})
        await sender()
        return

    def pump() -> None:
        try:
            for ev in att.events():
                output(ev)
                if ev.kind == "exit":
                    return
            put({"error": "the VM closed the exec stream before the command's exit status"})
        except (WirtError, OSError) as exc:
            put({"error": str(exc).splitlines()[0] if str(exc) else "the exec stream broke"})

    async def stdin() -> None:
        if kw["stdin"]:
            await run(request, att.write, kw["stdin"])
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await run(request, att.write, msg.data)
                continue
            ctl = _control(msg.data) if msg.type == WSMsgType.TEXT else None
            size = window_size(ctl.get("resize"), TTY_MAX) if tty is not None and ctl is not None else None
            if ctl == {"eof": True}:
                await run(request, att.eof)
            elif size is not None and len(ctl) == 1:  # type: ignore[arg-type]
                await run(request, att.resize, size[1], size[0])
            else:  # said here, not queued: the hang-up that follows cancels the sender
                with contextlib.suppress(ConnectionResetError):
                    await ws.send_str(json.dumps({"error": "send stdin as binary frames, then {\"eof\": true}" + (
                        f"; resize with {{\"resize\": [COLS, ROWS]}} (1 to {TTY_MAX})" if tty else "")}))
                return

    send = asyncio.create_task(sender())
    feed = asyncio.create_task(stdin())
    events = asyncio.ensure_future(run(request, pump))
    try:
        await asyncio.wait({send, feed}, return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionResetError, OSError):
        pass
    finally:
        feed.cancel()
        if not send.done():  # the client went away: hang up, which ends the command in the guest
            send.cancel()
        att.close()
        for task in (feed, send, events):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def register(app: web.Application) -> None:
    app.router.add_get("/v1/vms/{name}/console", console)
    app.router.add_get("/v1/vms/{name}/exec/ws", exec_ws)
