"""The split virtqueue's ring walk compiled with numba (virtio 1.2 §2.7): many chains per call.

`pop_chains` takes every available head (up to a limit) and walks its descriptor chain,
indirect tables included, into flat arrays of (RAM offset, length, device-writable) in one
nogil call; `push_used` writes a batch of used elements and then the used index. Every address
is checked against guest RAM before it is read or handed out, with unsigned arithmetic, so a
wrapping address+length cannot pass. A broken rule stops the walk with an error code; the
Python side (`virtqueue.py`) turns it into VirtqueueError, so the device needs a reset.

Offsets are RAM offsets (guest physical address minus RAM base). The three rings' offsets
are checked by the caller to lie wholly in RAM before the call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wirt.cpu.atomics import host_fence

__all__ = ["pop_chains", "push_used", "push_used_one", "warm", "ERRORS", "E_OK", "E_ROOM", "OUT_CHAINS", "OUT_SEGS", "OUT_LAST",
           "OUT_ERR", "OUT_INFO", "OUT_INFO2"]

# §2.7.5 descriptor flags
_F_NEXT = 1
_F_WRITE = 2
_F_INDIRECT = 4
_MAX_INDIRECT = 32768  # entries; as virtqueue.MAX_INDIRECT

# Result codes of pop_chains (res[OUT_ERR]).
E_OK = 0
E_ROOM = 1  # the output arrays are full: what was popped is valid, the rest waits
E_AVAIL_JUMP = 2
E_HEAD = 3
E_LOOP = 4
E_NO_INDIRECT = 5
E_NESTED = 6
E_INDIRECT_NEXT = 7
E_INDIRECT_LEN = 8
E_OUTSIDE = 9
E_OVERLAP = 10
E_ORDER = 11
E_NEXT = 12
E_TWICE = 13

#: Messages for the error codes; {0} and {1} are the two info words.
ERRORS = {
    E_AVAIL_JUMP: "available index moved by {0} > size {1}",
    E_HEAD: "head index {0} >= size {1}",
    E_LOOP: "descriptor chain loops or exceeds {0}",
    E_NO_INDIRECT: "indirect descriptor without VIRTIO_F_INDIRECT_DESC",
    E_NESTED: "nested indirect descriptor table",
    E_INDIRECT_NEXT: "indirect descriptor with NEXT set",
    E_INDIRECT_LEN: "bad indirect table length {0}",
    E_OUTSIDE: "guest address {0:#x}+{1:#x} is outside RAM",
    E_OVERLAP: "device-writable buffer {0:#x}+{1:#x} overlaps the queue's rings",
    E_ORDER: "readable descriptor after a writable one",
    E_NEXT: "next index {0} >= table size {1}",
    E_TWICE: "descriptor {0} made available twice in one batch",
}

# Slots of the result array.
OUT_CHAINS = 0  # chains popped
OUT_SEGS = 1  # segments written
OUT_LAST = 2  # new last_avail
OUT_ERR = 3
OUT_INFO = 4
OUT_INFO2 = 5

_U64 = np.uint64


@njit(cache=True, nogil=True, inline="always")
def _rd16(ram, off):
    return np.int64(ram[off]) | (np.int64(ram[off + 1]) << 8)


@njit(cache=True, nogil=True, inline="always")
def _rd32(ram, off):
    return _rd16(ram, off) | (_rd16(ram, off + 2) << 16)


@njit(cache=True, nogil=True, inline="always")
def _rd64u(ram, off):
    lo = _U64(_rd32(ram, off))
    hi = _U64(_rd32(ram, off + 4))
    return lo | (hi << _U64(32))


@njit(cache=True, nogil=True, inline="always")
def _wr16(ram, off, v):
    ram[off] = v & 0xFF
    ram[off + 1] = (v >> 8) & 0xFF


@njit(cache=True, nogil=True, inline="always")
def _wr32(ram, off, v):
    _wr16(ram, off, v & 0xFFFF)
    _wr16(ram, off + 2, (v >> 16) & 0xFFFF)


@njit(cache=True, nogil=True, inline="always")
def _ram_offset(addr, length, base, size):
    """RAM offset of [addr, addr+length) or -1 (all unsigned: no wrap can pass)."""
    if addr < base:
        return -1
    off = addr - base
    if off > size or length > size - off:
        return -1
    return np.int64(off)


@njit(cache=True, nogil=True)
def _mark_code(code_pages, page_shift, off, length):
    """DMA wrote [off, off+length): odd (translated) pages move to the next even generation,
    so the CPU's translation tier drops code from them (as GuestMemory.code_written)."""
    if length <= 0 or code_pages.shape[0] == 0:
        return
    first = off >> page_shift
    last = (off + length - 1) >> page_shift
    for p in range(first, last + 1):
        v = code_pages[p]
        code_pages[p] = v + (v & 1)


