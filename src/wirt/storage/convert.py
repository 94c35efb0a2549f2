"""Copying a disk into a new image of another format, skipping holes, optionally compressing."""

from __future__ import annotations

import os
from collections.abc import Callable

from wirt.errors import WirtError
from wirt.storage.block import BlockDevice
from wirt.storage.formats import open_image
from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2
from wirt.storage.raw import create_raw

_CHUNK = 2 << 20


def convert(src_path: str, dst_path: str, out_format: str = "qcow2", *, src_format: str | None = None,
            compress: bool = False, cluster_size: int = 65536,
            progress: Callable[[int, int], None] | None = None) -> None:
    """Write the full contents of `src_path` (through its backing chain) to a new image `dst_path`."""
    if out_format not in ("raw", "qcow2"):
        raise WirtError(f"unknown output format {out_format!r}; use raw or qcow2")
    if compress and out_format != "qcow2":
        raise WirtError("compression needs the qcow2 output format (-O qcow2)")
    if os.path.exists(dst_path) and os.path.exists(src_path) and os.path.samefile(src_path, dst_path):
        raise WirtError(f"{dst_path}: source and destination are the same file")
    with open_image(src_path, read_only=True, format=src_format) as src:
        if out_format == "raw":
            create_raw(dst_path, src.size)
        else:
            create_qcow2(dst_path, src.size, cluster_size=cluster_size)
        with open_image(dst_path, read_only=False, format=out_format) as dst:
            if compress:
                assert isinstance(dst, Qcow2Image)
                _copy_compressed(src, dst, progress)
            else:
                _copy(src, dst, progress)
            dst.flush()


def _copy(src: BlockDevice, dst: BlockDevice, progress: Callable[[int, int], None] | None) -> None:
    buf = bytearray(_CHUNK)
    for off, length, data in src.extents():
        if not data:
            continue
        for pos in range(off, off + length, _CHUNK):
            n = min(_CHUNK, off + length - pos)
            view = memoryview(buf)[:n]
            src.readinto(pos, view)
            if buf.count(0, 0, n) != n:  # skip all-zero chunks: the new image reads zeros there anyway
                dst.write(pos, view)
            if progress:
                progress(pos + n, src.size)


def _copy_compressed(src: BlockDevice, dst: Qcow2Image, progress: Callable[[int, int], None] | None) -> None:
    cs = dst.cluster_size
    done = 0  # clusters before this byte offset are written
    for off, length, data in src.extents():
        if not data:
            continue
        start = max(done, off - off % cs)
        end = min(src.size, -(-(off + length) // cs) * cs)
        for pos in range(start, end, cs):
            n = min(cs, src.size - pos)
            chunk = src.read(pos, n)
            if chunk.count(0) != n:
                dst.write_compressed(pos // cs, chunk)
            if progress:
                progress(pos + n, src.size)
        done = max(done, end)
