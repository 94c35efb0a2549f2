"""`root_disk()`: a Debian trixie riscv64 root disk (ext4 in qcow2 or raw), built once and cached.

The package set is resolved from the mirror's signed index and pinned in a manifest in the
cache, so a warm cache needs neither the network nor any work: the image file name is a hash
of everything that decides its contents (package versions and checksums, the kernel, the
mirror written into apt's sources, the size, the scripts). `refresh=True` resolves again.
Boot it with the kernel and initramfs of `default_guest()` and `KERNEL_CMDLINE`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wirt.errors import WirtError
from wirt.images import ext4, moddb, rootfs, systemd, ui
from wirt.images.archive import Archive, Package, deb_path
from wirt.fileio import atomic_path, atomic_write
from wirt.images.cache import CACHE_MODE, cache_root, sha256_file
from wirt.images.depsolve import Universe
from wirt.images.guest import ARCH, DEFAULT_MODULES, SUITE, default_guest
from wirt.images.mirror import find_mirror
from wirt.images.agent import AGENT
from wirt.images.rootinit import KERNEL_CMDLINE, ROOT_INIT
from wirt.images.scripts import UDHCPC_SCRIPT
from wirt.storage.convert import convert

FORMAT_VERSION = 3  # bump when the tree layout changes, so cached disks are rebuilt
DEFAULT_SIZE = 2 << 30
FORMATS = ("qcow2", "raw")

__all__ = ["KERNEL_CMDLINE", "DEFAULT_SIZE", "RootDiskPlan", "root_disk", "plan_root_disk", "cached_root_disk"]


@dataclass(frozen=True)
class RootDiskPlan:
    """What a root disk is built from: the pinned packages, the kernel, and where it is cached."""

    mirror: str
    packages: tuple[Package, ...]
    kernel: Package
    kernel_version: str
    plain_modules: tuple[str, ...]
    size: int
    key: str

    def path(self, root: Path, fmt: str) -> Path:
        """The cached image for output format `fmt`."""
        return root / "rootdisk" / f"debian-{SUITE}-{ARCH}-{self.key}.{fmt}"


def _request_manifest(root: Path, mirror: str, extra: tuple[str, ...]) -> Path:
    tag = hashlib.sha256(json.dumps([SUITE, ARCH, mirror, sorted(extra)]).encode()).hexdigest()[:12]
    return root / "rootdisk" / f"packages-{SUITE}-{ARCH}-{tag}.json"


def plan_root_disk(
    mirror: str | None = None,
    *,
    size: int = DEFAULT_SIZE,
    extra_packages: Iterable[str] = (),
    refresh: bool = False,
    cache_dir: Path | None = None,
    keyring: Path | None = None,
) -> RootDiskPlan:
    """Pin the package set (from the manifest, or resolved from the signed index) and the cache key."""
    root = cache_dir or cache_root()
    url = find_mirror(mirror)
    extra = tuple(dict.fromkeys([*rootfs.DEFAULT_EXTRA, *(p.strip() for p in extra_packages if p.strip())]))
    manifest = _request_manifest(root, url, extra)
    record = None
    if not refresh and manifest.is_file():
        try:
            record = json.loads(manifest.read_text())
            pkgs = tuple(Package(**p) for p in record["packages"])
            kernel = Package(**record["kernel"])
            kver = record["kernel_version"]
            plain = tuple(record["plain_modules"])
        except (ValueError, KeyError, TypeError):
            record = None  # unreadable: resolve again
    if record is None:
        guest = default_guest(url, refresh=refresh, cache_dir=root, keyring=keyring)
        archive = Archive(url, SUITE, ARCH, root, keyring=keyring)
        ui.info(f"resolving the root disk's packages from the {SUITE} {ARCH} index of {url}")
        universe = Universe(archive.packages())
        chosen = rootfs.package_set(universe, extra)
        kver = guest.kernel_version
        kname = f"linux-image-{kver}"
        kcand = universe.version(kname, guest.versions[kname])
        if kcand is None:
            raise WirtError(f"{kname} {guest.versions[kname]} is no longer on the mirror; run `wirt image fetch --refresh`")
        pkgs = tuple(c.package for c in chosen)
        kernel = kcand.package
        plain = tuple(sorted(set(guest.modules) | DEFAULT_MODULES))
        record = {
            "suite": SUITE, "arch": ARCH, "mirror": url, "release_date": archive.release().date,
            "packages": [dataclasses.asdict(p) for p in pkgs], "kernel": dataclasses.asdict(kernel),
            "kernel_version": kver, "plain_modules": list(plain),
        }  # fmt: skip
        atomic_write(manifest, (json.dumps(record, indent=1) + "\n").encode(), CACHE_MODE, parents=True)
    key = hashlib.sha256(
        json.dumps(
            [FORMAT_VERSION, ROOT_INIT, AGENT, UDHCPC_SCRIPT, KERNEL_CMDLINE, systemd.AGENT_UNIT,
             systemd.NETWORK, systemd.RESOLV_UNIT, systemd.RESOLV_SCRIPT, systemd.GETTY_DROPIN, systemd.SSH_KEYGEN_UNIT, systemd.SSHD_DROPIN, systemd.PAM_COMMON,
             systemd.ENABLED, systemd.CLOUD_CFG, systemd.MANAGER_CONF, systemd.MASKED, url, size, plain,
             sorted((p.name, p.version, p.sha256) for p in pkgs), kernel.sha256]  # fmt: skip
        ).encode()
    ).hexdigest()[:16]
    return RootDiskPlan(url, pkgs, kernel, kver, plain, size, key)


def root_disk(
    mirror: str | None = None,
    *,
    size: int = DEFAULT_SIZE,
    fmt: str = "qcow2",
    extra_packages: Iterable[str] = (),
    refresh: bool = False,
    cache_dir: Path | None = None,
    keyring: Path | None = None,
) -> Path:
    """The cached root disk image (building it if needed): Debian trixie riscv64 on ext4.

    `mirror` overrides `$WIRT_DEBIAN_MIRROR` and the host's apt sources; `fmt` is qcow2 or raw;
    `extra_packages` are installed too (with their dependencies); `refresh` re-resolves the
    package set against the mirror.
    """
    if fmt not in FORMATS:
        raise WirtError(f"unknown disk format {fmt!r}; use qcow2 or raw")
    root = cache_dir or cache_root()
    plan = plan_root_disk(mirror, size=size, extra_packages=extra_packages, refresh=refresh,
                          cache_dir=root, keyring=keyring)  # fmt: skip
    dest = plan.path(root, fmt)
    if dest.is_file():
        return dest
    other = plan.path(root, FORMATS[1 - FORMATS.index(fmt)])
    if other.is_file():  # the same disk in the other format: convert, do not rebuild
        _convert(other, dest, fmt)
        return dest
    _build(plan, root, dest, fmt, keyring)
    return dest


def cached_root_disk(extra_packages: Iterable[str] = (), *, fmt: str = "qcow2",
                     cache_dir: Path | None = None) -> Path | None:
    """The disk `root_disk(extra_packages=...)` would return, if the cache already holds it in
    format `fmt`; None otherwise. Never builds and never touches the network (a wirt cluster asks
    every node this before fetching the disk from one that has it)."""
    root = cache_dir or cache_root()
    try:
        url = find_mirror(None)
    except WirtError:
        return None  # no mirror configured: no manifest can be keyed here either
    extra = tuple(dict.fromkeys([*rootfs.DEFAULT_EXTRA, *(p.strip() for p in extra_packages if p.strip())]))
    if not _request_manifest(root, url, extra).is_file():
        return None  # resolving the package set would need the mirror
    dest = plan_root_disk(url, extra_packages=extra_packages, cache_dir=root).path(root, fmt)
    return dest if dest.is_file() else None


def _fetch(archive: Archive, root: Path, pkg: Package) -> Path:
    """The verified .deb of `pkg`: a cached copy whose SHA256 still matches, else a download."""
    path = deb_path(root, pkg)
    if path.is_file():
        if path.stat().st_size == pkg.size and sha256_file(path) == pkg.sha256:
            return path
        path.unlink()
    return archive.fetch(pkg)


def _build(plan: RootDiskPlan, root: Path, dest: Path, fmt: str, keyring: Path | None) -> None:
    t0 = time.monotonic()
    archive = Archive(plan.mirror, SUITE, ARCH, root, keyring=keyring)
    total = sum(p.size for p in plan.packages)
    ui.info(f"root disk: {len(plan.packages)} packages ({total / 1e6:.1f} MB) + kernel modules of {plan.kernel_version}")
    debs = [_fetch(archive, root, p) for p in plan.packages]
    kernel_deb = _fetch(archive, root, plan.kernel)
    t1 = time.monotonic()
    work = root / "rootdisk"
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=work))
    try:
        tree = tmp / "tree"
        with Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=ui.console()) as bar:  # fmt: skip
            task = bar.add_task("unpack packages", total=len(debs))
            unpacked = rootfs.unpack_all(tree, debs, lambda i, name: bar.update(task, completed=i))
            bar.update(task, completed=len(debs), description="unpack packages")
            summary = rootfs.finish_tree(tree, unpacked, mirror=plan.mirror, suite=SUITE,
                                         services_of=_added_packages(plan, root, keyring))
            mtask = bar.add_task("kernel modules", total=plan.kernel.size)
            mods = moddb.install_modules(tree, kernel_deb, plan.kernel_version, plan.plain_modules,
                                         lambda done, _total: bar.update(mtask, completed=done))  # fmt: skip
            bar.update(mtask, completed=plan.kernel.size)
        t2 = time.monotonic()
        ui.info(f"tree: {summary['packages']} packages, {mods.count} kernel modules "
                f"({len(mods.plain)} decompressed), alternatives: {' '.join(summary['alternatives']) or '-'}")  # fmt: skip
        raw = tmp / "disk.raw"
        ext4.make_ext4(tree, raw, plan.size, uuid=str(uuid.UUID(plan.key * 2)), owners=unpacked.owners)
        t3 = time.monotonic()
        if fmt == "raw":
            os.replace(raw, dest)
        else:
            _convert(raw, dest, fmt)
        ui.info(f"built {dest.name} ({dest.stat().st_blocks * 512 / 1e6:.0f} MB on disk): fetch {t1 - t0:.1f}s, "
                f"tree {t2 - t1:.1f}s, mkfs {t3 - t2:.1f}s, {fmt} {time.monotonic() - t3:.1f}s")  # fmt: skip
    finally:
        _rmtree(tmp)


def _added_packages(plan: RootDiskPlan, root: Path, keyring: Path | None) -> set[str]:
    """The packages of `plan` that the base disk (no --packages) does not have: those asked for
    and what they pulled in, whose services start as after `apt install` (rootfs.finish_tree)."""
    base = plan_root_disk(plan.mirror, size=plan.size, cache_dir=root, keyring=keyring)
    return {p.name for p in plan.packages} - {p.name for p in base.packages}


def _convert(src: Path, dest: Path, fmt: str) -> None:
    """Copy a disk image into format `fmt` through wirt's storage layer, with a progress bar."""
    with atomic_path(dest, CACHE_MODE, parents=True) as tmp, ui.byte_progress() as bar:
        task = bar.add_task(f"write {fmt}", total=src.stat().st_size)
        tmp.unlink()  # convert() creates the file itself
        convert(str(src), str(tmp), fmt, progress=lambda done, total: bar.update(task, completed=done, total=total))


def _rmtree(path: Path) -> None:
    """Remove a build directory, even its read-only subdirectories (when not run as root)."""

    def retry(func, p, _exc):  # type: ignore[no-untyped-def]
        parent = os.path.dirname(p)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        func(p)

    shutil.rmtree(path, onerror=retry)
