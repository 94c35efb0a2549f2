"""Ethernet frames over a stream socket, framed as QEMU's stream netdev does.

Each frame is preceded by its length as a 4-byte big-endian integer. passt speaks this on its
Unix socket, and wirt's socket hub and point-to-point links use the same framing.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections import deque
from typing import Callable

from wirt.netback.base import MAX_FRAME, Deliver, NetBackend
from wirt.netback.loop import EventLoop

__all__ = ["FrameDecoder", "FrameError", "encode_frame", "StreamLink", "StreamBackend"]

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
#: Bytes taken from the socket per read: up to 16 frames of 64 KiB, delivered together.
READ_SIZE = 1 << 20
#: Output bytes queued per connection before new frames are dropped (a stuck peer).
MAX_QUEUED = 4 << 20
#: Output bytes queued above which `wait_drained` holds a producer that can wait (virtio-net's
#: transmit thread), and below which it lets it go on: the guest's ring backs up instead of
#: frames being dropped, as a NIC's does when its link is busy.
DRAIN_HIGH = 1 << 20
DRAIN_LOW = 256 << 10


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

    `send()` may be called from any thread: it writes what the socket takes at once and queues
    the rest (dropping new frames when more than MAX_QUEUED bytes wait); the loop writes the
    queue as the socket drains.

    Each frame goes out with its length prefix in a write of its own, never packed with the next
    one, as QEMU's stream netdev writes them. The peer's reads then end at a frame's end or
    inside one frame whose rest is one more buffer of the socket away. passt up to its
    2023 releases needs this: when a read ends inside a frame it reads the rest with one
    more recv and, if that comes back short, drops every frame of the read and loses the
    stream's framing (`tap_handler_passt`), and it drops a length prefix the read cut. With
    frames packed back to back in one write, such cuts fell inside the upload's frames and the
    guest's TCP sat out its 200 and 400 ms retransmission timeouts (docs/network.md, "Seventh
    round"). A frame of 64 KiB fills at most two of a Unix socket's buffers (about 36 KiB each
    on Linux), so even a write the full socket takes only part of leaves one buffer's worth.
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
        # Frames waiting for the socket, oldest first: each the buffers of one write (length
        # prefix and frame, or the part of them a write left), and the bytes they hold.
        self._out: deque[list[bytes | memoryview]] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)  # notified as the queue shrinks
        self.closed = False
        self.dropped = 0
        self._rbuf: bytearray | None = None  # reused for every read (allocated on the first)

    def fileno(self) -> int:
        return -1 if self.closed else self.sock.fileno()

    def send(self, frame: bytes | memoryview) -> bool:
        """Queue one frame; False if it was dropped (closed link or stuck peer)."""
        return not self.send_many([frame])

    def send_many(self, frames: list[bytes | memoryview]) -> int:
        """Send frames in order, each in a write of its own straight from the frame (no copy),
        queueing what the socket does not take; returns how many were dropped."""
        dropped = 0
        with self._lock:
            for i, frame in enumerate(frames):
                if self.closed or self._queued + len(frame) + 4 > MAX_QUEUED:
                    dropped += 1
                    continue
                bufs: list[bytes | memoryview] = [_LEN.pack(len(frame)), frame]
                if self._out:  # earlier frames wait: this one goes after them
                    self._out.append(bufs)
                    self._queued += len(frame) + 4
                    continue
                try:
                    rest = self._write(bufs)
                except OSError:  # the loop sees the error on its next read and closes the link
                    dropped += len(frames) - i
                    break
                if rest:  # the socket is full: the rest of this frame waits, first in line
                    self._out.append(rest)
                    self._queued += sum(len(b) for b in rest)
            self.dropped += dropped
            pending = bool(self._out)
        if pending:
            self.loop.wake()
        return dropped

    def _write(self, bufs: list[bytes | memoryview]) -> list[bytes | memoryview]:
        """One write of one frame's buffers; the part the socket did not take (empty: all)."""
        try:
            n = self.sock.sendmsg(bufs)
        except (BlockingIOError, InterruptedError):
            n = 0
        rest: list[bytes | memoryview] = []
        for b in bufs:
            if n >= len(b):
                n -= len(b)
            else:
                rest.append(memoryview(b)[n:] if n else b)
                n = 0
        return rest

    def _flush_locked(self) -> None:
        out = self._out
        before = self._queued
        while out:
            size = sum(len(b) for b in out[0])
            rest = self._write(out[0])
            self._queued -= size - sum(len(b) for b in rest)
            if rest:
                out[0] = rest
                break
            out.popleft()
        if self._queued < DRAIN_LOW <= before:
            self._drained.notify_all()

    def wait_drained(self, timeout: float) -> bool:
        """If more than DRAIN_HIGH bytes wait for the socket, wait until under DRAIN_LOW do (or
        the link closes); False if `timeout` seconds passed first."""
        with self._lock:
            if self._queued <= DRAIN_HIGH:
                return True
            return self._drained.wait_for(lambda: self.closed or self._queued < DRAIN_LOW, timeout)

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
            self._queued = 0
            self._drained.notify_all()
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

    def send(self, frame: bytes | memoryview) -> None:
        link = self._link
        if link is not None:
            link.send(frame)

    def send_many(self, frames: list[bytes | memoryview]) -> None:
        link = self._link
        if link is not None:
            link.send_many(frames)

    def wait_drained(self, timeout: float) -> bool:
        link = self._link
        return link.wait_drained(timeout) if link is not None else True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._link is not None:
            self._link.close()
        else:
            self._sock.close()
        self._loop.stop()
