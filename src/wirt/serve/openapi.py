"""The OpenAPI 3 document of the REST API (/v1/openapi.json) and its rendered page (/v1/docs).

Request bodies of VM create and patch come from the option tables of wirt.vm.schema (the CLI's
`wirt create` / `wirt set` flags are made from the same tables), so the document cannot drift
from what the server accepts. The page is rendered here from the document: nothing is loaded
from the internet.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from wirt.vm.events import EVENT_TYPES
from wirt.vm.schema import CREATE_OPTIONS, SET_OPTIONS, options_json_schema

__all__ = ["document", "register"]

_S = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _S + name}


def _nullable(t: str) -> dict[str, Any]:
    return {"type": t, "nullable": True}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "VMSummary": {
        "type": "object", "required": ["name", "state"],
        "properties": {
            "name": {"type": "string"},
            "state": {"type": "string", "enum": ["stopped", "starting", "running", "paused", "stopping",
                                                 "crashed", "invalid"]},
            "cpus": {"type": "integer"}, "memory": {"type": "integer", "description": "bytes"},
            "disk_used": {"type": "integer"}, "disk_size": {"type": "integer"},
            "ip": _nullable("string"), "uptime": _nullable("number"), "pid": _nullable("integer"),
            "reason": {"type": "string"}}},
    "VM": {"allOf": [_ref("VMSummary"), {"type": "object", "properties": {
        "config": {"type": "object", "nullable": True, "description": "vm.toml as data (wirt.vm.schema)"},
        "pending_resume": _nullable("string"),
        "root": {"type": "string", "description": "the VM's folder on the server"},
        "status": {"type": "object", "description": "wirt.vm.status.VMStatus as data"}}}]},
    "VMCreate": options_json_schema(CREATE_OPTIONS, required=("name",)),
    "VMPatch": options_json_schema(SET_OPTIONS),
    "VMPatched": {"type": "object", "required": ["changes", "vm"],
                  "properties": {"changes": {"type": "array", "items": {"type": "string"}}, "vm": _ref("VM")}},
    "ExecRequest": {"type": "object", "required": ["command"], "additionalProperties": False, "properties": {
        "command": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                    "description": "a string runs with sh -c; a list is quoted into one"},
        "timeout": {"type": "number", "default": 120, "description": "seconds to wait for a booting guest's agent"},
        "kill_after": {"type": "number", "description": "seconds the command may run (then it is killed)"},
        "stdin": {"type": "string", "format": "byte", "description": "standard input, base64 (at most 64 KiB)"}}},
    "ExecResult": {"type": "object", "required": ["status", "stdout", "stderr"], "properties": {
        "status": {"type": "integer"}, "stdout": {"type": "string"}, "stderr": {"type": "string"},
        "stdout_base64": {"type": "string"}, "stderr_base64": {"type": "string"}}},
    "Snapshot": {"type": "object", "required": ["name", "kind"], "properties": {
        "name": {"type": "string"}, "parent": _nullable("string"), "created": {"type": "number"},
        "kind": {"type": "string", "enum": ["full", "disk"]}, "memory_bytes": {"type": "integer"},
        "disk_bytes": {"type": "integer"}, "current": {"type": "boolean"}}},
    "SnapshotCreate": {"type": "object", "required": ["name"], "additionalProperties": False,
                       "properties": {"name": {"type": "string"}}},
    "Fork": {"type": "object", "required": ["snapshot", "name"], "additionalProperties": False, "properties": {
        "snapshot": {"type": "string"}, "name": {"type": "string", "description": "the new VM"},
        "start": {"type": "boolean", "default": False}}},
    "Disk": {"type": "object", "required": ["path", "format", "size", "used"], "properties": {
        "path": {"type": "string"}, "format": {"type": "string"}, "size": {"type": "integer"},
        "used": {"type": "integer"}, "read_only": {"type": "boolean"}}},
    "Image": {"type": "object", "required": ["name", "description"],
              "properties": {"name": {"type": "string"}, "description": {"type": "string"}}},
    "Host": {"type": "object", "required": ["inventory", "settings", "running", "fits"], "properties": {
        "inventory": {"type": "object"}, "settings": {"type": "object"},
        "running": {"type": "array", "items": {"type": "object"}},
        "fits": {"type": "object", "properties": {"memory": {"type": "integer"}, "cpus": {"type": "integer"}}}}},
    "AdmissionRequest": {"type": "object", "additionalProperties": False, "properties": {
        "memory": {"type": "string", "default": "512M"}, "cpus": {"type": "integer", "default": 1},
        "disk": {"type": "string", "default": "0"}}},
    "Admission": {"type": "object", "required": ["admitted", "reason"],
                  "properties": {"admitted": {"type": "boolean"}, "reason": {"type": "string"}}},
    "Event": {"type": "object", "required": ["id", "time", "vm", "type"], "properties": {
        "id": {"type": "integer"}, "time": {"type": "number"}, "vm": {"type": "string"},
        "type": {"type": "string", "enum": sorted(EVENT_TYPES)}}},
    "Done": {"type": "object"},
}

_ERRORS = {str(code): {"description": why, "content": {"application/json": {"schema": _ref("Error")}}}
           for code, why in ((400, "bad input"), (401, "no or wrong bearer token (TCP)"),
                             (403, "another user (Unix socket)"), (404, "no such VM or snapshot"),
                             (409, "wrong state, busy, or admission refused"))}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "the VM"}
_SNAP = {"name": "snap", "in": "path", "required": True, "schema": {"type": "string"}}


def _q(name: str, t: str, doc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": t}, "description": doc}


def _op(summary: str, ok: dict[str, Any] | None, *, status: str = "200", params: list[dict[str, Any]] = (),  # type: ignore[assignment]
        body: str | None = None, content: str = "application/json", tag: str = "vms") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "parameters": list(params),
                          "responses": {status: {"description": "done",
                                                 "content": {content: {"schema": ok or {"type": "string"}}}},
                                        **_ERRORS}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def _ws(summary: str) -> dict[str, Any]:
    """A websocket route: 101 Switching Protocols (RFC 6455), or a JSON error before the upgrade."""
    return {"summary": summary, "tags": ["websockets"],
            "responses": {"101": {"description": "switching to the websocket protocol"}, **_ERRORS}}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of every REST route."""
    arr = lambda name: {"type": "array", "items": _ref(name)}  # noqa: E731
    force = _q("force", "boolean", "halt from the host side (stop, restart) or kill a running VM (delete)")
    timeout = _q("timeout", "number", "seconds to wait for the guest to power off (default 30)")
    paths: dict[str, Any] = {
        "/v1/vms": {"get": _op("list VMs", arr("VMSummary")),
                    "post": _op("create a VM (the options of `wirt create`)", _ref("VM"), status="201",
                                body="VMCreate")},
        "/v1/vms/{name}": {"parameters": [_NAME],
                           "get": _op("one VM: state, resources, configuration", _ref("VM")),
                           "patch": _op("change resources (the options of `wirt set`; next start)",
                                        _ref("VMPatched"), body="VMPatch"),
                           "delete": _op("delete a VM and its disks", _ref("Done"), params=[force])},
    }
    for act, doc, params in (("start", "start the VM (after admission control)", []),
                             ("stop", "power off: asks the guest; force halts it", [force, timeout]),
                             ("restart", "stop and start", [force, timeout]),
                             ("pause", "freeze the guest", []), ("resume", "continue a paused guest", [])):
        paths[f"/v1/vms/{{name}}/{act}"] = {"parameters": [_NAME], "post": _op(doc, _ref("VMSummary"), params=params)}
    paths.update({
        "/v1/vms/{name}/exec": {"parameters": [_NAME], "post": _op(
            "run a command through the guest agent and return its output (websocket: GET "
            "/v1/vms/{name}/exec/ws streams it)", _ref("ExecResult"), body="ExecRequest")},
        "/v1/vms/{name}/console": {"parameters": [_NAME], "get": _ws(
            "websocket: the console, both ways (binary frames; text frames {\"input\": TEXT} or "
            "{\"resize\": [COLS, ROWS]}: the guest agent sets ttyS0's size, answered {\"resized\": [COLS, ROWS]}); "
            "Origin must be this server's")},
        "/v1/vms/{name}/exec/ws": {"parameters": [_NAME], "get": _ws(
            "websocket: the first text frame is the exec request (+ \"stdin\": true, then binary stdin frames, "
            "each passed to the running command as it comes, and {\"eof\": true}; + \"tty\": [COLS, ROWS] or true "
            "and \"term\" for a guest pseudo-terminal, resized by {\"resize\": [COLS, ROWS]}); answers "
            "{\"stream\", \"data\": BASE64} frames and {\"exit\": STATUS}")},
        "/v1/vms/{name}/logs": {"parameters": [_NAME], "get": _op(
            "the console log", None, content="text/plain", params=[_q("tail", "integer", "last bytes only")])},
        "/v1/vms/{name}/disks": {"parameters": [_NAME], "get": _op("the VM's disks", arr("Disk"), tag="disks")},
        "/v1/vms/{name}/snapshots": {"parameters": [_NAME],
                                     "get": _op("the VM's snapshots (a tree by parent)", arr("Snapshot"), tag="snapshots"),
                                     "post": _op("take a snapshot (full if running, else disk-only)", _ref("Snapshot"),
                                                 status="201", body="SnapshotCreate", tag="snapshots")},
        "/v1/vms/{name}/snapshots/{snap}/restore": {"parameters": [_NAME, _SNAP], "post": _op(
            "go back to a snapshot", _ref("Done"), tag="snapshots")},
        "/v1/vms/{name}/snapshots/{snap}": {"parameters": [_NAME, _SNAP], "delete": _op(
            "delete a snapshot", _ref("Done"), tag="snapshots")},
        "/v1/vms/{name}/fork": {"parameters": [_NAME], "post": _op(
            "a new VM from a snapshot (RAM copy-on-write, disk overlays)", _ref("VM"), status="201", body="Fork",
            tag="snapshots")},
        "/v1/events": {"get": dict(_op(
            "events after an id: a JSON list, or with `Accept: text/event-stream` a Server-Sent Events stream "
            "(id, event type, JSON data) that resumes from `Last-Event-ID`", arr("Event"), tag="events",
            params=[_q("after", "integer", "the last event id seen (default 0: all)"),
                    _q("vm", "string", "only this VM's events")]))},
        "/v1/vms/{name}/events": {"parameters": [_NAME], "get": _op(
            "the VM's own event log", arr("Event"), tag="events",
            params=[_q("after", "integer", "the last event id seen")])},
        "/metrics": {"get": _op("Prometheus metrics: wirt_vm_* series with a vm label", None,
                                content="text/plain", tag="host")},
        "/v1/images": {"get": _op("guest images a VM can be created from", arr("Image"), tag="disks")},
        "/v1/host": {"get": _op("host inventory, running VMs' demands and what fits now", _ref("Host"), tag="host")},
        "/v1/host/admission": {"post": _op("would a VM of this size be admitted now?", _ref("Admission"),
                                           body="AdmissionRequest", tag="host")},
    })
    return {"openapi": "3.0.3",
            "info": {"title": "wirt", "version": "1",
                     "description": "The wirt hypervisor's host API. Unix socket: the owner only; TCP: "
                                    "`Authorization: Bearer TOKEN` ($WIRT_HOME/serve/token)."},
            "paths": paths, "components": {
                "schemas": SCHEMAS,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}]}