@njit(cache=True, nogil=True)
def pop_chains(ram, base, size, desc_off, avail_off, used_off, num, last_avail, event_idx, indirect_ok,
               limit, heads, starts, nread, nbytes, seg_off, seg_len, seen, code_pages, page_shift, res):
    """Pop up to `limit` available chains (§2.7.6, §2.7.5): chain i is heads[i], its segments
    are [starts[i], starts[i+1]) of seg_off/seg_len, the first nread[i] device-readable;
    nbytes[2i] and nbytes[2i+1] are its readable and writable byte counts.
    Physically adjacent descriptors of one direction are merged. Zero-length descriptors are
    checked and dropped. `seen[head]` must be 0 on entry for every head (set here to catch a
    head made available twice in one batch; the caller clears it). With event_idx, avail_event
    is written and idx read again before giving up (§2.7.10). Writable segments' pages are
    marked in code_pages. Results go to res (OUT_*)."""
    ubase = _U64(base)
    usize = _U64(size)
    n_chains = 0
    n_segs = 0
    err = E_OK
    info = np.int64(0)
    info2 = np.int64(0)
    cap_chains = heads.shape[0]
    cap_segs = seg_off.shape[0]
    starts[0] = 0
    avail_event = used_off + 4 + 8 * num
    while n_chains < limit:
        avail = _rd16(ram, avail_off + 2)
        pending = (avail - last_avail) & 0xFFFF
        if pending == 0:
            if event_idx:
                _wr16(ram, avail_event, last_avail)
                _mark_code(code_pages, page_shift, avail_event, 2)
                # The driver stores idx, then (after its own full fence) loads avail_event to
                # decide whether to notify; this side stores avail_event, then loads idx. On
                # another thread than the vCPU's, x86 may let that load pass the store (SDM
                # 8.2.3.4), and then neither side sees the other's write: a lost notification.
                host_fence()
                avail = _rd16(ram, avail_off + 2)
                pending = (avail - last_avail) & 0xFFFF
            if pending == 0:
                break
        if pending > num:
            # §2.7.13.3: idx runs at most one queue size ahead of what the device consumed.
            err, info, info2 = E_AVAIL_JUMP, pending, num
            break
        if n_chains >= cap_chains:
            err = E_ROOM
            break
        head = _rd16(ram, avail_off + 4 + 2 * (last_avail % num))
        if head >= num:
            err, info, info2 = E_HEAD, head, num
            last_avail = (last_avail + 1) & 0xFFFF
            break
        if seen[head]:
            # §2.7.13.1: a buffer is available once until the device returns it.
            err, info = E_TWICE, head
            last_avail = (last_avail + 1) & 0xFFFF
            break
        # Walk the chain (§2.7.5.2, §2.7.5.3).
        seg0 = n_segs
        rsegs = 0
        wsegs = 0
        rbytes = 0
        wbytes = 0
        table = np.int64(desc_off)
        tsize = np.int64(num)
        in_indirect = False
        any_writable = False
        i = head
        count = 0
        room = True
        while True:
            count += 1
            if count > tsize:
                # §2.7.5.3.1 / §2.7.13.3.1: a chain never exceeds its table, so a longer one loops.
                err, info = E_LOOP, tsize
                break
            d = table + 16 * i
            addr = _rd64u(ram, d)
            length = _rd32(ram, d + 8)
            flags = _rd16(ram, d + 12)
            nxt = _rd16(ram, d + 14)
            if flags & _F_INDIRECT:
                if not indirect_ok:
                    err = E_NO_INDIRECT
                    break
                if in_indirect:
                    err = E_NESTED  # §2.7.5.3.1: no INDIRECT inside an indirect table
                    break
                if flags & _F_NEXT:
                    err = E_INDIRECT_NEXT  # §2.7.5.3.1: not both INDIRECT and NEXT
                    break
                if length == 0 or length % 16 != 0 or length // 16 > _MAX_INDIRECT:
                    err, info = E_INDIRECT_LEN, length
                    break
                off = _ram_offset(addr, _U64(length), ubase, usize)
                if off < 0:
                    err, info, info2 = E_OUTSIDE, np.int64(addr), length
                    break
                table = off
                tsize = length // 16
                in_indirect = True
                i = 0
                count = 0
                continue
            off = _ram_offset(addr, _U64(length), ubase, usize)
            if off < 0:
                err, info, info2 = E_OUTSIDE, np.int64(addr), length
                break
            if flags & _F_WRITE:
                # No device-writable buffer may overlap the rings (§2.7.4: buffers are driver
                # memory apart from the rings), or data would overwrite the queue's own state.
                end = off + length
                if ((off < desc_off + 16 * num and desc_off < end)
                        or (off < avail_off + 6 + 2 * num and avail_off < end)
                        or (off < used_off + 6 + 8 * num and used_off < end)):
                    err, info, info2 = E_OVERLAP, off + base, length
                    break
                any_writable = True
                _mark_code(code_pages, page_shift, off, length)
            elif any_writable:
                err = E_ORDER  # §2.7.4.2: device-readable descriptors come first
                break
            if flags & _F_WRITE:
                wbytes += length
            else:
                rbytes += length
            if length > 0:
                writes = flags & _F_WRITE != 0
                last = n_segs - 1
                same_kind = wsegs > 0 if writes else rsegs > 0
                if same_kind and seg_off[last] + seg_len[last] == off:
                    seg_len[last] += length  # adjacent in RAM: one buffer
                elif n_segs < cap_segs:
                    seg_off[n_segs] = off
                    seg_len[n_segs] = length
                    n_segs += 1
                    if writes:
                        wsegs += 1
                    else:
                        rsegs += 1
                else:
                    room = False
                    break
            if not flags & _F_NEXT:
                break
            if nxt >= tsize:
                err, info, info2 = E_NEXT, nxt, tsize
                break
            i = nxt
        if not room:
            n_segs = seg0  # this chain waits for the next call, with more room
            err = E_ROOM
            break
        last_avail = (last_avail + 1) & 0xFFFF
        if err != E_OK:
            break
        seen[head] = 1
        heads[n_chains] = head
        nread[n_chains] = rsegs
        nbytes[2 * n_chains] = rbytes
        nbytes[2 * n_chains + 1] = wbytes
        n_chains += 1
        starts[n_chains] = n_segs
    if event_idx and err == E_OK:
        # §2.7.10: ask to be notified once the driver passes what was consumed.
        _wr16(ram, avail_event, last_avail)
        _mark_code(code_pages, page_shift, avail_event, 2)
    res[OUT_CHAINS] = n_chains
    res[OUT_SEGS] = n_segs
    res[OUT_LAST] = last_avail
    res[OUT_ERR] = err
    res[OUT_INFO] = info
    res[OUT_INFO2] = info2


