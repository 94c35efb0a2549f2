"""`wirt image ...`: fetch and build guest images (the default Debian riscv64 guest)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from wirt.errors import WirtError
from wirt.images.guest import DEFAULT_MODULES, default_guest


def register(subparsers: Any) -> None:
    """Add the `image` command and its actions to the top-level sub-parsers."""
    parser = subparsers.add_parser("image", help="fetch and build guest images")
    actions = parser.add_subparsers(dest="image_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    fetch = actions.add_parser(
        "fetch",
        help="fetch the default Debian guest (kernel, OpenSBI, busybox initramfs) into the cache",
        description="Fetch Debian trixie riscv64 packages from the host's Debian mirror (or --mirror / "
        "WIRT_DEBIAN_MIRROR), verify them against the signed archive index, build the initramfs "
        "and print the paths. A warm cache needs no network.",
    )
    fetch.add_argument("--mirror", metavar="URL", help="Debian mirror, e.g. http://mirror.example/debian")
    fetch.add_argument(
        "--modules",
        metavar="LIST",
        help="comma-separated kernel modules for the initramfs, dependencies added "
        f"(default: {','.join(sorted(DEFAULT_MODULES))}; an empty string for none)",
    )
    fetch.add_argument("--refresh", action="store_true", help="ask the mirror for newer packages")
    fetch.add_argument("--gzip", action="store_true", help="gzip the initramfs (default: plain cpio)")
    fetch.add_argument("--json", action="store_true", help="print the result as JSON")
    fetch.set_defaults(func=_fetch)

    build = actions.add_parser(
        "build",
        help="build a Debian trixie riscv64 root disk (ext4) into the cache",
        description="Resolve Debian's required packages plus apt, python3, kmod, iproute2, procps, "
        "busybox-static and ca-certificates from the mirror's signed index, unpack them without "
        "running maintainer scripts, write dpkg's database and the kernel's modules, make an ext4 "
        "filesystem (mkfs.ext4 -d) and store it as qcow2 or raw. A warm cache does no work. "
        "Boot it with `wirt image fetch`'s kernel and initramfs and the printed command line.",
    )
    build.add_argument("--size", default="2G", help="virtual disk size (sparse), e.g. 2G or 4096M (default 2G)")
    build.add_argument("--format", choices=("qcow2", "raw"), default="qcow2", help="image format (default qcow2)")
    build.add_argument("--output", metavar="FILE", help="also copy the image to FILE")
    build.add_argument("--mirror", metavar="URL", help="Debian mirror, e.g. http://mirror.example/debian")
    build.add_argument("--packages", metavar="LIST", default="", help="comma-separated extra packages")
    build.add_argument("--refresh", action="store_true", help="resolve the package set against the mirror again")
    build.add_argument("--name", help="record the disk under NAME for `wirt create --image NAME`")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=_build)

    ls = actions.add_parser("ls", help="list the guest images in the cache (kernels, initramfs, firmware, root disks)")
    ls.add_argument("--json", action="store_true", help="machine-readable output (docs/cli.md)")
    ls.set_defaults(func=_ls)


def _ls(args: argparse.Namespace) -> int:
    import time

    from wirt.images.cache import cache_root, cached_images
    from wirt.units import human_size

    from wirt.images.named import names_by_path

    rows = cached_images()
    names = names_by_path()  # `wirt image build --name`: the names each root disk has
    for r in rows:
        if r["kind"] == "rootdisk":
            r["image_names"] = names.get(str(Path(str(r["path"])).resolve()), [])
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no guest images in {cache_root()}; `wirt image fetch` gets the default guest")
        return 0
    print(f"{'KIND':<9} {'SIZE':>9} {'MODIFIED':<16} NAME")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["mtime"]))  # type: ignore[arg-type]
        label = f"{', '.join(r['image_names'])}: {r['name']}" if r.get("image_names") else r["name"]  # type: ignore[arg-type]
        print(f"{r['kind']:<9} {human_size(r['size']):>9} {when:<16} {label}")  # type: ignore[arg-type]
    return 0


def _fetch(args: argparse.Namespace) -> int:
    modules = DEFAULT_MODULES if args.modules is None else [m for m in args.modules.split(",") if m.strip()]
    guest = default_guest(args.mirror, modules, refresh=args.refresh, compress=args.gzip)
    result = {
        "kernel": str(guest.kernel),
        "initrd": str(guest.initrd),
        "firmware": str(guest.firmware),
        "kernel_version": guest.kernel_version,
        "modules": list(guest.modules),
        "versions": guest.versions,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key in ("kernel", "initrd", "firmware", "kernel_version"):
        print(f"{key:15} {result[key]}")
    print(f"{'modules':15} {' '.join(guest.modules) or '-'}")
    for name, version in guest.versions.items():
        print(f"{'package':15} {name} {version}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from wirt.images import ext4, named, rootdisk
    from wirt.storage.convert import convert

    size = ext4.parse_size(args.size)
    extra = [p for p in args.packages.split(",") if p.strip()]
    if args.name:
        named.validate(args.name)  # before the build, not after minutes of it
    image = rootdisk.root_disk(args.mirror, size=size, fmt=args.format, extra_packages=extra, refresh=args.refresh)
    if args.name:
        named.save(args.name, image, extra)
    if args.output:
        out = Path(args.output)
        if out.exists() and out.samefile(image):
            raise WirtError(f"{out} is the cached image itself; choose another --output")
        if args.format == "raw":
            convert(str(image), str(out), "raw")  # keeps the copy sparse
        else:
            shutil.copyfile(image, out)
    result = {"image": str(image), "format": args.format, "size": size, "cmdline": rootdisk.KERNEL_CMDLINE}
    if args.name:
        result["name"] = args.name
    if args.output:
        result["output"] = str(args.output)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, value in result.items():
        print(f"{key:15} {value}")
    return 0

