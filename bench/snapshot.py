"""Snapshot, restore and fork of a running Debian guest: wirt beside QEMU's migrate-to-file.

For each memory size (default 512M and 2G) a VM (kernel + busybox initramfs, no network) boots
to its shell, fills --fill MiB of tmpfs with random data (so RAM holds real data), and then:
- wirt: `VM.snapshot()` (full: CPU, devices, RAM; the VM pauses meanwhile), size on disk of the
  snapshot, `VM.restore()` of the running VM (what `wirt snapshot restore` does), and
  `VM.fork(start=True)`: from the command to the new VM process running the guest (forked from
  the warm zygote that the first `wirt start` leaves running, see vm/zygote.py).
- QEMU (same kernel, initramfs, firmware, memory): HMP `migrate "exec:cat > FILE"` with the
  bandwidth limit lifted (the usual way to save a running guest to a file; savevm needs a qcow2
  disk for its RAM), the file's size,
  and a restore: a new QEMU started with `-incoming "exec:cat FILE"` until it reports running.
Times are wall-clock seconds on this host; ratios are wirt/QEMU (lower is better for wirt).

Usage: python bench/snapshot.py [--sizes 512M,2G] [--fill 64] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FILL = "dd if=/dev/urandom of=/dev/shm/fill bs=1M count={mib} 2>/dev/null; echo FILLED-{tag}"


def du(path: Path) -> int:
    """Bytes a file or folder takes on disk (allocated blocks: holes do not count)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def console_wait(vm, marker: str, timeout: float = 600.0) -> None:
    from wirt.vm.control import call

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = call(vm.paths.control, "console-tail", lines=30)["text"]
        if marker in text:
            return
        time.sleep(0.2)
    raise SystemExit(f"{vm.name}: {marker!r} never appeared on the console")


def bench_wirt(size: str, fill: int) -> dict[str, float]:
    from wirt.vm.api import VM

    name = f"bench-{size.lower()}"
    vm = VM.create(name, memory=size, disk=None, image="initramfs", net="none")
    try:
        vm.start()
        console_wait(vm, "# ")
        vm.console_input(FILL.format(mib=fill, tag="W").replace("FILLED-W", "FILLED-''W") + "\n")
        console_wait(vm, "FILLED-W")
        t0 = time.perf_counter()
        info = vm.snapshot("s1")
        save = time.perf_counter() - t0
        disk = du(vm.paths.snapshots / "s1")
        t0 = time.perf_counter()
        vm.restore("s1")
        restore = time.perf_counter() - t0
        t0 = time.perf_counter()
        fork = vm.fork("s1", name + "-fork", start=True)
        fork_s = time.perf_counter() - t0
        vm.console_input("echo alive-''after-restore\n")
        console_wait(vm, "alive-after-restore")
        fork.console_input("echo alive-''in-fork\n")
        console_wait(fork, "alive-in-fork")
        fork.stop(force=True)
        return {"save": save, "disk": disk, "ram_stored": info.memory_bytes, "restore": restore, "fork": fork_s}
    finally:
        vm.stop(force=True)


def hmp(sock_path: str, command: str) -> str:
    """One QEMU human-monitor command over its Unix socket; returns the reply text."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.settimeout(10)
    buf = b""
    while b"(qemu)" not in buf:
        buf += s.recv(4096)
    s.sendall(command.encode() + b"\n")
    buf = b""
    while buf.count(b"(qemu)") < 1:
        buf += s.recv(65536)
    s.close()
    return buf.decode(errors="replace")


def qemu_cmd(qemu: str, guest, size: str, mon: str, extra: list[str]) -> list[str]:
    from wirt.vm.runner import BASE_BOOTARGS

    return [qemu, "-M", "virt", "-m", size, "-smp", "1", "-display", "none", "-serial", "stdio",
            "-monitor", f"unix:{mon},server,nowait", "-bios", str(guest.firmware), "-kernel", str(guest.kernel),
            "-initrd", str(guest.initrd), "-append", f"{BASE_BOOTARGS} wirt.modules=none", *extra]


def bench_qemu(qemu: str, size: str, fill: int, tmp: Path) -> dict[str, float]:
    from wirt.images.guest import default_guest

    guest = default_guest()
    mon = str(tmp / "mon.sock")
    proc = subprocess.Popen(qemu_cmd(qemu, guest, size, mon, []), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = bytearray()
    threading.Thread(target=lambda: [out.extend(c) for c in iter(lambda: proc.stdout.read1(4096), b"")],
                     daemon=True).start()

    def wait(marker: bytes, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while marker not in out:
            if time.monotonic() > end or proc.poll() is not None:
                raise SystemExit(f"qemu: {marker!r} never appeared")
            time.sleep(0.05)

    try:
        wait(b"# ")
        proc.stdin.write((FILL.format(mib=fill, tag="Q").replace("FILLED-Q", "FILLED-''Q") + "\n").encode())
        proc.stdin.flush()
        wait(b"FILLED-Q")
        image = tmp / f"qemu-{size}.mig"
        hmp(mon, "migrate_set_parameter max-bandwidth 64G")  # no throttle: as fast as it can write
        t0 = time.perf_counter()
        hmp(mon, f'migrate -d "exec:cat > {image}"')  # -d: HMP's own wait polls once a second
        while "completed" not in hmp(mon, "info migrate"):
            time.sleep(0.01)
        save = time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()
    mon2 = str(tmp / "mon2.sock")
    t0 = time.perf_counter()
    proc = subprocess.Popen(qemu_cmd(qemu, guest, size, mon2, ["-incoming", f"exec:cat {image}"]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if "running" in hmp(mon2, "info status"):
                    break
            except OSError:
                pass
            time.sleep(0.005)
        restore = time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()
    return {"save": save, "disk": du(image), "restore": restore}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512M,2G")
    ap.add_argument("--fill", type=int, default=64, help="MiB of random data the guest writes to tmpfs first")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    from wirt.units import human_size

    qemu = None if args.no_qemu else shutil.which("qemu-system-riscv64")
    with tempfile.TemporaryDirectory(prefix="wirt-bench-") as tmp:
        os.environ["WIRT_HOME"] = str(Path(tmp) / "home")
        for size in args.sizes.split(","):
            w = bench_wirt(size, args.fill)
            print(f"{size:>5} wirt : snapshot {w['save']:6.3f} s, {human_size(int(w['disk'])):>9} on disk "
                  f"({human_size(int(w['ram_stored']))} of RAM stored), restore (running VM) {w['restore']:6.3f} s, "
                  f"fork to running {w['fork']:6.3f} s")
            if qemu:
                q = bench_qemu(qemu, size, args.fill, Path(tmp))
                print(f"{size:>5} qemu : migrate-to-file {q['save']:6.3f} s, {human_size(int(q['disk'])):>9} on disk, "
                      f"restore (new process, -incoming) {q['restore']:6.3f} s")
                print(f"{size:>5} ratio: snapshot {w['save'] / q['save']:.2f}x, size {w['disk'] / q['disk']:.2f}x, "
                      f"restore {w['restore'] / q['restore']:.2f}x, fork vs QEMU restore {w['fork'] / q['restore']:.2f}x")
            else:
                print(f"{size:>5} qemu : not run (qemu-system-riscv64 not installed or --no-qemu)")
            sys.stdout.flush()
        from wirt.vm import zygote

        zygote.stop(Path(os.environ["WIRT_HOME"]))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
