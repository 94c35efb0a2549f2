"""Host folder throughput (`--mount`, virtio-9p): the guest reads and writes a file through the
mount, beside QEMU's -virtfs (virtio-9p-device, security_model=none) on the same folder.

Both boot the default guest's firmware, kernel and initramfs with the same command line; the
initramfs /init mounts the share (msize 512000, no guest cache) at /mnt/host in both. In the
guest, timed there (busybox `time`): `dd` of the --mb MiB host file to /dev/null in 1 MiB blocks
(read), then `dd` of as many MiB from /dev/zero into a new file in the share (write). The
written file's size is checked on the host.

    python bench/mount.py [--mb 64] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import guestbench as gb

TAG = "/mnt/host"


def guest_command(mb: int) -> str:
    return (f"time sh -c 'dd if={TAG}/in.bin of=/dev/null bs=1048576 2>/dev/null'; "
            f"time sh -c 'dd if=/dev/zero of={TAG}/out.bin bs=1048576 count={mb} 2>/dev/null'; "
            f"grep ' {TAG} ' /proc/mounts")


def _times(text: str) -> list[float]:
    return [int(m.group(1) or 0) * 60 + float(m.group(2))
            for m in re.finditer(r"real\s+(?:(\d+)m\s*)?([\d.]+)s", text)]


def measure(label: str, cmd: list[str], share: Path, mb: int) -> tuple[float, float] | None:
    """Run one guest; (read seconds, write seconds) timed in the guest, or None when it failed."""
    (share / "out.bin").unlink(missing_ok=True)
    r = gb.run(cmd)
    out = r.output + r.errors
    t = _times(out)
    size = (share / "out.bin").stat().st_size if (share / "out.bin").exists() else -1
    if len(t) < 2 or size != mb << 20 or f" {TAG} 9p " not in out:
        print(f"{label}: run failed (status {r.status}, out.bin {size} bytes)\n{out[-1500:]}", file=sys.stderr)
        return None
    print(f"{label}: {r.seconds:.1f} s wall for the whole run")
    return t[0], t[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    mb, n = args.mb, args.mb << 20
    print(gb.host_load())
    with tempfile.TemporaryDirectory(prefix="wirt-bench-mount-") as tmp:
        share = Path(tmp) / "share"
        share.mkdir()
        with open(share / "in.bin", "wb") as f:
            for _ in range(mb):
                f.write(os.urandom(1 << 20))
        w = measure("wirt", gb.wirt_cmd(guest_command(mb), "--memory", "256M", "--mount", f"{share}:{TAG}"),
                    share, mb)
        q = None
        if not args.no_qemu and gb.qemu_exe() is not None:
            dev = ["-fsdev", f"local,id=fs0,path={share},security_model=none",
                   "-device", f"virtio-9p-device,fsdev=fs0,mount_tag={TAG}"]
            q = measure("QEMU", gb.qemu_cmd(guest_command(mb), memory="256M", devices=dev), share, mb)
        print(gb.host_load())
    for i, what in enumerate(("guest reads the host file", "guest writes a new file")):
        line = f"{what} ({mb} MiB, 1 MiB dd blocks, timed in the guest): "
        line += "wirt failed" if w is None else f"wirt {n / w[i] / 1e6:.1f} MB/s"
        if q is not None:
            line += f"; QEMU -virtfs {n / q[i] / 1e6:.1f} MB/s"
            if w is not None:
                line += f"; wirt/QEMU {q[i] / w[i]:.2f}"
        print(line)
    return 0 if w is not None else 1


if __name__ == "__main__":
    sys.exit(main())
