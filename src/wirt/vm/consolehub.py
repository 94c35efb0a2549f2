"""The VM process's side of the guest console: log file, a ring buffer of recent output, and any
number of attached clients (`wirt console` connections on the control socket).

Guest output goes to the console log (the process's stdout, run/console.log), into the ring
buffer (replayed to a client when it attaches, and kept for crash reports) and to every
attached client. A client that does not keep up (its socket buffer is full for 1 s) is
dropped rather than slowing the guest down.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable

__all__ = ["ConsoleHub"]

RING = 64 << 10


class ConsoleHub:
    def __init__(self, log_fd: int | None, feed: Callable[[bytes], None] | None = None) -> None:
        self.log_fd = log_fd
        self.feed = feed  # guest console input; set once the machine exists
        self._ring = bytearray()
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.bytes_out = 0

    def output(self, data: bytes) -> None:
        """Guest output (called on the machine's thread)."""
        if self.log_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.log_fd, data)
        with self._lock:
            self.bytes_out += len(data)
            self._ring += data
            if len(self._ring) > RING:
                del self._ring[: len(self._ring) - RING]
            clients = list(self._clients)
        for c in clients:
            try:
                c.sendall(data)
            except OSError:
                self._drop(c)

    def tail(self, lines: int = 20) -> str:
        """The last `lines` lines of console output, as text."""
        with self._lock:
            text = bytes(self._ring).decode("utf-8", "replace").replace("\r\n", "\n")
        return "\n".join(text.splitlines()[-lines:])

    def _drop(self, c: socket.socket) -> None:
        with self._lock:
            self._clients.discard(c)
        with contextlib.suppress(OSError):
            c.shutdown(socket.SHUT_RDWR)

    def attach(self, conn: socket.socket, initial: bytes = b"") -> None:
        """Serve one client: replay recent output, then stream both ways until it disconnects."""
        conn.settimeout(1.0)  # bounds a send to a stuck client (then it is dropped)
        with self._lock:
            backlog = bytes(self._ring[-4096:])
            self._clients.add(conn)
        try:
            with contextlib.suppress(OSError):
                conn.sendall(backlog)
            if initial and self.feed:
                self.feed(initial)
            while conn in self._clients:
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                if self.feed:
                    self.feed(data)
        finally:
            self._drop(conn)

    def close_all(self) -> None:
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            self._drop(c)
