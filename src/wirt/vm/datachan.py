"""The VM process's data socket (run/data.sock): a raw byte stream to the guest's wirt.data port.

`wirt cp` moves file data here rather than through the control socket's JSON lines: one client
at a time (a second one reads `busy`), no encoding on the host. A session:

    client connects                -> server: "ok\\n"; the port's host end opens (PORT_OPEN 1)
    client sends bytes             -> fed to the guest while the guest has the port open
    client shuts down its writing  -> the guest reads EOF once everything is delivered
    guest writes to the port       -> bytes to the client (the guest's writes block while the
                                      client is slow: back-pressure through the transmitq)
    guest closes the port          -> the server shuts down its writing: the client reads EOF
    client closes                  -> the session ends; undelivered bytes are dropped

Peers are checked with SO_PEERCRED like the control socket (wirt.vm.control).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from pathlib import Path
from typing import Any

from wirt.vm.control import close_listener, listen_private, peer_credentials

__all__ = ["DataChannel", "IN_HIGH", "OUT_HIGH"]

IN_HIGH = 1 << 20    # host -> guest bytes queued in the device before the client is read no further
OUT_HIGH = 4 << 20   # guest -> host bytes buffered before the guest's writes are held
_RECV = 256 << 10


class DataChannel:
    """Serves run/data.sock for one VirtioSerialPort (wirt.devices.virtio.serial)."""

    def __init__(self, path: Path, port: Any, allowed_uids: tuple[int, ...] | None = None) -> None:
        self.path = Path(path)
        self.port = port
        self.allowed_uids = allowed_uids if allowed_uids is not None else (os.getuid(), 0)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._out = bytearray()         # guest -> client, waiting to be sent
        self._guest_closed = False      # the guest closed the port after opening it this session
        self._guest_opened = False
        self._active = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.bytes_in = 0               # host -> guest, all sessions
        self.bytes_out = 0
        port.on_data = self._from_guest
        port.on_guest_open = self._guest_open
        port.hold = lambda: len(self._out) >= OUT_HIGH

    # ---- CPU thread (device lock held): never block --------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _from_guest(self, data: bytes) -> None:
        with self._lock:
            if not self._active:
                return  # nobody listens: dropped (the guest only writes while a client is there)
            self._out += data
        self._wake()

    def _guest_open(self, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._guest_opened = True
            elif self._guest_opened:
                self._guest_closed = True
        self._wake()

    # ---- serving ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind (0600) and accept in a daemon thread."""
        self._sock = listen_private(self.path, 4)
        threading.Thread(target=self._accept_loop, name="data-accept", daemon=True).start()

    def close(self) -> None:
        close_listener(self._sock, self.path)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="data-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            _, uid, _ = peer_credentials(conn)
            if uid not in self.allowed_uids:
                conn.sendall(b"forbidden\n")
                return
            with self._lock:
                if self._busy:
                    conn.sendall(b"busy\n")
                    return
                self._busy = True
            try:
                self._session(conn)
            finally:
                with self._lock:
                    self._active = False
                    self._out.clear()
                    self._busy = False
                self.port.host_close(discard=True)
                self.port.resume_output()  # a guest writer held for this client may go on (and is dropped)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        with self._lock:
            self._out.clear()
            self._guest_closed = False
            self._guest_opened = bool(self.port.guest_open)
            self._active = True
        self.port.host_connect()
        conn.sendall(b"ok\n")
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        poller = select.poll()
        hup = select.POLLHUP | select.POLLERR  # POLLHUP: the client closed, or both sides shut down
        reading, eof_sent = True, False
        poller.register(self._wake_r, select.POLLIN)
        while True:
            throttled = reading and self.port.pending_input() >= IN_HIGH
            with self._lock:
                pending_out = len(self._out)
                closed = self._guest_closed
            mask = hup
            if reading and not throttled:
                mask |= select.POLLIN
            if pending_out:
                mask |= select.POLLOUT
            if closed and not pending_out and not eof_sent:
                conn.shutdown(socket.SHUT_WR)  # the guest closed the port: EOF to the client
                eof_sent = True
            poller.register(conn, mask)
            events = poller.poll(5 if throttled else 1000)
            for fd, ev in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 4096):
                            pass
                    continue
                if ev & select.POLLIN:
                    data = conn.recv(_RECV)
                    if not data:
                        reading = False
                        self.port.host_close()  # EOF to the guest once delivered
                    else:
                        self.bytes_in += len(data)
                        self.port.feed(data)
                if ev & select.POLLOUT:
                    with self._lock:
                        chunk = bytes(self._out[:_RECV])
                    try:
                        n = conn.send(chunk)
                    except BlockingIOError:
                        n = 0
                    with self._lock:
                        del self._out[:n]
                        left = len(self._out)
                    self.bytes_out += n
                    if left < OUT_HIGH // 2:
                        self.port.resume_output()
                if ev & select.POLLHUP or (ev & select.POLLERR):
                    return  # the client closed the connection
