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
from wirt.vm.schema import DiskConfig, VMConfig

__all__ = ["base_image", "create_seed", "user_disk", "create_disk", "grow_disk", "disk_usage", "disk_growth"]


def base_image(image: str | None, extra_packages: tuple[str, ...] = ()) -> Path | None:
    """The root disk a VM of `image` boots from (building it if needed; with `extra_packages`
    installed too), or None for a blank disk."""
    if image != "debian":
        return None
    from wirt.images.rootdisk import root_disk

    return root_disk(extra_packages=extra_packages)


def create_seed(vm_dir: Path, cfg: VMConfig, user_data: bytes, public_keys: list[str]) -> DiskConfig:
    """The VM's cloud-init NoCloud seed, seed.raw (read-only to the guest), from its user-data and keys."""
    from wirt.images.cloudinit import build_seed
    from wirt.vm.schema import MIN_DISK, default_hostname

    path = Path(vm_dir) / "seed.raw"
    build_seed(path, user_data, instance_id=f"iid-{cfg.uuid}", hostname=cfg.boot.hostname or default_hostname(cfg.name),
               public_keys=public_keys)
    size = max(path.stat().st_size, MIN_DISK)
    if size > path.stat().st_size:
        os.truncate(path, size)  # vm.toml's smallest disk; ISO 9660 ignores what follows it
    return DiskConfig("seed.raw", "raw", size, True)


def user_disk(image: str) -> Path | None:
    """The root disk file `image` names: a path (has a '/' or names an existing file) or a name
    recorded by `wirt image build --name`; None for a built-in image name or an unknown one.
    A missing or unreadable file, or one neither qcow2 nor raw, is refused."""
    from wirt.vm.schema import IMAGES

    p = Path(image).expanduser()
    if "/" not in image and image not in IMAGES and not p.exists():
        from wirt.images.named import lookup

        return lookup(image)  # `wirt image build --name` (None when no such name)
    if "/" not in image and image in IMAGES:
        return None
    if not p.exists():
        raise WirtError(f"--image {image}: no such file; give the path of a qcow2 or raw root disk")
    if not p.is_file():
        raise WirtError(f"--image {image}: not a regular file; give the path of a qcow2 or raw root disk")
    if not os.access(p, os.R_OK):
        raise WirtError(f"--image {image}: not readable (permission denied)")
    from wirt.storage import open_image, probe_format

    try:
        with open_image(p, read_only=True, format=probe_format(str(p))):
            pass
    except (OSError, ValueError, WirtError) as exc:
        raise WirtError(f"--image {image}: not a usable qcow2 or raw disk image ({exc})") from None
    return p.resolve()


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
