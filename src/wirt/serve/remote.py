"""`wirt --remote URL` (or WIRT_REMOTE): the CLI's VM commands against a `wirt serve`.

`RemoteVM` has the methods of wirt.vm.api.VM that the CLI uses, each one REST call, so the
CLI's commands run unchanged on either. URL is `unix:/path/api.sock`, `http://HOST:PORT` or
`https://HOST:PORT`; the bearer token comes from WIRT_TOKEN, else from this host's
$WIRT_HOME/serve/token (a server on the same host). Standard library only: the serve extra is
not needed on the client. `console`, `shell` and `exec -t`/`-i` stream over the server's
websockets (wirt.serve.wsclient); `top` and `logs --follow` need the VM's own host (or /metrics).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wirt.errors import NotFoundError, StateError, WirtError
from wirt.serve.client import Client, Reply
from wirt.serve.wsclient import BINARY, TEXT, Refused, WebSocket
from wirt.vm.agent import ExecEvent, ExecResult
from wirt.vm.schema import VMConfig
from wirt.vm.snapshots import SnapshotInfo
from wirt.vm.status import VMStatus
from wirt.vm.store import VMPaths, wirt_home

__all__ = ["RemoteVM", "RemoteAttached", "RemoteConsole", "remote_url", "client"]


def remote_url() -> str | None:
    return os.environ.get("WIRT_REMOTE") or None


def client() -> Client:
    url = remote_url()
    if not url or not (url.startswith(("unix:", "http://", "https://"))):
        raise WirtError(f"--remote {url!r}: give unix:/path/api.sock, http://HOST:PORT or https://HOST:PORT")
    token = os.environ.get("WIRT_TOKEN")
    if token is None and not url.startswith("unix:"):
        path = wirt_home() / "serve" / "token"
        token = path.read_text().strip() if path.is_file() else None
    return Client(url, token)


def _check(r: Reply) -> Any:
    """The JSON of a 2xx answer; an error answer becomes the matching one-line WirtError."""
    try:
        data = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.body
    except ValueError:
        data = {"error": r.body[:200].decode(errors="replace")}
    if r.status < 300:
        return data
    msg = data.get("error", "") if isinstance(data, dict) else ""
    msg = f"server: {msg or f'HTTP {r.status}'}"
    if r.status == 404:
        raise NotFoundError(msg)
    if r.status == 409:
        raise StateError(msg)
    raise WirtError(msg)


def _call(method: str, path: str, body: Any = None) -> Any:
    c = client()
    try:
        return _check(c.request(method, path, body=body))
    except (OSError, ConnectionError) as exc:
        raise WirtError(f"cannot reach the server at {remote_url()}: {exc}; is `wirt serve` running?") from None


def _server_mounts(texts: Iterable[str]) -> list[str]:
    """--mount words for the server: HOSTDIR is a folder on the server's host, so it must be
    absolute (a relative or ~ path would be resolved in the server's folder, not here)."""
    out = list(texts)
    for text in out:
        if not isinstance(text, str) or not text.startswith("/"):
            raise WirtError(f"--mount {text!r}: over --remote HOSTDIR is a folder on the server's host; "
                            "give its absolute path, e.g. /srv/site:/srv/site")
    return out


def _websocket(path: str) -> WebSocket:
    """A websocket to the server; a refused upgrade becomes the matching one-line WirtError."""
    try:
        return WebSocket(client(), path)
    except Refused as exc:
        _check(exc.reply)
        raise WirtError(f"server: HTTP {exc.reply.status}") from None
    except OSError as exc:
        raise WirtError(f"cannot reach the server at {remote_url()}: {exc}; is `wirt serve` running?") from None


class RemoteAttached:
    """VM.exec_attached over GET .../exec/ws: the methods of wirt.vm.attached.AttachedExec."""

    def __init__(self, vm_path: str, command: str, *, tty: tuple[int, int] | None = None,
                 wait: float = 120.0, kill_after: float | None = None) -> None:
        req: dict[str, Any] = {"command": command, "timeout": wait, "stdin": True}
        if kill_after is not None:
            req["kill_after"] = kill_after
        if tty is not None:
            req["tty"] = [int(tty[1]), int(tty[0])]  # the websocket's order: [cols, rows]
        self._ws = _websocket(f"{vm_path}/exec/ws")
        self._ws.send_text(json.dumps(req))

    def _send(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except OSError as exc:
            raise WirtError(f"the connection to the server closed ({exc})") from None

    def write(self, data: bytes) -> None:
        """Bytes for the command's stdin."""
        if data:
            self._send(self._ws.send_bytes, data)

    def eof(self) -> None:
        """No more input."""
        self._send(self._ws.send_text, json.dumps({"eof": True}))

    def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size (the guest program gets SIGWINCH)."""
        self._send(self._ws.send_text, json.dumps({"resize": [int(cols), int(rows)]}))

    def events(self) -> Any:
        """Output as it comes, then the exit event; WirtError on an error message."""
        while True:
            msg = self._ws.receive()
            if msg is None:
                return
            if msg[0] != TEXT:
                continue
            data = json.loads(msg[1])
            if "exit" in data:
                yield ExecEvent("exit", status=int(data["exit"]))
                return
            if "error" in data:
                raise WirtError(f"server: {data['error']}")
            yield ExecEvent(data.get("stream", "stdout"), base64.b64decode(data.get("data", "")))

    def close(self) -> None:
        """Hang up (the server then ends a command still running)."""
        self._ws.close()


class RemoteConsole:
    """What `wirt console` needs of VM.control() over GET .../console: after
    request("console-attach"), `sock` is a local socket carrying the console's bytes both ways
    (a socket pair bridged to the websocket by two threads), so the CLI's select loop runs unchanged."""

    def __init__(self, vm_path: str) -> None:
        self._path = f"{vm_path}/console"
        self._ws: WebSocket | None = None
        self.sock, self._far = socket.socketpair()

    def request(self, cmd: str, **_: Any) -> dict[str, Any]:
        if cmd != "console-attach":
            raise WirtError(f"{cmd}: needs the VM's own host")
        ws = self._ws = _websocket(self._path)
        threading.Thread(target=self._down, args=(ws,), name="wirt-console-down", daemon=True).start()
        threading.Thread(target=self._up, args=(ws,), name="wirt-console-up", daemon=True).start()
        return {"ok": True}

    def _down(self, ws: WebSocket) -> None:
        """Console output from the server to the local socket, until the VM closes the console."""
        try:
            while (msg := ws.receive()) is not None:
                if msg[0] == BINARY:
                    self._far.sendall(msg[1])
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self._far.shutdown(socket.SHUT_WR)

    def _up(self, ws: WebSocket) -> None:
        """What is typed here, to the server."""
        try:
            while data := self._far.recv(65536):
                ws.send_bytes(data)
        except OSError:
            pass

    def leftover(self) -> bytes:
        return b""

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        for s in (self.sock, self._far):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class RemoteVM:
    """One VM of a remote server. Cheap to construct; every property asks the server."""

    def __init__(self, name: str, detail: dict[str, Any] | None = None) -> None:
        self.name = name
        self._path = f"/v1/vms/{quote(name, safe='')}"
        self._detail = detail if detail is not None else _call("GET", self._path)

    def __repr__(self) -> str:
        return f"RemoteVM({self.name!r})"

    def _fresh(self) -> dict[str, Any]:
        self._detail = _call("GET", self._path)
        return self._detail

    # ---- finding and creating ---------------------------------------------------------------------
    @classmethod
    def get(cls, name: str) -> RemoteVM:
        return cls(name)

    @classmethod
    def list(cls) -> list[RemoteVM]:
        return [cls(row["name"]) for row in _call("GET", "/v1/vms")]

    @classmethod
    def create(cls, name: str, cpus: int | None = None, memory: int | str | None = None,
               disk: int | str | None = "default", *, image: str | None = None, net: str | None = None,
               ports: Iterable[str] = (), mac: str | None = None, cpu_affinity: Iterable[int] = (),
               append: str = "", firmware: str = "", kernel: str = "", initrd: str = "",
               init: str | None = None, hostname: str | None = None, user_data: str | None = None,
               ssh_key: str | None = None, mounts: Iterable[str] = ()) -> RemoteVM:
        """VM.create's arguments, sent as the `wirt create` options (wirt.vm.schema.CREATE_OPTIONS)."""
        aff = list(cpu_affinity)
        body = {"name": name, "cpus": cpus, "memory": None if memory is None else str(memory),
                "disk": None if disk == "default" else ("none" if disk is None else str(disk)),
                "image": image, "net": net, "port": list(ports), "mac": mac,
                "cpu_affinity": ",".join(map(str, aff)) if aff else None, "append": append,
                "firmware": firmware, "kernel": kernel, "initrd": initrd, "init": init,
                "hostname": hostname or None, "user_data": user_data, "ssh_key": ssh_key,
                "mount": _server_mounts(mounts) or None}
        return cls(name, _call("POST", "/v1/vms", {k: v for k, v in body.items() if v is not None}))

    # ---- reading ------------------------------------------------------------------------------------
    @property
    def paths(self) -> VMPaths:
        """The VM's folder on the server (for display: it is not on this host)."""
        return VMPaths(Path(self._detail["root"]))

    @property
    def config(self) -> VMConfig:
        cfg = self._detail.get("config")
        if cfg is None:
            raise WirtError(f"server: VM {self.name!r}: {self._detail.get('reason', 'invalid configuration')}")
        return VMConfig.from_dict(cfg, "")

    def status(self, query: bool = True) -> VMStatus:
        return VMStatus(**self._fresh()["status"])

    def summary(self) -> dict[str, Any]:
        d = self._fresh()
        return {k: v for k, v in d.items() if k not in ("config", "status", "root", "pending_resume")}

    def disk_usage(self, cfg: VMConfig | None = None) -> tuple[int, int]:
        return int(self._detail.get("disk_used", 0)), int(self._detail.get("disk_size", 0))

    def log_path(self) -> Path:
        """The console log, downloaded to a temporary file."""
        data = _call("GET", f"{self._path}/logs")
        fd, tmp = tempfile.mkstemp(prefix=f"wirt-{self.name}-", suffix=".log")
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else str(data).encode())
        return Path(tmp)

    def control(self, timeout: float = 5.0) -> RemoteConsole:
        """Only the console: `request("console-attach")` opens the console websocket."""
        return RemoteConsole(self._path)

    # ---- lifecycle --------------------------------------------------------------------------------------
    def _act(self, action: str, query: str = "") -> VMStatus:
        _call("POST", f"{self._path}/{action}{query}", {})
        return self.status()

    def start(self, *args: Any, **kw: Any) -> VMStatus:
        return self._act("start")

    def stop(self, force: bool = False, timeout: float = 30.0) -> VMStatus:
        return self._act("stop", f"?force={'true' if force else 'false'}&timeout={timeout:g}")

    def restart(self, force: bool = False, timeout: float = 30.0) -> VMStatus:
        return self._act("restart", f"?force={'true' if force else 'false'}&timeout={timeout:g}")

    def pause(self) -> None:
        self._act("pause")

    def resume(self) -> None:
        self._act("resume")

    def wait_agent(self, timeout: float = 120.0) -> VMStatus:
        """Returns once the guest agent runs a command (what `wirt start --wait` waits for)."""
        self.exec("true", timeout=timeout)
        return self.status()

    def remove(self, force: bool = False) -> None:
        _call("DELETE", f"{self._path}?force={'true' if force else 'false'}")

    def set(self, *, memory: int | str | None = None, cpus: int | None = None,
            disk_size: int | str | None = None, cpu_affinity: Iterable[int] | None = None,
            ports: Iterable[str] | None = None, add_ports: Iterable[str] = (),
            mounts: Iterable[str] | None = None, add_mounts: Iterable[str] = ()) -> list[str]:
        """VM.set's arguments as the `wirt set` options: `ports`/`mounts` replace (--no-port and
        --no-mount, then --port/--mount), `add_ports`/`add_mounts` add."""
        body: dict[str, Any] = {"memory": None if memory is None else str(memory), "cpus": cpus,
                                "disk_size": None if disk_size is None else str(disk_size)}
        if cpu_affinity is not None:
            aff = list(cpu_affinity)
            body["cpu_affinity"] = ",".join(map(str, aff)) if aff else "none"
        body["port"] = [*(ports or ()), *add_ports] or None
        body["no_port"] = True if ports is not None else None
        body["mount"] = _server_mounts([*(mounts or ()), *add_mounts]) or None
        body["no_mount"] = True if mounts is not None else None
        return _call("PATCH", self._path, {k: v for k, v in body.items() if v is not None})["changes"]

    def exec(self, command: str | list[str], *, timeout: float = 120.0, kill_after: float | None = None,
             stdin: bytes = b"", on_event: Any = None) -> ExecResult:
        """Through POST .../exec: the output arrives when the command ends (the websocket streams it)."""
        body: dict[str, Any] = {"command": command, "timeout": timeout}
        if kill_after is not None:
            body["kill_after"] = kill_after
        if stdin:
            body["stdin"] = base64.b64encode(stdin).decode()
        r = _call("POST", f"{self._path}/exec", body)
        res = ExecResult(base64.b64decode(r["stdout_base64"]), base64.b64decode(r["stderr_base64"]), int(r["status"]))
        if on_event is not None:
            for kind, data in (("stdout", res.stdout), ("stderr", res.stderr)):
                if data:
                    on_event(ExecEvent(kind, data))
            on_event(ExecEvent("exit", status=res.status))
        return res

    def exec_attached(self, command: str | list[str], *, tty: tuple[int, int] | None = None,
                      timeout: float = 120.0, kill_after: float | None = None) -> RemoteAttached:
        """The command with its stdin streamed over the exec websocket (on a guest terminal with `tty`)."""
        import shlex

        text = command if isinstance(command, str) else shlex.join(command)
        return RemoteAttached(self._path, text, tty=tty, wait=timeout, kill_after=kill_after)

    # ---- snapshots ------------------------------------------------------------------------------------------
    def snapshot(self, name: str) -> SnapshotInfo:
        return SnapshotInfo(**_call("POST", f"{self._path}/snapshots", {"name": name}))

    def snapshots(self) -> list[SnapshotInfo]:
        return [SnapshotInfo(**d) for d in _call("GET", f"{self._path}/snapshots")]

    def pending_resume(self) -> str | None:
        return self._fresh().get("pending_resume")

    def restore(self, name: str) -> str:
        return _call("POST", f"{self._path}/snapshots/{quote(name, safe='')}/restore", {})["state"]

    def remove_snapshot(self, name: str) -> None:
        _call("DELETE", f"{self._path}/snapshots/{quote(name, safe='')}")

    def fork(self, snap: str, new_name: str, start: bool = False) -> RemoteVM:
        d = _call("POST", f"{self._path}/fork", {"snapshot": snap, "name": new_name, "start": start})
        return RemoteVM(new_name, d)
