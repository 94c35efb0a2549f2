"""virtio-console (virtio 1.2 §5.3) with a single port: a byte stream between host and guest.

Used as a guest-agent channel (Linux: /dev/hvc0). No features are offered (no MULTIPORT, SIZE
or EMERG_WRITE), so queue 0 is port 0's receiveq (host → guest) and queue 1 its transmitq
(guest → host) (§5.3.2).

Host side: `feed(data)` from any thread queues input, which is delivered as soon as the guest
has receive buffers (never dropped while waiting); every chunk the guest writes is passed to
`on_output(data)`, called on the CPU thread with the device lock held.
"""

from __future__ import annotations

import base64
from typing import Any, Callable

from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.spec import ID_CONSOLE
from wirt.devices.virtio.virtqueue import Virtqueue, gather, scatter

__all__ = ["VirtioConsole"]

RECEIVEQ = 0
TRANSMITQ = 1


class VirtioConsole(VirtioDevice):
    """A single-port virtio console."""

    device_id = ID_CONSOLE
    queue_sizes = (64, 64)

    def __init__(self, on_output: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.on_output = on_output
        self._input = bytearray()

    def config(self) -> bytes:
        # §5.3.4: cols, rows, max_nr_ports, emerg_wr; only meaningful with features we do not offer.
        return bytes(12)

    # ---- host → guest ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue bytes for the guest (thread-safe); delivered when receive buffers exist."""
        transport = self.transport
        assert transport is not None, "attach the console to a VirtioMmio first"
        if not data:
            return
        with transport.lock:
            self._input += data
            transport.run_guarded(self._deliver)

    def pending_input(self) -> int:
        """Host bytes the guest has not received yet."""
        return len(self._input)

    def _deliver(self) -> None:
        transport = self.transport
        assert transport is not None
        q = self.queue(RECEIVEQ)
        if not self._input or not transport.driver_ok or not q.ready:
            return
        while self._input and (chain := q.pop()) is not None:
            n = scatter(chain.writable, self._input)
            del self._input[:n]
            q.push(chain.head, n)
        transport.notify_used(q)

    # ---- guest → host ---------------------------------------------------------------------------

    def queue_notify(self, queue: Virtqueue) -> None:
        assert self.transport is not None
        if queue.index == RECEIVEQ:
            self._deliver()  # the guest added receive buffers
            return
        while (chain := queue.pop()) is not None:
            data = gather(chain.readable)
            queue.push(chain.head, 0)
            if data and self.on_output is not None:
                self.on_output(data)
        self.transport.notify_used(queue)

    def driver_ok(self) -> None:
        self._deliver()

    # Input not yet delivered survives a guest reset (like bytes still on the wire).

    def state(self) -> dict[str, Any]:
        return {"input": base64.b64encode(bytes(self._input)).decode("ascii")}

    def load_state(self, d: dict[str, Any]) -> None:
        self._input = bytearray(base64.b64decode(d.get("input", "")))
