"""Split virtqueues (virtio 1.2 §2.7): the device side of the descriptor table and the two rings.

Every guest address is bounds-checked against guest RAM at the moment it is used (descriptor
table, available ring, used ring, every buffer), so a hostile or buggy driver can never make the
host read or write outside RAM. Any rule the driver breaks raises `VirtqueueError`; the transport
turns that into DEVICE_NEEDS_RESET (§2.1.2) and stops processing. Buffers are handed to device
models as memoryviews of guest RAM, so disk and network I/O goes straight to and from the guest
(zero copy).
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from wirt.iovec import scatter, take, total_len

__all__ = ["GuestRam", "Chain", "Virtqueue", "VirtqueueError", "gather", "take", "scatter", "total_len"]

# §2.7.5 The Virtqueue Descriptor Table
DESC_SIZE = 16
VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
# §2.7.6 The Virtqueue Available Ring
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
# §2.7 "The maximum Queue Size value is 32768"
MAX_QUEUE_SIZE = 32768
#: Largest indirect table accepted (entries). Linux sizes its tables by the segment count, which
#: may exceed the queue size; the split ring's own maximum is a generous, bounded limit.
MAX_INDIRECT = MAX_QUEUE_SIZE

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")


class VirtqueueError(Exception):
    """The driver broke a virtqueue rule; the device must be reset (§2.1.2 DEVICE_NEEDS_RESET)."""


class MemoryLike(Protocol):
    """What the rings need from guest memory (`wirt.machine.memory.GuestMemory` fits)."""

    base: int
    size: int
    array: Any


class GuestRam:
    """Bounds-checked DMA access to guest RAM through one memoryview of its host mapping."""

    __slots__ = ("base", "size", "mv", "code_written")

    def __init__(self, memory: MemoryLike) -> None:
        self.base = int(memory.base)
        self.size = int(memory.size)
        # Device writes must drop the CPU's translations of the pages they change.
        self.code_written = getattr(memory, "code_written", None)
        mv = memoryview(memory.array).cast("B")
        if mv.nbytes != self.size:
            raise ValueError("guest memory array does not match its size")
        self.mv = mv

    def offset(self, addr: int, length: int) -> int:
        """The RAM offset of [addr, addr+length), or VirtqueueError when any byte is outside RAM."""
        off = addr - self.base
        if off < 0 or length < 0 or off + length > self.size:
            raise VirtqueueError(f"guest address {addr:#x}+{length:#x} is outside RAM")
        return off

    def view(self, addr: int, length: int) -> memoryview:
        """A writable zero-copy view of guest RAM (checked)."""
        off = self.offset(addr, length)
        return self.mv[off: off + length]

    def writable_view(self, addr: int, length: int) -> memoryview:
        """A view the device will write: translated code on those pages is dropped first
        (the guest may not run code from a buffer it has lent to the device)."""
        off = self.offset(addr, length)
        if self.code_written is not None:
            self.code_written(off, length)
        return self.mv[off: off + length]

    def u16(self, addr: int) -> int:
        return _U16.unpack_from(self.mv, self.offset(addr, 2))[0]

    def put_u16(self, addr: int, value: int) -> None:
        _U16.pack_into(self.mv, self.offset(addr, 2), value & 0xFFFF)


class Chain:
    """One descriptor chain: its head index and the buffers, device-readable ones first (§2.7.4.2)."""

    __slots__ = ("head", "readable", "writable")

    def __init__(self, head: int, readable: list[memoryview], writable: list[memoryview]) -> None:
        self.head = head
        self.readable = readable
        self.writable = writable

    @property
    def read_len(self) -> int:
        return total_len(self.readable)

    @property
    def write_len(self) -> int:
        return total_len(self.writable)

    def __repr__(self) -> str:
        return f"Chain(head={self.head}, read={self.read_len}, write={self.write_len})"


# ---- helpers over lists of buffers (§2.6.4 Message Framing: never assume a buffer layout) ----

def gather(views: list[memoryview], n: int | None = None) -> bytes:
    """Copy the first `n` bytes (default all) out of buffers."""
    if n is not None:
        views = take(views, n)[0]
    return b"".join(views)


class Virtqueue:
    """One split virtqueue as seen from the device.

    Configuration (`num`, `ready`, `desc`, `driver`, `device`) is written by the transport from
    the driver's register writes; `event_idx` and `indirect` follow the negotiated features.
    Device models call `pop()` for the next available chain and `push()` to return it.
    """

    def __init__(self, ram: GuestRam, index: int, max_size: int) -> None:
        if not 1 <= max_size <= MAX_QUEUE_SIZE or max_size & (max_size - 1):
            raise ValueError(f"queue size {max_size} is not a power of 2 up to {MAX_QUEUE_SIZE}")
        self.ram = ram
        self.index = index
        self.max_size = max_size
        self.event_idx = False
        self.indirect = False
        self.reset()

    def reset(self) -> None:
        """Back to the state after a device reset (§2.4): not ready, zero addresses, indices 0."""
        self.num = self.max_size
        self.ready = False
        self.desc = 0
        self.driver = 0
        self.device = 0
        self.last_avail = 0
        self.used_idx = 0
        self.signalled_used = 0
        self.signalled_valid = False
        self.pushed = False

    # ---- available ring (§2.7.6) ---------------------------------------------------------

    def _avail_idx(self) -> int:
        return self.ram.u16(self.driver + 2)

    def _set_avail_event(self) -> None:
        # §2.7.10: with VIRTIO_F_EVENT_IDX the device writes avail_event (after the used ring)
        # to ask for a notification once the driver passes this index.
        if self.event_idx:
            self.ram.put_u16(self.device + 4 + 8 * self.num, self.last_avail)

    def has_available(self) -> bool:
        """True when the driver has made chains available that were not popped yet."""
        return self._avail_idx() != self.last_avail

    def pop(self) -> Chain | None:
        """The next available descriptor chain, or None when the ring is empty."""
        avail = self._avail_idx()
        pending = (avail - self.last_avail) & 0xFFFF
        if pending == 0:
            self._set_avail_event()
            # §2.7.10: the driver (running on the CPU thread meanwhile) may have added a chain
            # after we read idx but before it saw the new avail_event, and then it does not
            # notify: look once more now that avail_event is published.
            avail = self._avail_idx()
            pending = (avail - self.last_avail) & 0xFFFF
            if pending == 0:
                return None
        if pending > self.num:
            # §2.7.13.3: idx may run at most one queue-size ahead of what the device consumed.
            raise VirtqueueError(f"queue {self.index}: available index moved by {pending} > size {self.num}")
        slot = self.last_avail % self.num
        head = self.ram.u16(self.driver + 4 + 2 * slot)
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        self._set_avail_event()
        return self._walk(head)

    def unpop(self) -> None:
        """Give back the chain last popped (not yet pushed): the next pop returns it again."""
        self.last_avail = (self.last_avail - 1) & 0xFFFF

    def _walk(self, head: int) -> Chain:
        # §2.7.5 descriptor chains, §2.7.5.3 indirect descriptors.
        ram, mv = self.ram, self.ram.mv
        if head >= self.num:
            raise VirtqueueError(f"queue {self.index}: head index {head} >= size {self.num}")
        readable: list[memoryview] = []
        writable: list[memoryview] = []
        table, size = self.desc, self.num
        in_indirect = False
        i, seen = head, 0
        # The rings the device itself writes or reads: no buffer the device writes may overlap
        # them (§2.7.4: buffers are driver memory apart from the rings), or a request's data
        # would overwrite the queue's own state under the batch that is still reading it.
        num = self.num
        rings = ((self.desc, self.desc + DESC_SIZE * num), (self.driver, self.driver + 6 + 2 * num),
                 (self.device, self.device + 6 + 8 * num))
        while True:
            seen += 1
            if seen > size:
                # §2.7.5.3.1 / §2.7.13.3.1: a chain never exceeds the queue (or table) size, so
                # one that does must loop.
                raise VirtqueueError(f"queue {self.index}: descriptor chain loops or exceeds {size}")
            addr, length, flags, nxt = _DESC.unpack_from(mv, ram.offset(table + DESC_SIZE * i, DESC_SIZE))
            if flags & VIRTQ_DESC_F_INDIRECT:
                if not self.indirect:
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor without VIRTIO_F_INDIRECT_DESC")
                if in_indirect:
                    # §2.7.5.3.1: "MUST NOT set the VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor"
                    raise VirtqueueError(f"queue {self.index}: nested indirect descriptor table")
                if flags & VIRTQ_DESC_F_NEXT:
                    # §2.7.5.3.1: "MUST NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT"
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor with NEXT set")
                if length == 0 or length % DESC_SIZE or length // DESC_SIZE > MAX_INDIRECT:
                    raise VirtqueueError(f"queue {self.index}: bad indirect table length {length}")
                ram.offset(addr, length)  # the whole table must lie in RAM
                table, size = addr, length // DESC_SIZE
                in_indirect = True
                i, seen = 0, 0
                continue
            if flags & VIRTQ_DESC_F_WRITE:
                end = addr + length
                for lo, hi in rings:
                    if addr < hi and lo < end:
                        raise VirtqueueError(f"queue {self.index}: device-writable buffer {addr:#x}+{length:#x} "
                                             "overlaps the queue's rings")
                writable.append(ram.writable_view(addr, length))
            elif writable:
                # §2.7.4.2: device-readable descriptors come before device-writable ones.
                raise VirtqueueError(f"queue {self.index}: readable descriptor after a writable one")
            else:
                readable.append(ram.view(addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                return Chain(head, readable, writable)
            if nxt >= size:
                raise VirtqueueError(f"queue {self.index}: next index {nxt} >= table size {size}")
            i = nxt

    # ---- used ring (§2.7.8) ----------------------------------------------------------------

    def push(self, head: int, written: int) -> None:
        """Return chain `head` to the driver with `written` bytes written into its buffers."""
        idx = self.used_idx
        elem = self.ram.offset(self.device + 4 + 8 * (idx % self.num), 8)
        _USED_ELEM.pack_into(self.ram.mv, elem, head, written & 0xFFFF_FFFF)
        # The element is stored before idx: the driver reads idx, then the element (§2.7.8.2).
        self.used_idx = (idx + 1) & 0xFFFF
        self.ram.put_u16(self.device + 2, self.used_idx)
        self.pushed = True

    def should_interrupt(self) -> bool:
        """Whether the used buffers pushed since the last call deserve an interrupt (§2.7.7, §2.7.10)."""
        if not self.pushed:
            return False
        self.pushed = False
        new, old, valid = self.used_idx, self.signalled_used, self.signalled_valid
        self.signalled_used, self.signalled_valid = new, True
        if not self.event_idx:
            # §2.7.7.2: without EVENT_IDX the driver suppresses with VIRTQ_AVAIL_F_NO_INTERRUPT.
            return not self.ram.u16(self.driver) & VIRTQ_AVAIL_F_NO_INTERRUPT
        used_event = self.ram.u16(self.driver + 4 + 2 * self.num)
        if not valid:
            return True
        # §2.7.10 vring_need_event: interrupt when used_event lies in (old, new].
        return ((new - used_event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)

    # ---- snapshots ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _STATE_FIELDS}

    def load_state(self, d: dict[str, Any]) -> None:
        for k in _STATE_FIELDS:
            if k in d:
                setattr(self, k, type(getattr(self, k))(d[k]))
        if not 1 <= self.num <= self.max_size:
            self.num = self.max_size


_STATE_FIELDS = ("num", "ready", "desc", "driver", "device", "last_avail", "used_idx",
                 "signalled_used", "signalled_valid", "event_idx", "indirect")
