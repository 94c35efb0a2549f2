"""What state is a VM in? Decided from its files and processes, never from memory of the past.

    stopped   no run/ directory, and the last run (if any) ended cleanly
    starting  run/pid names a live VM process whose control socket does not answer yet
    running   the process answers `status` and is not paused
    paused    the process answers and is paused
    stopping  the VM process is gone but its monitor is still writing the exit record
    crashed   the last run ended uncleanly (recorded in last-exit.json by the monitor), or
              run/pid names a process that no longer exists (the monitor was killed too)
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wirt.errors import WirtError
from wirt.vm.store import VMPaths, read_json

__all__ = ["VMStatus", "vm_status", "pid_alive", "read_pid", "PROCESS_MODULE"]

PROCESS_MODULE = "wirt.vm.process"
ZYGOTE_MODULE = "wirt.vm.zygote"


def read_pid(path: Path) -> int | None:
    """The process id in a pid file, or None (absent, not a regular file, not a number)."""
    from wirt.fileio import read_regular

    try:
        text = read_regular(path, "pid file", 64).decode("ascii", "replace").strip()
    except WirtError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def pid_alive(pid: int | None, name: str | None = None) -> bool:
    """True if `pid` is a live (not zombie) process; with `name`, it must be that VM's process
    (guards against pid reuse after a host reboot or a long-dead process)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2: stat.rindex(b")") + 3]
        if state in (b"Z", b"X"):
            return False
        if name is not None:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if ZYGOTE_MODULE.encode() in argv:
                # forked by the zygote (wirt.vm.zygote): its argv is the zygote's; a VM process
                # works in its VM's folder, the zygote itself in /
                if Path(os.readlink(f"/proc/{pid}/cwd")).parts[-2:] != ("vms", name):
                    return False
            elif PROCESS_MODULE.encode() not in argv or name.encode() not in argv:
                return False
    except (OSError, ValueError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return True


@dataclass
class VMStatus:
    """A VM's state plus what is known about its current or last run."""

    name: str
    state: str
    pid: int | None = None
    started: float | None = None      # epoch seconds of the current run
    reason: str = ""                  # why it crashed or how the last run ended
    info: dict[str, Any] = field(default_factory=dict)      # run/info.json of the current run
    live: dict[str, Any] = field(default_factory=dict)      # the control socket's status reply
    last_exit: dict[str, Any] | None = None

    @property
    def uptime(self) -> float | None:
        return time.time() - self.started if self.started and self.state in ("running", "paused", "starting") else None

    @property
    def running(self) -> bool:
        """The VM process exists (any of starting, running, paused, stopping)."""
        return self.state in ("starting", "running", "paused", "stopping")


def vm_status(paths: VMPaths, query: bool = True, timeout: float = 2.0) -> VMStatus:
    """The state of one VM; `query` asks the control socket (else live processes count as running)."""
    name = paths.name
    last = read_json(paths.last_exit)
    pid = read_pid(paths.pid)
    info = read_json(paths.info) or {}
    monitor = read_pid(paths.run / "monitor.pid")
    if not paths.run.is_dir() or (pid is None and monitor is None and not info):
        if last and last.get("state") == "crashed":
            return VMStatus(name, "crashed", reason=str(last.get("reason", "")), last_exit=last)
        return VMStatus(name, "stopped", reason=str((last or {}).get("reason", "")), last_exit=last)
    started = info.get("started")
    if pid_alive(pid, name):
        st = VMStatus(name, "running", pid, started, info=info, last_exit=last)
        if query:
            from wirt.vm.control import call

            try:
                st.live = call(paths.control, "status", timeout=timeout)
                st.state = "paused" if st.live.get("paused") else "running"
            except WirtError:
                st.state = "starting"
        return st
    if pid_alive(monitor, name):
        return VMStatus(name, "stopping" if pid else "starting", monitor, started, info=info, last_exit=last)
    reason = "the VM process vanished (killed together with its monitor?); stale files are cleaned at the next start"
    if pid is None:
        reason = "the VM process never started (killed while starting?)"
    return VMStatus(name, "crashed", pid, None, reason=reason, info=info, last_exit=last)


def clean_stale(paths: VMPaths) -> dict[str, Any] | None:
    """Remove run/ of a dead VM process (kill -9 of process and monitor), keeping its console log
    and recording the crash in last-exit.json. Returns the crash record, or None if nothing was stale."""
    st = vm_status(paths, query=False)
    if st.running or not paths.run.exists():
        return None
    from wirt.vm.store import atomic_write
    import json
    import shutil

    record = {"state": "crashed", "reason": st.reason or "the VM process vanished", "pid": st.pid,
              "ended": time.time(), "console_tail": _tail(paths.console_log)}
    if paths.console_log.exists():
        with contextlib.suppress(OSError):
            os.replace(paths.console_log, paths.last_console)
    atomic_write(paths.last_exit, json.dumps(record, indent=1))
    shutil.rmtree(paths.run, ignore_errors=True)
    return record


def _tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> list[str]:
    """The last lines of a log file (reads only its end)."""
    from wirt.fileio import open_regular

    try:
        with os.fdopen(open_regular(path, os.O_RDONLY, "console log"), "rb") as f:  # no FIFO, no device
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read(max_bytes)
    except (OSError, WirtError):
        return []
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
    return text.splitlines()[-lines:]
