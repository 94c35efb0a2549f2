"""Ethernet frames over a stream socket, framed as QEMU's stream netdev does.

Each frame is preceded by its length as a 4-byte big-endian integer. passt speaks this on its
Unix socket, and wirt's socket hub and point-to-point links use the same framing.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Callable

from wirt.netback.base import MAX_FRAME, Deliver, NetBackend
from wirt.netback.loop import EventLoop

__all__ = ["FrameDecoder", "FrameError", "encode_frame", "StreamLink", "StreamBackend"]

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
#: Bytes taken from the socket per read: up to 16 frames of 64 KiB, delivered together.
READ_SIZE = 1 << 20
#: Most buffers one sendmsg takes (Linux UIO_MAXIOV).
IOV_MAX = 1024
#: Output bytes queued per connection before new frames are dropped (a stuck peer).
MAX_QUEUED = 4 << 20


class FrameError(Exception):
    """The peer sent a length that no Ethernet frame has."""


def encode_frame(frame: bytes) -> bytes:
    """The frame with its 4-byte big-endian length prefix."""
    return _LEN.pack(len(frame)) + frame


class FrameDecoder:
    """Turns a byte stream back into frames."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Frames completed by `data`, each copied once out of it; FrameError for an impossible length."""
        if self._buf:
            self._buf += data
            data = bytes(self._buf)  # rare: a frame was split across reads
            self._buf.clear()
        view = memoryview(data)
        end = len(view)
        frames: list[bytes] = []
        pos = 0
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(view, pos)
            if n > self.max_frame:
                raise FrameError(f"frame length {n} exceeds {self.max_frame}")
            if end - pos - 4 < n:
                break
            if n:
                frames.append(bytes(view[pos + 4: pos + 4 + n]))
            pos += 4 + n
        if pos < end:
            self._buf += view[pos:]
        return frames


class StreamLink:
    """One framed, non-blocking stream socket served by an EventLoop.

    `send()` may be called from any thread: it queues the frame (dropping it when more than
    MAX_QUEUED bytes wait) and writes what the socket takes at once; the loop writes the rest.
    """

    def __init__(self, sock: socket.socket, loop: EventLoop, on_frame: Deliver,
                 on_close: Callable[[StreamLink], None] | None = None,
                 on_frames: Callable[[list[bytes]], None] | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = loop
        self.on_frame = on_frame
        self.on_frames = on_frames  # when set: every frame of one read in one call
        self.on_close = on_close
        self.decoder = FrameDecoder()
        self._out = bytearray()
        self._lock = threading.Lock()
        self.closed = False
        self.dropped = 0
        self._rbuf: bytearray | None = None  # reused for every read (allocated on the first)

    def fileno(self) -> int:
        return -1 if self.closed else self.sock.fileno()

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False if it was dropped (closed link or stuck peer)."""
        data = encode_frame(frame)
        with self._lock:
            if self.closed or len(self._out) + len(data) > MAX_QUEUED:
                self.dropped += 1
                return False
            self._out += data
            try:
                self._flush_locked()
            except OSError:
                pass  # the loop sees the error on its next read and closes the link
            pending = bool(self._out)
        if pending:
            self.loop.wake()
        return True

    def send_many(self, frames: list[bytes]) -> int:
        """Queue several frames and write them with one system call (straight from the frames,
        no copy into the output buffer unless the socket takes only part); returns how many were dropped."""
        dropped = 0
        with self._lock:
            out = self._out
            iov: list[bytes] = []
            size = len(out)
            for frame in frames:
                if self.closed or size + len(frame) + 4 > MAX_QUEUED:
                    dropped += 1
                    continue
                iov += (_LEN.pack(len(frame)), frame)
                size += len(frame) + 4
            self.dropped += dropped
            try:
                if not out:
                    self._send_direct_locked(iov)
                else:
                    for part in iov:
                        out += part
                    self._flush_locked()
            except OSError:
                pass  # the loop sees the error on its next read and closes the link
            pending = bool(out)
        if pending:
            self.loop.wake()
        return dropped

    def _send_direct_locked(self, iov: list[bytes]) -> None:
        """sendmsg the buffers; whatever the socket does not take goes to the output buffer."""
        i = 0
        while i < len(iov):
            chunk = iov[i: i + IOV_MAX]
            try:
                n = self.sock.sendmsg(chunk)
            except (BlockingIOError, InterruptedError):
                n = 0
            for part in chunk:
                if n >= len(part):
                    n -= len(part)
                    i += 1
                    continue
                self._out += memoryview(part)[n:]  # the unsent rest waits for the loop
                i += 1
                for rest in iov[i:]:
                    self._out += rest
                return

    def _flush_locked(self) -> None:
        while self._out:
            try:
                n = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return
            del self._out[:n]

    def wants_write(self) -> bool:
        return bool(self._out)

    def on_write(self) -> None:
        with self._lock:
            self._flush_locked()

    def on_read(self) -> None:
        if self._rbuf is None:
            self._rbuf = bytearray(READ_SIZE)
        try:
            n = self.sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return
        if not n:
            raise ConnectionResetError("peer closed the connection")
        frames = self.decoder.feed(memoryview(self._rbuf)[:n])
        if self.on_frames is not None:
            if frames:
                self.on_frames(frames)
            return
        for frame in frames:
            self.on_frame(frame)

    def on_error(self, exc: BaseException) -> None:
        self.close()
        if self.on_close is not None:
            self.on_close(self)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._out.clear()
        self.loop.remove(self)
        try:
            self.sock.close()
        except OSError:
            pass


class StreamBackend(NetBackend):
    """A backend over one already connected stream socket (passt, socket hub, peer)."""

    def __init__(self, sock: socket.socket, name: str = "wirt-net") -> None:
        self._sock = sock
        self._loop = EventLoop(name)
        self._link: StreamLink | None = None
        self.closed = False

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed

    def start(self, deliver: Deliver) -> None:
        self._link = StreamLink(self._sock, self._loop, deliver, self._link_closed)
        self._loop.add(self._link)
        self._loop.start()

    def start_many(self, deliver_many: Callable[[list[bytes]], None]) -> None:
        """Start receiving; the frames of each read reach `deliver_many` together."""
        self._link = StreamLink(self._sock, self._loop, lambda f: deliver_many([f]), self._link_closed,
                                on_frames=deliver_many)
        self._loop.add(self._link)
        self._loop.start()

    def _link_closed(self, link: StreamLink) -> None:
        log.warning("network backend: connection closed by peer")

    def send(self, frame: bytes) -> None:
        link = self._link
        if link is not None:
            link.send(frame)

    def send_many(self, frames: list[bytes]) -> None:
        link = self._link
        if link is not None:
            link.send_many(frames)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._link is not None:
            self._link.close()
        else:
            self._sock.close()
        self._loop.stop()
