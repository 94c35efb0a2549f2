"""`wirt disk`: create, inspect, convert, resize, check and snapshot disk images (qemu-img compatible)."""

from __future__ import annotations

import argparse
import datetime
import os
from typing import Any

from wirt.errors import WirtError
from wirt.units import human_size, parse_size
from wirt.storage.block import BlockDevice
from wirt.storage.formats import open_image, probe_format

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `wirt disk` and its sub-commands."""
    disk = subparsers.add_parser("disk", help="create and manage disk images (raw, qcow2)",
                                 description="Create and manage disk images; qcow2 images interoperate with qemu-img.")
    sub = disk.add_subparsers(dest="disk_command", metavar="SUBCOMMAND")
    disk.set_defaults(func=lambda args: (disk.print_help(), 2)[1])

    p = sub.add_parser("create", help="create a new image")
    p.add_argument("-f", "--format", choices=("qcow2", "raw"), default="qcow2")
    p.add_argument("-b", "--backing", metavar="FILE", help="backing file (copy-on-write over it)")
    p.add_argument("-F", "--backing-format", choices=("qcow2", "raw"), help="format of the backing file")
    p.add_argument("--cluster-size", default="64K", help="qcow2 cluster size, 512 to 2M (default 64K)")
    p.add_argument("--refcount-bits", type=int, default=16, help="qcow2 refcount width (default 16)")
    p.add_argument("file")
    p.add_argument("size", nargs="?", help="virtual size, e.g. 10G (default: the backing file's size)")
    p.set_defaults(func=_create)

    p = sub.add_parser("info", help="show an image and its backing chain")
    p.add_argument("-f", "--format", choices=("qcow2", "raw"))
    p.add_argument("--output", choices=("human", "json"), default="human",
                   help="json: qemu-img info --output=json's field names (docs/cli.md)")
    p.add_argument("--json", action="store_const", const="json", dest="output", help="same as --output json")
    p.add_argument("--backing-chain", action="store_true",
                   help="with JSON output, a list: the image and every backing file under it")
    p.add_argument("file")
    p.set_defaults(func=_info)

    p = sub.add_parser("convert", help="copy an image into a new raw or qcow2 image")
    p.add_argument("-f", "--format", choices=("qcow2", "raw"), help="source format (default: probe)")
    p.add_argument("-O", "--output-format", choices=("qcow2", "raw"),
                   help="output format (default: qcow2 for a DEST named *.qcow2, else raw, as qemu-img)")
    p.add_argument("-c", "--compress", action="store_true", help="compress clusters (qcow2 output)")
    p.add_argument("--cluster-size", default="64K", help="qcow2 output cluster size (default 64K)")
    p.add_argument("source")
    p.add_argument("dest")
    p.set_defaults(func=_convert)

    p = sub.add_parser("resize", help="grow an image")
    p.add_argument("-f", "--format", choices=("qcow2", "raw"))
    p.add_argument("file")
    p.add_argument("size", help="new size (e.g. 20G) or growth (e.g. +1G)")
    p.set_defaults(func=_resize)

    p = sub.add_parser("check", help="check a qcow2 image for leaks and corruption")
    p.add_argument("-r", "--repair", action="store_true", help="repair leaked clusters")
    p.add_argument("file")
    p.set_defaults(func=_check)

    p = sub.add_parser("snapshot", help="list, create, apply or delete internal snapshots")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-l", "--list", action="store_true", help="list snapshots (the default)")
    g.add_argument("-c", "--create", metavar="NAME")
    g.add_argument("-a", "--apply", metavar="NAME")
    g.add_argument("-d", "--delete", metavar="NAME")
    p.add_argument("file")
    p.set_defaults(func=_snapshot)


def _cluster_size(text: str) -> int:
    cs = parse_size(text)
    if cs < 512 or cs > 2 << 20 or cs & (cs - 1):
        raise WirtError(f"cluster size {text} is invalid; use a power of two from 512 to 2M")
    return cs


def _create(args: argparse.Namespace) -> int:
    size = parse_size(args.size) if args.size is not None else None
    if args.format == "raw":
        if args.backing:
            raise WirtError("raw images cannot have a backing file; use -f qcow2")
        if size is None:
            raise WirtError("no size given; pass a size such as 10G")
        from wirt.storage.raw import create_raw

        create_raw(args.file, size)
    else:
        from wirt.storage.qcow2_create import create_qcow2

        create_qcow2(args.file, size, cluster_size=_cluster_size(args.cluster_size), backing=args.backing,
                     backing_format=args.backing_format, refcount_bits=args.refcount_bits)
    with open_image(args.file, format=args.format) as img:
        extra = f", backing file {args.backing}" if args.backing else ""
        print(f"Formatting '{args.file}', fmt={args.format} size={img.size}{extra}")
    return 0


def _describe(img: BlockDevice) -> list[str]:
    st = os.stat(img.path)
    lines = [f"image: {img.path}", f"file format: {img.format_name}",
             f"virtual size: {human_size(img.size)} ({img.size} bytes)",
             f"disk size: {human_size(st.st_blocks * 512)}"]
    from wirt.storage.qcow2 import Qcow2Image

    if isinstance(img, Qcow2Image):
        h = img.header
        lines.append(f"cluster_size: {img.cluster_size}")
        if h.backing_file:
            lines.append(f"backing file: {h.backing_file}")
            if h.backing_format:
                lines.append(f"backing file format: {h.backing_format}")
        if img.snapshots:
            lines.append("Snapshot list:")
            lines.extend(_snapshot_table(img))
        flags = [f"compat: {'1.1' if h.version >= 3 else '0.10'}", f"refcount bits: {1 << h.refcount_order}",
                 f"dirty: {str(bool(h.incompatible_features & 1)).lower()}",
                 f"corrupt: {str(bool(h.incompatible_features & 2)).lower()}"]
        lines.append("Format specific information:")
        lines.extend(f"    {f}" for f in flags)
    return lines


def info_dict(img: BlockDevice) -> dict[str, Any]:
    """One image as `qemu-img info --output=json` names it (the fields wirt knows)."""
    from wirt.storage.qcow2 import Qcow2Image

    st = os.stat(img.path)
    d: dict[str, Any] = {"filename": img.path, "format": img.format_name, "virtual-size": img.size,
                         "actual-size": st.st_blocks * 512, "dirty-flag": False}
    if isinstance(img, Qcow2Image):
        h = img.header
        d["cluster-size"] = img.cluster_size
        d["dirty-flag"] = bool(h.incompatible_features & 1)
        if h.backing_file:
            d["backing-filename"] = h.backing_file
            if img.backing is not None:
                d["full-backing-filename"] = img.backing.path
            if h.backing_format:
                d["backing-filename-format"] = h.backing_format
        if img.snapshots:
            d["snapshots"] = [{"id": s.id, "name": s.name, "vm-state-size": s.vm_state_size,
                               "date-sec": s.date_sec, "date-nsec": s.date_nsec,
                               "vm-clock-sec": s.vm_clock_nsec // 10**9, "vm-clock-nsec": s.vm_clock_nsec % 10**9}
                              for s in img.list_snapshots()]
        d["format-specific"] = {"type": "qcow2", "data": {
            "compat": "1.1" if h.version >= 3 else "0.10", "refcount-bits": 1 << h.refcount_order,
            "corrupt": bool(h.incompatible_features & 2)}}
    return d


def _info(args: argparse.Namespace) -> int:
    with open_image(args.file, read_only=True, format=args.format) as img:
        chain: list[BlockDevice] = [img]
        while getattr(chain[-1], "backing", None) is not None:
            chain.append(chain[-1].backing)  # type: ignore[attr-defined]
        if args.output == "json":
            import json

            out: Any = [info_dict(i) for i in chain] if args.backing_chain else info_dict(img)
            print(json.dumps(out, indent=4))
            return 0
        blocks = ["\n".join(_describe(i)) for i in chain]
        print("\n\n".join(blocks))
        if len(chain) > 1:
            print("\nbacking chain: " + " -> ".join(i.path for i in chain))
    return 0


def _convert(args: argparse.Namespace) -> int:
    import sys

    from wirt.storage.convert import convert

    fmt = args.output_format
    if fmt is None:
        fmt = "qcow2" if args.dest.endswith(".qcow2") else "raw"
        print(f"wirt: writing {args.dest} as {fmt} (from its name; -O chooses)", file=sys.stderr)
    convert(args.source, args.dest, fmt, src_format=args.format, compress=args.compress,
            cluster_size=_cluster_size(args.cluster_size))
    return 0


def _resize(args: argparse.Namespace) -> int:
    text = args.size.strip()
    grow = text.startswith("+")
    if text.startswith("-"):
        raise WirtError("shrinking images is not supported; give a larger size")
    with open_image(args.file, read_only=False, format=args.format) as img:
        new = img.size + parse_size(text[1:]) if grow else parse_size(text)
        if new < img.size:
            raise WirtError(f"{args.file}: shrinking from {img.size} to {new} bytes is not supported")
        img.resize(new)  # type: ignore[attr-defined]
        print(f"Image resized to {new} bytes.")
    return 0


def _open_qcow2(path: str, read_only: bool, repair_dirty: bool = True):  # type: ignore[no-untyped-def]
    if probe_format(path) != "qcow2":
        raise WirtError(f"{path}: not a qcow2 image; this operation needs qcow2")
    from wirt.storage.qcow2 import Qcow2Image

    return Qcow2Image(path, read_only=read_only, repair_dirty=repair_dirty)


def _check(args: argparse.Namespace) -> int:
    """Exit status as qemu-img: 0 clean, 2 corruptions, 3 leaks only."""
    from wirt.storage.qcow2_check import check_image, format_report

    with _open_qcow2(args.file, read_only=not args.repair, repair_dirty=False) as img:
        report = check_image(img, repair="leaks" if args.repair else None)
        print(format_report(report, args.file))
    if report.corruptions:
        return 2
    return 3 if report.leaks else 0


def _snapshot_table(img) -> list[str]:  # type: ignore[no-untyped-def]
    lines = [f"{'ID':<10}{'TAG':<18}{'VM SIZE':>8}  {'DATE':<19}  {'VM CLOCK':>15}"]
    for s in img.list_snapshots():
        date = datetime.datetime.fromtimestamp(s.date_sec).strftime("%Y-%m-%d %H:%M:%S")
        secs = s.vm_clock_nsec // 10**9
        clock = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{s.vm_clock_nsec // 10**6 % 1000:03d}"
        lines.append(f"{s.id:<10}{s.name:<18}{human_size(s.vm_state_size):>8}  {date:<19}  {clock:>15}")
    return lines


def _snapshot(args: argparse.Namespace) -> int:
    writing = bool(args.create or args.apply or args.delete)
    with _open_qcow2(args.file, read_only=not writing) as img:
        if args.create:
            img.create_snapshot(args.create)
        elif args.apply:
            img.apply_snapshot(args.apply)
        elif args.delete:
            img.delete_snapshot(args.delete)
        else:
            print("Snapshot list:")
            print("\n".join(_snapshot_table(img)))
    return 0
