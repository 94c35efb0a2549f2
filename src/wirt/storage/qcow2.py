"""qcow2 images: reading versions 2 and 3, writing with copy-on-write, zero clusters and discard.

Guest offsets map to host clusters through the L1 table (kept in memory) and L2 tables (cached);
see the spec's "Cluster mapping". Metadata is cached write-back and committed by `flush()` in an
order that keeps the image consistent if the process dies at any instant (docs/storage.md):
data and refcount increments, barrier, L2 tables, barrier, L1 table, barrier, refcount decrements.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from wirt.confine.paths import PathPolicy
from wirt.errors import WirtError
from wirt.hostiov import HostIov
from wirt.storage.block import BlockDevice
from wirt.storage.bufvec import BufVec, IovVec, ViewsVec
from wirt.storage.hostfile import HostFile
from wirt.storage.qcow2_format import (
    AUTOCLEAR_BITMAPS, COMPRESSED, EXT_BITMAPS, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, MAX_SNAPSHOT_TABLE_BYTES,
    NORMAL, OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED, OFLAG_ZERO, UNALLOCATED, ZERO_ALLOC, ZERO_PLAIN,
    Header, L2Geometry, SnapshotEntry, check_table, corrupt, parse_header, parse_snapshot_table,
)
from wirt.storage.refcount import DirtyRange, Refcounts

_L2_CACHE_BYTES = 32 << 20
_MAX_RUN_BYTES = 8 << 20  # clusters allocated together in one write
_NOT_INPLACE = OFLAG_COMPRESSED | OFLAG_ZERO


MAX_CHAIN = 256  # backing files below an image (QEMU's limit is the same order; docs/storage.md)


def read_header(f: HostFile, path: str) -> Header:
    """Parse the qcow2 header at the start of `f` (up to one cluster of it)."""
    try:
        buf = os.pread(f.fd, 65536, 0)
        if len(buf) >= 24 and buf[:4] == b"QFI\xfb":
            bits = struct.unpack_from(">I", buf, 20)[0]
            if 16 < bits <= 21:
                buf = os.pread(f.fd, 1 << bits, 0)
    except OSError as exc:
        raise WirtError(f"{path}: cannot read it ({exc.strerror or exc}); give a disk image file") from None
    return parse_header(buf, f.end, path)


def backing_target(path: str, name: str) -> str:
    """Where backing-file name `name` of image `path` points (relative names: beside the image)."""
    if name.startswith("json:") or "://" in name:
        raise WirtError(f"{path}: backing file {name!r} is not a plain file name; wirt supports files only")
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(os.path.abspath(path)), name)


def open_backing(path: str, h: Header, policy: PathPolicy | None) -> BlockDevice | None:
    """Open the backing chain below image `path` (header `h`), bottom first, without recursion.

    The chain is walked first, header by header: every name must be a plain file (`policy`, when
    given, must allow it), no file may appear twice (a loop) and there may be at most MAX_CHAIN
    files. Only then are the images opened, the deepest first, each handed to the one above.
    """
    from wirt.storage.raw import RawImage

    files: list[tuple[str, str]] = []
    seen = {os.path.realpath(path)}
    cur, hdr = path, h
    while hdr is not None and hdr.backing_file:
        name = hdr.backing_file
        target = backing_target(cur, name)
        real = os.path.realpath(target)
        if real in seen:
            raise WirtError(f"{cur}: backing chain loops back to {name}; fix it with 'qemu-img rebase -u'")
        if len(files) >= MAX_CHAIN:
            raise WirtError(f"{path}: backing chain is deeper than {MAX_CHAIN} images; flatten it with "
                            "'wirt disk convert' or 'qemu-img convert'")
        seen.add(real)
        if not os.path.lexists(target):
            raise WirtError(f"{cur}: backing file {target} is missing; restore it or point the image at "
                            "another one with 'qemu-img rebase -u -b NEW'")
        if policy is not None:
            policy.check(target, f"{cur}: backing file")
        fmt = hdr.backing_format
        if fmt not in (None, "raw", "qcow2"):
            raise WirtError(f"{cur}: backing file format {fmt!r} is not supported (raw and qcow2 are)")
        f = HostFile(target, True)
        try:
            if fmt is None:
                fmt = "qcow2" if os.pread(f.fd, 4, 0) == b"QFI\xfb" else "raw"
            hdr = read_header(f, target) if fmt == "qcow2" else None
        except OSError as exc:
            raise WirtError(f"{target}: cannot read it ({exc.strerror or exc}); give a disk image file") from None
        finally:
            f.close()
        files.append((target, fmt))
        cur = target
    below: BlockDevice | None = None
    try:
        for target, fmt in reversed(files):
            below = (RawImage(target, read_only=True) if fmt == "raw"
                     else Qcow2Image(target, read_only=True, _backing=below))
    except BaseException:
        if below is not None:
            below.close()
        raise
    return below


class L2Table(DirtyRange):
    """One cached L2 table: entries as ints, plus the dirty entry range to write back."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[int], dirty: bool = False):
        super().__init__(len(entries), dirty)
        self.entries = entries

    def set(self, i: int, value: int) -> None:
        self.entries[i] = value
        self.touch(i)


