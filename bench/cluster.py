"""The cluster's placement speed and live-migration pause.

1. Placement, dry run: 1000 VM requests (1-4 vCPUs, 128M-2G, a third with anti-affinity to
   their own app label) placed one after another without booting anything, by the pure
   decision function (wirt.cluster.placement) over 10 and 100 nodes, and through the running
   controller (`Controller.plan`: one Ray call for the batch, against the live cluster's view).
2. Migration of a running 512 MiB VM (kernel + busybox initramfs, --fill MiB of RAM written
   with random data) between two local Ray nodes: the guest's pause (snapshot on the source,
   transfer, restore and start on the target) and the whole command, as `wirt migrate` reports.
QEMU has no counterpart of placement; its own live migration is pre-copy (the guest runs while
RAM is sent), which wirt does not do (docs/cluster.md), so no ratio is printed.

Usage: python bench/cluster.py [--requests 1000] [--memory 512M] [--fill 64] [--no-migrate]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path


def requests(n: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        app = f"app{rnd.randrange(50)}"
        r = {"name": f"vm{i}", "cpus": rnd.choice((1, 1, 2, 4)), "memory": rnd.choice((128, 256, 512, 1024, 2048)) << 20,
             "labels": {"app": app}, "policy": rnd.choice(("spread", "pack"))}
        if i % 3 == 0:
            r["anti_affinity"] = {"app": app}
        out.append(r)
    return out


def pure_placement(reqs: list[dict], nodes: int) -> tuple[float, int]:
    from wirt.cluster.placement import NodeView, PlacementError, Request, place

    views = [NodeView(f"h{i}", 64, 256 << 10, labels={"zone": f"z{i % 3}"}) for i in range(nodes)]
    refused = 0
    t0 = time.perf_counter()
    for r in reqs:
        req = Request(r["name"], r["cpus"], r["memory"], r["labels"], {}, {}, r.get("anti_affinity", {}), r["policy"])
        try:
            place(req, views).take(req)
        except PlacementError:
            refused += 1
    return len(reqs) / (time.perf_counter() - t0), refused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--memory", default="512M")
    ap.add_argument("--fill", type=int, default=64, help="MiB of guest RAM filled with random data")
    ap.add_argument("--no-migrate", action="store_true")
    args = ap.parse_args()
    reqs = requests(args.requests)
    for n in (10, 100):
        rate, refused = pure_placement(reqs, n)
        print(f"placement (pure, {n} nodes): {rate:,.0f} decisions/s ({refused} of {len(reqs)} refused: full)")

    from wirt.cluster import services
    from wirt.cluster.local import NodeSpec, local_cluster

    with tempfile.TemporaryDirectory(prefix="wirt-bench-cluster-") as tmp:
        print("starting a 2-node local Ray cluster ...", flush=True)
        specs = [NodeSpec("b0", 64, 256 << 10), NodeSpec("b1", 64, 256 << 10)]
        with local_cluster(specs, Path(tmp), zygote=True) as fleet:
            ctl = services.controller()
            t0 = time.perf_counter()
            plan = services.call(ctl.plan.remote(reqs))
            dt = time.perf_counter() - t0
            print(f"placement (controller on Ray, 2 nodes, one batch call): {len(reqs) / dt:,.0f} decisions/s "
                  f"({sum(p.startswith('refused') for p in plan)} refused)")
            if args.no_migrate:
                return 0
            from wirt.vm.api import VM

            services.call(ctl.create.remote({"name": "mig", "memory": args.memory, "image": "initramfs",
                                             "net": "none", "disk": "64M"}, {}, "b0"))
            vm = VM.get("mig", fleet.homes["b0"])
            print(f"booting a {args.memory} guest on b0 ...", flush=True)
            vm.start()
            r = vm.exec(f"dd if=/dev/urandom of=/dev/shm/fill bs=1M count={args.fill} 2>/dev/null; echo ok",
                        timeout=900)
            assert r.stdout.strip() == b"ok", r
            for src, dst in (("b0", "b1"), ("b1", "b0")):
                m = services.call(ctl.migrate.remote("mig", dst, True))
                print(f"migrate {src} -> {dst} ({args.memory} guest, {args.fill} MiB filled): downtime "
                      f"{m['downtime_seconds']:.2f} s (snapshot+halt {m['snapshot_seconds']:.2f}, transfer "
                      f"{m['transfer_seconds']:.2f}, restore+start {m['resume_seconds']:.2f}), total "
                      f"{m['total_seconds']:.2f} s, {m['bytes'] / (1 << 20):.0f} MiB moved")
            services.call(ctl.remove.remote("mig", True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
