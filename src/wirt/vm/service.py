"""The commands a VM process serves on its control socket (docs/control-protocol.md).

`VMService` turns requests into calls on the runner (`wirt.vm.runner.Runner`, or any object
with the same methods) and the console hub. Each handler takes the request dict and returns
the reply fields, or raises ControlError with a code the client can act on.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from wirt.vm.control import ControlError, Handler, arg

__all__ = ["VMService", "proc_stats"]


def proc_stats(pid: int) -> dict[str, Any]:
    """Host-side figures of a process from /proc (proc(5)): CPU seconds, RSS, I/O bytes."""
    out: dict[str, Any] = {}
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()
        fields = stat[stat.rindex(b")") + 2:].split()
        tck = os.sysconf("SC_CLK_TCK")
        out["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / tck  # utime + stime
        out["rss_bytes"] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        for line in open(f"/proc/{pid}/io"):
            k, _, v = line.partition(":")
            if k in ("read_bytes", "write_bytes"):
                out[f"host_{k}"] = int(v)
    except (OSError, ValueError):
        pass
    return out


class VMService:
    """Control-socket commands of one running VM."""

    def __init__(self, cfg: Any, runner: Any, hub: Any, limits: Any = None) -> None:
        self.cfg = cfg
        self.runner = runner
        self.hub = hub
        self.limits = limits
        self.started = time.time()

    def commands(self) -> dict[str, Handler]:
        return {
            "ping": lambda req: {},
            "status": self.status,
            "stats": self.stats,
            "pause": self.pause,
            "resume": self.resume,
            "stop": self.stop,
            "console-input": self.console_input,
            "console-tail": self.console_tail,
        }

    def status(self, req: dict[str, Any]) -> dict[str, Any]:
        r = self.runner
        out = {
            "name": self.cfg.name, "pid": os.getpid(), "paused": bool(r.paused),
            "state": "paused" if r.paused else "running", "started": self.started,
            "uptime": round(time.time() - self.started, 3), "cpus": self.cfg.cpus, "memory": self.cfg.memory,
            "warnings": list(getattr(r, "warnings", [])), "ip": None,
        }
        if self.limits is not None:
            out["limits"] = {"method": self.limits.method, "cgroup": self.limits.cgroup,
                             "details": list(self.limits.details)}
        return out

    def stats(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"time": time.time(), **self.runner.stats(), **proc_stats(os.getpid()),
                "console_bytes": getattr(self.hub, "bytes_out", 0)}

    def pause(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.runner.paused:
            raise ControlError("invalid-state", "the VM is already paused")
        self.runner.pause()
        return {"paused": True}

    def resume(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self.runner.paused:
            raise ControlError("invalid-state", "the VM is not paused")
        self.runner.resume()
        return {"paused": False}

    def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        """force=false: ask the guest to power off (returns at once; the process exits when it has).
        force=true: halt the machine from the host side now (the process still exits cleanly)."""
        if arg(req, "force", bool, False):
            self.runner.halt()
            return {"stopping": "halt"}
        self.runner.request_poweroff()
        return {"stopping": "poweroff-requested"}

    def console_input(self, req: dict[str, Any]) -> dict[str, Any]:
        """Type on the guest console: "data" is text, or base64 bytes with "encoding": "base64"."""
        data = arg(req, "data", str)
        if data is None:
            raise ControlError("bad-argument", "\"data\" is required (the text to type)")
        enc = arg(req, "encoding", str, "text")
        if enc == "base64":
            try:
                raw = base64.b64decode(data, validate=True)
            except ValueError:
                raise ControlError("bad-argument", "\"data\" is not valid base64") from None
        elif enc == "text":
            raw = data.encode()
        else:
            raise ControlError("bad-argument", f"\"encoding\" must be \"text\" or \"base64\", not {enc!r}")
        self.runner.feed_input(raw)
        return {"bytes": len(raw)}

    def console_tail(self, req: dict[str, Any]) -> dict[str, Any]:
        lines = arg(req, "lines", int, 20)
        if not 1 <= lines <= 10000:
            raise ControlError("bad-argument", "\"lines\" must be from 1 to 10000")
        return {"text": self.hub.tail(lines)}