def render(doc: dict[str, Any]) -> str:
    """A plain HTML page of the document: each route, its parameters, body and answer schemas."""
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>wirt API</title><style>",
           "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
           "h2{border-bottom:1px solid #ccc}.m{font-weight:bold;text-transform:uppercase;margin-right:.5em}"
           "pre{background:#f4f4f4;padding:.5em;overflow:auto;font-size:85%}</style></head><body>",
           f"<h1>{e(doc['info']['title'])} API v{e(doc['info']['version'])}</h1>",
           f"<p>{e(doc['info']['description'])}</p><p><a href='/v1/openapi.json'>openapi.json</a></p>"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            out.append(f"<h2><span class='m'>{e(method)}</span><code>{e(path)}</code></h2><p>{e(op['summary'])}</p>")
            params = item.get("parameters", []) + op.get("parameters", [])
            if params:
                out.append("<ul>" + "".join(f"<li><code>{e(p['name'])}</code> ({e(p['in'])}) "
                                            f"{e(p.get('description', ''))}</li>" for p in params) + "</ul>")
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                out.append(f"<p>body <code>{e(ref)}</code></p><pre>{e(json.dumps(SCHEMAS[ref], indent=1))}</pre>")
            codes = ", ".join(op["responses"])
            out.append(f"<p>answers: {e(codes)}</p>")
    out.append("</body></html>")
    return "".join(out)


def register(app: web.Application) -> None:
    doc = document()
    page = render(doc)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(doc)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/v1/openapi.json", openapi_json)
    app.router.add_get("/v1/docs", docs)
