"""A guest command with its stdin attached: the client end of `exec` with "attach" (and "tty").

The VM process's control socket keeps the connection open after the request: output and the
exit status come back as `exec` replies, while this side sends `{"stdin": B64}`, `{"eof": true}`
and `{"resize": [ROWS, COLS]}` lines (docs/control-protocol.md). `wirt shell`, `wirt exec -t`
and `wirt exec -i` run on it (wirt.cli.shell).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wirt.errors import WirtError
from wirt.vm.agent import ExecEvent
from wirt.vm.control import ControlClient

__all__ = ["AttachedExec"]


class AttachedExec:
    """One attached command: `write`, `eof`, `resize` from any thread, `events()` on one."""

    def __init__(self, control: Path, command: str, *, tty: tuple[int, int] | None = None,
                 wait: float = 0.0, kill_after: float | None = None) -> None:
        req: dict[str, Any] = {"id": 1, "cmd": "exec", "command": command, "wait": float(wait), "attach": True}
        if tty is not None:
            req["tty"] = [int(tty[0]), int(tty[1])]
        if kill_after is not None:
            req["timeout"] = float(kill_after)
        self._client = ControlClient(control).connect()
        self._client.sock.settimeout(None)  # an interactive command may be silent for hours
        self._lock = threading.Lock()
        self._closed = False
        self._send(req)

    def _send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._closed:
                return
            try:
                self._client.sock.sendall(data)
            except OSError as exc:
                raise WirtError(f"the VM's control socket closed ({exc.strerror or exc})") from None

    def write(self, data: bytes) -> None:
        """Bytes for the command's stdin (on a terminal: as typed, Ctrl-C included)."""
        if data:
            self._send({"stdin": base64.b64encode(data).decode()})

    def eof(self) -> None:
        """No more input: the command reads end-of-file (on a terminal its stdin is closed)."""
        self._send({"eof": True})

    def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size (the guest program gets SIGWINCH)."""
        self._send({"resize": [int(rows), int(cols)]})

    def events(self) -> Iterator[ExecEvent]:
        """Output as it comes, then the exit event; WirtError on an error reply."""
        while True:
            reply = self._client.read_reply()
            if not reply.get("ok"):
                err = reply.get("error") or {}
                raise WirtError(f"exec: {err.get('message', 'failed')}")
            if "exit" in reply:
                yield ExecEvent("exit", status=int(reply["exit"]))
                return
            yield ExecEvent(reply.get("stream", "stdout"), base64.b64decode(reply.get("data", "")))

    def close(self) -> None:
        """Hang up (a command still running is ended in the guest)."""
        with self._lock:
            self._closed = True
            self._client.close()

    def __enter__(self) -> AttachedExec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
