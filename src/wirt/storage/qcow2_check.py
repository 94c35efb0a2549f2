"""Consistency check and repair of qcow2 images, in the sense of `qemu-img check`.

Every reference in the image (header, tables, L2 tables, data and compressed clusters, snapshots)
is counted and compared with the stored refcounts: a stored count that is too high is a leak
(harmless, wasted space); too low is a corruption (a later write could overwrite live data).
Active L1/L2 entries must carry the COPIED flag exactly when the refcount is one (spec bit 63).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from wirt.storage.qcow2_format import L1_RESERVED_MASK, OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED

if TYPE_CHECKING:
    from wirt.storage.qcow2 import Qcow2Image

_U = np.uint64
_MAX_MESSAGES = 1000
# Spec "Standard Cluster Descriptor": bits 1-8 and 56-61 of a standard L2 entry are reserved (QEMU's
# L2E_STD_RESERVED_MASK); bit 0 is the zero flag, 62 compressed, 63 COPIED.
L2_STD_RESERVED_MASK = 0x3F000000000001FE
# A refcount table entry is a block offset in bits 9-63 (all of them, unlike L1/L2 entries) and
# reserved bits 0-8 (QEMU's REFT_OFFSET_MASK, REFT_RESERVED_MASK).
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
REFT_RESERVED_MASK = 0x1FF


@dataclass
class CheckReport:
    """What a check found (and, with repair, what was fixed)."""

    corruptions: int = 0
    leaks: int = 0
    repaired_leaks: int = 0
    repaired_corruptions: int = 0
    messages: list[str] = field(default_factory=list)
    total_clusters: int = 0
    allocated_clusters: int = 0
    compressed_clusters: int = 0
    image_end_offset: int = 0

    @property
    def clean(self) -> bool:
        return not self.corruptions and not self.leaks


class _Walker:
    """Counts references into an array of expected refcounts, one per cluster of the file.

    Memory stays bounded by the file's real size, whatever the metadata claims: a reference past
    the end of the file is an error and is not counted, and an L2 table that several L1 entries
    name (a hostile image can point thousands of them at one table) is read and counted once,
    times the number of references."""

    def __init__(self, img: Qcow2Image, report: CheckReport):
        self.img = img
        self.report = report
        self.cb = img.cluster_bits
        self.cs = img.cluster_size
        self.file_size = max(img.file.size(), img.file.end)
        # a counted reference ends less than one cluster past the end of the file (past_end)
        self.counts = np.zeros(-(-self.file_size // self.cs) + 2, np.int64)
        self.active_l2: list[tuple[int, int, int]] = []  # (first L1 index, L2 offset, references)

    def error(self, msg: str, times: int = 1) -> None:
        self.report.corruptions += times
        if len(self.report.messages) < _MAX_MESSAGES:  # a garbage table must not fill memory with text
            self.report.messages.append(f"ERROR {msg}" + (f" ({times} references)" if times > 1 else ""))

    def past_end(self, offset: int, length: int, times: int = 1) -> bool:
        """QEMU's rule: a reference ending one cluster or more past the end of the file is an error
        (and is not counted: the expected-refcount array stays bounded by the file's real size)."""
        if offset + length - self.file_size >= self.cs:
            self.error(f"counting reference for region exceeding the end of the file by one cluster or more: "
                       f"offset 0x{offset:x} size 0x{length:x}", times)
            return True
        return False

    def add(self, clusters: np.ndarray, times: int = 1) -> None:
        np.add.at(self.counts, clusters.astype(np.int64), times)

    def span(self, offset: int, length: int, times: int = 1) -> None:
        if length > 0 and not self.past_end(offset, length, times):
            self.add(np.arange(offset >> self.cb, ((offset + length - 1) >> self.cb) + 1, dtype=_U), times)

    def cluster(self, offset: int, times: int = 1) -> None:
        if not self.past_end(offset, self.cs, times):
            self.counts[offset >> self.cb] += times

    def l2_entries(self, off: int) -> np.ndarray:
        t = self.img._l2cache.get(off)
        if t is not None:
            return np.array(t.entries, dtype=_U)
        return np.frombuffer(self.img.file.pread(off, self.cs), ">u8").astype(_U)

    def tree(self, l1: list[int], active: bool, label: str) -> None:
        geo = self.img._geo
        tables: dict[int, list[int]] = {}  # L2 offset -> [first L1 index, references]
        for i, e in enumerate(l1):
            off = e & OFFSET_MASK
            if e & L1_RESERVED_MASK:
                self.error(f"{label} L1 entry {i} has reserved bits set (0x{e:x})")
            if not off:
                if e & OFLAG_COPIED:  # QEMU's check then reads cluster 0 (the header) as an L2 table
                    self.error(f"{label} L1 entry {i} has the COPIED flag but no L2 table (0x{e:x})")
                continue
            if off % self.cs or off + self.cs > self.file_size:
                self.error(f"{label} L2 table offset 0x{off:x} (L1 index {i}) is unaligned or past the end of file")
                continue
            if off in tables:
                tables[off][1] += 1
            else:
                tables[off] = [i, 1]
        for off, (i, n) in tables.items():
            self.cluster(off, n)
            ent = self.l2_entries(off)
            comp = (ent & _U(OFLAG_COMPRESSED)) != 0
            offs = ent & _U(OFFSET_MASK)
            reserved = ~comp & ((ent & _U(L2_STD_RESERVED_MASK)) != 0)
            for j in np.flatnonzero(reserved).tolist():
                self.error(f"found L2 entry with reserved bits set: {int(ent[j]):x} ({label}, L1 {i}, L2 {j})", n)
            std = ~comp & (offs != 0)
            bad = std & ((offs % _U(self.cs)) != 0)
            if bad.any():
                for j in np.flatnonzero(bad).tolist():
                    self.error(f"{label} data cluster offset 0x{int(offs[j]):x} is unaligned (L1 {i}, L2 {j})", n)
                std &= ~bad
            beyond = std & (offs >= _U(self.file_size))
            if beyond.any():
                for j in np.flatnonzero(beyond).tolist():
                    self.past_end(int(offs[j]), self.cs, n)
                std &= ~beyond
            self.add(offs[std] >> _U(self.cb), n)
            if comp.any():
                for v in ent[comp].tolist():
                    start, length = geo.compressed_span(v)
                    self.span(start, length, n)
                    if active:
                        self.report.compressed_clusters += n
            if active:
                self.report.allocated_clusters += n * (int(std.sum()) + int(comp.sum()))
                self.active_l2.append((i, off, n))

    def expected(self) -> np.ndarray:
        used = np.flatnonzero(self.counts)
        n = max(-(-self.file_size // self.cs), int(used[-1]) + 1 if len(used) else 0)
        return self.counts[:n].copy()


def _count(img: Qcow2Image, report: CheckReport) -> tuple[np.ndarray, _Walker]:
    h, cs, refs = img.header, img.cluster_size, img.refcounts
    w = _Walker(img, report)
    w.cluster(0)
    if h.l1_size:
        w.span(h.l1_table_offset, h.l1_size * 8)
    w.span(refs.table_offset, refs.table_clusters * cs)
    for bi, e in enumerate(refs.table):
        if e & REFT_RESERVED_MASK:
            w.error(f"refcount table entry {bi} has reserved bits set (0x{e:x})")
            continue
        off = e & REFT_OFFSET_MASK
        if not off:
            continue
        if off % cs or off + cs > w.file_size:
            w.error(f"refcount block {bi} offset 0x{e:x} is invalid (unaligned or past the end of file)")
            continue
        w.cluster(off)
    if img.snapshots:
        w.span(h.snapshots_offset, img._snapshot_table_bytes())
    from wirt.storage.qcow2_snapshot import read_l1

    for s in img.snapshots:
        w.span(s.l1_table_offset, s.l1_size * 8)
        w.tree(read_l1(img, s), False, f"snapshot {s.id}")
    w.tree(img.l1_table, True, "active")
    return w.expected(), w


def check_image(img: Qcow2Image, repair: str | None = None) -> CheckReport:
    """Check refcounts and COPIED flags; repair 'leaks' or 'all' (refcounts and flags) if asked."""
    if not img.read_only:
        img._commit()
    report = CheckReport()
    expected, walker = _count(img, report)
    structural = report.corruptions
    stored = _stored(img, len(expected))
    n = max(len(stored), len(expected))
    stored = np.pad(stored, (0, n - len(stored)))
    expected = np.pad(expected, (0, n - len(expected)))
    leaks = np.flatnonzero(stored > expected)
    lows = np.flatnonzero(stored < expected)
    cs = img.cluster_size
    for c in leaks[:20].tolist():
        report.messages.append(f"Leaked cluster {c} refcount={stored[c]} reference={expected[c]}")
    for c in lows[:20].tolist():
        report.messages.append(f"ERROR cluster {c} refcount={stored[c]} reference={expected[c]}")
    report.leaks = len(leaks)
    report.corruptions += len(lows)
    # Spec bit 63: in the active tables, COPIED must be set exactly when the refcount is one.
    flag_errors = 0
    for i, e in enumerate(img.l1_table):
        off = e & OFFSET_MASK
        if off and off >> img.cluster_bits < n and (stored[off >> img.cluster_bits] == 1) != bool(e & OFLAG_COPIED):
            flag_errors += 1
            report.messages.append(f"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={e:x}")
    for i, l2_off, refs_to_it in walker.active_l2:
        ent = walker.l2_entries(l2_off)
        offs = ent & _U(OFFSET_MASK)
        data = ((ent & _U(OFLAG_COMPRESSED)) == 0) & (offs != 0) & ((offs % _U(cs)) == 0)
        idx = (offs[data] >> _U(img.cluster_bits)).astype(np.int64)
        idx = np.minimum(idx, n - 1)
        one = stored[idx] == 1
        flag = (ent[data] & _U(OFLAG_COPIED)) != 0
        wrong = int((one != flag).sum())
        comp_flag = int((((ent & _U(OFLAG_COMPRESSED)) != 0) & ((ent & _U(OFLAG_COPIED)) != 0)).sum())
        if wrong or comp_flag:
            flag_errors += (wrong + comp_flag) * refs_to_it
            report.messages.append(f"ERROR OFLAG_COPIED data cluster: {wrong + comp_flag} entries (L1 index {i})")
    report.corruptions += flag_errors
    report.total_clusters = -(-img.size // cs)
    used = np.flatnonzero(stored)
    report.image_end_offset = (int(used[-1]) + 1) * cs if len(used) else 0
    if repair and not img.read_only and (report.leaks or (repair == "all" and report.corruptions)):
        if repair == "all" and structural:
            report.messages.append("ERROR cannot repair: the image structure itself is damaged")
            return report
        _repair(img, stored, expected, repair == "all")
        after = check_image(img)
        after.repaired_leaks = report.leaks - after.leaks
        after.repaired_corruptions = report.corruptions - after.corruptions
        after.messages = report.messages + after.messages
        return after
    return report


def _stored(img: Qcow2Image, n: int) -> np.ndarray:
    try:
        return img.refcounts.stored_array(n)
    except Exception:  # a broken refcount block: count what can be read
        out = np.zeros(n, np.int64)
        refs = img.refcounts
        for bi in range(min(len(refs.table), -(-n // refs.epb))):
            try:
                blk = refs._block(bi)
            except Exception:
                continue
            if blk is not None:
                base = bi << refs.epb_bits
                vals = blk.counts[: max(0, n - base)]
                out[base : base + len(vals)] = vals
        return out


def _repair(img: Qcow2Image, stored: np.ndarray, expected: np.ndarray, fix_all: bool) -> None:
    """Set refcounts to the counted values (only lowering them unless fix_all), then fix COPIED flags."""
    refs = img.refcounts
    refs.avoid = lambda c: c < len(expected) and expected[c] > 0
    try:
        # Raise too-low counts first so nothing referenced can look free while blocks are placed.
        if fix_all:
            for c in np.flatnonzero(stored < expected).tolist():
                refs.set(c, int(expected[c]))
        refs.write_dirty()
        img.file.sync()
        for c in np.flatnonzero(stored > expected).tolist():
            refs.set(c, int(expected[c]))
        refs.write_dirty()
        img.file.sync()
    finally:
        refs.avoid = None
    img._commit()
    if fix_all:
        from wirt.storage.qcow2_snapshot import fix_copied_flags

        fix_copied_flags(img)
    img.drop_caches()


def format_report(report: CheckReport, path: str) -> str:
    """Human-readable summary in the style of qemu-img check."""
    lines = list(report.messages[:50])
    if report.repaired_leaks or report.repaired_corruptions:
        lines.append(f"Repaired {report.repaired_leaks} leaked clusters and "
                     f"{report.repaired_corruptions} corruptions.")
    if report.corruptions:
        lines.append(f"{report.corruptions} errors were found on the image.\n"
                     "Data may be corrupted, or further writes to the image may corrupt it.")
    if report.leaks:
        lines.append(f"{report.leaks} leaked clusters were found on the image.\n"
                     "This means waste of disk space, but no harm to data.")
    if report.clean:
        lines.append("No errors were found on the image.")
    if report.total_clusters:
        pct = 100.0 * report.allocated_clusters / report.total_clusters
        lines.append(f"{report.allocated_clusters}/{report.total_clusters} = {pct:.2f}% allocated, "
                     f"{report.compressed_clusters} compressed clusters")
    lines.append(f"Image end offset: {report.image_end_offset}")
    return "\n".join(lines)


__all__ = ["CheckReport", "check_image", "format_report"]
