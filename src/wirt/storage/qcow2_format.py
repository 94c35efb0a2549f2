"""On-disk structures of qcow2: header, header extensions, snapshot table entries, L1/L2 entry bits.

Pure parsing and packing with validation; no I/O policy lives here. Section names in comments refer
to QEMU's docs/interop/qcow2.txt ("the spec").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from wirt.errors import WirtError

MAGIC = b"QFI\xfb"

# "Header": fixed fields of version 2 (72 bytes) and the version 3 additions (up to 104 bytes).
_V2_FMT = ">4sIQIIQIIQQIIQ"
_V3_FMT = ">QQQII"
V2_HEADER_LEN = 72
V3_HEADER_LEN = 104
# wirt writes version 3 headers with the compression_type byte (offset 104) plus padding.
V3_HEADER_LEN_WRITTEN = 112

MIN_CLUSTER_BITS = 9  # spec: "Must not be less than 9 (i.e. 512 byte clusters)"
MAX_CLUSTER_BITS = 21  # QEMU's 2 MiB implementation limit, which we share
MAX_L1_BYTES = 32 * 1024 * 1024  # spec note: QEMU limits the L1 table to 32 MB
MAX_REFTABLE_BYTES = 8 * 1024 * 1024  # spec note: QEMU limits the refcount table to 8 MB
MAX_SNAPSHOTS = 65536
MAX_SNAPSHOT_TABLE_BYTES = 64 * 1024 * 1024
MAX_BACKING_NAME = 1023  # spec: backing_file_size "Must not be longer than 1023 bytes"
MAX_HOST_OFFSET = 1 << 56  # spec: L1/L2 host offsets are bits 9-55

# Incompatible feature bits (spec "Header", bytes 72-79).
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_SUPPORTED = INCOMPAT_DIRTY | INCOMPAT_CORRUPT
COMPAT_LAZY_REFCOUNTS = 1 << 0
AUTOCLEAR_BITMAPS = 1 << 0

# Header extension types (spec "Header extensions").
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441

# Names for the feature name table and for error messages (spec "Feature name table").
KNOWN_FEATURES: list[tuple[int, int, str]] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
]

# L1/L2 entry bits (spec "Cluster mapping").
OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55: host offset of an L2 table or a data cluster
OFLAG_COPIED = 1 << 63  # refcount is exactly one: may be written in place
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1  # standard cluster descriptor bit 0: reads as zeros (version 3)
L1_RESERVED_MASK = 0x7F000000000001FF  # bits 0-8 and 56-62
L2_STD_RESERVED_MASK = 0x3F000000000001FE  # bits 1-8 and 56-61

# Kinds of L2 entries.
UNALLOCATED, NORMAL, ZERO_PLAIN, ZERO_ALLOC, COMPRESSED = range(5)


def corrupt(path: str, what: str) -> WirtError:
    """The error for an image whose metadata is inconsistent."""
    return WirtError(f"{path}: corrupt qcow2 image: {what}; check it with 'wirt disk check' or 'qemu-img check'")


@dataclass
class Header:
    """The qcow2 header of the first cluster, plus its extensions and backing file name."""

    version: int = 3
    backing_file_offset: int = 0
    backing_file_size: int = 0
    cluster_bits: int = 16
    size: int = 0
    crypt_method: int = 0
    l1_size: int = 0
    l1_table_offset: int = 0
    refcount_table_offset: int = 0
    refcount_table_clusters: int = 0
    nb_snapshots: int = 0
    snapshots_offset: int = 0
    incompatible_features: int = 0
    compatible_features: int = 0
    autoclear_features: int = 0
    refcount_order: int = 4
    header_length: int = V3_HEADER_LEN_WRITTEN
    extra_fields: bytes = b""  # bytes 104..header_length, preserved verbatim (spec rule 2)
    extensions: list[tuple[int, bytes]] = field(default_factory=list)  # in file order, without the end marker
    backing_file: str | None = None

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def backing_format(self) -> str | None:
        for kind, data in self.extensions:
            if kind == EXT_BACKING_FORMAT:
                return data.decode("utf-8", "replace")
        return None

    def feature_names(self) -> dict[tuple[int, int], str]:
        """(type, bit) -> name, from the image's feature table and then our own list."""
        names = {(t, b): n for t, b, n in KNOWN_FEATURES}
        for kind, data in self.extensions:
            if kind == EXT_FEATURE_TABLE:
                for i in range(0, len(data) - 47, 48):
                    name = data[i + 2 : i + 48].split(b"\0", 1)[0].decode("utf-8", "replace")
                    names[(data[i], data[i + 1])] = name
        return names

    # -- packing --------------------------------------------------------------------------

    def pack_fixed(self) -> bytes:
        """The fixed header fields (72 bytes for v2, header_length for v3)."""
        head = struct.pack(
            _V2_FMT, MAGIC, self.version, self.backing_file_offset, self.backing_file_size,
            self.cluster_bits, self.size, self.crypt_method, self.l1_size, self.l1_table_offset,
            self.refcount_table_offset, self.refcount_table_clusters, self.nb_snapshots,
            self.snapshots_offset,
        )
        if self.version < 3:
            return head
        head += struct.pack(
            _V3_FMT, self.incompatible_features, self.compatible_features, self.autoclear_features,
            self.refcount_order, self.header_length,
        )
        extra = self.extra_fields.ljust(self.header_length - V3_HEADER_LEN, b"\0")
        return head + extra[: self.header_length - V3_HEADER_LEN]

    def pack_cluster0(self) -> bytes:
        """Header, extensions, end marker and backing file name; sets backing_file_offset/size."""
        out = bytearray(self.pack_fixed())
        if self.version >= 3:
            for kind, data in self.extensions:
                out += struct.pack(">II", kind, len(data)) + data + b"\0" * (-len(data) % 8)
            out += struct.pack(">II", EXT_END, 0)
        if self.backing_file:
            name = self.backing_file.encode()
            self.backing_file_offset, self.backing_file_size = len(out), len(name)
            out += name
        else:
            self.backing_file_offset = self.backing_file_size = 0
        if len(out) > self.cluster_size:
            raise WirtError("header, extensions and backing file name do not fit in the first cluster; "
                            "use a larger cluster size or a shorter backing file path")
        out[: len(self.pack_fixed())] = self.pack_fixed()  # now with the backing file fields
        return bytes(out)


