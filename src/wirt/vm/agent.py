"""The host end of the guest agent channel: a virtio-console port and `wirt-agent` in the guest.

The line protocol (docs/control-protocol.md, "The guest agent"; the guest side is
wirt.images.agent): the agent says `ready 1` when it starts, the host sends
`exec ID CMD-B64 [STDIN-B64]`, the agent answers `out ID B64` / `err ID B64` chunks and one
`exit ID STATUS`; `kill ID` ends a command (process group, SIGTERM); `poweroff` shuts the guest
down cleanly; `ip ADDR` reports the guest's address after DHCP. `spawn ID CMD-B64 [ROWS COLS]`
starts a command whose stdin the host streams (`in ID B64`, each acknowledged by `ack ID`, then
`eof ID`), on a pseudo-terminal of that size when ROWS COLS are given (`resize ID ROWS COLS`). `GuestAgent.on_output` runs on the CPU thread (device lock held), so it only
parses lines and hands events to per-command queues; everything that waits runs on the caller's
thread (the control socket's connection threads).
"""

from __future__ import annotations

import base64
import binascii
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from wirt.errors import WirtError

__all__ = ["GuestAgent", "ExecEvent", "ExecResult", "ExecTimeout", "MAX_STDIN", "MAX_COMMAND", "MAX_TTY"]

MAX_COMMAND = 64 << 10   # bytes of command text (the guest reads the request line byte by byte)
MAX_STDIN = 64 << 10     # bytes of standard input sent with a command
INPUT_CHUNK = 2048       # raw bytes per `in` line (wirt.images.agent.CHUNK: a line under PIPE_BUF)
INPUT_WINDOW = 8         # `in` lines sent and not yet acknowledged: 8 x 2.7 KiB stays under the
                         # guest's 64 KiB FIFO, so the agent's main loop never blocks writing one
MAX_TTY = 4096           # largest rows or columns of a terminal
_MAX_LINE = 1 << 20      # a longer guest line is garbage (the agent's lines are under 4 KiB)


class ExecTimeout(WirtError):
    """The command ran longer than its timeout (it was killed in the guest)."""


@dataclass(frozen=True)
class ExecResult:
    """What a command run through the guest agent produced."""

    stdout: bytes
    stderr: bytes
    status: int

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.status == 0


@dataclass(frozen=True)
class ExecEvent:
    """One event of a running command: kind "stdout"/"stderr" with data, or "exit" with status."""

    kind: str
    data: bytes = b""
    status: int = 0


class _Session:
    """One command sent to the agent: its id and the queue its events arrive on."""

    def __init__(self, ident: int) -> None:
        self.id = ident
        self.events: queue.Queue[ExecEvent | None] = queue.Queue()  # None: the agent went away
        self.window = threading.Semaphore(INPUT_WINDOW)  # `in` lines the guest may still take
        self.done = False


