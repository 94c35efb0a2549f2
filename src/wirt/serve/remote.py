"""`wirt --remote URL` (or WIRT_REMOTE): the CLI's VM commands against a `wirt serve`.

`RemoteVM` has the methods of wirt.vm.api.VM that the CLI uses, each one REST call, so the
CLI's commands run unchanged on either. URL is `unix:/path/api.sock`, `http://HOST:PORT` or
`https://HOST:PORT`; the bearer token comes from WIRT_TOKEN, else from this host's
$WIRT_HOME/serve/token (a server on the same host). Standard library only: the serve extra is
not needed on the client. Console attach and `top` need the VM's own host (or the web console).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wirt.errors import NotFoundError, StateError, WirtError
from wirt.serve.client import Client, Reply
from wirt.vm.agent import ExecEvent, ExecResult
from wirt.vm.schema import VMConfig
from wirt.vm.snapshots import SnapshotInfo
from wirt.vm.status import VMStatus
from wirt.vm.store import VMPaths, wirt_home

__all__ = ["RemoteVM", "remote_url", "client"]


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
                "mount": list(mounts) or None}
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

    def control(self, timeout: float = 5.0) -> Any:
        raise WirtError("the console needs the VM's own host; over --remote use the web console at /ui/")

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
            disk_size: int | str | None = None, cpu_affinity: Iterable[int] | None = None) -> list[str]:
        body: dict[str, Any] = {"memory": None if memory is None else str(memory), "cpus": cpus,
                                "disk_size": None if disk_size is None else str(disk_size)}
        if cpu_affinity is not None:
            aff = list(cpu_affinity)
            body["cpu_affinity"] = ",".join(map(str, aff)) if aff else "none"
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
