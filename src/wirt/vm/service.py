"""The commands a VM process serves on its control socket (docs/control-protocol.md).

`VMService` turns requests into calls on the runner (`wirt.vm.runner.Runner`, or any object
with the same methods) and the console hub. Each handler takes the request dict and returns
the reply fields, or raises ControlError with a code the client can act on.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Iterator
from typing import Any

from wirt.errors import WirtError
from wirt.vm.agent import MAX_COMMAND, MAX_STDIN, MAX_TTY, ExecTimeout
from wirt.vm.confinement import TEST_HOOKS_ENV
from wirt.vm.control import ControlError, Handler, Stream, arg

MAX_WAIT = 3600.0  # longest `wait` for the guest agent an exec request may ask for

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


def _tty_size(v: Any, key: str) -> tuple[int, int] | None:
    """[ROWS, COLS] of a request, checked; None when absent."""
    if v is None:
        return None
    if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in v)
            or not all(0 < n <= MAX_TTY for n in v)):
        raise ControlError("bad-argument", f"\"{key}\" must be [ROWS, COLUMNS], each from 1 to {MAX_TTY}")
    return v[0], v[1]


class VMService:
    """Control-socket commands of one running VM."""

    def __init__(self, cfg: Any, runner: Any, hub: Any, limits: Any = None) -> None:
        self.cfg = cfg
        self.runner = runner
        self.hub = hub
        self.limits = limits
        self.confinement: Any = None  # wirt.vm.confinement.Confinement, once applied
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
            "snapshot-create": self.snapshot_create,
            "snapshot-restore": self.snapshot_restore,
            "exec": self.exec,
            **({"debug-forbidden-syscall": self.debug_forbidden_syscall, "debug-open": self.debug_open,
                "debug-allocate": self.debug_allocate}
               if os.environ.get(TEST_HOOKS_ENV) == "1" else {}),
        }

    def debug_open(self, req: dict[str, Any]) -> dict[str, Any]:
        """Tests only (WIRT_TEST_HOOKS=1): try to open `file` for reading on the CPU thread, as a
        compromised device model would; says whether the kernel let it."""
        path = arg(req, "file", str)

        def attempt() -> dict[str, Any]:
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                return {"opened": True, "error": ""}
            except OSError as exc:
                return {"opened": False, "error": exc.strerror or str(exc)}

        return self.runner.on_cpu_thread(attempt)

    def debug_allocate(self, req: dict[str, Any]) -> dict[str, Any]:
        """Tests only (WIRT_TEST_HOOKS=1): allocate and touch host memory on the CPU thread, 64 MiB at
        a time, as a leaking device model would, until the process's memory limit stops it (a
        MemoryError under RLIMIT_AS, the OOM killer under a cgroup's memory.max) or `limit` bytes."""
        limit = arg(req, "limit", int)
        held = []

        def grow() -> dict[str, Any]:
            while len(held) * (64 << 20) < limit:
                block = bytearray(64 << 20)
                block[::4096] = b"\1" * len(block[::4096])  # touch every page: resident, not just reserved
                held.append(block)
            return {"allocated": len(held) * (64 << 20)}

        try:
            return self.runner.on_cpu_thread(grow, timeout=120.0)
        finally:
            held.clear()

    def debug_forbidden_syscall(self, req: dict[str, Any]) -> dict[str, Any]:
        """Tests only (WIRT_TEST_HOOKS=1): make a system call the seccomp filter forbids (execve of
        /bin/true), as a compromised VM process would. The filter kills the process."""
        os.execv("/bin/true", ["true"])
        return {}  # not reached under the filter

    def status(self, req: dict[str, Any]) -> dict[str, Any]:
        r = self.runner
        out = {
            "name": self.cfg.name, "pid": os.getpid(), "paused": bool(r.paused),
            "state": "paused" if r.paused else "running", "started": self.started,
            "uptime": round(time.time() - self.started, 3), "cpus": self.cfg.cpus, "memory": self.cfg.memory,
            "warnings": list(getattr(r, "warnings", [])), "ip": None, "agent": False,
        }
        agent = getattr(r, "agent", None)
        if agent is not None:
            out["ip"] = agent.ip
            out["agent"] = agent.ready
        if self.confinement is not None:
            out["confinement"] = self.confinement.to_dict()
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

    def exec(self, req: dict[str, Any]) -> Stream:
        """Run a command through the guest agent; output and the exit status are streamed back.
        With "attach" the client streams stdin (and with "tty" resizes) on the same connection."""
        command = arg(req, "command", str)
        if command is None or not command.strip():
            raise ControlError("bad-argument", "\"command\" is required (the shell command to run)")
        wait = arg(req, "wait", (int, float), 0.0)
        if not 0 <= wait <= MAX_WAIT:
            raise ControlError("bad-argument", f"\"wait\" must be from 0 to {MAX_WAIT:g} seconds")
        timeout = arg(req, "timeout", (int, float), None)
        if timeout is not None and not timeout > 0:
            raise ControlError("bad-argument", "\"timeout\" must be a positive number of seconds")
        try:
            stdin = base64.b64decode(arg(req, "stdin", str, ""), validate=True)
        except (binascii.Error, ValueError):
            raise ControlError("bad-argument", "\"stdin\" is not valid base64") from None
        if len(command.encode()) > MAX_COMMAND:
            raise ControlError("bad-argument", f"\"command\" is longer than {MAX_COMMAND} bytes")
        if len(stdin) > MAX_STDIN:
            raise ControlError("bad-argument", f"\"stdin\" is longer than {MAX_STDIN} bytes")
        attach = arg(req, "attach", bool, False)
        tty = _tty_size(arg(req, "tty", list, None), "tty")
        if tty is not None and not attach:
            raise ControlError("bad-argument", "\"tty\" needs \"attach\": true (the terminal's input comes "
                               "on the same connection)")
        agent = getattr(self.runner, "agent", None)
        if agent is None or agent.send is None:
            raise ControlError("unsupported", "this VM has no guest agent channel")
        if self.runner.paused:
            raise ControlError("invalid-state", "the VM is paused; resume it first")
        if not agent.wait_ready(wait):
            raise ControlError("agent-unavailable",
                               f"the guest agent is not up{f' after {wait:g} s' if wait else ''}: the guest is "
                               "still booting, or its image does not start wirt-agent")
        try:
            session = agent.spawn(command, tty) if attach else agent.start(command, stdin)
            if attach and stdin:
                agent.send_input(session, stdin)
        except WirtError as exc:
            raise ControlError("failed", str(exc)) from None
        if not attach:
            return Stream(self._exec_events(agent, session, timeout))

        def on_input(msg: dict[str, Any] | None) -> None:
            """The client's lines: {"stdin": B64}, {"eof": true}, {"resize": [ROWS, COLS]};
            None when it has gone (the command is then ended, as a plain exec's is)."""
            if msg is None:
                agent.kill(session.id)
                return
            if "stdin" in msg:
                try:
                    data = base64.b64decode(msg["stdin"], validate=True) if isinstance(msg["stdin"], str) else None
                except (binascii.Error, ValueError):
                    data = None
                if data:
                    agent.send_input(session, data)
            if "resize" in msg:
                try:
                    size = _tty_size(msg["resize"], "resize")
                except ControlError:
                    size = None
                if size is not None:
                    agent.resize(session, *size)
            if msg.get("eof") is True:
                agent.close_input(session)

        return Stream(self._exec_events(agent, session, timeout), on_input=on_input)

    def _exec_events(self, agent: Any, session: Any, timeout: float | None) -> Iterator[dict[str, Any]]:
        finished = False
        try:
            try:
                for ev in agent.events(session, timeout):
                    if ev.kind == "exit":
                        finished = True
                        yield {"exit": ev.status}
                    else:
                        yield {"stream": ev.kind, "data": base64.b64encode(ev.data).decode()}
            except WirtError as exc:
                finished = True  # events() killed it on timeout; a lost agent has nothing to kill
                raise ControlError("timeout" if isinstance(exc, ExecTimeout) else "failed", str(exc)) from None
        finally:
            if not finished:  # the client went away: end the command in the guest
                agent.kill(session.id)
                agent.forget(session.id)

    def snapshot_create(self, req: dict[str, Any]) -> dict[str, Any]:
        """Full snapshot "name" (the VM pauses while RAM is written, then runs on)."""
        from wirt.vm.snapshots import runner_snapshot

        name = arg(req, "name", str)
        if name is None:
            raise ControlError("bad-argument", "\"name\" is required (the snapshot's name)")
        return runner_snapshot(self.runner, name)

    def snapshot_restore(self, req: dict[str, Any]) -> dict[str, Any]:
        """Put the VM back into full snapshot "name"; it continues from there."""
        from wirt.vm.snapshots import runner_restore

        name = arg(req, "name", str)
        if name is None:
            raise ControlError("bad-argument", "\"name\" is required (the snapshot's name)")
        return runner_restore(self.runner, name)
