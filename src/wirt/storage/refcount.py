"""qcow2 refcounts: the two-level refcount table, a write-back cache of refcount blocks, allocation.

Crash-ordering contract (spec "Host cluster management"): increments live in the cache and are
written by `write_dirty()` *before* the image writes any L2/L1 entry that needs them; decrements are
queued with `release()` and applied only by `apply_releases()`, after the references are gone on disk.
A crash in between therefore leaks clusters but never leaves a reference with too low a refcount.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np

from wirt.errors import WirtError
from wirt.storage.hostfile import HostFile
from wirt.storage.qcow2_format import MAX_REFTABLE_BYTES, OFFSET_MASK, corrupt

_DTYPES = {3: ">u1", 4: ">u2", 5: ">u4", 6: ">u8"}


class DirtyRange:
    """The entries [lo, hi) of a cached metadata table that differ from the file, to write back in
    one piece (refcount blocks here, qcow2.py's L2 tables); empty when lo >= hi."""

    __slots__ = ("lo", "hi")

    def __init__(self, length: int, dirty: bool) -> None:
        self.lo, self.hi = (0, length) if dirty else (length, 0)

    def touch(self, i: int) -> None:
        """Entry `i` changed: widen the range to cover it."""
        if i < self.lo:
            self.lo = i
        if i + 1 > self.hi:
            self.hi = i + 1

    @property
    def dirty(self) -> bool:
        return self.lo < self.hi


class RefcountBlock(DirtyRange):
    """One refcount block decoded into a list, with the dirty entry range to write back."""

    __slots__ = ("counts",)

    def __init__(self, counts: list[int], dirty: bool = False):
        super().__init__(len(counts), dirty)
        self.counts = counts


class Refcounts:
    """Refcount table + blocks of one image, cached, with allocation of free clusters."""

    def __init__(self, f: HostFile, cluster_bits: int, refcount_order: int, table_offset: int,
                 table_clusters: int, on_table_moved: Callable[[int, int], None] | None = None):
        self.f = f
        self.cluster_bits = cluster_bits
        self.cs = 1 << cluster_bits
        self.order = refcount_order
        self.bits = 1 << refcount_order
        self.max = (1 << self.bits) - 1
        self.epb_bits = cluster_bits + 3 - refcount_order  # entries per block = cs * 8 / refcount_bits
        self.epb = 1 << self.epb_bits
        self.table_offset = table_offset
        self.table_clusters = table_clusters
        raw = f.pread(table_offset, table_clusters * self.cs)
        self.table: list[int] = np.frombuffer(raw, ">u8").tolist()
        self.table_dirty: set[int] = set()
        self.blocks: OrderedDict[int, RefcountBlock] = OrderedDict()
        self.max_blocks = max(8, (1 << 21) >> self.epb_bits)
        self.pending: list[tuple[int, int]] = []  # (first cluster, count) to release later
        self.on_table_moved = on_table_moved
        self.avoid: Callable[[int], bool] | None = None  # extra clusters block placement must skip (repair)
        self.meta_check: Callable[[int], str | None] | None = None  # names fixed metadata at a cluster
        # Every cluster at or above `high` is free: past the file and past every refcounted cluster.
        self.high = max(-(-f.end // self.cs), 1)
        self.free_hint = 0

    # -- block access ---------------------------------------------------------------------

    def _decode(self, raw: bytes) -> list[int]:
        if self.order >= 3:
            return np.frombuffer(raw, _DTYPES[self.order]).tolist()
        b = np.frombuffer(raw, np.uint8)
        per = 8 // self.bits
        mask = (1 << self.bits) - 1
        parts = np.stack([(b >> (i * self.bits)) & mask for i in range(per)], axis=1)
        return parts.ravel().tolist()

    def _encode(self, counts: list[int]) -> bytes:
        if self.order >= 3:
            return np.array(counts, dtype=np.uint64).astype(_DTYPES[self.order]).tobytes()
        per = 8 // self.bits
        a = np.array(counts, dtype=np.uint8).reshape(-1, per)
        out = np.zeros(a.shape[0], np.uint8)
        for i in range(per):
            out |= a[:, i] << (i * self.bits)
        return out.tobytes()

    def _block(self, bi: int) -> RefcountBlock | None:
        """The cached refcount block `bi`, loading it; None when it is not allocated (all zero)."""
        blk = self.blocks.get(bi)
        if blk is not None:
            self.blocks.move_to_end(bi)
            return blk
        if bi >= len(self.table):
            return None
        entry = self.table[bi]
        off = entry & OFFSET_MASK
        if not off:
            return None
        if entry & 0x1FF or off % self.cs or off + self.cs > max(self.f.end, self.f.size()):
            raise corrupt(self.f.path, f"refcount block {bi} offset 0x{entry:x} is unaligned or past the end "
                                       "of the file")
        what = self.meta_check(off >> self.cluster_bits) if self.meta_check else None
        if what:
            raise corrupt(self.f.path, f"refcount block {bi} at 0x{off:x} overlaps the {what}")
        blk = RefcountBlock(self._decode(self.f.pread(off, self.cs)))
        self.blocks[bi] = blk
        self._evict()
        return blk

    def _evict(self) -> None:
        if len(self.blocks) <= self.max_blocks:
            return
        for bi in list(self.blocks):
            if len(self.blocks) <= self.max_blocks:
                break
            if not self.blocks[bi].dirty:
                del self.blocks[bi]

    def block_offset(self, bi: int) -> int:
        return self.table[bi] & OFFSET_MASK if bi < len(self.table) else 0

    def get(self, cluster: int) -> int:
        """The refcount of host cluster `cluster` as currently cached."""
        blk = self._block(cluster >> self.epb_bits)
        return blk.counts[cluster & (self.epb - 1)] if blk else 0

    # -- updates ----------------------------------------------------------------------------

    def set(self, cluster: int, value: int) -> None:
        """Set a refcount in the cache (written back by write_dirty), creating its block if needed."""
        if not 0 <= value <= self.max:
            raise WirtError(f"{self.f.path}: refcount overflow ({value} does not fit in {self.bits} bits); "
                            "convert the image with a larger refcount width")
        bi = cluster >> self.epb_bits
        blk = self._block(bi)
        if blk is None:
            if value == 0:
                return
            self._ensure_block(bi, [(cluster, cluster + 1)])
            blk = self._block(bi)
            assert blk is not None
        i = cluster & (self.epb - 1)
        blk.counts[i] = value
        blk.touch(i)
        if value and cluster >= self.high:
            self.high = cluster + 1
        if not value and cluster < self.free_hint:
            self.free_hint = cluster

    def add(self, cluster: int, delta: int) -> int:
        """Change a refcount now (increments); returns the new value. Corruption if it would go negative."""
        new = self.get(cluster) + delta
        if new < 0:
            raise corrupt(self.f.path, f"refcount of cluster 0x{cluster << self.cluster_bits:x} would drop below 0")
        self.set(cluster, new)
        return new

    def check_headroom(self, counts: dict[int, int]) -> None:
        """Raise before changing anything if adding `counts` would overflow some refcount."""
        for c, n in counts.items():
            if self.get(c) + n > self.max:
                raise WirtError(f"{self.f.path}: refcount overflow: refcount_bits={self.bits} is too small for this "
                                "operation; convert the image with 'qemu-img convert -o refcount_bits=16'")

    def release(self, cluster: int, count: int = 1) -> None:
        """Queue decrements of `count` clusters from `cluster`, applied after references are gone on disk."""
        self.pending.append((cluster, count))

    def release_bytes(self, offset: int, length: int) -> None:
        """Queue one decrement of each cluster touched by the byte range (compressed clusters)."""
        first, last = offset >> self.cluster_bits, (offset + length - 1) >> self.cluster_bits
        self.pending.append((first, last - first + 1))

    def apply_releases(self) -> None:
        """Apply queued decrements to the cache (call after the references were written and synced)."""
        pending, self.pending = self.pending, []
        for first, count in pending:
            for c in range(first, first + count):
                self.add(c, -1)

    # -- allocation -------------------------------------------------------------------------

    def _is_free(self, c: int) -> bool:
        return self.get(c) == 0 and not (self.avoid and self.avoid(c))

    def _find_free(self, n: int) -> int:
        c = self.free_hint
        mask = self.epb - 1
        while c < self.high:
            blk = self._block(c >> self.epb_bits)
            if blk is not None and not self.avoid:
                try:
                    j = blk.counts.index(0, c & mask)
                except ValueError:
                    c = ((c >> self.epb_bits) + 1) << self.epb_bits
                    continue
                c = (c & ~mask) + j
            elif not self._is_free(c):
                c += 1
                continue
            if c >= self.high:
                break
            k = 1
            while k < n and c + k < self.high and self._is_free(c + k):
                k += 1
            if k >= n or c + k >= self.high:
                return c
            c += k + 1
        return max(c, self.high)

    def alloc(self, n: int = 1) -> int:
        """Allocate `n` contiguous free clusters (refcount 0 -> 1); returns the first cluster index."""
        assert 0 < n <= max(1, self.epb // 2)
        start = self._find_free(n)
        if n == 1 or start == self.free_hint:
            self.free_hint = start + n
        self._ensure_blocks(start, start + n, [(start, start + n)])
        for c in range(start, start + n):
            self.set(c, 1)
        return start

    def _ensure_blocks(self, first: int, end: int, avoid: list[tuple[int, int]]) -> None:
        for bi in range(first >> self.epb_bits, ((end - 1) >> self.epb_bits) + 1):
            self._ensure_block(bi, avoid)

    def _ensure_block(self, bi: int, avoid: list[tuple[int, int]]) -> None:
        """Create refcount block `bi` if missing, stored inside the range it describes (so it counts itself)."""
        if bi < len(self.table) and (self.table[bi] & OFFSET_MASK or bi in self.blocks):
            return
        if bi >= len(self.table):
            self._grow_table(bi, avoid)
            if self.table[bi] & OFFSET_MASK:
                return
        base = bi << self.epb_bits
        loc = base
        while any(a <= loc < b for a, b in avoid) or (self.avoid and self.avoid(loc)):
            loc += 1
        if loc >= base + self.epb:
            raise WirtError(f"{self.f.path}: no room for a refcount block; the image is too fragmented to grow")
        # Every cluster of a missing block has refcount 0, so `loc` is free; the block counts itself.
        blk = RefcountBlock([0] * self.epb, dirty=True)
        blk.counts[loc - base] = 1
        self.blocks[bi] = blk
        self.table[bi] = loc << self.cluster_bits
        self.table_dirty.add(bi)
        self.high = max(self.high, loc + 1)

    def _grow_table(self, min_bi: int, avoid: list[tuple[int, int]]) -> None:
        """Move the refcount table to a larger copy at the end of the image (spec: it must be contiguous)."""
        epc = self.cs // 8
        new_len = max(2 * len(self.table), min_bi + 1)
        start = max([self.high] + [b for _, b in avoid])
        while True:
            k = -(-new_len // epc)
            last_bi = (start + k - 1) >> self.epb_bits  # the block counting the new table's last cluster
            if last_bi < new_len:
                break
            new_len = last_bi + 1
        if k * self.cs > MAX_REFTABLE_BYTES:
            raise WirtError(f"{self.f.path}: the refcount table would exceed 8 MB; use a larger cluster size")
        # Write out increments made so far: the new table copies the in-memory entries.
        self.table = self.table + [0] * (k * epc - len(self.table))
        span = (start, start + k)
        self._ensure_blocks(start, start + k, avoid + [span])
        for c in range(*span):
            self.set(c, 1)
        self.high = max(self.high, start + k)
        self.table_dirty.clear()  # the whole new table is written below, not entries of the old one
        self.write_dirty()
        self.f.sync()  # barrier: blocks before the table that points at them
        self.f.pwrite(start << self.cluster_bits, np.array(self.table, dtype=np.uint64).astype(">u8").tobytes())
        self.f.sync()  # barrier: the table before the header that points at it
        old_off, old_clusters = self.table_offset, self.table_clusters
        self.table_offset, self.table_clusters = start << self.cluster_bits, k
        if self.on_table_moved:
            self.on_table_moved(self.table_offset, k)
        self.release(old_off >> self.cluster_bits, old_clusters)

    # -- write-back -------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self.table_dirty) or any(b.dirty for b in self.blocks.values())

    def write_dirty(self) -> None:
        """Write dirty blocks, then (after a barrier) table entries that point at new blocks."""
        per = max(1, 8 // self.bits)
        bytes_per = self.bits / 8
        for bi, blk in self.blocks.items():
            if not blk.dirty:
                continue
            lo, hi = blk.lo - blk.lo % per, -(-blk.hi // per) * per
            off = self.table[bi] & OFFSET_MASK
            self.f.pwrite(off + int(lo * bytes_per), self._encode(blk.counts[lo:hi]))
            blk.lo, blk.hi = len(blk.counts), 0
        if self.table_dirty:
            self.f.sync()  # new blocks must be on disk before table entries point at them
            lo, hi = min(self.table_dirty), max(self.table_dirty) + 1
            data = np.array(self.table[lo:hi], dtype=np.uint64).astype(">u8").tobytes()
            self.f.pwrite(self.table_offset + lo * 8, data)
            self.table_dirty.clear()
        self._evict()

    def drop_cache(self) -> None:
        """Forget clean cached blocks (after their contents changed behind the cache)."""
        for bi in [bi for bi, b in self.blocks.items() if not b.dirty]:
            del self.blocks[bi]

    # -- whole-image views (check, repair) --------------------------------------------------

    def stored_array(self, nclusters: int) -> np.ndarray:
        """Stored refcounts of clusters [0, max(nclusters, covered)) as an int64 array."""
        n = max(nclusters, self.high)
        out = np.zeros(n, np.int64)
        for bi in range(min(len(self.table), -(-n // self.epb))):
            blk = self._block(bi)
            if blk is not None:
                base = bi << self.epb_bits
                vals = blk.counts[: max(0, n - base)]
                out[base : base + len(vals)] = vals
        return out

    def table_clusters_iter(self) -> Iterable[int]:
        """Host clusters holding the refcount table and the allocated refcount blocks."""
        first = self.table_offset >> self.cluster_bits
        yield from range(first, first + self.table_clusters)
        for e in self.table:
            if e & OFFSET_MASK:
                yield (e & OFFSET_MASK) >> self.cluster_bits
