"""The aiohttp application: routes under /v1, error and authentication middleware.

Every route turns a request into a call on wirt.vm.api (the same calls as the CLI) and runs it
in a worker thread, since those calls block (file locks, control sockets). Concurrent requests
on one VM are serialized by the VM's file lock, as the CLI's are. Errors are JSON
`{"error": "one line"}`: 400 bad input, 401/403 who, 404 unknown VM or snapshot, 409 wrong
state or admission refused; an unexpected failure is a 500 with one line (traceback to the log).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from wirt.errors import NotFoundError, StateError, WirtError
from wirt.serve import auth
from wirt.vm.admission import AdmissionError
from wirt.vm.api import VM
from wirt.vm.schema import CREATE_OPTIONS, IMAGES, SET_OPTIONS, check_options, create_arguments, set_arguments
from wirt.vm.store import VMStore

__all__ = ["make_app", "HOME", "TOKEN"]

log = logging.getLogger("wirt.serve")
HOME: web.AppKey[Path] = web.AppKey("home", Path)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
MAX_BODY = 1 << 20
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message.splitlines()[0] if message else "error"}, status=status)


def status_of(exc: WirtError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (StateError, AdmissionError)):
        return 409
    return 400


@web.middleware
async def errors_mw(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """WirtErrors and HTTP errors become one-line JSON; anything else a 500 without a traceback."""
    try:
        return await handler(request)
    except WirtError as exc:
        return error(status_of(exc), str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 -- the client gets one line, the log the traceback
        log.exception("internal error on %s %s", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


@web.middleware
async def auth_mw(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Unix socket: the peer must be this user. TCP: the bearer token (header, or the console's cookie)."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family == auth.socket.AF_UNIX:
        if auth.peer_uid(sock) != os.getuid():
            return error(403, "this server belongs to another user")
        return await handler(request)
    token = request.app[TOKEN]
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(auth.COOKIE)
    if request.path == "/ui/" and auth.token_ok(request.query.get("token"), token):
        resp = web.HTTPFound("/ui/")
        resp.set_cookie(auth.COOKIE, token, httponly=True, samesite="Strict", secure=request.secure)
        raise resp
    if not auth.token_ok(given, token):
        return web.json_response({"error": "missing or wrong bearer token; send Authorization: Bearer "
                                  "TOKEN (the token is in $WIRT_HOME/serve/token)"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="wirt"'})
    return await handler(request)


async def run(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run a blocking vm/ call on the server's worker threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kw))


async def body(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request (an empty body is {})."""
    if request.content_length and request.content_length > MAX_BODY:
        raise WirtError(f"the request body is larger than {MAX_BODY} bytes")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WirtError("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WirtError("the request body is not a JSON object")
    return data


def flag(request: web.Request, name: str) -> bool:
    v = request.query.get(name, "false").lower()
    if v not in ("true", "false", "1", "0", "yes", "no"):
        raise WirtError(f"?{name}={v}: write true or false")
    return v in ("true", "1", "yes")


def number(request: web.Request, name: str, default: float, lo: float = 0.0, hi: float = 86400.0) -> float:
    v = request.query.get(name)
    if v is None:
        return default
    try:
        x = float(v)
    except ValueError:
        raise WirtError(f"?{name}={v}: not a number of seconds") from None
    if not lo <= x <= hi:
        raise WirtError(f"?{name}={v}: use {lo:g} to {hi:g}")
    return x


def the_vm(request: web.Request) -> VM:
    """The VM named in the path (404 when there is none; 400 for a name that cannot exist)."""
    return VM.get(request.match_info["name"], request.app[HOME])


def vm_detail(vm: VM) -> dict[str, Any]:
    """GET /v1/vms/{name}: the summary plus its configuration and snapshots."""
    import dataclasses

    out = vm.summary()
    out["root"] = str(vm.paths.root)
    out["status"] = dataclasses.asdict(vm.status(query=False))
    try:
        out["config"] = vm.config.to_dict()
    except WirtError as exc:
        out["config"] = None
        out["reason"] = str(exc)
    out["pending_resume"] = vm.pending_resume()
    return out


# ---- VMs ---------------------------------------------------------------------------------------
async def list_vms(request: web.Request) -> web.Response:
    home = request.app[HOME]
    rows = await run(request, lambda: [vm.summary() for vm in VM.list(home)])
    return web.json_response(rows)


async def create_vm(request: web.Request) -> web.Response:
    values = check_options(await body(request), CREATE_OPTIONS, required=("name",))
    name = values.pop("name")
    if not isinstance(name, str):
        raise WirtError(f"name: {name!r} is not a string; give the VM's name")
    vm = await run(request, VM.create, name, home=request.app[HOME], **create_arguments(values))
    return web.json_response(await run(request, vm_detail, vm), status=201)


async def get_vm(request: web.Request) -> web.Response:
    vm = the_vm(request)
    return web.json_response(await run(request, vm_detail, vm))


async def patch_vm(request: web.Request) -> web.Response:
    values = check_options(await body(request), SET_OPTIONS)
    vm = the_vm(request)
    changes = await run(request, vm.set, **set_arguments(values))
    return web.json_response({"changes": changes, "vm": await run(request, vm_detail, vm)})


async def delete_vm(request: web.Request) -> web.Response:
    vm = the_vm(request)
    await run(request, vm.remove, force=flag(request, "force"))
    return web.json_response({"removed": vm.name})


async def action(request: web.Request) -> web.Response:
    """POST /v1/vms/{name}/{start|stop|restart|pause|resume}."""
    vm = the_vm(request)
    act = request.match_info["action"]
    if act == "start":
        await run(request, vm.start)
    elif act == "stop":
        await run(request, vm.stop, force=flag(request, "force"), timeout=number(request, "timeout", 30.0))
    elif act == "restart":
        await run(request, vm.restart, force=flag(request, "force"), timeout=number(request, "timeout", 30.0))
    elif act == "pause":
        await run(request, vm.pause)
    elif act == "resume":
        await run(request, vm.resume)
    return web.json_response(await run(request, vm.summary))


def exec_request(b: dict[str, Any]) -> dict[str, Any]:
    """Check an exec request (the options of `wirt exec`: timeout, kill_after; stdin as base64)
    and return the keyword arguments of VM.exec (less on_event)."""
    from wirt.vm.agent import MAX_STDIN

    for k in b:
        if k not in ("command", "timeout", "kill_after", "stdin"):
            raise WirtError(f"{k!r} is not a known option; use command, timeout, kill_after, stdin")
    cmd = b.get("command")
    if not (isinstance(cmd, str) or (isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd))):
        raise WirtError("command: give a string (run with sh -c) or a list of strings")
    out: dict[str, Any] = {"command": cmd}
    for k, default in (("timeout", 120.0), ("kill_after", None)):
        v = b.get(k, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400):
            raise WirtError(f"{k}: {v!r} is not a number of seconds from 0 to 86400")
        out[k] = v
    stdin = b.get("stdin", "")
    if not isinstance(stdin, str):
        raise WirtError("stdin: give the standard input as a base64 string")
    try:
        out["stdin"] = base64.b64decode(stdin, validate=True)
    except ValueError:
        raise WirtError("stdin: not valid base64") from None
    if len(out["stdin"]) > MAX_STDIN:
        raise WirtError(f"stdin: longer than {MAX_STDIN} bytes")
    return out


