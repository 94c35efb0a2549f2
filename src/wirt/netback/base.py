"""The frame interface every network backend implements.

A backend is one end of an Ethernet link. The NIC model hands it outgoing frames with
`send(frame)`; incoming frames are passed to the `deliver` callback given to `start()`, on the
backend's own I/O thread. `close()` stops the thread and releases the host resources.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

__all__ = ["NetBackend", "Deliver", "MAX_FRAME"]

Deliver = Callable[[bytes], None]

#: Largest Ethernet frame accepted from a peer (passt's 65520-byte MTU plus headers fits).
MAX_FRAME = 65536 + 64


class NetBackend(ABC):
    """One end of an Ethernet link (user-mode via passt, tap, socket)."""

    #: Largest MTU the link carries; the NIC offers it to the guest (virtio-net VIRTIO_NET_F_MTU).
    mtu: int = 1500

    @abstractmethod
    def start(self, deliver: Deliver) -> None:
        """Start receiving; every incoming frame is passed to `deliver` on the backend thread."""

    @abstractmethod
    def send(self, frame: bytes | memoryview) -> None:
        """Send one Ethernet frame, any read-only bytes-like object (never blocks for long;
        drops when the peer is stuck)."""

    def start_many(self, deliver_many: Callable[[list[bytes]], None]) -> None:
        """Start receiving, handing over the frames that arrive together in one call (so the NIC
        can deliver them with one interrupt); by default one frame a call."""
        self.start(lambda frame: deliver_many([frame]))

    def send_many(self, frames: list[bytes | memoryview]) -> None:
        """Send several frames in order (stream backends: each frame in a write of its own,
        straight from the frame)."""
        for frame in frames:
            self.send(frame)

    def wait_drained(self, timeout: float) -> bool:
        """Wait while many frames sent are still queued for the peer (False: `timeout` seconds
        passed), so a sender that can wait backs up instead of frames being dropped; a backend
        that queues nothing returns at once."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Stop the I/O thread and release sockets, devices and helper processes."""

    def __enter__(self) -> NetBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
