"""virtio-console with MULTIPORT (virtio 1.2 §5.3.6.2): one named, generic (non-console) port.

Linux shows the port as a character device /dev/vportNp0 whose name ("wirt.data") is in
/sys/class/virtio-ports/vportNp0/name. Unlike a console port (hvc, a tty), it has no line
discipline and moves whole buffers per system call, and both ends say when they open and close
it (PORT_OPEN control messages), which gives the byte stream its framing:

- the guest may open the port only once at a time; while the guest has it closed, the host
  sends nothing (Linux drops data arriving on a closed port);
- a guest read returns end-of-file once the data is used up and the host is not connected, so
  `host_close()` after the last byte is the guest's EOF;
- the guest closing the port (`on_guest_open(False)`) is the host's EOF.

Queues (§5.3.2 with MULTIPORT): 0/1 port 0's receiveq/transmitq, 2/3 the control receiveq
(device → driver) and transmitq (driver → device). Host side: `feed()` from any thread;
`on_data(bytes)` and `on_guest_open(bool)` run on the CPU thread with the device lock held.
While `hold()` returns true the device takes nothing from the transmitq, so a guest writer
blocks until `resume_output()`: back-pressure for a slow reader on the host.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.spec import ID_CONSOLE
from wirt.devices.virtio.virtqueue import Virtqueue, gather, scatter

__all__ = ["VirtioSerialPort", "PORT_NAME"]

F_MULTIPORT = 1  # §5.3.3 VIRTIO_CONSOLE_F_MULTIPORT

RECEIVEQ, TRANSMITQ, CONTROL_RX, CONTROL_TX = 0, 1, 2, 3
# §5.3.6.2 control events
DEVICE_READY, DEVICE_ADD, DEVICE_REMOVE, PORT_READY, CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME_EV = range(8)
_CTRL = struct.Struct("<IHH")  # struct virtio_console_control: id, event, value

PORT_NAME = "wirt.data"
KICK_BATCH = 16  # receive buffers the driver returns per notification while input is waiting


class VirtioSerialPort(VirtioDevice):
    """A MULTIPORT virtio-console with a single generic port 0 called `name`."""

    device_id = ID_CONSOLE
    queue_sizes = (64, 64, 16, 16)

    def __init__(self, name: str = PORT_NAME, on_data: Callable[[bytes], None] | None = None,
                 on_guest_open: Callable[[bool], None] | None = None,
                 hold: Callable[[], bool] | None = None) -> None:
        super().__init__()
        self.name = name
        self.on_data = on_data
        self.on_guest_open = on_guest_open
        self.hold = hold
        self._input = bytearray()
        self._control: list[bytes] = []     # device → driver messages waiting for buffers
        self.guest_open = False
        self.host_open = False
        self._eof_pending = False

    def features(self) -> int:
        return super().features() | 1 << F_MULTIPORT

    def config(self) -> bytes:
        # §5.3.4: cols, rows, max_nr_ports, emerg_wr
        return struct.pack("<HHII", 0, 0, 1, 0)

    # ---- control messages ----------------------------------------------------------------------

    def _send_control(self, event: int, value: int, extra: bytes = b"") -> None:
        self._control.append(_CTRL.pack(0, event, value) + extra)
        self._deliver_control()

    def _deliver_control(self) -> None:
        assert self.transport is not None
        q = self.queue(CONTROL_RX)
        if not self._control or not self.transport.driver_ok or not q.ready:
            return
        while self._control and (chain := q.pop()) is not None:
            n = scatter(chain.writable, self._control.pop(0))
            q.push(chain.head, n)
        self.transport.notify_used(q)

    def _driver_message(self, data: bytes) -> None:
        if len(data) < _CTRL.size:
            return
        port, event, value = _CTRL.unpack_from(data)
        if event == DEVICE_READY and value == 1:
            self._send_control(DEVICE_ADD, 0)
        elif event == PORT_READY and port == 0 and value == 1:
            self._send_control(PORT_NAME_EV, 0, self.name.encode())
            if self.host_open:
                self._send_control(PORT_OPEN, 1)
        elif event == PORT_OPEN and port == 0:
            self.guest_open = bool(value)
            if not self.guest_open:
                self._input.clear()  # the guest dropped what it had not read; the rest is moot
            else:
                self._deliver()
            if self.on_guest_open is not None:
                self.on_guest_open(self.guest_open)

    # ---- host side -------------------------------------------------------------------------------

    def host_connect(self) -> None:
        """A host client is there: guest writes may proceed and reads wait for data (thread-safe)."""
        assert self.transport is not None
        with self.transport.lock:
            self._input.clear()
            self._eof_pending = False
            if not self.host_open:
                self.host_open = True
                self.transport.run_guarded(self._send_control, PORT_OPEN, 1)

    def host_close(self, discard: bool = False) -> None:
        """No more data from the host: once what was fed is delivered, the guest reads EOF.
        `discard` drops undelivered input first (the host client went away)."""
        assert self.transport is not None
        with self.transport.lock:
            if discard:
                self._input.clear()
            self._eof_pending = True
            self.transport.run_guarded(self._deliver)

    def feed(self, data: bytes) -> None:
        """Queue bytes for the guest (thread-safe); delivered while the guest has the port open."""
        assert self.transport is not None, "attach the port to a VirtioMmio first"
        if not data:
            return
        with self.transport.lock:
            self._input += data
            self.transport.run_guarded(self._deliver)

    def pending_input(self) -> int:
        """Host bytes the guest has not received yet."""
        return len(self._input)

    def resume_output(self) -> None:
        """The host reader has room again: take what the guest has written (thread-safe)."""
        assert self.transport is not None
        self.transport.run_guarded(self._drain_transmit)

    # ---- queues ------------------------------------------------------------------------------------

    def _deliver(self) -> None:
        transport = self.transport
        assert transport is not None
        q = self.queue(RECEIVEQ)
        if self._input and self.guest_open and transport.driver_ok and q.ready:
            while self._input and (chain := q.pop()) is not None:
                n = scatter(chain.writable, self._input)
                del self._input[:n]
                q.push(chain.head, n)
            transport.notify_used(q)
            if self._input and q.event_idx and q.num >= 2 * KICK_BATCH:
                # Every buffer is full and more is waiting: ask the driver to notify only after it
                # has given back KICK_BATCH buffers (§2.7.10 avail_event), not after each one. It
                # will: it reads every full buffer before it waits. Fewer exits per byte.
                q.ram.put_u16(q.device + 4 + 8 * q.num, (q.last_avail + KICK_BATCH - 1) & 0xFFFF)
        if self._eof_pending and not self._input and self.host_open:
            self._eof_pending = False
            self.host_open = False
            self._send_control(PORT_OPEN, 0)

    def _drain_transmit(self) -> None:
        assert self.transport is not None
        q = self.queue(TRANSMITQ)
        if not q.ready:
            return
        took = False
        while not (self.hold is not None and self.hold()) and (chain := q.pop()) is not None:
            data = gather(chain.readable)
            q.push(chain.head, 0)
            took = True
            if data and self.on_data is not None:
                self.on_data(data)
        if took:
            self.transport.notify_used(q)

    def queue_notify(self, queue: Virtqueue) -> None:
        assert self.transport is not None
        if queue.index == RECEIVEQ:
            self._deliver()
        elif queue.index == TRANSMITQ:
            self._drain_transmit()
        elif queue.index == CONTROL_RX:
            self._deliver_control()
        elif queue.index == CONTROL_TX:
            while (chain := queue.pop()) is not None:
                data = gather(chain.readable)
                queue.push(chain.head, 0)
                self._driver_message(data)
            self.transport.notify_used(queue)

    def driver_ok(self) -> None:
        self._deliver_control()

    def reset(self) -> None:
        self._control.clear()
        self._input.clear()
        self.guest_open = False
        self._eof_pending = False

    # A transfer does not survive a snapshot; the guest's view of the port does.

    def state(self) -> dict[str, Any]:
        return {"guest_open": self.guest_open, "host_open": self.host_open}

    def load_state(self, d: dict[str, Any]) -> None:
        self._input.clear()
        self._control.clear()
        self.guest_open = bool(d.get("guest_open", False))
        self.host_open = False
        if d.get("host_open"):  # the client of that moment is gone: the guest reads EOF
            self._control.append(_CTRL.pack(0, PORT_OPEN, 0))