def feature_table_extension() -> bytes:
    """A feature name table naming every feature we know (spec "Feature name table")."""
    return b"".join(struct.pack(">BB46s", t, b, n.encode()) for t, b, n in KNOWN_FEATURES)


def parse_header(buf: bytes, file_size: int, path: str) -> Header:
    """Parse and validate the header in `buf` (the start of the file, up to one cluster)."""
    if len(buf) < V2_HEADER_LEN:
        raise WirtError(f"{path}: truncated qcow2 header ({len(buf)} bytes, need at least 72); the file is damaged")
    fields = struct.unpack_from(_V2_FMT, buf)
    if fields[0] != MAGIC:
        raise WirtError(f"{path}: not a qcow2 image (bad magic)")
    h = Header(*fields[1:13])
    if h.version not in (2, 3):
        raise WirtError(f"{path}: unsupported qcow2 version {h.version} (wirt reads versions 2 and 3)")
    if h.version == 2:
        h.header_length, h.refcount_order = V2_HEADER_LEN, 4
    else:
        if len(buf) < V3_HEADER_LEN:
            raise WirtError(f"{path}: truncated qcow2 version 3 header; the file is damaged")
        (h.incompatible_features, h.compatible_features, h.autoclear_features,
         h.refcount_order, h.header_length) = struct.unpack_from(_V3_FMT, buf, V2_HEADER_LEN)
        if h.header_length < V3_HEADER_LEN or h.header_length % 8:
            raise corrupt(path, f"header_length {h.header_length} is invalid (must be >= 104 and a multiple of 8)")
    if not MIN_CLUSTER_BITS <= h.cluster_bits <= MAX_CLUSTER_BITS:
        raise WirtError(f"{path}: unsupported cluster size 2^{h.cluster_bits} (must be 512 B to 2 MiB)")
    cs = h.cluster_size
    if h.header_length > cs or h.header_length > len(buf):
        raise WirtError(f"{path}: truncated qcow2 header (header_length {h.header_length}); the file is damaged")
    h.extra_fields = bytes(buf[V3_HEADER_LEN : h.header_length]) if h.version >= 3 else b""
    if h.version >= 3:
        _parse_extensions(h, buf, path)
    _check_features(h, path)
    if h.crypt_method:
        raise WirtError(f"{path}: encrypted qcow2 images are not supported; decrypt it with 'qemu-img convert'")
    if h.refcount_order > 6:
        raise corrupt(path, f"refcount_order {h.refcount_order} is above 6")
    # Virtual size: the L1 table must be able to map it, within QEMU's 32 MB L1 limit.
    l2_entries = cs // 8
    needed_l1 = -(-h.size // (cs * l2_entries))
    if h.size >= 1 << 63 or needed_l1 * 8 > MAX_L1_BYTES:
        raise WirtError(f"{path}: virtual size {h.size} is too large for {cs}-byte clusters; the header is damaged")
    if h.l1_size < needed_l1:
        raise corrupt(path, f"L1 table has {h.l1_size} entries but the disk size needs {needed_l1}")
    if h.l1_size * 8 > MAX_L1_BYTES:
        raise corrupt(path, f"L1 table size {h.l1_size} is too large")
    check_table(path, "L1 table", h.l1_table_offset, h.l1_size * 8, cs, file_size)
    if h.refcount_table_clusters * cs > MAX_REFTABLE_BYTES or h.refcount_table_clusters == 0:
        raise corrupt(path, f"refcount table size {h.refcount_table_clusters} clusters is invalid")
    check_table(path, "refcount table", h.refcount_table_offset, h.refcount_table_clusters * cs, cs, file_size)
    if h.nb_snapshots > MAX_SNAPSHOTS:
        raise corrupt(path, f"{h.nb_snapshots} snapshots is above the limit of {MAX_SNAPSHOTS}")
    if h.nb_snapshots:
        check_table(path, "snapshot table", h.snapshots_offset, h.nb_snapshots * 40, cs, file_size)
    # Overlapping fixed metadata.
    spans = [("header", 0, cs), ("L1 table", h.l1_table_offset, h.l1_size * 8),
             ("refcount table", h.refcount_table_offset, h.refcount_table_clusters * cs)]
    for i, (na, a, la) in enumerate(spans):
        for nb, b, lb in spans[i + 1 :]:
            if la and lb and _clusters_overlap(a, la, b, lb, cs):
                raise corrupt(path, f"the {na} overlaps the {nb}")
    if h.backing_file_offset:
        if h.backing_file_size > MAX_BACKING_NAME or h.backing_file_size == 0:
            raise corrupt(path, f"backing file name length {h.backing_file_size} is invalid")
        end = h.backing_file_offset + h.backing_file_size
        if end > min(cs, len(buf)):
            raise corrupt(path, "backing file name lies outside the first cluster")
        h.backing_file = bytes(buf[h.backing_file_offset : end]).decode("utf-8", "replace")
    return h


def _check_features(h: Header, path: str) -> None:
    unknown = h.incompatible_features & ~INCOMPAT_SUPPORTED
    if unknown:
        # Spec: "An implementation must fail to open an image if an unknown bit is set."
        known = h.feature_names()
        names = [known.get((0, bit), f"unknown bit {bit}") for bit in range(64) if unknown >> bit & 1]
        raise WirtError(f"{path}: uses incompatible qcow2 features wirt does not support ({', '.join(names)}); "
                        "convert it with 'qemu-img convert -O qcow2' first")


def _parse_extensions(h: Header, buf: bytes, path: str) -> None:
    pos, limit = h.header_length, min(h.cluster_size, len(buf))
    seen = set()
    while True:
        if pos + 8 > limit:
            raise corrupt(path, "header extensions run past the first cluster")
        kind, length = struct.unpack_from(">II", buf, pos)
        pos += 8
        if kind == EXT_END:
            break
        if pos + length > limit:
            raise corrupt(path, f"header extension 0x{kind:08x} runs past the first cluster")
        if kind in seen and kind in (EXT_BACKING_FORMAT, EXT_FEATURE_TABLE, EXT_BITMAPS, EXT_CRYPTO, EXT_DATA_FILE):
            raise corrupt(path, f"header extension 0x{kind:08x} appears twice")
        seen.add(kind)
        h.extensions.append((kind, bytes(buf[pos : pos + length])))
        pos += length + (-length % 8)


def check_table(path: str, what: str, offset: int, length: int, cs: int, file_size: int) -> None:
    """A contiguous table must be cluster aligned and lie inside the file."""
    if offset % cs:
        raise corrupt(path, f"{what} offset 0x{offset:x} is not aligned to the {cs}-byte cluster size")
    if length and (offset == 0 or offset + length > file_size or offset >= MAX_HOST_OFFSET):
        raise corrupt(path, f"{what} at 0x{offset:x} (+{length} bytes) lies past the end of the file "
                            f"({file_size} bytes)")


def _clusters_overlap(a: int, la: int, b: int, lb: int, cs: int) -> bool:
    a0, a1 = a // cs, (a + la - 1) // cs
    b0, b1 = b // cs, (b + lb - 1) // cs
    return a0 <= b1 and b0 <= a1


# -- snapshot table (spec "Snapshots") -----------------------------------------------------

_SNAP_FMT = ">QIHHIIQII"
_SNAP_LEN = 40


@dataclass
class SnapshotEntry:
    """One snapshot table entry."""

    l1_table_offset: int
    l1_size: int
    id: str
    name: str
    date_sec: int = 0
    date_nsec: int = 0
    vm_clock_nsec: int = 0
    vm_state_size: int = 0
    disk_size: int | None = None
    extra: bytes = b""  # extra data beyond the fields we know, preserved

    def pack(self, version: int) -> bytes:
        extra = b""
        if version >= 3 or self.disk_size is not None or self.extra:
            extra = struct.pack(">QQ", self.vm_state_size, self.disk_size or 0) + self.extra
        ident, name = self.id.encode(), self.name.encode()
        out = struct.pack(_SNAP_FMT, self.l1_table_offset, self.l1_size, len(ident), len(name), self.date_sec,
                          self.date_nsec, self.vm_clock_nsec, min(self.vm_state_size, 0xFFFFFFFF), len(extra))
        out += extra + ident + name
        return out + b"\0" * (-len(out) % 8)


def parse_snapshot_table(buf: bytes, count: int, path: str) -> list[SnapshotEntry]:
    """Parse `count` entries from the snapshot table bytes."""
    out, pos = [], 0
    for _ in range(count):
        if pos + _SNAP_LEN > len(buf):
            raise corrupt(path, "snapshot table is truncated")
        (l1off, l1size, idlen, namelen, dsec, dnsec, clock, vmsize, extralen) = struct.unpack_from(_SNAP_FMT, buf, pos)
        pos += _SNAP_LEN
        end = pos + extralen + idlen + namelen
        if end > len(buf) or extralen > 1024:
            raise corrupt(path, "snapshot table entry is truncated")
        extra = bytes(buf[pos : pos + extralen])
        pos += extralen
        ident = bytes(buf[pos : pos + idlen]).decode("utf-8", "replace")
        name = bytes(buf[pos + idlen : end]).decode("utf-8", "replace")
        pos = end + (-end % 8)
        e = SnapshotEntry(l1off, l1size, ident, name, dsec, dnsec, clock, vmsize)
        if len(extra) >= 8:
            e.vm_state_size = struct.unpack_from(">Q", extra)[0]
        if len(extra) >= 16:
            e.disk_size = struct.unpack_from(">Q", extra, 8)[0]
        e.extra = extra[16:]
        out.append(e)
    return out


def snapshot_table_length(buf: bytes, count: int) -> int:
    """Byte length of a snapshot table of `count` entries (after parse_snapshot_table validated it)."""
    pos = 0
    for _ in range(count):
        extralen, = struct.unpack_from(">I", buf, pos + 36)
        idlen, namelen = struct.unpack_from(">HH", buf, pos + 12)
        pos += _SNAP_LEN + extralen + idlen + namelen
        pos += -pos % 8
    return pos


# -- L2 entries ------------------------------------------------------------------------------


class L2Geometry:
    """Decodes L2 entries for one cluster size (spec "Compressed Clusters Descriptor")."""

    def __init__(self, cluster_bits: int, version: int):
        self.cluster_bits = cluster_bits
        self.csize_shift = 62 - (cluster_bits - 8)
        self.csize_mask = (1 << (cluster_bits - 8)) - 1
        self.coffset_mask = (1 << self.csize_shift) - 1
        self.version = version

    def kind(self, entry: int) -> int:
        if entry & OFLAG_COMPRESSED:
            return COMPRESSED
        if entry & OFLAG_ZERO and self.version >= 3:
            return ZERO_ALLOC if entry & OFFSET_MASK else ZERO_PLAIN
        if entry & OFFSET_MASK:
            return NORMAL
        return UNALLOCATED

    def compressed_span(self, entry: int) -> tuple[int, int]:
        """(host byte offset, byte length) of a compressed cluster's data."""
        off = entry & self.coffset_mask
        nb_sectors = ((entry >> self.csize_shift) & self.csize_mask) + 1
        return off, nb_sectors * 512 - (off & 511)

    def compressed_entry(self, host_off: int, length: int) -> int:
        extra = (host_off + length - 1) // 512 - host_off // 512
        return OFLAG_COMPRESSED | (extra << self.csize_shift) | host_off
