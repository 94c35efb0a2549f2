"""A VM's disk files: create (a qcow2 overlay on the image's root disk, or blank), grow, measure.

Image "debian": disk 0 is a qcow2 overlay on the Debian trixie root disk of `wirt image build`
(`wirt.images.rootdisk.root_disk()`: the cached image, built now with progress bars when the
cache has none), so the base is never written and only the VM's changes take space on the host;
the VM boots from it (boot.root, wirt.images.rootinit.KERNEL_CMDLINE). Other images (initramfs,
none) get a blank qcow2 disk of the requested size.
"""

from __future__ import annotations

import os
from pathlib import Path

from wirt.errors import WirtError
from wirt.vm.schema import DiskConfig

__all__ = ["base_image", "create_disk", "grow_disk", "disk_usage", "disk_growth"]


def base_image(image: str | None) -> Path | None:
    """The root disk a VM of `image` boots from (building it if needed), or None for a blank disk."""
    if image != "debian":
        return None
    from wirt.images.rootdisk import root_disk

    return root_disk()


def create_disk(vm_dir: Path, index: int, size: int, base: Path | None) -> tuple[DiskConfig, str]:
    """Create disk<index>.qcow2 in the VM directory, an overlay on `base` (at least its size) or
    blank; returns its config and a note saying how."""
    from wirt.storage.qcow2_create import create_qcow2

    name = f"disk{index}.qcow2"
    path = Path(vm_dir) / name
    if base is not None:
        from wirt.storage import open_image, probe_format

        fmt = probe_format(str(base))
        with open_image(base, read_only=True, format=fmt) as b:
            size = max(size, b.size)
        create_qcow2(str(path), size, backing=str(base), backing_format=fmt)
        note = f"qcow2 overlay on {base}"
    else:
        create_qcow2(str(path), size)
        note = "blank qcow2"
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
