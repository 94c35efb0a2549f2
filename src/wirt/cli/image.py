"""`wirt image ...`: fetch and build guest images (the default Debian riscv64 guest)."""

from __future__ import annotations

import argparse
import json
from typing import Any

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
