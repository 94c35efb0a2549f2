"""A VM's disk files: create (overlay on a base image, or blank), grow, measure.

Base images: a root-filesystem image of `image` is looked up in the image cache as
`$WIRT_CACHE/base/IMAGE.qcow2` (then `.raw`/`.img`). The image layer does not build one
yet, so `wirt create` usually makes a blank qcow2 disk; when a base exists, the disk is a
qcow2 overlay on it (copy-on-write: the base is never written, and only the VM's changes
take space).
"""

from __future__ import annotations

import os
from pathlib import Path

from wirt.errors import WirtError
from wirt.paths import cache_dir
from wirt.vm.schema import DiskConfig

__all__ = ["find_base_image", "create_disk", "grow_disk", "disk_usage", "disk_growth"]


def find_base_image(image: str) -> Path | None:
    """The cached root-filesystem image for `image`, if there is one."""
    base = cache_dir().expanduser() / "base"
    for ext in (".qcow2", ".raw", ".img"):
        p = base / f"{image}{ext}"
        if p.is_file():
            return p
    return None


def create_disk(vm_dir: Path, index: int, size: int, image: str | None) -> tuple[DiskConfig, str]:
    """Create disk<index>.qcow2 in the VM directory; returns its config and a note saying how."""
    from wirt.storage.qcow2_create import create_qcow2

    name = f"disk{index}.qcow2"
    path = Path(vm_dir) / name
    base = find_base_image(image) if image else None
    if base is not None:
        from wirt.storage import open_image, probe_format

        fmt = probe_format(str(base))
        with open_image(base, read_only=True, format=fmt) as b:
            size = max(size, b.size)
        create_qcow2(str(path), size, backing=str(base), backing_format=fmt)
        note = f"qcow2 overlay on {base}"
    else:
        create_qcow2(str(path), size)
        note = f"blank qcow2 (no base image for {image!r} in {cache_dir() / 'base'})" if image else "blank qcow2"
    os.chmod(path, 0o600)
    return DiskConfig(name, "qcow2", size, False), note


def grow_disk(path: Path, fmt: str, new_size: int) -> None:
    """Grow a disk image to `new_size` (never shrinks: guests' filesystems would be cut)."""
    from wirt.storage import open_image

    with open_image(path, read_only=False, format=fmt) as img:
        if new_size < img.size:
            raise WirtError(f"{path}: disks only grow; it is {img.size} bytes, asked for {new_size}")
        if new_size > img.size:
            img.resize(new_size)  # type: ignore[attr-defined]


def disk_usage(path: Path) -> int:
    """Bytes the disk file takes on the host (allocated blocks, not its apparent size)."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def disk_growth(path: Path, size: int, read_only: bool) -> int:
    """How much more host space the disk could take if the guest filled it (admission's disk budget).
    Metadata overhead of qcow2 is ignored (well under 1 % with 64 KiB clusters)."""
    if read_only:
        return 0
    return max(0, size - disk_usage(path))