async def exec_buffered(request: web.Request) -> web.Response:
    """POST /v1/vms/{name}/exec: run a command to its end; stdout and stderr come back whole."""
    req = exec_request(await body(request))
    vm = the_vm(request)
    r = await run(request, vm.exec, **req)
    return web.json_response({
        "status": r.status, "stdout": r.stdout.decode("utf-8", "replace"), "stderr": r.stderr.decode("utf-8", "replace"),
        "stdout_base64": base64.b64encode(r.stdout).decode(), "stderr_base64": base64.b64encode(r.stderr).decode()})


async def logs(request: web.Request) -> web.Response:
    """GET /v1/vms/{name}/logs?tail=BYTES: the console log (of this run, else the last one)."""
    vm = the_vm(request)
    tail = int(number(request, "tail", 1 << 20, 0, 1 << 30))
    path = vm.log_path()

    def read() -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - tail))
                return f.read()
        except FileNotFoundError:
            return b""

    return web.Response(body=await run(request, read), content_type="text/plain", charset="utf-8")


# ---- snapshots and fork ---------------------------------------------------------------------------
async def list_snapshots(request: web.Request) -> web.Response:
    vm = the_vm(request)
    return web.json_response([s.to_dict() for s in await run(request, vm.snapshots)])


async def create_snapshot(request: web.Request) -> web.Response:
    b = await body(request)
    name = check_options(b, (), required=("name",))["name"]
    if not isinstance(name, str):
        raise WirtError("name: give the snapshot's name as a string")
    vm = the_vm(request)
    info = await run(request, vm.snapshot, name)
    return web.json_response(info.to_dict(), status=201)


async def restore_snapshot(request: web.Request) -> web.Response:
    vm = the_vm(request)
    state = await run(request, vm.restore, request.match_info["snap"])
    return web.json_response({"restored": request.match_info["snap"], "state": state})


async def delete_snapshot(request: web.Request) -> web.Response:
    vm = the_vm(request)
    await run(request, vm.remove_snapshot, request.match_info["snap"])
    return web.json_response({"removed": request.match_info["snap"]})


