"""`wirt cp` throughput, and the data port under it, beside QEMU's virtio-serial port.

One initramfs VM (RAM-backed /tmp) is booted with `wirt start --wait`; then, for a file of
--mb MiB of random bytes:
- `wirt cp FILE vm:/tmp/` and `wirt cp vm:/tmp/FILE DIR` end to end (host wall time, from the
  command's start to its exit, including the guest agent's exec round trip);
- the port alone, timed inside the guest (busybox `time`): `dd if=PORT of=/tmp/x bs=64K` (host -> guest,
  the host streams into the data socket) and `cat /tmp/x > PORT` (guest -> host);
- guest instructions per byte and the VM process's host CPU seconds per MiB for each.
QEMU (same firmware, kernel, initramfs and command line; `-device virtio-serial-device` with a
`virtserialport` named wirt.data on a Unix socket chardev) runs the same two port commands,
timed the same way in its guest. QEMU has no `cp`; the port figures are the comparable work.

    python bench/cp.py [--mb 64] [--no-qemu | --qemu-only]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import guestbench as gb

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"
PORT = ("P=; for n in /sys/class/virtio-ports/*/name; do [ \"$(cat $n)\" = wirt.data ] && "
        "P=/dev/$(basename $(dirname $n)); done; export P; ")


def wirt(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _MAIN, *args], check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _real(stderr: str) -> float:
    m = re.search(r"real\s+(?:(\d+)m\s*)?([\d.]+)s", stderr)
    if not m:
        raise SystemExit(f"no time in {stderr!r}")
    return int(m.group(1) or 0) * 60 + float(m.group(2))


def wirt_port(vm, command: str, send: int = 0, receive: bool = False) -> tuple[float, float, float]:
    """Run `command` (with $P the port) and feed `send` bytes / drain the port; (guest seconds,
    instructions, host CPU seconds)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(vm.paths.data_socket))
    assert s.recv(3) == b"ok\n"
    before = vm.stats()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=vm.exec(f"{PORT} time sh -c '{command}'", kill_after=1800)))
    t.start()
    if send:
        block = os.urandom(1 << 20)
        for _ in range(send >> 20):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
    if receive:
        while s.recv(1 << 20):
            pass
    t.join()
    s.close()
    after = vm.stats()
    r = result["r"]
    assert r.status == 0, r.stderr
    return (_real(r.stderr.decode()), after["instructions"] - before["instructions"],
            after["cpu_seconds"] - before["cpu_seconds"])


def qemu_port(mb: int, work: Path) -> tuple[float, float] | None:
    """QEMU: guest-timed host -> guest and guest -> host port copies of `mb` MiB (None if it fails).
    The guest reads exactly `mb` MiB (QEMU may drop bytes still queued when the client hangs up)."""
    if gb.qemu_exe() is None:
        return None
    sock = work / "qemu-data.sock"
    n = mb << 20
    cmd = (f"{PORT} time sh -c 'dd if=$P of=/tmp/x bs=65536 count={n >> 16} iflag=fullblock 2>/dev/null'; "
           "time sh -c 'cat /tmp/x > $P'; echo SIZE $(wc -c < /tmp/x)")
    dev = ["-device", "virtio-serial-device", "-chardev", f"socket,id=wd,path={sock},server=on,wait=off",
           "-device", "virtserialport,chardev=wd,name=wirt.data"]
    proc = subprocess.Popen(gb.qemu_cmd(cmd, devices=dev), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", stdin=subprocess.DEVNULL)
    got = 0
    try:
        deadline = time.monotonic() + 120
        while not sock.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                return None
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        s.settimeout(900)
        block = os.urandom(1 << 20)
        for _ in range(mb):
            s.sendall(block)
        while got < n:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
        s.close()
        out, _ = proc.communicate(timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        proc.kill()
        print(f"qemu: {exc}", file=sys.stderr)
        return None
    times = [float(int(m.group(1) or 0) * 60) + float(m.group(2))
             for m in re.finditer(r"real\s+(?:(\d+)m\s*)?([\d.]+)s", out)]
    if len(times) < 2 or f"SIZE {n}" not in out or got != n:
        print(f"qemu: run incomplete (got {got} bytes)\n{out[-800:]}", file=sys.stderr)
        return None
    return times[0], times[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--qemu-only", action="store_true", help="only QEMU's port figures")
    args = ap.parse_args()
    if args.qemu_only:
        with tempfile.TemporaryDirectory(prefix="wirt-bench-cp-") as tmp:
            q = qemu_port(args.mb, Path(tmp))
        print("QEMU port: " + ("failed" if q is None else
              f"host -> guest {(args.mb << 20) / q[0] / 1e6:.1f} MB/s, guest -> host {(args.mb << 20) / q[1] / 1e6:.1f} MB/s"))
        return 0
    mb, n = args.mb, args.mb << 20
    with tempfile.TemporaryDirectory(prefix="wirt-bench-cp-") as tmp:
        work = Path(tmp)
        os.environ["WIRT_HOME"] = str(work / "home")
        from wirt.vm.api import VM

        wirt("create", "bench", "--image", "initramfs", "--memory", f"{mb * 3 + 128}M", "--disk", "none",
             "--net", "none")
        vm = VM.get("bench")
        wirt("start", "--wait", "--timeout", "1200", "bench")
        try:
            src = work / "data.bin"
            with open(src, "wb") as f:
                for _ in range(mb):
                    f.write(os.urandom(1 << 20))
            up = wirt("cp", "-q", str(src), "bench:/tmp/data.bin")
            (work / "out").mkdir()
            down = wirt("cp", "-q", "bench:/tmp/data.bin", str(work / "out"))
            assert (work / "out" / "data.bin").read_bytes() == src.read_bytes()
            vm.exec("rm /tmp/data.bin", kill_after=60)
            pin = wirt_port(vm, f"dd if=$P of=/tmp/x bs=65536 count={n >> 16} iflag=fullblock 2>/dev/null", send=n)
            pout = wirt_port(vm, "cat /tmp/x > $P", receive=True)
        finally:
            vm.stop(force=True)
            from wirt.vm import zygote

            zygote.stop(work / "home")
        q = None if args.no_qemu else qemu_port(mb, work)
    print(f"wirt cp, {mb} MiB file, end to end: host -> guest {n / up / 1e6:.1f} MB/s, "
          f"guest -> host {n / down / 1e6:.1f} MB/s")
    for label, (sec, insns, cpu), qsec in (("host -> guest", pin, q and q[0]), ("guest -> host", pout, q and q[1])):
        line = (f"data port {label}, timed in the guest: {n / sec / 1e6:.1f} MB/s; {insns / n:.2f} guest "
                f"instructions per byte; {cpu / mb * 1000:.1f} ms host CPU per MiB")
        if qsec:
            line += f"; QEMU {n / qsec / 1e6:.1f} MB/s; wirt/QEMU {qsec / sec:.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
