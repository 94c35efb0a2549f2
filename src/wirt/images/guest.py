"""The default guest: Debian trixie riscv64 kernel, OpenSBI firmware and a busybox initramfs.

`default_guest()` fetches (verified) and builds what is missing from the cache and returns the
paths. With a warm cache it does no network I/O at all: the package versions come from the
manifest written by the last fetch; `refresh=True` checks the mirror for newer packages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wirt.errors import WirtError
from wirt.images import deb, scripts, ui
from wirt.images.agent import AGENT
from wirt.images.archive import Archive, Package, PackageIndex, deb_path
from wirt.fileio import atomic_write
from wirt.images.cache import CACHE_MODE, cache_root, sha256_file
from wirt.images.initramfs import FORMAT_VERSION, build_initramfs
from wirt.images.mirror import find_mirror
from wirt.images.modules import KernelModules, normalize_name, parse_builtin, parse_builtin_aliases

SUITE = "trixie"
ARCH = "riscv64"
KERNEL_META = "linux-image-riscv64"  # depends on the versioned linux-image-6.12.*-riscv64
BUSYBOX = "busybox-static"
OPENSBI = "opensbi"
FIRMWARE_MEMBER = "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin"
BUSYBOX_MEMBER = "usr/bin/busybox"

# What a VM with virtio block, network, entropy and console devices and an ext4 disk needs.
# virtio_console is built into Debian's kernel; built-in names are accepted and skipped.
DEFAULT_MODULES: frozenset[str] = frozenset(
    {"virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console", "ext4"}
)

# Loaded by /init only when the VM has a virtio-9p device (a host folder, `--mount`): every other
# boot skips them (wirt.images.scripts.MOUNTS).
MOUNT_MODULES: tuple[str, ...] = ("9pnet_virtio", "9p")

# RISC-V Linux Image header (Documentation/arch/riscv/boot-image-header.rst).
IMAGE_MAGIC_OFFSET, IMAGE_MAGIC = 0x30, b"RISCV\0\0\0"
IMAGE_MAGIC2_OFFSET, IMAGE_MAGIC2 = 0x38, b"RSC\x05"


@dataclass(frozen=True)
class GuestImage:
    """Files that boot the default guest, and what they were built from."""

    kernel: Path  # flat RISC-V Image (/boot/vmlinux-* of the package), load at RAM + 0x200000
    initrd: Path  # newc cpio
    firmware: Path  # OpenSBI fw_dynamic.bin, load at RAM base
    kernel_version: str  # e.g. 6.12.117+deb13-riscv64 (uname -r)
    versions: dict[str, str]  # Debian package -> version
    modules: tuple[str, ...] = ()  # modules /init loads, in order


def is_riscv_image(header: bytes) -> bool:
    """True if `header` (the first 64 bytes or more) is a RISC-V Linux Image header."""
    return (
        header[IMAGE_MAGIC_OFFSET : IMAGE_MAGIC_OFFSET + 8] == IMAGE_MAGIC
        and header[IMAGE_MAGIC2_OFFSET : IMAGE_MAGIC2_OFFSET + 4] == IMAGE_MAGIC2
    )


def _safe(version: str) -> str:
    """A Debian version usable in a file name (the epoch colon is not portable)."""
    return version.replace(":", "_")


class _Packages:
    """The three packages of the default guest, from the manifest or from the signed index."""

    def __init__(self, kernel: Package, busybox: Package, opensbi: Package) -> None:
        self.kernel, self.busybox, self.opensbi = kernel, busybox, opensbi

    @property
    def kernel_version(self) -> str:
        return self.kernel.name.removeprefix("linux-image-")

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in (self.kernel, self.busybox, self.opensbi)}

    def to_json(self) -> dict[str, dict[str, object]]:
        return {
            "kernel": dataclasses.asdict(self.kernel),
            "busybox": dataclasses.asdict(self.busybox),
            "opensbi": dataclasses.asdict(self.opensbi),
        }

    @classmethod
    def from_json(cls, data: dict[str, dict[str, object]]) -> _Packages:
        return cls(**{k: Package(**data[k]) for k in ("kernel", "busybox", "opensbi")})  # type: ignore[arg-type]

    @classmethod
    def from_index(cls, archive: Archive, index: PackageIndex) -> _Packages:
        meta = archive.require(index, KERNEL_META)
        names = [n for n in meta.depends_names() if n.startswith("linux-image-")]
        if not names:
            raise WirtError(f"{KERNEL_META} {meta.version} depends on no linux-image-* package; the archive changed")
        return cls(archive.require(index, names[0]), archive.require(index, BUSYBOX), archive.require(index, OPENSBI))


class _Builder:
    """Fetches and builds into one cache directory; touches the network only when it must."""

    def __init__(self, root: Path, mirror: str | None, keyring: Path | None) -> None:
        self.root = root
        self._mirror_arg = mirror
        self._keyring = keyring
        self._archive: Archive | None = None
        self.manifest = root / f"guest-{SUITE}-{ARCH}.json"

    def archive(self) -> Archive:
        if self._archive is None:
            self._archive = Archive(find_mirror(self._mirror_arg), SUITE, ARCH, self.root, keyring=self._keyring)
        return self._archive

    def packages(self, refresh: bool) -> _Packages:
        if not refresh and self.manifest.is_file():
            try:
                return _Packages.from_json(json.loads(self.manifest.read_text())["packages"])
            except (ValueError, KeyError, TypeError):
                pass  # unreadable manifest: resolve again
        archive = self.archive()
        ui.info(f"reading the {SUITE} {ARCH} package index from {archive.mirror}")
        pkgs = _Packages.from_index(archive, archive.packages())
        record = {"suite": SUITE, "arch": ARCH, "release_date": archive.release().date, "packages": pkgs.to_json()}
        atomic_write(self.manifest, (json.dumps(record, indent=2) + "\n").encode(), CACHE_MODE, parents=True)
        return pkgs

    def deb(self, pkg: Package) -> Path:
        """The verified .deb of `pkg`: the cached copy if its SHA256 still matches, else a download."""
        path = deb_path(self.root, pkg)
        if path.is_file():
            if path.stat().st_size == pkg.size and sha256_file(path) == pkg.sha256:
                return path
            path.unlink()  # damaged in the cache: fetch it again
        return self.archive().fetch(pkg)

    def unpack(self, pkg: Package, want: Iterable[str]) -> dict[str, deb.DebMember]:
        """The members of `pkg` named in `want`, with a progress bar for big packages."""
        wanted = set(want)
        path = self.deb(pkg)

        def keep(name: str) -> bool:
            return name in wanted

        if pkg.size < 4 << 20:
            return deb.extract(path, keep)
        with ui.byte_progress() as bar:
            task = bar.add_task(f"unpack {pkg.name}", total=pkg.size)
            return deb.extract(path, keep, lambda done, total: bar.update(task, completed=done, total=total))


def default_guest(
    mirror: str | None = None,
    modules: Iterable[str] = DEFAULT_MODULES,
    *,
    refresh: bool = False,
    cache_dir: Path | None = None,
    keyring: Path | None = None,
    compress: bool = False,
) -> GuestImage:
    """Fetch (if needed) and build the default Debian guest; return the paths of its files.

    `mirror` overrides `$WIRT_DEBIAN_MIRROR` and the host's apt sources; `modules` names the
    kernel modules /init loads (their dependencies are added, and virtio_mmio with any virtio
    driver; built-in names are skipped); `refresh` asks the mirror for
    newer packages; `compress` gzips the initramfs (default: plain cpio, fastest to boot).
    """
    root = cache_dir or cache_root()
    builder = _Builder(root, mirror, keyring)
    pkgs = builder.packages(refresh)
    kver = pkgs.kernel_version
    wanted = {normalize_name(m) for m in modules}
    if any(m.startswith("virtio_") for m in wanted):
        wanted.add("virtio_mmio")  # the board's virtio devices sit on virtio-mmio, a module in Debian
    requested = sorted(wanted)

    kernel_path = root / "kernel" / _safe(pkgs.kernel.version) / f"vmlinux-{kver}"
    firmware_path = root / "firmware" / f"opensbi-{_safe(pkgs.opensbi.version)}" / "fw_dynamic.bin"
    busybox_path = root / "busybox" / _safe(pkgs.busybox.version) / "busybox"
    key = hashlib.sha256(
        json.dumps(
            [FORMAT_VERSION, scripts.INIT, scripts.UDHCPC_SCRIPT, AGENT, requested, MOUNT_MODULES, compress,
             pkgs.kernel.sha256, pkgs.busybox.sha256]  # fmt: skip
        ).encode()
    ).hexdigest()[:12]
    suffix = ".cpio.gz" if compress else ".cpio"
    initrd_path = root / "initrd" / f"initrd-{kver}-busybox-{_safe(pkgs.busybox.version)}-{key}{suffix}"
    order_path = initrd_path.with_name(initrd_path.name + ".json")

    if not firmware_path.is_file():
        fw = builder.unpack(pkgs.opensbi, [FIRMWARE_MEMBER])
        if FIRMWARE_MEMBER not in fw:
            raise WirtError(f"{OPENSBI} {pkgs.opensbi.version} lacks /{FIRMWARE_MEMBER}; the package layout changed")
        atomic_write(firmware_path, fw[FIRMWARE_MEMBER].data, CACHE_MODE, parents=True)

    if not busybox_path.is_file():
        bb = builder.unpack(pkgs.busybox, [BUSYBOX_MEMBER])
        if BUSYBOX_MEMBER not in bb:
            raise WirtError(f"{BUSYBOX} {pkgs.busybox.version} lacks /{BUSYBOX_MEMBER}; the package layout changed")
        atomic_write(busybox_path, bb[BUSYBOX_MEMBER].data, CACHE_MODE, parents=True)
        busybox_path.chmod(0o755)

    need_initrd = not (initrd_path.is_file() and order_path.is_file())
    if not kernel_path.is_file() or need_initrd:
        vmlinux = f"boot/vmlinux-{kver}"
        moddirs = (f"usr/lib/modules/{kver}/", f"lib/modules/{kver}/")
        if need_initrd:
            got = _unpack_kernel(builder, pkgs.kernel, vmlinux, moddirs)
        else:
            got = builder.unpack(pkgs.kernel, [vmlinux])
        if not kernel_path.is_file():
            if vmlinux not in got:
                raise WirtError(f"{pkgs.kernel.name} lacks /{vmlinux}; the package layout changed")
            image = got[vmlinux].data
            if not is_riscv_image(image[:64]):
                raise WirtError(f"/{vmlinux} in {pkgs.kernel.name} is not a RISC-V Image; the package changed")
            atomic_write(kernel_path, image, CACHE_MODE, parents=True)
        if need_initrd:
            order = _build_initrd(got, moddirs, requested, busybox_path.read_bytes(), initrd_path, compress)
            order_doc = json.dumps({"modules": order, "requested": requested}) + "\n"
            atomic_write(order_path, order_doc, CACHE_MODE, parents=True)

    order = json.loads(order_path.read_text())["modules"]
    return GuestImage(
        kernel=kernel_path,
        initrd=initrd_path,
        firmware=firmware_path,
        kernel_version=kver,
        versions=pkgs.versions(),
        modules=tuple(order),
    )


def _unpack_kernel(builder: _Builder, pkg: Package, vmlinux: str, moddirs: tuple[str, ...]) -> dict[str, deb.DebMember]:
    """The kernel Image and every module file of the kernel package (one streaming pass)."""
    with ui.byte_progress() as bar:
        task = bar.add_task(f"unpack {pkg.name}", total=pkg.size)

        def keep(name: str) -> bool:
            if name == vmlinux:
                return True
            if not name.startswith(moddirs):
                return False
            return ".ko" in name or name.endswith(("modules.builtin", "modules.builtin.modinfo"))

        return deb.extract(builder.deb(pkg), keep, lambda done, total: bar.update(task, completed=done, total=total))


def _build_initrd(
    got: dict[str, deb.DebMember],
    moddirs: tuple[str, ...],
    requested: list[str],
    busybox: bytes,
    dest: Path,
    compress: bool,
) -> list[str]:
    """Resolve the module set, decompress the modules, write the initramfs; return the load order."""
    builtin: set[str] = set()
    aliases: list[str] = []
    files: dict[str, bytes] = {}
    for name, member in got.items():
        if not name.startswith(moddirs):
            continue
        if name.endswith("/modules.builtin"):
            builtin |= parse_builtin(member.data.decode("utf-8", "replace"))
        elif name.endswith("/modules.builtin.modinfo"):
            aliases += parse_builtin_aliases(member.data)
        else:
            files[name] = member.data
    kmods = KernelModules(files, builtin, aliases)
    order = kmods.resolve(requested)
    try:
        mount_order = [m for m in kmods.resolve(list(MOUNT_MODULES)) if m not in order]
    except WirtError:  # a kernel without 9p modules: VMs with host folders say so at boot
        mount_order = []
    skipped = [r for r in requested if kmods.is_builtin(r)]
    ui.info(
        "initramfs modules: " + (" ".join(order) or "none")
        + (f" (built in: {' '.join(skipped)})" if skipped else "")
        + f"; for host folders: {' '.join(mount_order) or 'none'}"
    )  # fmt: skip
    build_initramfs(dest, busybox=busybox, modules=[(m, kmods.ko(m)) for m in order], compress=compress,
                    mount_modules=[(m, kmods.ko(m)) for m in mount_order])
    ui.info(f"built {dest.name} ({dest.stat().st_size / 1e6:.1f} MB)")
    return order
