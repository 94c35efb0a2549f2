"""Connecting VMs on one host to each other over Unix stream sockets (4-byte length framing).

- `SocketHub(path)`: a virtual Ethernet hub. It listens on `path`; every frame a member sends
  is forwarded to all other members. Run it in-process (a daemon thread) or as its own process
  (`python -m wirt.netback.socket PATH`).
- `connect_socket(path)`: join a hub, or connect to a peer that listens.
- `listen_socket(path)`: point-to-point; wait for one peer to connect at `path`.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
import threading

from wirt.errors import WirtError
from wirt.netback.base import Deliver, NetBackend
from wirt.netback.loop import EventLoop
from wirt.netback.stream import StreamBackend, StreamLink

__all__ = ["SocketHub", "connect_socket", "listen_socket"]

log = logging.getLogger(__name__)


def _bind_unix(path: str) -> socket.socket:
    """A listening Unix socket at `path`, replacing a stale socket file but nothing else."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # nobody listens: a leftover from a process that died
            else:
                raise WirtError(f"{path}: another process is already listening there")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise WirtError(f"{path}: cannot listen: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        raise WirtError(f"{path}: no such socket; start the hub or the listening VM first") from None
    except ConnectionRefusedError:
        sock.close()
        raise WirtError(f"{path}: connection refused; nothing is listening there any more") from None
    except PermissionError:
        sock.close()
        raise WirtError(f"{path}: permission denied") from None
    return sock


class _Acceptor:
    """EventLoop handler for a listening socket."""

    def __init__(self, sock: socket.socket, on_accept) -> None:  # type: ignore[no-untyped-def]
        self.sock = sock
        self.on_accept = on_accept

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_read(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.on_accept(conn)

    def on_write(self) -> None:
        pass

    def wants_write(self) -> bool:
        return False

    def on_error(self, exc: BaseException) -> None:
        log.warning("socket listener failed: %s", exc)


class SocketHub:
    """A hub: forwards every frame from one member to all the others."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._listener = _bind_unix(self.path)
        self._loop = EventLoop(f"wirt-hub {self.path}")
        self._members: list[StreamLink] = []
        self._lock = threading.Lock()
        self._loop.add(_Acceptor(self._listener, self._accept))
        self._loop.start()

    @property
    def members(self) -> int:
        with self._lock:
            return len(self._members)

    def _accept(self, conn: socket.socket) -> None:
        link = StreamLink(conn, self._loop, lambda f: None, self._gone)
        link.on_frame = lambda frame, src=link: self._forward(src, frame)
        with self._lock:
            self._members.append(link)
        self._loop.add(link)

    def _gone(self, link: StreamLink) -> None:
        with self._lock:
            if link in self._members:
                self._members.remove(link)

    def _forward(self, src: StreamLink, frame: bytes) -> None:
        with self._lock:
            others = [m for m in self._members if m is not src]
        for m in others:
            m.send(frame)

    def close(self) -> None:
        """Disconnect every member, stop the thread and remove the socket file."""
        with self._lock:
            members, self._members = self._members, []
        for m in members:
            m.close()
        self._loop.stop()
        self._listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> SocketHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_socket(path: str | os.PathLike[str]) -> NetBackend:
    """A backend connected to a hub or a listening peer at `path`."""
    return StreamBackend(_connect_unix(os.fspath(path)), name=f"wirt-net {os.fspath(path)}")


def listen_socket(path: str | os.PathLike[str]) -> NetBackend:
    """A backend listening at `path` for one peer (a new peer replaces one that went away)."""
    return _ListeningBackend(os.fspath(path))


class _ListeningBackend(NetBackend):
    """The listening end of a point-to-point link: one peer at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._listener = _bind_unix(path)
        self._loop = EventLoop(f"wirt-net listen {path}")
        self._peer: StreamLink | None = None
        self._deliver: Deliver = lambda f: None
        self._lock = threading.Lock()
        self.closed = False

    @property
    def connected(self) -> bool:
        peer = self._peer
        return peer is not None and not peer.closed

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._loop.add(_Acceptor(self._listener, self._accept))
        self._loop.start()

    def _accept(self, conn: socket.socket) -> None:
        with self._lock:
            if self._peer is not None and not self._peer.closed:
                conn.close()  # point-to-point: one peer
                return
            self._peer = StreamLink(conn, self._loop, self._deliver)
            self._loop.add(self._peer)

    def send(self, frame: bytes) -> None:
        peer = self._peer
        if peer is not None:
            peer.send(frame)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._peer is not None:
            self._peer.close()
        self._loop.stop()
        self._listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Run a hub in the foreground: `python -m wirt.netback.socket PATH`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m wirt.netback.socket SOCKET-PATH", file=sys.stderr)
        return 2
    try:
        hub = SocketHub(args[0])
    except WirtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
