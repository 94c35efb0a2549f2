"""The host's event log: VM state changes, admission refusals, guest panics, snapshot operations.

Whoever does the thing records it (the Python API, the CLI through it, the VM's monitor process
when the guest stops or crashes), so the log is complete whatever drove the VM. Events are JSON
lines in `$WIRT_HOME/events.jsonl`, each with an id one higher than the last (allocated under
an flock of events.lock), and a copy goes to the VM's own `vms/NAME/events.jsonl`. `wirt serve`
streams the host log; a client resumes after a disconnect from the last id it saw.

    {"id": 7, "time": 1764860000.1, "vm": "web", "type": "started", "pid": 1234}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from wirt.vm.store import DIR_MODE, FILE_MODE

__all__ = ["EVENT_TYPES", "emit", "read_events", "last_id", "host_log", "vm_log", "PanicWatch"]

#: Every event type, with what it means (also the OpenAPI document's list).
EVENT_TYPES = {
    "created": "a VM was created",
    "removed": "a VM was deleted",
    "started": "a VM process came up",
    "stopped": "a VM ended cleanly (guest power-off or `stop`)",
    "crashed": "a VM process ended uncleanly",
    "panic": "the guest kernel panicked",
    "paused": "a VM was frozen",
    "resumed": "a paused VM continued",
    "admission-refused": "a start was refused for lack of host resources",
    "snapshot-created": "a snapshot was taken",
    "snapshot-restored": "a VM went back to a snapshot",
    "snapshot-removed": "a snapshot was deleted",
    "forked": "a new VM was made from a snapshot",
}
_TAIL = 1 << 16  # the last event line is far shorter than this


def host_log(home: Path) -> Path:
    return Path(home) / "events.jsonl"


def vm_log(home: Path, vm: str) -> Path:
    return Path(home) / "vms" / vm / "events.jsonl"


def _last_id(f: Any) -> int:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - _TAIL))
    lines = f.read().splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return int(json.loads(line)["id"])
    return 0


def last_id(home: Path) -> int:
    """The id of the newest event (0 when there is none)."""
    try:
        with open(host_log(home), "rb") as f:
            return _last_id(f)
    except FileNotFoundError:
        return 0


def emit(home: Path, vm: str, type: str, **data: Any) -> dict[str, Any]:
    """Append one event to the host log and the VM's log; returns it. Never raises for I/O
    trouble (an event log must not make a VM operation fail): the event is then returned unsaved."""
    assert type in EVENT_TYPES, type
    home = Path(home)
    event: dict[str, Any] = {"id": 0, "time": time.time(), "vm": vm, "type": type, **data}
    try:
        home.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        lock = os.open(home / "events.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = os.open(host_log(home), os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "r+b") as f:
                event["id"] = _last_id(f) + 1
                line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
                f.write(line)
            if vm_log(home, vm).parent.is_dir():
                fd = os.open(vm_log(home, vm), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
                with os.fdopen(fd, "ab") as f:
                    f.write(line)
        finally:
            os.close(lock)
    except OSError:
        pass
    return event


def read_events(path: Path, after: int = 0, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events with an id above `after` from a log, reading from byte `offset`; returns them and the
    offset after the last complete line (pass it back to read only what is new)."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return out, 0
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("id"), int) and ev["id"] > after:
            out.append(ev)
    return out, offset + end


class PanicWatch:
    """Wraps a console output callback and calls `on_panic(line)` when the guest kernel prints
    "Kernel panic - not syncing" (panic() in Linux's kernel/panic.c). Output may split the
    text anywhere, so the last bytes of each chunk are kept for the next one."""

    MARK = b"Kernel panic - not syncing"

    def __init__(self, output: Callable[[bytes], None], on_panic: Callable[[str], None]) -> None:
        self.output, self.on_panic = output, on_panic
        self._carry = b""

    def __call__(self, data: bytes) -> None:
        self.output(data)
        text = self._carry + bytes(data)
        i = text.find(self.MARK)
        if i >= 0:
            line = text[i:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            self.on_panic(line)
            text = text[i + len(self.MARK):]
        self._carry = text[-(len(self.MARK) - 1):]
