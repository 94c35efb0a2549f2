"""Disk throughput measured inside the guest: wirt's virtio-blk beside QEMU's on the same work.

The guest runs bench/diskio.c (a static riscv64 program appended to the default initramfs)
on /dev/vda with O_DIRECT, so every request reaches the virtual device and none is served by
the guest's page cache. Phases, one request in flight except the last: sequential 1 MiB writes
over the first SIZE MiB then fsync, sequential 1 MiB reads of them, random 4 KiB reads and
random 4 KiB writes (then fsync) for SECONDS each, and a fio-style mix (70 % random 4 KiB reads,
30 % writes, eight in flight through Linux native AIO, then fsync). Each disk is a fresh file
on the host (raw, and qcow2 with 64 KiB clusters made by wirt), used with the host's page cache by both
(QEMU's default cache=writeback); the raw file is written full of zeros first (make_disk: the
first use of a page is slow on a VM host). QEMU:
`qemu-system-riscv64 -M virt` with the very same firmware, kernel, initramfs and kernel command line, the disk on `virtio-blk-device`.

    python bench/disk.py [--size-mb 64] [--seconds 3] [--formats raw,qcow2] [--no-qemu] [--runs 1] [--profile]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import guestbench as gb

PHASES = ("seqwrite", "seqread", "randread", "randwrite", "mixed")
_LINE = re.compile(r"^diskio (\w+) (\d+) (\d+) (\d+)\s*$", re.M)


def make_disk(path: Path, fmt: str, size: int) -> None:
    """A fresh disk image of `size` bytes: raw written full of zeros, qcow2 empty.

    The raw image is written, not left sparse, so that the guest's writes replace pages the host
    already caches. On a host that is itself a VM with lazily backed memory (a cloud instance,
    Firecracker with free page reporting) a page the host has not used lately faults in the
    outer hypervisor: 1 GiB into a fresh page cache ran at 340-400 MB/s, then at 4,500-5,000
    MB/s, and a sparse file made the sequential write measure that (190-1,340 MB/s for the same
    wirt). A qcow2 image grows as the guest writes, and so still does."""
    if fmt == "raw":
        block = bytes(1 << 20)
        with open(path, "wb") as f:
            for _ in range(size >> 20):
                f.write(block)
            f.truncate(size)
            os.fsync(f.fileno())   # clean before the run: the guest's fsync then flushes its own writes
    else:
        from wirt.storage.qcow2_create import create_qcow2

        create_qcow2(str(path), size)


def parse(output: str) -> dict[str, float]:
    """Phase -> MB/s for the sequential phases, IOPS for the random ones."""
    res: dict[str, float] = {}
    for phase, block, ops, ns in _LINE.findall(output):
        seconds = int(ns) / 1e9
        res[phase] = int(block) * int(ops) / seconds / 1e6 if phase.startswith("seq") else int(ops) / seconds
    return res


def measure(hypervisor: str, fmt: str, size_mb: int, seconds: int, initrd: Path, work: Path,
            profile: bool = False) -> dict[str, float]:
    """Run diskio once in a fresh guest on a fresh disk; the four figures."""
    disk = work / f"{hypervisor}.{fmt}"
    disk.unlink(missing_ok=True)
    make_disk(disk, fmt, (size_mb + 16) << 20)
    command = f"diskio /dev/vda {size_mb} {seconds}"
    if hypervisor == "wirt":
        prof = work / "profile.jsonl" if profile else None
        cmd = gb.wirt_cmd(command, "--initrd", str(initrd), "--disk", str(disk), profile=prof)
    else:
        cmd = gb.qemu_cmd(command, initrd=str(initrd), devices=[
            "-drive", f"file={disk},format={fmt},if=none,id=d0,cache=writeback",
            "-device", "virtio-blk-device,drive=d0"])
    r = gb.run(cmd)
    res = parse(r.output)
    if r.status != 0 or len(res) != len(PHASES):
        tail = (r.output + r.errors).strip().splitlines()[-5:]
        raise SystemExit(f"{hypervisor} ({fmt}) failed with status {r.status}: " + " | ".join(tail))
    disk.unlink()
    if hypervisor == "wirt" and profile:
        gb.print_profile(f"wirt {fmt} profile", work / "profile.jsonl")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=64, help="sequential data set in MiB (default 64)")
    ap.add_argument("--seconds", type=int, default=3, help="seconds per random phase (default 3)")
    ap.add_argument("--formats", default="raw,qcow2", help="disk formats (default raw,qcow2)")
    ap.add_argument("--runs", type=int, default=1, help="runs per configuration; the best is shown")
    ap.add_argument("--no-qemu", action="store_true", help="measure wirt only")
    ap.add_argument("--profile", action="store_true",
                    help="time wirt's host-side paths per phase (bench/ioprofile.py; adds a little overhead)")
    ap.add_argument("--dir", help="where the disk files go (default: a temporary folder under /var/tmp)")
    args = ap.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if bad := [f for f in formats if f not in ("raw", "qcow2")]:
        raise SystemExit(f"--formats: {', '.join(bad)} unknown; use raw and/or qcow2")
    hypervisors = ["wirt"] + ([] if args.no_qemu or not gb.qemu_exe() else ["qemu"])

    program = gb.build_guest_program(Path(__file__).with_name("diskio.c"))
    with tempfile.TemporaryDirectory(prefix="wirt-bench-disk-", dir=args.dir or "/var/tmp") as tmp:
        work = Path(tmp)
        initrd = gb.initrd_with({"bin/diskio": program}, work)
        print(f"guest: O_DIRECT on /dev/vda, queue depth 1, {args.size_mb} MiB sequential, "
              f"{args.seconds} s per random phase; host page cache on (both)")
        if "qemu" not in hypervisors:
            print("qemu : not run (qemu-system-riscv64 not installed or --no-qemu)")
        header = f"{'format':6s} {'hypervisor':10s} {'seq write MB/s':>15s} {'seq read MB/s':>14s} " \
                 f"{'rand read IOPS':>15s} {'rand write IOPS':>16s} {'mixed QD8 IOPS':>15s}"
        print(gb.host_load())
        if "qemu" in hypervisors:
            print(gb.qemu_banner())
        print(header)
        for fmt in formats:
            results: dict[str, dict[str, float]] = {}
            for hv in hypervisors:
                best: dict[str, float] = {}
                for _ in range(args.runs):
                    r = measure(hv, fmt, args.size_mb, args.seconds, initrd, work, args.profile)
                    best = {p: max(best.get(p, 0.0), r[p]) for p in PHASES}
                results[hv] = best
                print(f"{fmt:6s} {hv:10s} {best['seqwrite']:15.1f} {best['seqread']:14.1f} "
                      f"{best['randread']:15.0f} {best['randwrite']:16.0f} {best['mixed']:15.0f}", flush=True)
            if "qemu" in results:
                w, q = results["wirt"], results["qemu"]
                print(f"{fmt:6s} {'wirt/qemu':10s} " + " ".join(
                    f"{w[p] / q[p]:{width}.2f}" for p, width in zip(PHASES, (15, 14, 15, 16, 15))), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