async def fork(request: web.Request) -> web.Response:
    b = await body(request)
    for k in b:
        if k not in ("snapshot", "name", "start"):
            raise WirtError(f"{k!r} is not a known option; use snapshot, name, start")
    snap, new, start = b.get("snapshot"), b.get("name"), b.get("start", False)
    if not isinstance(snap, str) or not isinstance(new, str):
        raise WirtError("give snapshot (the source snapshot) and name (the new VM) as strings")
    if not isinstance(start, bool):
        raise WirtError("start: write true or false")
    vm = the_vm(request)
    twin = await run(request, vm.fork, snap, new, start=start)
    return web.json_response(await run(request, vm_detail, twin), status=201)


# ---- disks, images, host ---------------------------------------------------------------------------
async def vm_disks(request: web.Request) -> web.Response:
    from wirt.vm import disks as diskmod

    vm = the_vm(request)

    def rows() -> list[dict[str, Any]]:
        cfg = vm.config
        return [dict(d.to_dict(), size=d.size, used=diskmod.disk_usage(vm.paths.disk(d.path)))
                for d in cfg.disks]

    return web.json_response(await run(request, rows))


async def images(request: web.Request) -> web.Response:
    return web.json_response([{"name": k, "description": v} for k, v in IMAGES.items()])


async def host(request: web.Request) -> web.Response:
    """GET /v1/host: the host's resources, what running VMs take, and what would fit now."""
    import dataclasses

    from wirt.vm.api import running_demands
    from wirt.vm.inventory import host_inventory
    from wirt.vm.settings import load_settings

    home = request.app[HOME]

    def gather() -> dict[str, Any]:
        inv = host_inventory(home)
        settings = load_settings(home)
        running = running_demands(VMStore(home))
        mem_budget = int(max(0, inv.memory_total - settings.memory_reserve) * settings.memory_overcommit)
        mem_used = sum(r.memory + settings.vm_overhead for r in running)
        cpu_budget = inv.cores * settings.cpu_overcommit
        return {"inventory": dataclasses.asdict(inv), "settings": dataclasses.asdict(settings),
                "running": [dataclasses.asdict(r) for r in running],
                "fits": {"memory": max(0, mem_budget - mem_used - settings.vm_overhead),
                         "cpus": max(0, int(cpu_budget - sum(r.cpus for r in running)))}}

    return web.json_response(await run(request, gather))


async def admission(request: web.Request) -> web.Response:
    """POST /v1/host/admission {"memory": "512M", "cpus": 1, "disk": "0"}: would it start now?"""
    from wirt.vm.api import check_admission
    from wirt.vm.schema import Option

    opts = (Option("memory", "string", "512M", "guest RAM"), Option("cpus", "integer", 1, "virtual CPUs"),
            Option("disk", "string", "0", "disk bytes the VM may still write"))
    v = check_options(await body(request), opts)
    if v["cpus"] < 1:
        raise WirtError("cpus: give at least 1")
    reason = await run(request, check_admission, v["memory"], v["cpus"], v["disk"], request.app[HOME])
    return web.json_response({"admitted": reason is None, "reason": reason or ""})


# ---- the application ------------------------------------------------------------------------------
def make_app(home: Path | None = None, token: str | None = None) -> web.Application:
    """The whole server: REST routes, OpenAPI document and docs, events, metrics, websockets, console UI."""
    from wirt.serve import events, metrics, openapi, websockets, webui
    from wirt.vm.store import wirt_home

    app = web.Application(middlewares=[errors_mw, auth_mw], client_max_size=MAX_BODY)
    app[HOME] = Path(home) if home is not None else wirt_home()
    app[TOKEN] = token if token is not None else auth.load_token(app[HOME])
    VMStore(app[HOME]).ensure()
    r = app.router
    r.add_get("/v1/vms", list_vms)
    r.add_post("/v1/vms", create_vm)
    r.add_get("/v1/vms/{name}", get_vm)
    r.add_patch("/v1/vms/{name}", patch_vm)
    r.add_delete("/v1/vms/{name}", delete_vm)
    r.add_post("/v1/vms/{name}/{action:start|stop|restart|pause|resume}", action)
    r.add_post("/v1/vms/{name}/exec", exec_buffered)
    r.add_get("/v1/vms/{name}/logs", logs)
    r.add_get("/v1/vms/{name}/disks", vm_disks)
    r.add_get("/v1/vms/{name}/snapshots", list_snapshots)
    r.add_post("/v1/vms/{name}/snapshots", create_snapshot)
    r.add_post("/v1/vms/{name}/snapshots/{snap}/restore", restore_snapshot)
    r.add_delete("/v1/vms/{name}/snapshots/{snap}", delete_snapshot)
    r.add_post("/v1/vms/{name}/fork", fork)
    r.add_get("/v1/images", images)
    r.add_get("/v1/host", host)
    r.add_post("/v1/host/admission", admission)
    openapi.register(app)
    events.register(app)
    metrics.register(app)
    websockets.register(app)
    webui.register(app)

    async def on_startup(app: web.Application) -> None:
        # vm/ calls block (locks, sockets, long execs): give them their own generous pool
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="wirt-serve"))

    app.on_startup.append(on_startup)
    return app
