"""qcow2 internal snapshots: create, apply and delete, keeping refcounts and COPIED flags exact.

Spec "Snapshots": a snapshot is a copy of the active L1 table; every L2 table and data cluster
reachable from it gains one reference. Each step below writes refcount increases before the tables
that need them and removes references before the refcounts drop, with barriers in between, so a
crash leaks clusters at worst.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

import numpy as np

from wirt.errors import WirtError
from wirt.storage.qcow2_format import (
    NORMAL, OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED, ZERO_ALLOC, SnapshotEntry,
)

if TYPE_CHECKING:
    from wirt.storage.qcow2 import Qcow2Image


def tree_references(img: Qcow2Image, l1: list[int]) -> dict[int, int]:
    """Host cluster -> number of references from the L2 tables and data clusters under `l1`."""
    cb, geo = img.cluster_bits, img._geo
    parts = []
    l2offs = [e & OFFSET_MASK for e in l1 if e & OFFSET_MASK]
    parts.append(np.array(l2offs, np.uint64) >> np.uint64(cb))
    for off in l2offs:
        ent = np.array(img.load_l2(off), dtype=np.uint64)
        comp = (ent & np.uint64(OFLAG_COMPRESSED)) != 0
        offs = ent & np.uint64(OFFSET_MASK)
        parts.append(offs[~comp & (offs != 0)] >> np.uint64(cb))
        for e in ent[comp].tolist():
            start, length = geo.compressed_span(e)
            parts.append(np.arange(start >> cb, ((start + length - 1) >> cb) + 1, dtype=np.uint64))
    allc = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    clusters, counts = np.unique(allc, return_counts=True)
    return dict(zip(clusters.tolist(), counts.tolist()))


def read_l1(img: Qcow2Image, snap: SnapshotEntry) -> list[int]:
    raw = img.file.pread(snap.l1_table_offset, snap.l1_size * 8)
    return np.frombuffer(raw, ">u8").tolist()


def find_snapshot(img: Qcow2Image, name: str) -> SnapshotEntry:
    """A snapshot by ID, else by name (as qemu-img does)."""
    for s in img.snapshots:
        if s.id == name:
            return s
    for s in img.snapshots:
        if s.name == name:
            return s
    raise WirtError(f"{img.path}: no snapshot named {name!r}; list them with 'wirt disk snapshot -l'")


def _alloc_and_write(img: Qcow2Image, data: bytes) -> int:
    """Allocate clusters for `data`, write it, and return its host offset (refcounts not yet synced)."""
    cs = img.cluster_size
    n = max(1, -(-len(data) // cs))
    first = img._alloc_contiguous(n)
    img.file.pwrite(first * cs, data.ljust(n * cs, b"\0"))
    return first * cs


def _write_snapshot_table(img: Qcow2Image, snaps: list[SnapshotEntry]) -> None:
    """Write a new snapshot table and switch the header to it; the old table's clusters are freed."""
    h, refs, f, cs = img.header, img.refcounts, img.file, img.cluster_size
    old_off, old_len = h.snapshots_offset, img._snapshot_table_bytes() if img.snapshots else 0
    table = b"".join(s.pack(h.version) for s in snaps)
    new_off = _alloc_and_write(img, table) if snaps else 0
    refs.write_dirty()
    f.sync()  # barrier: the table and its refcounts before the header points at it
    h.nb_snapshots, h.snapshots_offset = len(snaps), new_off
    f.pwrite(60, struct.pack(">IQ", len(snaps), new_off))
    f.sync()
    if old_len:
        first = old_off // cs
        for c in range(first, (old_off + old_len - 1) // cs + 1):
            refs.add(c, -1)
    img.snapshots = snaps
    img._index_fixed_metadata()


def create_snapshot(img: Qcow2Image, name: str) -> SnapshotEntry:
    """Record the current disk state as snapshot `name`."""
    img._check_writable()
    if not name or any(s.name == name for s in img.snapshots):
        raise WirtError(f"{img.path}: a snapshot named {name!r} already exists; pick another name"
                        if name else "snapshot name must not be empty")
    img._commit()
    refs, f = img.refcounts, img.file
    tree = tree_references(img, img.l1_table)
    refs.check_headroom(tree)
    for c, n in tree.items():
        refs.add(c, n)
    refs.write_dirty()
    f.sync()  # barrier: everything shared has refcount >= 2 before COPIED flags go
    # Spec bit 63: COPIED only where the refcount is exactly one, which no shared cluster has now.
    for l1i, e in enumerate(img.l1_table):
        off = e & OFFSET_MASK
        if not off:
            continue
        t = img._l2_table(off)
        for i, v in enumerate(t.entries):
            if v & OFLAG_COPIED:
                t.set(i, v & ~OFLAG_COPIED)
        if e & OFLAG_COPIED:
            img._set_l1(l1i, e & ~OFLAG_COPIED)
    img._commit()
    l1 = img.l1_table
    l1_off = _alloc_and_write(img, np.array(l1, np.uint64).astype(">u8").tobytes()) if l1 else 0
    now = time.time_ns()
    ids = [int(s.id) for s in img.snapshots if s.id.isdigit()]
    snap = SnapshotEntry(l1_off, len(l1), str(max(ids, default=0) + 1), name, now // 10**9, now % 10**9, 0, 0,
                         img.size if img.version >= 3 else None)
    _write_snapshot_table(img, img.snapshots + [snap])
    img._commit()
    return snap


def apply_snapshot(img: Qcow2Image, name: str) -> None:
    """Revert the disk to snapshot `name` (the snapshot itself is kept)."""
    img._check_writable()
    snap = find_snapshot(img, name)
    img._commit()
    refs, f, h = img.refcounts, img.file, img.header
    new_l1 = [e & ~OFLAG_COPIED for e in read_l1(img, snap)]
    new_tree = tree_references(img, new_l1)
    old_tree = tree_references(img, img.l1_table)
    refs.check_headroom(new_tree)
    for c, n in new_tree.items():
        refs.add(c, n)
    refs.write_dirty()
    f.sync()  # barrier: the new active tree is counted before the L1 table points at it
    new_size = snap.disk_size if snap.disk_size is not None else img.size
    if len(new_l1) > h.l1_size:
        img.replace_l1(new_l1, new_size)
    else:
        padded = new_l1 + [0] * (h.l1_size - len(new_l1))
        f.pwrite(h.l1_table_offset, np.array(padded, np.uint64).astype(">u8").tobytes())
        f.sync()
        img._l1[:] = padded
        if new_size != h.size:
            h.size = new_size
            img._write_header_fields()
            f.sync()
    img._size = new_size
    for c, n in old_tree.items():  # the old tree is unreachable on disk now
        refs.add(c, -n)
    refs.write_dirty()
    f.sync()
    # Every cluster of the new tree is shared with the snapshot, so no COPIED flag is due (written cleared).
    img.drop_caches()


def delete_snapshot(img: Qcow2Image, name: str) -> None:
    """Delete snapshot `name`, freeing clusters only it referenced."""
    img._check_writable()
    snap = find_snapshot(img, name)
    img._commit()
    refs, f, cs = img.refcounts, img.file, img.cluster_size
    l1 = read_l1(img, snap)
    tree = tree_references(img, l1)
    _write_snapshot_table(img, [s for s in img.snapshots if s is not snap])
    for c, n in tree.items():  # unreachable on disk now
        refs.add(c, -n)
    if snap.l1_size:
        first = snap.l1_table_offset // cs
        for c in range(first, (snap.l1_table_offset + snap.l1_size * 8 - 1) // cs + 1):
            refs.add(c, -1)
    refs.write_dirty()
    f.sync()
    fix_copied_flags(img)
    img.drop_caches()


def fix_copied_flags(img: Qcow2Image) -> int:
    """Make bit 63 of active L1/L2 entries say exactly 'refcount is one'; returns entries changed."""
    refs, cb, geo = img.refcounts, img.cluster_bits, img._geo
    changed = 0
    for l1i, e in enumerate(img.l1_table):
        off = e & OFFSET_MASK
        if not off:
            continue
        want = OFLAG_COPIED if refs.get(off >> cb) == 1 else 0
        if (e & OFLAG_COPIED) != want:
            img._set_l1(l1i, (e & ~OFLAG_COPIED) | want)
            changed += 1
        t = img._l2_table(off)
        for i, v in enumerate(t.entries):
            if not v:
                continue
            kind = geo.kind(v)
            if kind == NORMAL or kind == ZERO_ALLOC:
                w = OFLAG_COPIED if refs.get((v & OFFSET_MASK) >> cb) == 1 else 0
            else:
                w = 0
            if (v & OFLAG_COPIED) != w:
                t.set(i, (v & ~OFLAG_COPIED) | w)
                changed += 1
    img._commit()
    return changed