def _u64s(raw: bytes) -> list[int]:
    return np.frombuffer(raw, ">u8").tolist()


def _pack_u64s(values: list[int]) -> bytes:
    return np.array(values, dtype=np.uint64).astype(">u8").tobytes()


class Qcow2Image(BlockDevice):
    """A qcow2 image file, optionally over a chain of backing files."""

    format_name = "qcow2"

    def __init__(self, path: str, read_only: bool = True, *, policy: PathPolicy | None = None,
                 repair_dirty: bool = True, _backing: BlockDevice | None | bool = False):
        """`policy`: the files this image's backing chain may name (None: any, as qemu-img).
        `_backing`: the backing image, already opened (open_backing); False: open it here."""
        self.path = path
        self._f = HostFile(path, read_only)
        self.backing: BlockDevice | None = None
        self._closed = False
        try:
            self._open(policy, repair_dirty, _backing)
        except BaseException:
            if self.backing is not None:
                self.backing.close()
            self._f.close()
            self._closed = True
            raise

    # -- opening --------------------------------------------------------------------------

    def _open(self, policy: PathPolicy | None, repair_dirty: bool, backing: BlockDevice | None | bool) -> None:
        f = self._f
        h = self.header = read_header(f, self.path)
        self.cluster_bits = cb = h.cluster_bits
        self.cluster_size = cs = 1 << cb
        self._cmask = cs - 1
        self._l2_bits = cb - 3
        self._l2_entries = cs // 8
        self._geo = L2Geometry(cb, h.version)
        self._zero = bytes(cs)
        self._size = h.size
        self._zcache: tuple[int, bytes] = (0, b"")
        self._alloc_end = 0  # end of the highest cluster allocated in this session
        self._cpos = 0  # next free byte for compressed data
        self._l1 = _u64s(f.pread(h.l1_table_offset, h.l1_size * 8))
        self._l1_lo, self._l1_hi = len(self._l1), 0
        self._l2cache: dict[int, L2Table] = {}
        self._l2cache_max = max(16, _L2_CACHE_BYTES // cs)
        self.snapshots = self._read_snapshots()
        self._refs = Refcounts(f, cb, h.refcount_order, h.refcount_table_offset, h.refcount_table_clusters,
                               on_table_moved=self._reftable_moved)
        self._fixed_meta: dict[int, str] = {}
        self._index_fixed_metadata()
        self._refs.meta_check = self._fixed_meta.get
        if backing is False:
            self.backing = open_backing(self.path, h, policy)
        else:
            self.backing = backing  # type: ignore[assignment]
        if not f.read_only:
            self._open_for_writing(repair_dirty)

    def _read_snapshots(self) -> list[SnapshotEntry]:
        h = self.header
        if not h.nb_snapshots:
            return []
        want = max(h.nb_snapshots * 64, 4096)
        while True:
            limit = min(want, MAX_SNAPSHOT_TABLE_BYTES, max(0, self._f.end - h.snapshots_offset))
            raw = self._f.pread(h.snapshots_offset, limit)
            try:
                snaps = parse_snapshot_table(raw, h.nb_snapshots, self.path)
                break
            except WirtError:
                if limit >= MAX_SNAPSHOT_TABLE_BYTES or limit < want:
                    raise
                want *= 4
        for s in snaps:
            check_table(self.path, f"L1 table of snapshot {s.id}", s.l1_table_offset, s.l1_size * 8,
                        self.cluster_size, self._f.end)
            if s.l1_size * 8 > 32 << 20:
                raise corrupt(self.path, f"snapshot {s.id} has an oversized L1 table")
        return snaps

    def _index_fixed_metadata(self) -> None:
        """Remember which host clusters hold header, L1, refcount and snapshot tables (overlap checks)."""
        h, cb = self.header, self.cluster_bits
        meta = {0: "header"}

        def span(what: str, off: int, length: int) -> None:
            for c in range(off >> cb, (off + max(length, 1) - 1 >> cb) + 1):
                if c in meta and meta[c] != what:
                    raise corrupt(self.path, f"the {what} overlaps the {meta[c]}")
                meta[c] = what

        span("active L1 table", h.l1_table_offset, h.l1_size * 8)
        span("refcount table", h.refcount_table_offset, h.refcount_table_clusters * self.cluster_size)
        if self.snapshots:
            span("snapshot table", h.snapshots_offset, self._snapshot_table_bytes())
            for s in self.snapshots:
                if s.l1_size:
                    span(f"L1 table of snapshot {s.id}", s.l1_table_offset, s.l1_size * 8)
        self._fixed_meta = meta

    def _snapshot_table_bytes(self) -> int:
        return sum(len(s.pack(self.header.version)) for s in self.snapshots)

    def _open_for_writing(self, repair_dirty: bool) -> None:
        h = self.header
        if h.incompatible_features & INCOMPAT_CORRUPT:
            raise WirtError(f"{self.path}: image is marked corrupt; open it read-only, or repair it with "
                            "'qemu-img check -r all'")
        if any(k == EXT_BITMAPS for k, _ in h.extensions) or h.autoclear_features & AUTOCLEAR_BITMAPS:
            raise WirtError(f"{self.path}: persistent dirty bitmaps are not supported for writing; open it "
                            "read-only or remove them with 'qemu-img bitmap --remove'")
        was_dirty = h.incompatible_features & INCOMPAT_DIRTY
        # Spec: unknown autoclear bits must be cleared before writing; none of them matter to us.
        h.autoclear_features = 0
        if h.version >= 3:
            h.incompatible_features |= INCOMPAT_DIRTY
            self._write_header_fields()
            self._f.sync()
        if was_dirty and repair_dirty:
            # Spec (dirty bit): refcounts may be inconsistent; rebuild them before any allocation.
            from wirt.storage.qcow2_check import check_image

            report = check_image(self, repair="all")
            if report.corruptions:
                raise WirtError(f"{self.path}: image was not closed cleanly and has {report.corruptions} "
                                "corruptions; repair it with 'qemu-img check -r all'")

    # -- properties -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._f.read_only

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def refcounts(self) -> Refcounts:
        return self._refs

    @property
    def file(self) -> HostFile:
        return self._f

    @property
    def l1_table(self) -> list[int]:
        return self._l1

    # -- header updates ---------------------------------------------------------------------

    def _write_header_fields(self) -> None:
        """Rewrite the fixed header fields in place (one write, inside the first sector)."""
        self._f.pwrite(0, self.header.pack_fixed()[:104])

    def _reftable_moved(self, offset: int, clusters: int) -> None:
        h = self.header
        h.refcount_table_offset, h.refcount_table_clusters = offset, clusters
        self._f.pwrite(48, struct.pack(">QI", offset, clusters))
        self._f.sync()
        self._index_fixed_metadata()

    def mark_corrupt(self, what: str) -> WirtError:
        """Set the corrupt bit (writable images only, spec bit 1) and return the error to raise."""
        if not self.read_only and self.version >= 3:
            self.header.incompatible_features |= INCOMPAT_CORRUPT
            self._f.pwrite(72, struct.pack(">Q", self.header.incompatible_features))
            self._f.sync()
        return corrupt(self.path, what)

    # -- L2 tables --------------------------------------------------------------------------

    def _l2_table(self, off: int, where: str = "") -> L2Table:
        t = self._l2cache.get(off)
        if t is not None:
            return t
        if off & self._cmask or off + self.cluster_size > max(self._f.end, 0):
            raise self.mark_corrupt(f"L2 table{where} at 0x{off:x} is unaligned or past the end of the file")
        what = self._fixed_meta.get(off >> self.cluster_bits)
        if what:
            raise self.mark_corrupt(f"L2 table{where} at 0x{off:x} overlaps the {what}")
        t = L2Table(_u64s(self._f.pread(off, self.cluster_size)))
        if len(self._l2cache) >= self._l2cache_max:
            self._evict_l2()
        self._l2cache[off] = t
        return t

    def load_l2(self, off: int) -> list[int]:
        """Entries of the L2 table at host offset `off` (validated, cached)."""
        return self._l2_table(off).entries

    def _evict_l2(self) -> None:
        clean = [k for k, t in self._l2cache.items() if not t.dirty]
        if len(clean) < len(self._l2cache) // 2:
            self._commit()
            clean = list(self._l2cache)
        for k in clean[: max(1, len(clean) // 2)]:
            del self._l2cache[k]

    def _entry(self, cidx: int) -> int:
        """The L2 entry of guest cluster `cidx` (0 when its L2 table is unallocated)."""
        l1i = cidx >> self._l2_bits
        if l1i >= len(self._l1):
            return 0
        off = self._l1[l1i] & OFFSET_MASK
        if not off:
            return 0
        t = self._l2cache.get(off) or self._l2_table(off, f" #{l1i}")
        return t.entries[cidx & (self._l2_entries - 1)]

    def _l2_for_write(self, l1i: int) -> L2Table:
        """The active L2 table for L1 index `l1i`, allocated or copied so it may be modified in place."""
        e = self._l1[l1i]
        off = e & OFFSET_MASK
        if off and e & OFLAG_COPIED:
            return self._l2_table(off, f" #{l1i}")
        new = self._refs.alloc(1) << self.cluster_bits
        if off:  # shared with a snapshot: copy it (its entries already lack COPIED, refcount >= 2)
            t = L2Table(list(self._l2_table(off, f" #{l1i}").entries), dirty=True)
            self._refs.release(off >> self.cluster_bits)
        else:
            t = L2Table([0] * self._l2_entries, dirty=True)
        if len(self._l2cache) >= self._l2cache_max:
            self._evict_l2()
        self._l2cache[new] = t
        self._set_l1(l1i, new | OFLAG_COPIED)
        return t

    def _set_l1(self, i: int, value: int) -> None:
        self._l1[i] = value
        self._l1_lo = min(self._l1_lo, i)
        self._l1_hi = max(self._l1_hi, i + 1)

    def _release_entry(self, entry: int) -> None:
        """Queue the refcount decrements for a replaced L2 entry."""
        kind = self._geo.kind(entry)
        if kind == NORMAL or kind == ZERO_ALLOC:
            self._refs.release((entry & OFFSET_MASK) >> self.cluster_bits)
        elif kind == COMPRESSED:
            self._refs.release_bytes(*self._geo.compressed_span(entry))

    # -- reading ----------------------------------------------------------------------------

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        self.readv(offset, [memoryview(buf).cast("B")])

    def readv(self, offset: int, views: list[memoryview]) -> None:
        self._readv(offset, ViewsVec(views))

    def readv_iov(self, offset: int, iov: HostIov) -> None:
        """Read into guest RAM segments: one preadv (an iovec array) per host-contiguous run."""
        self._readv(offset, IovVec(iov))

    def _readv(self, offset: int, rest: BufVec) -> None:
        """Map the clusters under [offset, +rest.total) and fill `rest` run by run (spec "Cluster
        mapping"): host-contiguous data clusters in one read, zeros, compressed, backing."""
        total = rest.total
        self._check_range(offset, total)
        cb, cmask, geo = self.cluster_bits, self._cmask, self._geo
        pos = 0
        while pos < total:
            goff = offset + pos
            cidx = goff >> cb
            within = goff & cmask
            entry = self._entry(cidx)
            n = min(self.cluster_size - within, total - pos)
            if entry & OFFSET_MASK and not entry & _NOT_INPLACE:
                host = entry & OFFSET_MASK
                if host & cmask:
                    raise self.mark_corrupt(f"data cluster offset 0x{host:x} is unaligned")
                # Coalesce host-contiguous clusters into one preadv.
                start = host + within
                while pos + n < total:
                    nxt = self._entry(cidx + 1)
                    if nxt & _NOT_INPLACE or (nxt & OFFSET_MASK) != host + self.cluster_size:
                        break
                    cidx += 1
                    host += self.cluster_size
                    n += min(self.cluster_size, total - pos - n)
                part, rest = rest.split(n)
                part.pread(self._f, start)
            else:
                kind = geo.kind(entry)
                if kind == COMPRESSED:
                    part, rest = rest.split(n)
                    part.fill(memoryview(self._decompress(entry))[within : within + n])
                elif kind == UNALLOCATED and self.backing is not None:
                    while pos + n < total and self._entry(cidx + 1) == 0:
                        cidx += 1
                        n += min(self.cluster_size, total - pos - n)
                    part, rest = rest.split(n)
                    self._read_backing(goff, part)
                else:  # zero cluster, or unallocated without a backing file
                    zeroes = (ZERO_PLAIN, ZERO_ALLOC) if self.backing is not None else (UNALLOCATED, ZERO_PLAIN,
                                                                                         ZERO_ALLOC)
                    while pos + n < total and geo.kind(self._entry(cidx + 1)) in zeroes:
                        cidx += 1
                        n += min(self.cluster_size, total - pos - n)
                    part, rest = rest.split(n)
                    part.zero()
            pos += n

    def _read_backing(self, goff: int, vec: BufVec) -> None:
        """Spec: unallocated clusters read from the backing file, zeros past its end."""
        assert self.backing is not None
        avail = max(0, min(vec.total, self.backing.size - goff))
        head, tail = vec.split(avail)
        if head.total:
            head.read_image(self.backing, goff)
        if tail.total:
            tail.zero()

    def _decompress(self, entry: int) -> bytes:
        if self._zcache[0] == entry:
            return self._zcache[1]
        off, length = self._geo.compressed_span(entry)
        raw = self._f.pread(off, length)
        try:
            d = zlib.decompressobj(-15)  # spec: raw deflate, no zlib header
            out = d.decompress(raw, self.cluster_size)
        except zlib.error as exc:
            raise corrupt(self.path, f"compressed cluster at 0x{off:x} does not decompress ({exc})") from None
        if len(out) < self.cluster_size:
            raise corrupt(self.path, f"compressed cluster at 0x{off:x} is truncated")
        self._zcache = (entry, out)
        return out

    def _old_contents(self, cidx: int, entry: int, start: int, length: int) -> bytes | None:
        """Current bytes [start, start+length) of guest cluster `cidx`, or None when they are all zero."""
        kind = self._geo.kind(entry)
        if kind == NORMAL:
            return self._f.pread((entry & OFFSET_MASK) + start, length)
        if kind == COMPRESSED:
            return self._decompress(entry)[start : start + length]
        if kind == UNALLOCATED and self.backing is not None:
            goff = (cidx << self.cluster_bits) + start
            if goff >= self.backing.size:
                return None
            buf = bytearray(length)
            self._read_backing(goff, ViewsVec([memoryview(buf)], length))
            return bytes(buf)
        return None

    # -- writing ----------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.writev(offset, [memoryview(data).cast("B")])

    def writev(self, offset: int, views: list[memoryview]) -> None:
        self._writev(offset, ViewsVec(views))

    def writev_iov(self, offset: int, iov: HostIov) -> None:
        """Write from guest RAM segments: one pwritev (an iovec array) per host-contiguous run."""
        self._writev(offset, IovVec(iov))

    def _writev(self, offset: int, rest: BufVec) -> None:
        """Map (or allocate, copy-on-write) the clusters under [offset, +rest.total) and write
        `rest` run by run; new references stay in the caches until `flush()` (Crash safety)."""
        self._check_writable()
        total = rest.total
        self._check_range(offset, total)
        cb, cmask, cs = self.cluster_bits, self._cmask, self.cluster_size
        l2mask = self._l2_entries - 1
        pos = 0
        while pos < total:
            goff = offset + pos
            cidx = goff >> cb
            within = goff & cmask
            entry = self._entry(cidx)
            n = min(cs - within, total - pos)
            if entry & OFLAG_COPIED and not entry & _NOT_INPLACE:
                host = entry & OFFSET_MASK
                start = host + within
                self._check_data_cluster(host)
                while pos + n < total and (cidx + 1) & l2mask:
                    nxt = self._entry(cidx + 1)
                    if not nxt & OFLAG_COPIED or nxt & _NOT_INPLACE or (nxt & OFFSET_MASK) != host + cs:
                        break
                    cidx += 1
                    host += cs
                    self._check_data_cluster(host)
                    n += min(cs, total - pos - n)
                part, rest = rest.split(n)
                part.pwrite(self._f, start)
            else:
                # Allocate a run of clusters in the same L2 table that all need new space.
                k = 1
                limit = min(_MAX_RUN_BYTES >> cb, max(1, self._refs.epb // 2))
                while pos + n < total and k < limit and (cidx + k) & l2mask:
                    nxt = self._entry(cidx + k)
                    if nxt & OFLAG_COPIED and not nxt & _NOT_INPLACE:
                        break
                    k += 1
                    n += min(cs, total - pos - n)
                part, rest = rest.split(n)
                self._allocating_write(cidx, k, within, part)
            pos += n

    def _check_data_cluster(self, host: int) -> None:
        what = self._fixed_meta.get(host >> self.cluster_bits)
        if what or host & self._cmask:
            raise self.mark_corrupt(f"data cluster at 0x{host:x} overlaps the {what or 'cluster grid'}")

    def _allocating_write(self, cidx: int, k: int, within: int, data: BufVec) -> None:
        """Write the buffers `data` at byte `within` of guest clusters cidx..cidx+k-1 into newly
        allocated clusters (one pwritev with the copy-on-write head and tail)."""
        cb, cs = self.cluster_bits, self.cluster_size
        l2i = cidx & (self._l2_entries - 1)
        table = self._l2_for_write(cidx >> self._l2_bits)
        old = table.entries[l2i : l2i + k]
        first = self._refs.alloc(k)
        host = first << cb
        fresh = host >= self._f.end  # never written: a sparse hole that reads as zeros
        tail_start = within + data.total
        tail = k * cs - tail_start
        head_bytes = self._old_contents(cidx, old[0], 0, within) if within else None
        tail_bytes = self._old_contents(cidx + k - 1, old[-1], cs - tail, tail) if tail else None
        start = host + within
        head = within and (head_bytes is not None or not fresh)
        if tail and (tail_bytes is not None or not fresh) or head:
            bufs: list = list(data.buffers())
            if head:
                bufs.insert(0, head_bytes if head_bytes is not None else self._zero[:within])
                start = host
            if tail and (tail_bytes is not None or not fresh):
                bufs.append(tail_bytes if tail_bytes is not None else self._zero[:tail])
            self._f.pwritev(start, bufs)
        else:  # whole clusters, or a fresh hole's zeros left as they are: the data alone
            data.pwrite(self._f, start)
        self._alloc_end = max(self._alloc_end, host + k * cs)
        for i in range(k):
            table.set(l2i + i, ((first + i) << cb) | OFLAG_COPIED)
            self._release_entry(old[i])

    def _cluster_range(self, offset: int, length: int) -> tuple[int, int]:
        """Guest clusters wholly inside [offset, offset+length); the partial tail at the disk end counts."""
        cs = self.cluster_size
        first = -(-offset // cs)
        end = offset + length
        last = self._size_clusters() if end >= self._size else end // cs
        return first, last

    def _size_clusters(self) -> int:
        return -(-self._size // self.cluster_size)

    def _set_clusters(self, first: int, last: int, new_entry: int, skip_unallocated: bool) -> None:
        """Point guest clusters [first, last) at `new_entry` (0 or a zero flag), releasing old space."""
        for cidx in range(first, last):
            old = self._entry(cidx)
            if old == new_entry or (skip_unallocated and old == 0):
                continue
            t = self._l2_for_write(cidx >> self._l2_bits)
            t.set(cidx & (self._l2_entries - 1), new_entry)
            self._release_entry(old)

    def discard(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_range(offset, length)
        first, last = self._cluster_range(offset, length)
        # As QEMU does: with a backing file, a discarded cluster must not expose backing data (v3).
        has_backing = self.backing is not None
        new = OFLAG_ZERO if has_backing and self.version >= 3 else 0
        self._set_clusters(first, last, new, skip_unallocated=not has_backing)

    def write_zeroes(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_range(offset, length)
        first, last = self._cluster_range(offset, length)
        cs = self.cluster_size
        if first >= last:
            self._write_zero_bytes(offset, length)
            return
        self._write_zero_bytes(offset, first * cs - offset)
        end = min(offset + length, last * cs)
        self._write_zero_bytes(end, offset + length - end)
        if self.version >= 3:
            self._set_clusters(first, last, OFLAG_ZERO, skip_unallocated=self.backing is None)
        elif self.backing is None:
            self._set_clusters(first, last, 0, skip_unallocated=True)
        else:
            self._write_zero_bytes(first * cs, end - first * cs)

    def _write_zero_bytes(self, offset: int, length: int) -> None:
        for pos in range(offset, offset + length, self.cluster_size):
            self.write(pos, self._zero[: min(self.cluster_size, offset + length - pos)])

    def write_compressed(self, cidx: int, data: bytes, level: int = 6) -> None:
        """Store one whole guest cluster deflate-compressed (unallocated clusters only, as in convert -c)."""
        self._check_writable()
        cs = self.cluster_size
        if len(data) != cs and (cidx + 1) * cs <= self._size:
            raise ValueError("write_compressed takes exactly one cluster of data")
        data = bytes(data).ljust(cs, b"\0")
        c = zlib.compressobj(level, zlib.DEFLATED, -12)
        packed = c.compress(data) + c.flush()
        if len(packed) >= cs - 512 or self._entry(cidx):
            self.write(cidx * cs, data[: min(cs, self._size - cidx * cs)])
            return
        off = self._compressed_alloc(len(packed))
        self._f.pwrite(off, packed)
        table = self._l2_for_write(cidx >> self._l2_bits)
        table.set(cidx & (self._l2_entries - 1), self._geo.compressed_entry(off, len(packed)))

    def _compressed_alloc(self, length: int) -> int:
        """Byte-granular allocation for compressed data: packs clusters back to back (spec allows sharing)."""
        cs, cb = self.cluster_size, self.cluster_bits
        pos = self._cpos
        if pos and (pos & self._cmask) and (pos & self._cmask) + length <= cs:
            self._refs.add(pos >> cb, 1)  # the partly used cluster gains one more reference
            self._cpos = pos + length
            return pos
        if pos and (pos & self._cmask) and self._refs.get((pos >> cb) + 1) == 0 and length <= cs:
            # Spill into the next cluster: this cluster +1, the next one newly allocated.
            nxt = (pos >> cb) + 1
            self._refs.add(pos >> cb, 1)
            self._refs._ensure_blocks(nxt, nxt + 1, [(nxt, nxt + 1)])
            self._refs.set(nxt, 1)
            self._cpos = pos + length
            self._alloc_end = max(self._alloc_end, (nxt + 1) << cb)
            return pos
        n = -(-length // cs)
        first = self._refs.alloc(n)
        self._cpos = (first << cb) + length
        self._alloc_end = max(self._alloc_end, (first + n) << cb)
        return first << cb

    # -- committing metadata ----------------------------------------------------------------

    def _metadata_dirty(self) -> bool:
        return (self._l1_lo < self._l1_hi or self._refs.dirty or bool(self._refs.pending)
                or any(t.dirty for t in self._l2cache.values()))

    def _commit(self) -> None:
        """Write cached metadata in crash-safe order (see module docstring); ends with a barrier."""
        f, refs = self._f, self._refs
        if not self._metadata_dirty():
            if not f.synced:
                f.sync()
            return
        end = self._alloc_end
        if end > f.end:
            f.extend_to(end)  # allocated clusters lie inside the file before anything points at them
        refs.write_dirty()
        f.sync()  # barrier: guest data and refcount increments before the references
        for off, t in self._l2cache.items():
            if t.dirty:
                f.pwrite(off + t.lo * 8, _pack_u64s(t.entries[t.lo : t.hi]))
                t.lo, t.hi = len(t.entries), 0
        if self._l1_lo < self._l1_hi:
            f.sync()  # barrier: new L2 tables before the L1 entries that point at them
            lo, hi = self._l1_lo, self._l1_hi
            f.pwrite(self.header.l1_table_offset + lo * 8, _pack_u64s(self._l1[lo:hi]))
            self._l1_lo, self._l1_hi = len(self._l1), 0
        f.sync()  # barrier: references gone before the refcounts that drop
        if refs.pending:
            refs.apply_releases()
            refs.write_dirty()
            f.sync()

    def flush(self) -> None:
        if not self.read_only:
            self._commit()

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.read_only:
                self._commit()
                h = self.header
                if h.version >= 3 and h.incompatible_features & INCOMPAT_DIRTY:
                    h.incompatible_features &= ~INCOMPAT_DIRTY
                    self._write_header_fields()
                    self._f.sync()
        finally:
            self._closed = True
            self._f.close()
            if self.backing is not None:
                self.backing.close()

    def drop_caches(self) -> None:
        """Commit and forget cached L2 tables and refcount blocks (after bulk metadata rewrites)."""
        if not self.read_only:
            self._commit()
        self._l2cache.clear()
        self._refs.drop_cache()
        self._zcache = (0, b"")

    # -- resizing and mapping ---------------------------------------------------------------

    def resize(self, new_size: int) -> None:
        """Grow the virtual disk to `new_size` bytes (growing the L1 table if needed)."""
        self._check_writable()
        if new_size < self._size:
            raise WirtError(f"{self.path}: shrinking is not supported (size {self._size} > {new_size})")
        self._commit()
        need = -(-new_size // (self.cluster_size * self._l2_entries))
        if need * 8 > 32 << 20:
            raise WirtError(f"{self.path}: {new_size} bytes is too large for {self.cluster_size}-byte clusters")
        old_size = self._size
        if need > len(self._l1):
            self.replace_l1(self._l1 + [0] * (need - len(self._l1)), new_size)
        else:
            self.header.size = new_size
            self._write_header_fields()
            self._f.sync()
        self._size = new_size
        # The grown area must read as zeros: clear the old last cluster's tail and hide any longer backing file.
        zero_end = -(-old_size // self.cluster_size) * self.cluster_size
        if self.backing is not None:
            zero_end = max(zero_end, min(self.backing.size, new_size))
        zero_end = min(zero_end, new_size)
        if zero_end > old_size:
            self.write_zeroes(old_size, zero_end - old_size)
        self._commit()

    def replace_l1(self, entries: list[int], new_size: int) -> None:
        """Write `entries` as the active L1 table at a new location, then switch the header to it."""
        self._commit()
        cb = self.cluster_bits
        nclusters = max(1, -(-len(entries) * 8 // self.cluster_size))
        first = self._alloc_contiguous(nclusters)
        self._refs.write_dirty()
        self._f.sync()
        data = _pack_u64s(entries) if entries else b""
        self._f.pwrite(first << cb, data.ljust(nclusters * self.cluster_size, b"\0"))
        self._f.sync()
        h = self.header
        old_off, old_n = h.l1_table_offset, max(1, -(-h.l1_size * 8 // self.cluster_size)) if h.l1_size else 0
        h.size, h.l1_size, h.l1_table_offset = new_size, len(entries), first << cb
        self._write_header_fields()
        self._f.sync()
        self._l1 = list(entries)
        self._l1_lo, self._l1_hi = len(self._l1), 0
        self._size = new_size
        if old_n:
            self._refs.release(old_off >> cb, old_n)
        self._index_fixed_metadata()
        self._commit()

    def _alloc_contiguous(self, n: int) -> int:
        """Allocate n contiguous clusters even when n exceeds one allocation call's limit."""
        step = max(1, self._refs.epb // 2)
        if n <= step:
            return self._refs.alloc(n)
        first = self._refs.alloc(1)
        got = 1
        while got < n:
            nxt = self._refs.alloc(1)
            if nxt != first + got:  # not contiguous: start again past everything used
                self._refs.release(first, got)
                self._refs.release(nxt)
                first, got = self._refs.alloc(1), 1
                continue
            got += 1
        return first

    def map(self) -> Iterator[tuple[int, int, str]]:
        """(guest offset, length, kind) with kind 'data', 'compressed', 'zero' or 'backing'/'unallocated'."""
        cs = self.cluster_size
        run_start, run_kind = 0, None
        for cidx in range(self._size_clusters()):
            kind = self._geo.kind(self._entry(cidx))
            name = {NORMAL: "data", COMPRESSED: "compressed", ZERO_PLAIN: "zero", ZERO_ALLOC: "zero",
                    UNALLOCATED: "backing" if self.backing is not None else "unallocated"}[kind]
            if name != run_kind:
                if run_kind is not None:
                    yield run_start, cidx * cs - run_start, run_kind
                run_start, run_kind = cidx * cs, name
        if run_kind is not None:
            yield run_start, self._size - run_start, run_kind

    def extents(self) -> Iterator[tuple[int, int, bool]]:
        for off, length, kind in self.map():
            if kind == "backing" and self.backing is not None:
                end = off + length
                for boff, blen, bdata in self.backing.extents():
                    lo, hi = max(off, boff), min(end, boff + blen)
                    if lo < hi:
                        yield lo, hi - lo, bdata
                if self.backing.size < end:
                    lo = max(off, self.backing.size)
                    yield lo, end - lo, False
            else:
                yield off, length, kind in ("data", "compressed")

    # -- snapshots (implemented in qcow2_snapshot) ------------------------------------------

    def list_snapshots(self) -> list[SnapshotEntry]:
        return list(self.snapshots)

    def create_snapshot(self, name: str) -> SnapshotEntry:
        from wirt.storage.qcow2_snapshot import create_snapshot

        return create_snapshot(self, name)

    def apply_snapshot(self, name: str) -> None:
        from wirt.storage.qcow2_snapshot import apply_snapshot

        apply_snapshot(self, name)

    def delete_snapshot(self, name: str) -> None:
        from wirt.storage.qcow2_snapshot import delete_snapshot

        delete_snapshot(self, name)


__all__ = ["Qcow2Image", "Header"]
