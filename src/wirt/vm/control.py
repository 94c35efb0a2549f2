"""The control socket of a VM process: newline-delimited JSON over a Unix socket (run/control.sock).

Request:  {"id": 1, "cmd": "status"}            (other keys are the command's arguments)
Reply:    {"id": 1, "ok": true, ...}
Error:    {"id": 1, "ok": false, "error": {"code": "unknown-command", "message": "..."}}

Malformed JSON, a non-object, a missing or unknown command, or arguments of the wrong type get a
structured error and the connection (and the VM) carries on. Peers are checked with
SO_PEERCRED (unix(7)): only the VM owner's uid (and root) may connect; the socket file is
0600 in a 0700 directory as a second fence. `console-attach` turns the connection into a raw
byte stream (guest console both ways) until the client closes it. A handler may return a
`Stream` (`exec`): its items go out as several reply lines with the request's id, the last one
ending the request. docs/control-protocol.md is the reference.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wirt.errors import WirtError

__all__ = ["ControlError", "ControlServer", "ControlClient", "Stream", "MAX_LINE", "peer_credentials", "listen_private",
           "close_listener"]

MAX_LINE = 1 << 20  # a request longer than this is refused (and the connection closed)
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    """A refused request: `code` is machine-readable, `message` a one-line explanation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Stream:
    """A handler result sent as several replies: each item (a dict) becomes `{"id", "ok": true, ...}`.

    An error raised while iterating becomes an error reply that ends the stream. If the client
    goes away, the iterator is closed (a generator's `finally` runs), so work can be cancelled."""

    def __init__(self, items: Iterator[dict[str, Any]],
                 on_input: Callable[[dict[str, Any] | None], None] | None = None) -> None:
        self.items = items
        self.rid: Any = None
        # With on_input, the client's further lines while the stream runs are input for it
        # (`exec` with "attach"): each JSON object is passed on, None when the client has gone.
        self.on_input = on_input

    def close(self) -> None:
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def listen_private(path: Path, backlog: int) -> socket.socket:
    """A Unix socket listening at `path` (replacing a stale socket file) whose file is 0600 from
    birth: the VM process's sockets admit its owner only, with no window of wider access."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(backlog)
    return sock


def close_listener(sock: socket.socket | None, path: Path) -> None:
    """Stop a `listen_private` socket: shutdown first (it wakes the thread blocked in accept), then
    close it and remove its file."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _next_line(conn: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """The next line from `conn` after `buf` (bytes already read) and what was read past it; the
    line is None at end of file, or once MAX_LINE bytes have come without a newline."""
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            return buf[:nl], buf[nl + 1:]
        if len(buf) > MAX_LINE:
            return None, buf
        chunk = conn.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk


def _error(rid: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


class ControlServer:
    """Serves one VM's control socket from background threads.

    `commands` maps a command name to a function taking the request dict and returning the
    reply fields (or raising ControlError). `console` (optional) takes over a connection
    after `console-attach`: it gets the socket and any input bytes already read, and returns
    when the client detaches.
    """

    def __init__(self, path: Path, commands: dict[str, Handler],
                 console: Callable[[socket.socket, bytes], None] | None = None,
                 allowed_uids: tuple[int, ...] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        """`on_fatal` is called when a handler runs out of memory (the process is at its limit:
        the VM process ends the run rather than go on failing at random places)."""
        self.path = Path(path)
        self.commands = dict(commands)
        self.console = console
        self.on_fatal = on_fatal
        self.allowed_uids = allowed_uids if allowed_uids is not None else (os.getuid(), 0)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def start(self) -> None:
        """Bind (replacing a stale socket file), listen and serve in a daemon thread."""
        self._sock = listen_private(self.path, 16)
        os.chmod(self.path, 0o600)
        self._thread = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        close_listener(self._sock, self.path)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True).start()

    def _send(self, conn: socket.socket, reply: dict[str, Any]) -> None:
        conn.sendall(json.dumps(reply, separators=(",", ":")).encode() + b"\n")

    def _serve(self, conn: socket.socket) -> None:
        try:
            _, uid, _ = peer_credentials(conn)
            if uid not in self.allowed_uids:
                self._send(conn, _error(None, "forbidden", f"uid {uid} may not control this VM"))
                return
            buf = b""
            while True:
                line, buf = _next_line(conn, buf)
                if line is None:
                    if len(buf) > MAX_LINE:
                        self._send(conn, _error(None, "too-long", f"request longer than {MAX_LINE} bytes"))
                    return
                if not line.strip():
                    continue
                reply, attach = self.dispatch(line)
                if isinstance(reply, Stream):
                    if reply.on_input is not None:
                        threading.Thread(target=self._read_input, args=(conn, buf, reply.on_input),
                                         name="control-input", daemon=True).start()
                        self._send_stream(conn, reply)
                        return  # an attached stream owns the rest of the connection
                    self._send_stream(conn, reply)
                    continue
                self._send(conn, reply)
                if attach and self.console is not None:
                    self.console(conn, buf)  # returns when the client detaches
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _read_input(self, conn: socket.socket, buf: bytes, on_input: Callable[[dict[str, Any] | None], None]) -> None:
        """The client's lines during an attached stream, each a JSON object for `on_input`; None
        at the end (the client went away or the stream's connection was closed). Malformed lines
        are dropped: the stream is the only reply channel."""
        try:
            while True:
                line, buf = _next_line(conn, buf)
                if line is None:
                    return
                try:
                    msg = json.loads(line)
                except (ValueError, UnicodeDecodeError, RecursionError):
                    continue
                if isinstance(msg, dict):
                    on_input(msg)
        except OSError:
            pass
        except WirtError:
            pass  # input for a command that has ended
        finally:
            with contextlib.suppress(WirtError):
                on_input(None)

    def _send_stream(self, conn: socket.socket, stream: Stream) -> None:
        """Send a Stream's items as replies; an error ends it with an error reply."""
        rid = stream.rid
        try:
            for item in stream.items:
                self._send(conn, {"id": rid, "ok": True, **item})
        except ControlError as exc:
            self._send(conn, _error(rid, exc.code, exc.message))
        except WirtError as exc:
            self._send(conn, _error(rid, "failed", str(exc)))
        except OSError:
            raise  # the client went away; `finally` below cancels the work
        except Exception as exc:  # noqa: BLE001 -- a bug in a handler must not kill the VM
            self._send(conn, self._internal(rid, exc))
        finally:
            stream.close()

    def _internal(self, rid: Any, exc: Exception) -> dict[str, Any]:
        """The reply to a handler's unexpected exception; running out of memory is fatal (on_fatal)."""
        if isinstance(exc, MemoryError) and self.on_fatal is not None:
            self.on_fatal(exc)
            return _error(rid, "out-of-memory", "the VM process ran out of memory (its memory limit); the VM stops")
        return _error(rid, "internal", f"{type(exc).__name__}: {exc}")

    def dispatch(self, line: bytes) -> tuple[dict[str, Any] | Stream, bool]:
        """One request line -> (reply or Stream of replies, whether the connection becomes a console stream)."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(None, "bad-json", f"request is not valid JSON: {exc}"), False
        except RecursionError:
            return _error(None, "bad-json", "request is nested too deeply"), False
        if not isinstance(req, dict):
            return _error(None, "bad-request", "request must be a JSON object with \"cmd\""), False
        rid = req.get("id")
        if isinstance(rid, (dict, list)):
            return _error(None, "bad-request", "\"id\" must be a string, number or null"), False
        cmd = req.get("cmd")
        if not isinstance(cmd, str):
            return _error(rid, "bad-request", "\"cmd\" must be a string"), False
        if cmd == "console-attach":
            if self.console is None:
                return _error(rid, "unsupported", "this VM has no console to attach"), False
            return {"id": rid, "ok": True}, True
        fn = self.commands.get(cmd)
        if fn is None:
            known = ", ".join(sorted([*self.commands, "console-attach"]))
            return _error(rid, "unknown-command", f"unknown command {cmd!r}; known: {known}"), False
        try:
            result = fn(req)
        except ControlError as exc:
            return _error(rid, exc.code, exc.message), False
        except WirtError as exc:
            return _error(rid, "failed", str(exc)), False
        except Exception as exc:  # noqa: BLE001 -- a bug in a handler must not kill the VM
            return self._internal(rid, exc), False
        if isinstance(result, Stream):
            result.rid = rid
            return result, False
        return {"id": rid, "ok": True, **result}, False


def arg(req: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """A typed argument of a request; ControlError('bad-argument') when of the wrong type."""
    if key not in req:
        return default
    v = req[key]
    if isinstance(v, bool) and kind in (int, float, (int, float)):
        raise ControlError("bad-argument", f"\"{key}\" must be a number, not a boolean")
    if not isinstance(v, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ControlError("bad-argument", f"\"{key}\" must be of type {names}, not {type(v).__name__}")
    return v


class ControlClient:
    """Talks to one VM process's control socket (request/reply, or console streaming)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next = 1

    def connect(self) -> ControlClient:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            s.close()
            raise WirtError(f"the VM's control socket {self.path} does not answer ({exc.strerror}); "
                            "is the VM running? see `wirt ls`") from None
        except OSError as exc:
            s.close()
            raise WirtError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        self._sock = s
        return self

    def close(self) -> None:
        """Hang up. shutdown first: it wakes a thread blocked reading this socket (close alone
        does not, and the VM would not see the hang-up while that read holds the socket)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sock(self) -> socket.socket:
        assert self._sock is not None, "not connected"
        return self._sock

    def raw(self, request: dict[str, Any] | bytes) -> dict[str, Any]:
        """Send one request (a dict, or raw bytes for protocol tests) and return the reply dict."""
        data = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The server may answer before it reads (a refused uid gets "forbidden" and the
            # socket closed): that answer is waiting, and says more than the broken pipe.
            try:
                return self.read_reply()
            except WirtError:
                raise WirtError(f"control socket {self.path}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise WirtError(f"control socket {self.path}: {exc.strerror or exc}") from None
        return self.read_reply()

    def read_reply(self) -> dict[str, Any]:
        """The next reply line (also the further replies of a streamed command)."""
        try:
            while b"\n" not in self._buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise WirtError(f"the VM closed its control socket {self.path} without answering")
                self._buf += chunk
        except socket.timeout:
            raise WirtError(f"the VM did not answer on {self.path} within {self.timeout:g} s") from None
        except OSError as exc:
            raise WirtError(f"control socket {self.path}: {exc.strerror or exc}") from None
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send `cmd` and return the reply; an error reply raises WirtError with its message."""
        rid = self._next
        self._next += 1
        reply = self.raw({"id": rid, "cmd": cmd, **args})
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise WirtError(f"{cmd}: {err.get('message', 'failed')}")
        return reply

    def stream(self, cmd: str, end: str = "exit", **args: Any) -> Iterator[dict[str, Any]]:
        """Send `cmd` and yield its replies up to and including the one carrying key `end`;
        an error reply raises WirtError with its message."""
        rid = self._next
        self._next += 1
        reply = self.raw({"id": rid, "cmd": cmd, **args})
        while True:
            if not reply.get("ok"):
                err = reply.get("error") or {}
                raise WirtError(f"{cmd}: {err.get('message', 'failed')}")
            yield reply
            if end in reply:
                return
            reply = self.read_reply()

    def leftover(self) -> bytes:
        """Bytes received after the last reply (console output already in flight)."""
        data, self._buf = self._buf, b""
        return data


def call(path: Path, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """One request on a fresh connection."""
    with ControlClient(path, timeout) as c:
        return c.request(cmd, **args)
