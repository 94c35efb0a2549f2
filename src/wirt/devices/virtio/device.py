"""The device-type side of a virtio device (blk, net, console, rng), independent of the transport.

A `VirtioDevice` declares its device ID, its feature bits, its queues and its configuration
space, and handles queue notifications. The transport (`VirtioMmio`) owns the registers, the
status state machine and the queues, and calls back into the device; what a device may use
of it is the `Transport` protocol below (so this module needs no import of the transport's).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable, Protocol

from wirt.devices.virtio.spec import F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, bit

if TYPE_CHECKING:
    from wirt.devices.virtio.virtqueue import Virtqueue

__all__ = ["VirtioDevice", "Transport", "COMMON_FEATURES"]

#: Features every wirt device offers: the modern interface and the ring features that
#: `virtqueue.py` implements (§6).
COMMON_FEATURES = bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX)


class Transport(Protocol):
    """What a device type uses of the transport that owns it (`VirtioMmio` in mmio.py)."""

    #: The device lock (re-entrant): held around every register access and every use of a queue.
    lock: AbstractContextManager[Any]
    queues: list[Virtqueue]
    driver_features: int

    @property
    def driver_ok(self) -> bool:
        """DRIVER_OK is set and the device has not failed: queues may be used."""
        ...

    def run_guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` under the device lock, a guest error marking the device DEVICE_NEEDS_RESET."""
        ...

    def notify_used(self, queue: Virtqueue) -> None:
        """After pushing used buffers: interrupt the driver unless it suppressed it."""
        ...

    def config_changed(self) -> None:
        """The configuration space changed: new generation and a configuration interrupt."""
        ...


class VirtioDevice:
    """Base class for device types. Subclasses set `device_id` and `queue_sizes`."""

    device_id: int = 0
    #: Maximum size of each queue, one entry per queue (index = queue number).
    queue_sizes: tuple[int, ...] = ()

    def __init__(self) -> None:
        self.transport: Transport | None = None

    # ---- what the transport asks ---------------------------------------------------------

    def features(self) -> int:
        """Feature bits offered to the driver (device-type bits plus COMMON_FEATURES)."""
        return COMMON_FEATURES

    def config(self) -> bytes:
        """The device-specific configuration space, little-endian (§4.2.2 offset 0x100)."""
        return b""

    def write_config(self, offset: int, data: bytes) -> None:
        """A driver write into configuration space; read-only by default."""

    def attach(self, transport: Transport) -> None:
        """Called once by the transport that owns this device."""
        self.transport = transport

    def queue_notify(self, queue: Virtqueue) -> None:
        """The driver notified `queue` (called with the device lock held, after DRIVER_OK)."""

    def driver_ok(self) -> None:
        """The driver set DRIVER_OK: the device may now use its queues (called with the lock held)."""

    def reset(self) -> None:
        """The driver reset the device (status 0); drop per-session state (lock held)."""

    def close(self) -> None:
        """Release host resources (backends, threads)."""

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, d: dict[str, Any]) -> None:
        pass

    # ---- helpers for subclasses --------------------------------------------------------------

    def queue(self, index: int) -> Virtqueue:
        assert self.transport is not None, "device is not attached to a transport"
        return self.transport.queues[index]

    def negotiated(self, feature_bit: int) -> bool:
        """Whether the driver accepted feature bit `feature_bit`."""
        return self.transport is not None and bool(self.transport.driver_features >> feature_bit & 1)
