"""The virtio-mmio transport, version 2 ("modern", virtio 1.2 §4.2).

One `VirtioMmio` is one slot on the bus (0x200 bytes: registers, then configuration space at
0x100). It implements the register file (§4.2.2), feature negotiation and the device status
state machine (§2.1, §3.1.1), owns the split virtqueues and the interrupt status, and forwards
queue notifications to a device-type model (`VirtioDevice`).

Threading: every register access and every use of a queue runs under `self.lock`, one
re-entrant lock per device. Backend threads (network receive, console input) call
`run_guarded()`, which takes the lock, so guest memory of a queue is never written by two
threads at once. Guest mistakes never raise: they set DEVICE_NEEDS_RESET (§2.1.2).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from wirt.devices.irq import IrqLine
from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.spec import (
    F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, INT_CONFIG_CHANGE, INT_USED_BUFFER, STATUS_DEVICE_NEEDS_RESET,
    STATUS_DRIVER_OK, STATUS_FEATURES_OK,
)
from wirt.devices.virtio.virtqueue import GuestRam, MemoryLike, Virtqueue, VirtqueueError

__all__ = ["VirtioMmio", "MAGIC", "VENDOR_ID"]

log = logging.getLogger(__name__)

MAGIC = 0x74726976  # "virt"
VERSION = 2
VENDOR_ID = 0x74726977  # "wirt" as little-endian bytes, like the board's empty slots

# §4.2.2 register offsets
MAGIC_VALUE = 0x000
VERSION_REG = 0x004
DEVICE_ID = 0x008
VENDOR_ID_REG = 0x00C
DEVICE_FEATURES = 0x010
DEVICE_FEATURES_SEL = 0x014
DRIVER_FEATURES = 0x020
DRIVER_FEATURES_SEL = 0x024
QUEUE_SEL = 0x030
QUEUE_NUM_MAX = 0x034
QUEUE_NUM = 0x038
QUEUE_READY = 0x044
QUEUE_NOTIFY = 0x050
INTERRUPT_STATUS = 0x060
INTERRUPT_ACK = 0x064
STATUS = 0x070
QUEUE_DESC_LOW = 0x080
QUEUE_DESC_HIGH = 0x084
QUEUE_DRIVER_LOW = 0x090
QUEUE_DRIVER_HIGH = 0x094
QUEUE_DEVICE_LOW = 0x0A0
QUEUE_DEVICE_HIGH = 0x0A4
SHM_SEL = 0x0AC
SHM_LEN_LOW = 0x0B0
SHM_LEN_HIGH = 0x0B4
SHM_BASE_LOW = 0x0B8
SHM_BASE_HIGH = 0x0BC
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100

_QUEUE_ADDR = {
    QUEUE_DESC_LOW: ("desc", 0), QUEUE_DESC_HIGH: ("desc", 32),
    QUEUE_DRIVER_LOW: ("driver", 0), QUEUE_DRIVER_HIGH: ("driver", 32),
    QUEUE_DEVICE_LOW: ("device", 0), QUEUE_DEVICE_HIGH: ("device", 32),
}


class InterruptStatus:
    """The InterruptStatus bits (§4.2.2) driving an interrupt line, high while any is set. The
    board passes devices/plic.StatusLine instead, the same interface on the PLIC's shared
    state, so the harts' cores serve InterruptStatus and InterruptACK without an exit."""

    __slots__ = ("irq", "value")

    def __init__(self, irq: IrqLine) -> None:
        self.irq = irq
        self.value = 0

    def change(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Clear `clear_bits`, then set `set_bits`; the line follows."""
        self.value = (self.value & ~clear_bits) | set_bits
        self.irq.set(self.value != 0)


class VirtioMmio:
    """A virtio-mmio (version 2) device slot wrapping a device-type model."""

    #: When True, unexpected exceptions inside device code propagate (tests); otherwise they
    #: are logged and the device is marked DEVICE_NEEDS_RESET, keeping the VM alive.
    strict = False

    def __init__(self, device: VirtioDevice, memory: MemoryLike, irq: IrqLine | Any = None,
                 vendor_id: int = VENDOR_ID, size: int = 0x200) -> None:
        """`irq`: the interrupt line, or an interrupt status object driving one
        (`InterruptStatus`'s interface, e.g. devices/plic.StatusLine)."""
        self.size = size
        self.device = device
        if irq is None:
            irq = IrqLine()
        #: the InterruptStatus bits and the line they drive
        self.isr = irq if hasattr(irq, "change") else InterruptStatus(irq)
        self.vendor_id = vendor_id
        self.lock = threading.RLock()
        self.ram = GuestRam(memory)
        self.queues = [Virtqueue(self.ram, i, n) for i, n in enumerate(device.queue_sizes)]
        self.config_generation = 0
        self.failure: str | None = None
        self._reset_registers()
        device.attach(self)

    # ---- state machine ------------------------------------------------------------------------

    def _reset_registers(self) -> None:
        self.status = 0
        self.device_features_sel = 0
        self.driver_features = 0
        self.driver_features_sel = 0
        self.queue_sel = 0
        self.isr.change(clear_bits=-1)
        for q in self.queues:
            q.reset()
            q.event_idx = q.indirect = False

    def reset(self) -> None:
        """Device reset (§2.4, §4.2.3.1: writing 0 to Status): registers, queues, device state."""
        with self.lock:
            self._reset_registers()
            self.failure = None
            self.device.reset()

    @property
    def driver_ok(self) -> bool:
        """DRIVER_OK is set and the device has not failed: queues may be used (§3.1.1)."""
        return self.status & (STATUS_DRIVER_OK | STATUS_DEVICE_NEEDS_RESET) == STATUS_DRIVER_OK

    def offered_features(self) -> int:
        return self.device.features() | 1 << F_VERSION_1

    def _write_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            self.reset()
            return
        old = self.status
        # The driver never clears bits except by reset (§2.1.1); NEEDS_RESET is device-owned.
        new = old | (value & ~STATUS_DEVICE_NEEDS_RESET)
        if new & STATUS_FEATURES_OK and not old & STATUS_FEATURES_OK:
            # §3.1.1 step 5/6 and §6.1: accept only a subset of the offered features, and
            # (modern transport) only with VIRTIO_F_VERSION_1; otherwise FEATURES_OK stays clear.
            feats = self.driver_features
            if feats & ~self.offered_features() or not feats >> F_VERSION_1 & 1:
                new &= ~STATUS_FEATURES_OK
            else:
                for q in self.queues:
                    q.event_idx = bool(feats >> F_EVENT_IDX & 1)
                    q.indirect = bool(feats >> F_INDIRECT_DESC & 1)
        if new & STATUS_DRIVER_OK and not new & STATUS_FEATURES_OK:
            new &= ~STATUS_DRIVER_OK  # DRIVER_OK only after successful negotiation (§3.1.1)
        self.status = new
        if new & STATUS_DRIVER_OK and not old & STATUS_DRIVER_OK:
            self._guard(self.device.driver_ok)

    def fail(self, reason: str) -> None:
        """Mark DEVICE_NEEDS_RESET (§2.1.2): stop using the queues, tell a running driver."""
        with self.lock:
            if self.status & STATUS_DEVICE_NEEDS_RESET:
                return
            log.warning("virtio %s: device needs reset: %s", type(self.device).__name__, reason)
            self.failure = reason
            self.status |= STATUS_DEVICE_NEEDS_RESET
            if self.status & STATUS_DRIVER_OK:
                # §2.1.2: "the device MUST send a device configuration change notification".
                self.isr.change(INT_CONFIG_CHANGE)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except VirtqueueError as exc:
            self.fail(str(exc))
        except Exception as exc:  # a bug in a device model must not take the VM down
            if self.strict:
                raise
            log.exception("virtio %s: internal error", type(self.device).__name__)
            self.fail(f"internal error: {exc!r}")
        return None

    def run_guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` under the device lock, turning guest errors into DEVICE_NEEDS_RESET;
        its result, or None after such an error.

        Backend threads use this to touch queues (e.g. to deliver received frames).
        """
        with self.lock:
            return self._guard(fn, *args)

    # ---- interrupts (§4.2.2 InterruptStatus; §2.7.7, §2.7.10 suppression) ---------------------

    @property
    def interrupt_status(self) -> int:
        """The InterruptStatus register's bits."""
        return self.isr.value

    def notify_used(self, queue: Virtqueue) -> None:
        """After pushing used buffers: interrupt the driver unless it suppressed it."""
        if queue.should_interrupt():
            self.isr.change(INT_USED_BUFFER)

    def config_changed(self) -> None:
        """The device changed its configuration space: new generation, config interrupt (§2.5.1)."""
        with self.lock:
            self.config_generation = (self.config_generation + 1) & 0xFFFF_FFFF
            if self.status & STATUS_DRIVER_OK:
                self.isr.change(INT_CONFIG_CHANGE)

    # ---- MMIO ------------------------------------------------------------------------------------

    @property
    def _queue(self) -> Virtqueue | None:
        sel = self.queue_sel
        return self.queues[sel] if sel < len(self.queues) else None

    def read(self, offset: int, size: int) -> int:
        if offset == INTERRUPT_STATUS and size == 4:
            # Read at every interrupt (vm_interrupt): first, and without the lock, since loading
            # one int is atomic and what a concurrent update changes is only whether this read
            # sees its bit now or at the next interrupt, as on hardware.
            return self.isr.value
        with self.lock:
            if offset >= CONFIG:
                return self._read_config(offset - CONFIG, size)
            if size != 4 or offset & 3:
                return 0  # §4.2.2.2: control registers are accessed 32 bits wide and aligned
            if offset == MAGIC_VALUE:
                return MAGIC
            if offset == VERSION_REG:
                return VERSION
            if offset == DEVICE_ID:
                return self.device.device_id
            if offset == VENDOR_ID_REG:
                return self.vendor_id
            if offset == DEVICE_FEATURES:
                sel = self.device_features_sel
                return self.offered_features() >> (32 * sel) & 0xFFFF_FFFF if sel < 2 else 0
            q = self._queue
            if offset == QUEUE_NUM_MAX:
                return q.max_size if q is not None else 0  # 0: queue not available
            if offset == QUEUE_READY:
                return int(q is not None and q.ready)
            if offset == STATUS:
                return self.status
            if offset in (SHM_LEN_LOW, SHM_LEN_HIGH):
                return 0xFFFF_FFFF  # §4.2.2: no shared memory region with this id
            if offset == CONFIG_GENERATION:
                return self.config_generation
            return 0

    def _read_config(self, offset: int, size: int) -> int:
        cfg = self.device.config()
        chunk = cfg[offset: offset + size]
        return int.from_bytes(chunk, "little") if chunk else 0

    def write(self, offset: int, size: int, value: int) -> None:
        with self.lock:
            if offset >= CONFIG:
                self._guard(self.device.write_config, offset - CONFIG,
                            (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
                return
            if size != 4 or offset & 3:
                return
            value &= 0xFFFF_FFFF
            # The two registers written in every exchange of data first (§4.2.2).
            if offset == QUEUE_NOTIFY:
                self._notify(value & 0xFFFF)
            elif offset == INTERRUPT_ACK:
                self.isr.change(clear_bits=value)
            elif offset == DEVICE_FEATURES_SEL:
                self.device_features_sel = value
            elif offset == DRIVER_FEATURES:
                # Features are fixed once FEATURES_OK is set (§3.1.1).
                sel = self.driver_features_sel
                if sel < 2 and not self.status & STATUS_FEATURES_OK:
                    mask = 0xFFFF_FFFF << (32 * sel)
                    self.driver_features = (self.driver_features & ~mask) | (value << (32 * sel))
            elif offset == DRIVER_FEATURES_SEL:
                self.driver_features_sel = value
            elif offset == QUEUE_SEL:
                self.queue_sel = value
            elif offset == QUEUE_NUM:
                q = self._queue
                if q is not None and not q.ready:
                    q.num = value
            elif offset == QUEUE_READY:
                self._write_queue_ready(value)
            elif offset == STATUS:
                self._write_status(value)
            elif offset in _QUEUE_ADDR:
                q = self._queue
                if q is not None and not q.ready:  # §4.2.3.2: set up while QueueReady is 0
                    field, shift = _QUEUE_ADDR[offset]
                    old = getattr(q, field)
                    setattr(q, field, (old & ~(0xFFFF_FFFF << shift)) | (value << shift))

    def _write_queue_ready(self, value: int) -> None:
        q = self._queue
        if q is None:
            return
        if not value & 1:
            q.ready = False
            return
        if q.ready:
            return
        # §2.7: a split queue's size is a power of 2, at most QueueNumMax (§4.2.2.2).
        if not 1 <= q.num <= q.max_size or q.num & (q.num - 1):
            self.fail(f"queue {q.index}: invalid size {q.num}")
            return
        q.ready = True

    def _notify(self, index: int) -> None:
        # §3.1.1/§2.1: no buffers are consumed before DRIVER_OK or after NEEDS_RESET.
        if not self.driver_ok or index >= len(self.queues):
            return
        q = self.queues[index]
        if q.ready:
            self._guard(self.device.queue_notify, q)

    # ---- lifecycle / snapshots ---------------------------------------------------------------

    def set_memory(self, memory: MemoryLike) -> None:
        """Point DMA at a new guest RAM mapping (e.g. after restoring a memory image)."""
        with self.lock:
            self.ram = GuestRam(memory)
            for q in self.queues:
                q.ram = self.ram

    def close(self) -> None:
        """Stop the device's backend (threads, processes)."""
        self.device.close()

    def state(self) -> dict[str, Any]:
        with self.lock:
            # The device's part first: it may serve work a notification left to a thread of its
            # own (virtio-net's transmit), which moves the queues' indices.
            device = self.device.state()
            return {
                "status": self.status,
                "device_features_sel": self.device_features_sel,
                "driver_features": self.driver_features,
                "driver_features_sel": self.driver_features_sel,
                "queue_sel": self.queue_sel,
                "interrupt_status": self.interrupt_status,
                "config_generation": self.config_generation,
                "queues": [q.state() for q in self.queues],
                "device": device,
            }

    def load_state(self, d: dict[str, Any]) -> None:
        with self.lock:
            self.status = int(d["status"]) & 0xFF
            self.device_features_sel = int(d["device_features_sel"])
            self.driver_features = int(d["driver_features"])
            self.driver_features_sel = int(d["driver_features_sel"])
            self.queue_sel = int(d["queue_sel"])
            self.isr.change(int(d["interrupt_status"]) & 3, clear_bits=-1)
            self.config_generation = int(d["config_generation"])
            for q, qs in zip(self.queues, d.get("queues", [])):
                q.load_state(qs)
            self.device.load_state(d.get("device", {}))

