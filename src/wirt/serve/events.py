"""The event stream: GET /v1/events as Server-Sent Events (HTML Living Standard, "Server-sent
events": `id:`, `event:`, `data:` fields) from the host's event log (wirt.vm.events), and the
per-VM log at GET /v1/vms/{name}/events.

A client resumes after a disconnect with the standard `Last-Event-ID` header (browsers'
EventSource sends it by itself) or `?after=ID`: every event with a higher id is sent first,
then new ones as they are written, so nothing is missed. Without `Accept: text/event-stream`
the same route answers a JSON list of the events after the id (polling clients, the tests).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from wirt.errors import WirtError
from wirt.serve.app import HOME, run, the_vm
from wirt.vm import events as ev

__all__ = ["register"]

POLL = 0.25        # seconds between looks at the log file while streaming
KEEPALIVE = 15.0   # a comment line this often keeps proxies from closing an idle stream


def _after(request: web.Request) -> int:
    text = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if not text.isdigit():
        raise WirtError(f"event id {text!r}: give the id of the last event seen (a whole number)")
    return int(text)


def _vm_filter(request: web.Request) -> str | None:
    return request.query.get("vm") or None


async def host_events(request: web.Request) -> web.StreamResponse:
    after, vm = _after(request), _vm_filter(request)
    path = ev.host_log(request.app[HOME])
    if "text/event-stream" not in request.headers.get("Accept", ""):
        found, _ = await run(request, ev.read_events, path, after)
        return web.json_response([e for e in found if vm is None or e.get("vm") == vm])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    offset, idle = 0, 0.0
    try:
        await resp.write(b"retry: 1000\n\n")
        while True:
            found, offset = await run(request, ev.read_events, path, after, offset)
            for e in found:
                after = e["id"]
                if vm is not None and e.get("vm") != vm:
                    continue
                await resp.write(f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())
                idle = 0.0
            await asyncio.sleep(POLL)
            idle += POLL
            if idle >= KEEPALIVE:
                await resp.write(b": keep-alive\n\n")
                idle = 0.0
    except ConnectionResetError:
        pass  # the client went away: nothing to clean up
    return resp


async def vm_events(request: web.Request) -> web.Response:
    vm = the_vm(request)
    found, _ = await run(request, ev.read_events, ev.vm_log(request.app[HOME], vm.name), _after(request))
    return web.json_response(found)


def register(app: web.Application) -> None:
    app.router.add_get("/v1/events", host_events)
    app.router.add_get("/v1/vms/{name}/events", vm_events)