class GuestAgent:
    """Talks to wirt-agent through a byte channel (`send` puts bytes on the guest's /dev/hvc0)."""

    def __init__(self, send: Callable[[bytes], None] | None = None) -> None:
        self.send = send
        self.version: int | None = None
        self.ip: str | None = None
        self.bytes_in = 0
        self._buf = bytearray()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._sessions: dict[int, _Session] = {}
        self._next = 1

    # ---- guest -> host (CPU thread) ------------------------------------------------------------
    def on_output(self, data: bytes) -> None:
        """Bytes the guest wrote to the channel: split into lines and dispatch them."""
        self.bytes_in += len(data)
        buf = self._buf
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > _MAX_LINE:
                    buf.clear()
                return
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        parts = line.split(b" ")
        verb = parts[0]
        if verb == b"ready" and len(parts) >= 2 and parts[1].isdigit():
            if self._ready.is_set() and self.version is not None:
                self._fail_all()  # the agent restarted: commands it was running are lost
            self.version = int(parts[1])
            self._ready.set()
            return
        if verb == b"ip" and len(parts) == 2:
            self.ip = parts[1].decode("ascii", "replace")[:64]
            return
        if verb == b"ack" and len(parts) == 2 and parts[1].isdigit():
            with self._lock:
                s = self._sessions.get(int(parts[1]))
            if s is not None:
                s.window.release()
            return
        if len(parts) < 3 or not parts[1].isdigit():
            return  # not ours (noise before the agent set the line to raw): ignore
        with self._lock:
            s = self._sessions.get(int(parts[1]))
            if s is not None and verb == b"exit":
                del self._sessions[s.id]
        if s is None:
            return
        if verb in (b"out", b"err"):
            try:
                data = base64.b64decode(parts[2], validate=True)
            except (binascii.Error, ValueError):
                return
            s.events.put(ExecEvent("stdout" if verb == b"out" else "stderr", data))
        elif verb == b"exit" and parts[2].isdigit():
            s.done = True
            s.window.release(INPUT_WINDOW)  # a writer waiting for room gives up
            s.events.put(ExecEvent("exit", status=int(parts[2])))

    # ---- state -----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """The agent has announced itself since the last guest (re)boot."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the agent; True when it is up."""
        return self._ready.wait(max(0.0, timeout))

    def reset(self) -> None:
        """The guest rebooted: the agent is gone until it announces itself again."""
        self._ready.clear()
        self.version = None
        self.ip = None
        self._buf.clear()
        self._fail_all()

    def state(self) -> dict[str, Any]:
        """What a snapshot keeps of the channel: whether the agent was up, its version and address."""
        return {"ready": self.ready, "version": self.version, "ip": self.ip,
                "partial": base64.b64encode(bytes(self._buf)).decode()}

    def load_state(self, d: dict[str, Any] | None) -> None:
        """The guest went back to a snapshot: commands in flight are lost, the agent is as it was."""
        self.reset()
        d = d or {}
        self.version = d.get("version")
        self.ip = d.get("ip")
        self._buf += base64.b64decode(d.get("partial", ""))
        if d.get("ready"):
            self._ready.set()

    def _fail_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.done = True
            s.window.release(INPUT_WINDOW)
            s.events.put(None)

    # ---- host -> guest ------------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        if self.send is None:
            raise WirtError("this VM has no guest agent channel")
        self.send(line.encode("ascii") + b"\n")

    def start(self, command: str, stdin: bytes = b"") -> _Session:
        """Send a command to the agent; returns its session (pass it to `events`)."""
        if len(stdin) > MAX_STDIN:
            raise WirtError(f"standard input is {len(stdin)} bytes; at most {MAX_STDIN} are allowed")
        return self._open("exec", command, f" {base64.b64encode(stdin).decode()}" if stdin else "")

    def spawn(self, command: str, tty: tuple[int, int] | None = None) -> _Session:
        """Start a command whose stdin is streamed (`send_input`, `close_input`); with `tty`
        (rows, columns) on a pseudo-terminal in the guest, which `resize` resizes."""
        tail = ""
        if tty is not None:
            rows, cols = tty
            if not (0 < rows <= MAX_TTY and 0 < cols <= MAX_TTY):
                raise WirtError(f"terminal size {rows}x{cols}: rows and columns must be from 1 to {MAX_TTY}")
            tail = f" {int(rows)} {int(cols)}"
        return self._open("spawn", command, tail)

    def _open(self, verb: str, command: str, tail: str) -> _Session:
        if not self.ready:
            raise WirtError("the guest agent is not up")
        cmd = command.encode()
        if not cmd.strip():
            raise WirtError("the command is empty")
        if len(cmd) > MAX_COMMAND:
            raise WirtError(f"the command is {len(cmd)} bytes long; at most {MAX_COMMAND} are allowed")
        with self._lock:
            ident = self._next
            self._next = self._next % 0x7FFF_FFFF + 1
            session = self._sessions[ident] = _Session(ident)
        try:
            self._write(f"{verb} {ident} {base64.b64encode(cmd).decode()}{tail}")
        except BaseException:
            self.forget(ident)
            raise
        return session

    def send_input(self, s: _Session, data: bytes) -> None:
        """Stream `data` to a spawned command's stdin; blocks while the guest has a window of
        chunks not yet taken. Dropped once the command has ended."""
        for i in range(0, len(data), INPUT_CHUNK):
            s.window.acquire()
            if s.done:
                return
            self._write(f"in {s.id} {base64.b64encode(data[i:i + INPUT_CHUNK]).decode()}")

    def close_input(self, s: _Session) -> None:
        """End a spawned command's stdin (it reads end-of-file once it has read the rest)."""
        if not s.done:
            self._write(f"eof {s.id}")

    def resize(self, s: _Session, rows: int, cols: int) -> None:
        """Set the size of a spawned command's terminal (the guest's kernel sends it SIGWINCH)."""
        if not (0 < rows <= MAX_TTY and 0 < cols <= MAX_TTY):
            raise WirtError(f"terminal size {rows}x{cols}: rows and columns must be from 1 to {MAX_TTY}")
        if not s.done:
            self._write(f"resize {s.id} {int(rows)} {int(cols)}")

    def kill(self, ident: int) -> None:
        """Ask the agent to end command `ident` (SIGTERM to its process group)."""
        with self._lock:
            known = ident in self._sessions
        if known and self.ready:
            self._write(f"kill {ident}")

    def poweroff(self) -> None:
        """Ask the agent to sync, remount the root filesystem read-only and power the guest off."""
        self._write("poweroff")

    def forget(self, ident: int) -> None:
        """Drop a command's session (its client went away)."""
        with self._lock:
            s = self._sessions.pop(ident, None)
        if s is not None:
            s.done = True
            s.window.release(INPUT_WINDOW)

    def events(self, s: _Session, timeout: float | None = None) -> Iterator[ExecEvent]:
        """The events of a started command until its exit; WirtError on timeout or a lost agent.

        On timeout the command is killed in the guest first."""
        ident = s.id
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                if left is not None and left <= 0:
                    raise queue.Empty
                ev = s.events.get(timeout=left)
            except queue.Empty:
                self.kill(ident)
                self.forget(ident)
                raise ExecTimeout(f"the command did not finish within {timeout:g} s; it was killed") from None
            if ev is None:
                raise WirtError("the guest agent went away (the guest rebooted or the agent restarted)")
            yield ev
            if ev.kind == "exit":
                return
