"""Split virtqueues (virtio 1.2 §2.7): the device side of the descriptor table and the two rings.

Every guest address is bounds-checked against guest RAM at the moment it is used (descriptor
table, available ring, used ring, every buffer), so a hostile or buggy driver can never make the
host read or write outside RAM. Any rule the driver breaks raises `VirtqueueError`; the transport
turns that into DEVICE_NEEDS_RESET (§2.1.2) and stops processing. Buffers are handed to device
models as memoryviews of guest RAM, so disk and network I/O goes straight to and from the guest
(zero copy). The walk itself is compiled (`ringwalk.py`): one call pops every available chain.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Protocol

import numpy as np

from wirt.devices.virtio import ringwalk as rw
from wirt.hostiov import HostIov
from wirt.iovec import scatter, take, total_len
from wirt.numbacall import compiled_entry

__all__ = ["GuestRam", "Chain", "SegChain", "Virtqueue", "VirtqueueError", "gather", "take", "scatter", "total_len"]

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

_U16 = struct.Struct("<H")


class VirtqueueError(Exception):
    """The driver broke a virtqueue rule; the device must be reset (§2.1.2 DEVICE_NEEDS_RESET)."""


class MemoryLike(Protocol):
    """What the rings need from guest memory (`wirt.machine.memory.GuestMemory` fits; its
    optional `code_pages`, one word per page, is where DMA marks pages for the CPU's
    translation tier, as its `code_written` does)."""

    base: int
    size: int
    array: Any


class GuestRam:
    """Bounds-checked DMA access to guest RAM through one memoryview of its host mapping."""

    __slots__ = ("base", "size", "mv", "code_written", "arr", "addr", "code_pages", "page_shift")

    def __init__(self, memory: MemoryLike) -> None:
        self.base = int(memory.base)
        self.size = int(memory.size)
        # Device writes must drop the CPU's translations of the pages they change.
        self.code_written = getattr(memory, "code_written", None)
        mv = memoryview(memory.array).cast("B")
        if mv.nbytes != self.size:
            raise ValueError("guest memory array does not match its size")
        self.mv = mv
        self.arr = np.frombuffer(mv, dtype=np.uint8)  # the same bytes, for the compiled ring walk
        self.addr = self.arr.ctypes.data  # host address of RAM offset 0 (for HostIov)
        pages = getattr(memory, "code_pages", None)
        if pages is not None and len(pages) and self.size % len(pages) == 0:
            self.code_pages = pages
            self.page_shift = (self.size // len(pages)).bit_length() - 1
        elif self.code_written is not None:
            raise ValueError("guest memory has code_written but no code_pages for the ring walk")
        else:
            self.code_pages = np.zeros(0, dtype=np.int64)
            self.page_shift = 12

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
    """One descriptor chain: its head index and the buffers, device-readable ones first (§2.7.4.2),
    with their total sizes."""

    __slots__ = ("head", "readable", "writable", "read_len", "write_len")

    def __init__(self, head: int, readable: list[memoryview], writable: list[memoryview],
                 read_len: int | None = None, write_len: int | None = None) -> None:
        self.head = head
        self.readable = readable
        self.writable = writable
        self.read_len = total_len(readable) if read_len is None else read_len
        self.write_len = total_len(writable) if write_len is None else write_len

    def __repr__(self) -> str:
        return f"Chain(head={self.head}, read={self.read_len}, write={self.write_len})"


class SegChain:
    """One descriptor chain as RAM segments: `offs`/`lens` (RAM offsets checked by the walk),
    the first `nread` device-readable (§2.7.4.2), with their byte counts. What a device that
    moves bulk data wants: no Python object per buffer (see wirt.hostiov). `offs`/`lens` are
    int64 arrays, or Python lists in a batch of small chains (cheaper to read a few from)."""

    __slots__ = ("head", "offs", "lens", "nread", "read_len", "write_len")

    def __init__(self, head: int, offs: np.ndarray, lens: np.ndarray, nread: int, read_len: int,
                 write_len: int) -> None:
        self.head, self.offs, self.lens, self.nread = head, offs, lens, nread
        self.read_len, self.write_len = read_len, write_len

    def readable(self, ram: GuestRam) -> HostIov:
        r = self.nread
        return HostIov(ram.mv, ram.addr, _i64(self.offs[:r]), _i64(self.lens[:r]), self.read_len)

    def writable(self, ram: GuestRam) -> HostIov:
        r = self.nread
        return HostIov(ram.mv, ram.addr, _i64(self.offs[r:]), _i64(self.lens[r:]), self.write_len)

    def __repr__(self) -> str:
        return f"SegChain(head={self.head}, read={self.read_len}, write={self.write_len})"


def _i64(values: np.ndarray | list[int]) -> np.ndarray:
    return values if type(values) is np.ndarray else np.array(values, dtype=np.int64)


#: A batch whose chains have at most this many segments each on average gets them as lists.
LIST_SEGS = 8


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
        # Load the compiled walk now, while the machine is being built: loaded at the first
        # notification instead, numba used LLVM on the vCPU thread while the translation tier's
        # compile thread did, and LLVM aborted the process once ("DAG root value is not a
        # chain", a `wirt run --disk` in CI). Also before confinement (vm/runner.py).
        rw.warm()

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
        self._ws: _Workspace | None = None
        self._walk_key: tuple | None = None
        self._walk: tuple[int, int, int, Any, Any] = (0, 0, 0, None, None)

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
        chains = self.pop_all(1)
        return chains[0] if chains else None

    def unpop(self, count: int = 1) -> None:
        """Give back the last `count` chains popped (not yet pushed): the next pop returns them.
        avail_event stays where the pop left it: after a pop that emptied the ring it asks for
        the driver's next buffer, which a device waiting for more buffers needs (§2.7.10)."""
        self.last_avail = (self.last_avail - count) & 0xFFFF

    def _ring_offsets(self) -> tuple[int, int, int]:
        """RAM offsets of the descriptor table and both rings, each wholly in RAM (§2.7)."""
        num, ram = self.num, self.ram
        return (ram.offset(self.desc, DESC_SIZE * num), ram.offset(self.driver, 6 + 2 * num),
                ram.offset(self.device, 6 + 8 * num))

    def pop_all(self, limit: int = MAX_QUEUE_SIZE) -> list[Chain]:
        """Every available chain (at most `limit`), walked in one compiled call (§2.7.5,
        §2.7.6); a broken rule, or a head made available twice in this batch, raises
        VirtqueueError after the chains before it were consumed."""
        return self._pop(limit, self._chains)

    def pop_segs(self, limit: int = MAX_QUEUE_SIZE) -> list[SegChain]:
        """`pop_all` with each chain's buffers as RAM offset and length arrays (`SegChain`)."""
        return self._pop(limit, self._segchains)

    def pop_built(self, build: Callable[[Any, int, int], list], limit: int = MAX_QUEUE_SIZE) -> list:
        """`pop_all` for a device that turns chains into something else in compiled code:
        `build(ws, n, nsegs)` is called after each walk with the walk's arrays (`ws.heads`,
        `ws.starts`, `ws.nread`, `ws.nbytes`, `ws.off`, `ws.len`, as `ringwalk.pop_chains` fills
        them) and returns one object with a `head` for each of the n chains."""
        return self._pop(limit, build)

    def _layout(self) -> tuple[int, int, int, Any, Any]:
        """The rings' RAM offsets (checked, `_ring_offsets`) and the compiled walk and push to
        call (`compiled_entry`: 0.4 us of the walk's 21, twice a request), worked out again only
        when the queue's addresses, size or RAM change. Keying them on the GuestRam is enough:
        its arrays fix their types, and the workspace's arrays are int64 and uint8 C arrays
        whatever their size."""
        key = (self.desc, self.driver, self.device, self.num, self.ram)
        if key != self._walk_key:  # GuestRam compares by identity
            self._walk = (*self._ring_offsets(), None, None)
            self._walk_key = key
        return self._walk

    def _pop(self, limit: int, build: Any) -> list:
        ram = self.ram
        desc, avail, used, walk, push = self._layout()
        ws = self._workspace()
        res = ws.res
        chains: list = []
        try:
            while len(chains) < limit:
                args = (ram.arr, ram.base, ram.size, desc, avail, used, self.num, self.last_avail,
                        self.event_idx, self.indirect, limit - len(chains), ws.heads, ws.starts,
                        ws.nread, ws.nbytes, ws.off, ws.len, ws.seen, ram.code_pages, ram.page_shift, res)
                if walk is None:
                    rw.pop_chains(*args)
                    walk = compiled_entry(rw.pop_chains, args)
                    self._walk = (desc, avail, used, walk, push)
                else:
                    walk(*args)
                n, nsegs, self.last_avail, err, info, info2 = res.tolist()
                if n:
                    chains += build(ws, n, nsegs)
                if err == rw.E_OK:
                    break
                if err == rw.E_ROOM:
                    if n == 0:
                        ws.grow()  # one chain has more buffers than the arrays hold
                    continue
                info &= 0xFFFF_FFFF_FFFF_FFFF
                raise VirtqueueError(f"queue {self.index}: " + rw.ERRORS[err].format(info, info2))
        finally:
            seen = ws.seen
            for c in chains:
                seen[c.head] = 0
        return chains

    def _segchains(self, ws: _Workspace, n: int, nsegs: int) -> list[SegChain]:
        """SegChains (copies of the walk's arrays; lists for small chains) for the first n
        chains the walk wrote."""
        if nsegs <= LIST_SEGS * n:  # 4 KiB requests: header, page, status
            offs, lens = ws.off[:nsegs].tolist(), ws.len[:nsegs].tolist()
        else:
            offs, lens = ws.off[:nsegs].copy(), ws.len[:nsegs].copy()
        if n == 1:  # queue depth 1: the chain's segments are all of them
            nbytes = ws.nbytes.item
            return [SegChain(ws.heads.item(0), offs, lens, ws.nread.item(0), nbytes(0), nbytes(1))]
        starts = ws.starts[:n + 1].tolist()
        nread = ws.nread[:n].tolist()
        nbytes = ws.nbytes[:2 * n].tolist()
        return [SegChain(head, offs[starts[k]:starts[k + 1]], lens[starts[k]:starts[k + 1]], nread[k],
                         nbytes[2 * k], nbytes[2 * k + 1])
                for k, head in enumerate(ws.heads[:n].tolist())]

    def _chains(self, ws: _Workspace, n: int, nsegs: int) -> list[Chain]:
        """Chain objects (zero-copy views of guest RAM) for the first n chains the walk wrote."""
        mv = self.ram.mv
        offs = ws.off[:nsegs].tolist()
        lens = ws.len[:nsegs].tolist()
        starts = ws.starts[:n + 1].tolist()
        nread = ws.nread[:n].tolist()
        nbytes = ws.nbytes[:2 * n].tolist()
        out = []
        for k, head in enumerate(ws.heads[:n].tolist()):
            s0, s1 = starts[k], starts[k + 1]
            r = s0 + nread[k]
            out.append(Chain(head, [mv[offs[j]: offs[j] + lens[j]] for j in range(s0, r)],
                             [mv[offs[j]: offs[j] + lens[j]] for j in range(r, s1)],
                             nbytes[2 * k], nbytes[2 * k + 1]))
        return out

    def _workspace(self) -> _Workspace:
        ws = self._ws
        if ws is None or ws.num != self.num:
            ws = self._ws = _Workspace(self.num)
        return ws

    # ---- used ring (§2.7.8) ----------------------------------------------------------------

    def push(self, head: int, written: int) -> None:
        """Return chain `head` to the driver with `written` bytes written into its buffers."""
        self.push_many([head], [written])

    def push_many(self, heads: list[int], written: list[int]) -> None:
        """Return several chains at once: their used elements, then one used index write."""
        n = len(heads)
        if not n:
            return
        ram = self.ram
        desc, avail, used, walk, push = self._layout()
        if n == 1:
            args = (ram.arr, used, self.num, self.used_idx, heads[0], written[0], ram.code_pages, ram.page_shift)
            if push is None:
                self.used_idx = rw.push_used_one(*args)
                self._walk = (desc, avail, used, walk, compiled_entry(rw.push_used_one, args))
            else:
                self.used_idx = push(*args)
        else:
            self.used_idx = rw.push_used(ram.arr, used, self.num, self.used_idx, np.array(heads, dtype=np.int64),
                                         np.array(written, dtype=np.int64), n, ram.code_pages, ram.page_shift)
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


class _Workspace:
    """The arrays one queue's compiled ring walk writes into (sized by the queue)."""

    #: Buffers a batch may start with; grown while one chain needs more (up to num + MAX_INDIRECT).
    SEGS = 4096

    def __init__(self, num: int) -> None:
        self.num = num
        self.heads = np.zeros(num, dtype=np.int64)
        self.starts = np.zeros(num + 1, dtype=np.int64)
        self.nread = np.zeros(num, dtype=np.int64)
        self.nbytes = np.zeros(2 * num, dtype=np.int64)
        self.seen = np.zeros(num, dtype=np.uint8)
        self.res = np.zeros(6, dtype=np.int64)
        self._alloc(max(self.SEGS, 2 * num))

    def _alloc(self, n: int) -> None:
        self.off = np.zeros(n, dtype=np.int64)
        self.len = np.zeros(n, dtype=np.int64)

    def grow(self) -> None:
        """Double the buffer arrays (a chain is at most num + MAX_INDIRECT descriptors)."""
        limit = self.num + MAX_INDIRECT
        if len(self.off) >= limit:
            raise VirtqueueError("descriptor chain longer than its tables allow")
        self._alloc(min(2 * len(self.off), limit))
