"""Throughput of the qcow2 storage layer: random 4 KiB and sequential 1 MiB reads and writes.

Runs each workload through wirt's Qcow2Image and, where qemu-img is installed, `qemu-img bench`
on an image with the same settings (64 KiB clusters, page cache, queue depth 1), and prints the
ratio wirt/qemu. qemu-img bench has no random mode, so its "random" runs use a large prime stride.

    python bench/qcow2.py [--size-mb 256] [--ops 20000] [--cluster-size 65536]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from wirt.storage.qcow2 import Qcow2Image
from wirt.storage.qcow2_create import create_qcow2

STRIDE_4K = 4096 * 7919  # prime number of 4 KiB blocks: spreads accesses over the image


def _wirt_run(path: str, write: bool, bs: int, count: int, offsets: np.ndarray) -> float:
    buf = bytearray(os.urandom(bs)) if write else bytearray(bs)
    view = memoryview(buf)
    with Qcow2Image(path, read_only=not write) as img:
        t0 = time.perf_counter()
        if write:
            for off in offsets.tolist():
                img.write(off, view)
            img.flush()
        else:
            for off in offsets.tolist():
                img.readinto(off, view)
        return time.perf_counter() - t0


def _qemu_run(path: str, write: bool, bs: int, count: int, step: int) -> float | None:
    exe = shutil.which("qemu-img")
    if not exe:
        return None
    cmd = [exe, "bench", "-f", "qcow2", "-t", "writeback", "-d", "1", "-c", str(count), "-s", str(bs),
           "-S", str(step)]
    if write:
        cmd += ["-w", "--flush-interval", str(count)]
    out = subprocess.run(cmd + [path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Run completed in ([\d.]+) seconds", out)
    return float(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256, help="data set size in MiB (default 256)")
    ap.add_argument("--ops", type=int, default=20000, help="4 KiB operations per random run (default 20000)")
    ap.add_argument("--cluster-size", type=int, default=65536)
    args = ap.parse_args(argv)
    size = args.size_mb << 20
    rng = np.random.default_rng(1)
    rand = rng.integers(0, size // 4096, args.ops, dtype=np.int64) * 4096
    seq = np.arange(0, size, 1 << 20, dtype=np.int64)
    tmp = tempfile.mkdtemp(prefix="wirt-bench-")
    try:
        ours, theirs = os.path.join(tmp, "wirt.qcow2"), os.path.join(tmp, "qemu.qcow2")
        for p in (ours, theirs):
            create_qcow2(p, size, cluster_size=args.cluster_size)
        rows = []
        # Sequential write allocates every cluster; the later runs then hit allocated clusters.
        plan = [("seq write 1M", True, 1 << 20, seq, 1 << 20), ("seq read 1M", False, 1 << 20, seq, 1 << 20),
                ("rand write 4K", True, 4096, rand, STRIDE_4K), ("rand read 4K", False, 4096, rand, STRIDE_4K)]
        for name, write, bs, offsets, step in plan:
            t = _wirt_run(ours, write, bs, len(offsets), offsets)
            q = _qemu_run(theirs, write, bs, len(offsets), step)
            mb = len(offsets) * bs / (1 << 20)
            rows.append((name, mb / t, len(offsets) / t, mb / q if q else None))
        print(f"qcow2, {args.cluster_size // 1024} KiB clusters, {args.size_mb} MiB data set, page cache, depth 1")
        print(f"{'workload':<15}{'wirt MiB/s':>12}{'wirt IOPS':>12}{'qemu MiB/s':>12}{'wirt/qemu':>11}")
        for name, mbs, iops, qmbs in rows:
            q = f"{qmbs:12.1f}{mbs / qmbs:11.2f}" if qmbs else f"{'n/a':>12}{'n/a':>11}"
            print(f"{name:<15}{mbs:12.1f}{iops:12.0f}{q}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