@njit(cache=True, nogil=True)
def push_used(ram, used_off, num, used_idx, heads, lens, n, code_pages, page_shift):
    """Write n used elements (§2.7.8: id, len) from used_idx on, then the new used index, which
    is returned. The elements are stored before idx: the driver reads idx, then the elements."""
    for k in range(n):
        e = used_off + 4 + 8 * (((used_idx + k) & 0xFFFF) % num)
        _wr32(ram, e, heads[k])
        _wr32(ram, e + 4, lens[k] & 0xFFFF_FFFF)
    new = (used_idx + n) & 0xFFFF
    _wr16(ram, used_off + 2, new)
    _mark_code(code_pages, page_shift, used_off, 4 + 8 * num)
    host_fence()  # idx before the caller's load of used_event (see pop_chains): no lost interrupt
    return new


@njit(cache=True, nogil=True)
def push_used_one(ram, used_off, num, used_idx, head, length, code_pages, page_shift):
    """`push_used` for one element, with scalar arguments (a cheaper call for queue depth 1)."""
    e = used_off + 4 + 8 * ((used_idx & 0xFFFF) % num)
    _wr32(ram, e, head)
    _wr32(ram, e + 4, length & 0xFFFF_FFFF)
    new = (used_idx + 1) & 0xFFFF
    _wr16(ram, used_off + 2, new)
    _mark_code(code_pages, page_shift, used_off, 4 + 8 * num)
    host_fence()  # as in push_used
    return new


_warm = False


def warm() -> None:
    """Load (or compile, once) the walk's machine code now, on a dummy one-entry queue, so a
    VM's first notification does not wait for it (the VM zygote calls this before forking,
    every Virtqueue when it is made); a no-op after the first call."""
    global _warm
    if _warm:
        return
    _warm = True
    ram = np.zeros(64, dtype=np.uint8)
    one = np.zeros(1, dtype=np.int64)
    two = np.zeros(2, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    pop_chains(ram, 0, 64, 0, 16, 32, 1, 0, True, True, 1, one, two, one, two, one, one.copy(),
               np.zeros(1, dtype=np.uint8), none, 12, np.zeros(6, dtype=np.int64))
    push_used(ram, 32, 1, 0, one, one, 1, none, 12)
    push_used_one(ram, 32, 1, 0, 0, 0, none, 12)
