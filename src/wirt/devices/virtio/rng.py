"""virtio-rng / entropy device (virtio 1.2 §5.4): fills the driver's buffers from os.urandom."""

from __future__ import annotations

import os

from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.spec import ID_RNG
from wirt.devices.virtio.virtqueue import Virtqueue, scatter

__all__ = ["VirtioRng"]

#: Bytes served per request at most; §5.4.6.1 lets the device fill less than offered, and this
#: bounds the host memory a single request can ask for.
MAX_REQUEST = 64 * 1024


class VirtioRng(VirtioDevice):
    """An entropy source with one request queue (§5.4.2), no features, no config (§5.4.3-4)."""

    device_id = ID_RNG
    queue_sizes = (64,)

    def queue_notify(self, queue: Virtqueue) -> None:
        assert self.transport is not None
        while (chain := queue.pop()) is not None:
            n = min(chain.write_len, MAX_REQUEST)
            queue.push(chain.head, scatter(chain.writable, os.urandom(n)))
        self.transport.notify_used(queue)
