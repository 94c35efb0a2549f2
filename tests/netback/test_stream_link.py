"""StreamLink's output: every frame in a write of its own, in order, across a full socket.

A SOCK_SEQPACKET socket pair keeps each write a record of its own on the reading side, so the
reader sees exactly how the link cut its writes (passt 2023 loses frames that share a write
with the next one, see StreamLink's docstring).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from wirt.netback.loop import EventLoop
from wirt.netback.stream import MAX_QUEUED, FrameDecoder, StreamLink


def _frames(n: int, size: int = 1000) -> list[bytes]:
    return [bytes([i & 0xFF]) * (size + i % 7) + struct.pack(">I", i) for i in range(n)]


@contextmanager
def _linked(kind: int, sndbuf: int | None = None) -> Iterator[tuple[StreamLink, socket.socket]]:
    """A StreamLink on one end of a Unix socket pair (served by its loop), and the other end."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    if sndbuf is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    loop = EventLoop("test-stream-link")
    link = StreamLink(ours, loop, on_frame=lambda f: None)
    loop.add(link)
    loop.start()
    try:
        yield link, theirs
    finally:
        link.close()
        loop.stop()
        theirs.close()


def _records(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    sock.settimeout(timeout)
    return [sock.recv(1 << 17) for _ in range(count)]


def _records_of(frames: list[bytes]) -> list[bytes]:
    return [struct.pack(">I", len(f)) + f for f in frames]


def test_each_frame_is_one_write() -> None:
    with _linked(socket.SOCK_SEQPACKET) as (link, theirs):
        frames = _frames(40)
        assert link.send_many(frames[:30]) == 0
        for f in frames[30:]:
            assert link.send(memoryview(f))
        assert _records(theirs, len(frames)) == _records_of(frames)


def test_frames_queued_behind_a_full_socket_still_go_one_per_write() -> None:
    with _linked(socket.SOCK_SEQPACKET, sndbuf=16384) as (link, theirs):
        frames = _frames(300, size=3000)  # far more than the socket holds: most wait in the queue
        assert link.send_many(frames) == 0
        assert link.wants_write()
        # the loop writes the rest as the reader drains
        assert _records(theirs, len(frames)) == _records_of(frames)
        deadline = time.monotonic() + 10  # the loop thread may still be returning from its last write
        while link.wants_write():
            assert time.monotonic() < deadline, "the queue never emptied"
            time.sleep(0.001)


def test_partial_writes_keep_the_stream_whole_and_in_order() -> None:
    """On a stream socket a full buffer takes part of a frame; the rest goes first later."""
    frames = _frames(200, size=60000)
    got: list[bytes] = []
    with _linked(socket.SOCK_STREAM, sndbuf=32768) as (link, theirs):
        def reader() -> None:
            dec = FrameDecoder()
            theirs.settimeout(10)
            time.sleep(0.2)  # let the sender fill the socket and queue the rest first
            while len(got) < len(frames) and (data := theirs.recv(1 << 16)):
                got.extend(dec.feed(data))

        t = threading.Thread(target=reader)
        t.start()
        dropped = 0
        for i in range(0, len(frames), 10):
            dropped += link.send_many(frames[i:i + 10])
            while link._queued > MAX_QUEUED // 2:  # stay under the drop limit: every frame counts
                time.sleep(0.01)
        t.join(20)
        assert dropped == 0
        assert got == frames


def test_frames_beyond_the_queue_limit_are_dropped() -> None:
    with _linked(socket.SOCK_SEQPACKET, sndbuf=16384) as (link, theirs):
        frames = _frames(MAX_QUEUED // 3000 + 20, size=3000)
        dropped = link.send_many(frames)  # the socket holds a few; the queue stops at its limit
        assert 0 < dropped <= 20
        assert link.dropped == dropped
        assert link._queued <= MAX_QUEUED
        kept = len(frames) - dropped
        assert _records(theirs, kept) == _records_of(frames[:kept])


@pytest.mark.parametrize("n", [0, 1, 5])
def test_closed_link_drops(n: int) -> None:
    with _linked(socket.SOCK_SEQPACKET) as (link, _):
        link.close()
        assert link.send_many(_frames(n)) == n


def test_wait_drained_holds_while_the_backlog_is_high() -> None:
    from wirt.netback.stream import DRAIN_HIGH

    with _linked(socket.SOCK_SEQPACKET, sndbuf=16384) as (link, theirs):
        assert link.wait_drained(0.0)  # nothing queued: no wait
        frames = _frames(DRAIN_HIGH // 3000 + 50, size=3000)
        assert link.send_many(frames) == 0
        assert not link.wait_drained(0.05)  # nobody reads: still above the mark
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.extend(_records(theirs, len(frames))))
        reader.start()
        assert link.wait_drained(10)
        reader.join(10)
        assert got == _records_of(frames)
