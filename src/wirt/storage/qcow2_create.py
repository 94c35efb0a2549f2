"""Creating empty qcow2 version 3 images.

Layout, as QEMU lays it out: cluster 0 holds the header, its extensions and the backing file
name; then the refcount table, the refcount blocks that count all of these, and the L1 table.
"""

from __future__ import annotations

import os

import numpy as np

from wirt.errors import WirtError
from wirt.storage.formats import open_image, probe_format
from wirt.storage.qcow2_format import (
    EXT_BACKING_FORMAT, EXT_FEATURE_TABLE, MAX_CLUSTER_BITS, MAX_L1_BYTES, MIN_CLUSTER_BITS, Header,
    feature_table_extension,
)


def create_qcow2(path: str, size: int | None, *, cluster_size: int = 65536, backing: str | None = None,
                 backing_format: str | None = None, refcount_bits: int = 16) -> None:
    """Create an empty qcow2 image of `size` bytes (the backing file's size when None)."""
    cb = cluster_size.bit_length() - 1
    if cluster_size != 1 << cb or not MIN_CLUSTER_BITS <= cb <= MAX_CLUSTER_BITS:
        raise WirtError(f"cluster size {cluster_size} is invalid; use a power of two from 512 to 2M")
    order = refcount_bits.bit_length() - 1
    if refcount_bits != 1 << order or order > 6:
        raise WirtError(f"refcount bits {refcount_bits} is invalid; use a power of two from 1 to 64")
    if backing is not None:
        size, backing_format = _check_backing(path, backing, backing_format, size)
    if size is None:
        raise WirtError("no size given; pass a size such as 10G")
    if size < 0:
        raise WirtError(f"size {size} is negative")
    cs = 1 << cb
    l1_entries = max(1, -(-size // (cs * (cs // 8))))
    if l1_entries * 8 > MAX_L1_BYTES or size >= 1 << 62:
        raise WirtError(f"size {size} is too large for {cs}-byte clusters; use a larger cluster size")
    l1_clusters = -(-l1_entries * 8 // cs)
    epb = cs * 8 // refcount_bits
    rt, nb = 1, 1
    while True:  # fixed point: enough blocks to count every metadata cluster, including themselves
        total = 1 + rt + nb + l1_clusters
        nb2 = -(-total // epb)
        rt2 = max(1, -(-nb2 * 8 // cs))
        if (nb2, rt2) == (nb, rt):
            break
        nb, rt = nb2, rt2
    h = Header(version=3, cluster_bits=cb, size=size, l1_size=l1_entries, refcount_order=order,
               refcount_table_offset=cs, refcount_table_clusters=rt, l1_table_offset=(1 + rt + nb) * cs)
    h.backing_file = backing
    if backing is not None and backing_format:
        h.extensions.append((EXT_BACKING_FORMAT, backing_format.encode()))
    h.extensions.append((EXT_FEATURE_TABLE, feature_table_extension()))
    try:
        cluster0 = h.pack_cluster0()
    except WirtError:
        h.extensions.pop()  # the feature name table is optional (small clusters, long backing names)
        cluster0 = h.pack_cluster0()
    table = np.zeros(rt * cs // 8, np.uint64)
    table[:nb] = [(1 + rt + i) * cs for i in range(nb)]
    counts = np.zeros(nb * epb, np.uint64)
    counts[:total] = 1
    blocks = _encode_counts(counts, order)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise WirtError(f"{path}: cannot create image: {exc.strerror}") from None
    try:
        os.pwrite(fd, cluster0, 0)
        os.pwrite(fd, table.astype(">u8").tobytes(), cs)
        os.pwrite(fd, blocks, (1 + rt) * cs)
        os.ftruncate(fd, total * cs)  # the L1 table is all zeros: a hole
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_counts(counts: np.ndarray, order: int) -> bytes:
    if order >= 3:
        return counts.astype({3: ">u1", 4: ">u2", 5: ">u4", 6: ">u8"}[order]).tobytes()
    bits = 1 << order
    per = 8 // bits
    a = counts.astype(np.uint8).reshape(-1, per)
    out = np.zeros(a.shape[0], np.uint8)
    for i in range(per):
        out |= a[:, i] << (i * bits)
    return out.tobytes()


def _check_backing(path: str, backing: str, backing_format: str | None, size: int | None) -> tuple[int, str]:
    """Open the backing file (relative to the new image's directory) to learn its format and size."""
    if len(backing.encode()) > 1023:
        raise WirtError("backing file name is longer than 1023 bytes; use a shorter path")
    target = backing if os.path.isabs(backing) else os.path.join(os.path.dirname(os.path.abspath(path)), backing)
    if not os.path.exists(target):
        raise WirtError(f"backing file {target} does not exist; create it first or fix the path "
                        "(relative paths are relative to the new image)")
    if os.path.realpath(target) == os.path.realpath(path):
        raise WirtError(f"{path}: an image cannot be its own backing file")
    fmt = backing_format or probe_format(target)
    with open_image(target, read_only=True, format=fmt) as base:
        return (base.size if size is None else size), fmt
