"""TCP throughput through user-mode networking: wirt (virtio-net + passt) beside QEMU.

One guest boot per hypervisor runs bench/netio.c (a static riscv64 program added to the default
initramfs; 64 KiB writes and reads, so the guest's own copying stays small next to the network
path):
- upload (guest -> host): `netio send GATEWAY PORT MIB` to a sink on the host's loopback (the
  gateway address reaches the host's loopback, in passt and in slirp alike); the host times
  the first byte to the end of the stream;
- download (host -> guest): `netio recv 5001` behind a port forward; once it says it listens,
  the host connects to 127.0.0.1, sends the data, half-closes and times until the guest
  closes (so the guest has read everything); the guest's byte count is checked. The host's
  end sends segments of at most --host-mss bytes (default 1460, as a download from across an
  Ethernet network arrives). Loopback's own 65,483 bytes (--host-mss 0) make the sender wait
  out its 200 ms persist timer whenever passt's socket offers a window under one segment,
  in both hypervisors alike (docs/network.md, "Sixth round").
QEMU runs `qemu-system-riscv64 -M virt` with the same firmware, kernel, initramfs and kernel
command line, its NIC on `virtio-net-device`, through
- passt (default): the same passt binary and options as wirt (MTU 65520, SCHED_BATCH), over a socketpair
  handed to QEMU as `-netdev stream,addr.type=fd` (QEMU 7.2's stream netdev speaks passt's
  framing), its NIC given the same MTU (`host_mtu`, as wirt's NIC offers passt's), and/or
- slirp: QEMU's built-in `-netdev user` with `hostfwd`.
Besides MB/s, each direction's host CPU time per MB: the on-CPU time of every thread of the
hypervisor's process and of its passt over the same interval (/proc/PID/task/*/schedstat). On a
host shared with other jobs the wall-time figures move by tens of percent between runs (a
waiting thread stretches them); the CPU time a megabyte costs moves far less.

    python bench/net.py [--mb 32] [--qemu passt,slirp|none] [--runs 1] [--host-mss 1460] [--profile]

BENCH_QEMU_PASST_DEFAULT_SCHED=1 leaves QEMU's passt under the default scheduling policy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import guestbench as gb
from wirt.netback.passt import PASST_MTU, batch_scheduling, socket_buffers

GUEST_PORT = 5001
READY = "netio listening"


def guest_script(upload_port: int, mb: int) -> str:
    """The guest's part: DHCP, upload to the host, then receive the download."""
    return ("udhcpc -i eth0 -q -n -t 10 >/dev/null 2>&1; "
            "gw=$(ip route | awk '/^default/ {print $3; exit}'); "
            f"netio send $gw {upload_port} {mb} && netio recv {GUEST_PORT}")


@dataclass
class Result:
    """Throughput in MB/s each way, host CPU time per MB each way, and what went wrong."""

    upload: float | None = None
    download: float | None = None
    upload_cpu: float | None = None    # ms of host CPU (hypervisor and passt, all threads) per MB
    download_cpu: float | None = None
    notes: list[str] = field(default_factory=list)


class CpuMeter:
    """On-CPU time of the hypervisor's process tree (passt included) and of `extra` processes:
    a figure per MB that other jobs on a shared host disturb far less than wall time does."""

    def __init__(self, extra: tuple[int, ...] = ()) -> None:
        self.pids: list[int] = list(extra)

    def now(self) -> int:
        """Nanoseconds on a CPU so far, summed over the threads of the processes and their
        children (/proc/PID/task/TID/schedstat; a thread that ended is no longer counted)."""
        total, todo, seen = 0, list(self.pids), set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        total += int(f.read().split()[0])
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split()]
                except (OSError, ValueError, IndexError):
                    continue
        return total


def free_port() -> int:
    """An unused TCP port on the host's loopback (for the port forward)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sink(server: socket.socket, result: Result, expected: int, cpu: CpuMeter) -> None:
    """Accept the guest's upload; time first byte to end of stream."""
    server.settimeout(900)
    try:
        conn, _ = server.accept()
    except OSError:
        return
    with conn:
        got, t0, c0 = 0, None, 0
        buf = bytearray(4 << 20)  # reused: the sink costs the host as little as it can
        while n := conn.recv_into(buf):
            if t0 is None:
                t0, c0 = time.perf_counter(), cpu.now()
            got += n
        if t0 is not None and got == expected:
            result.upload = got / (time.perf_counter() - t0) / 1e6
            result.upload_cpu = (cpu.now() - c0) / 1e6 / (got / 1e6)
        else:
            result.notes.append(f"upload: received {got} of {expected} bytes")


def download(port: int, total: int, deadline: float, result: Result, cpu: CpuMeter, mss: int) -> None:
    """Send `total` bytes to the guest through the forward in segments of at most `mss` bytes
    (0: the loopback's); MB/s up to the guest's close."""
    chunk = b"\0" * (1 << 16)
    while time.monotonic() < deadline:
        try:
            with socket.socket() as s:
                if mss:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)  # before connect (tcp(7))
                s.settimeout(120)
                s.connect(("127.0.0.1", port))
                t0, c0 = time.perf_counter(), cpu.now()
                sent = 0
                while sent < total:
                    sent += s.send(chunk[: min(len(chunk), total - sent)])
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
                result.download = total / (time.perf_counter() - t0) / 1e6
                result.download_cpu = (cpu.now() - c0) / 1e6 / (total / 1e6)
                return
        except OSError:
            time.sleep(0.5)  # the forwarder took the connection before the guest listened


def measure(cmd: list[str], port: int, upload_server: socket.socket, mb: int, mss: int,
            pass_fds: tuple[int, ...] = (), extra_pids: tuple[int, ...] = ()) -> Result:
    """Boot one guest and run both directions against it (`extra_pids`: processes whose CPU
    time counts with the hypervisor's, e.g. the passt QEMU is given)."""
    total = mb << 20
    result = Result()
    cpu = CpuMeter(extra_pids)
    t_sink = threading.Thread(target=sink, args=(upload_server, result, total, cpu), daemon=True)
    t_sink.start()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            pass_fds=pass_fds, text=True, errors="replace")
    cpu.pids.append(proc.pid)
    ready = threading.Event()
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if READY in line:
                ready.set()

    t_out = threading.Thread(target=reader, daemon=True)
    t_out.start()
    deadline = time.monotonic() + 1200
    while not ready.wait(1):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
    if ready.is_set():
        download(port, total, deadline, result, cpu, mss)
    try:
        proc.wait(timeout=max(30.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    t_out.join(5)
    t_sink.join(5)
    received = re.search(r"netio received (\d+)", "".join(lines))
    if result.download is not None and (received is None or int(received.group(1)) != total):
        result.notes.append(f"download: guest counted {received.group(1) if received else 'nothing'} "
                            f"of {total} bytes")
        result.download = None
    if proc.returncode != 0:
        err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-3:]
        result.notes.append(f"exit status {proc.returncode}: {' | '.join(err)}")
    return result


def run_wirt(mb: int, mss: int, initrd: Path, profile: Path | None = None) -> Result:
    """wirt run --net user --port P:5001 (under bench/ioprofile.py when `profile` names a file)."""
    with socket.create_server(("127.0.0.1", 0)) as up:
        port = free_port()
        cmd = gb.wirt_cmd(guest_script(up.getsockname()[1], mb), "--initrd", str(initrd), "--net", "user",
                          "--port", f"{port}:{GUEST_PORT}", profile=profile)
        r = measure(cmd, port, up, mb, mss)
    if profile is not None:
        gb.print_profile("wirt profile", profile)
    return r


def run_qemu(mb: int, mss: int, backend: str, initrd: Path) -> Result:
    """QEMU's virt board with passt over a socketpair, or with slirp."""
    with socket.create_server(("127.0.0.1", 0)) as up:
        port = free_port()
        script = guest_script(up.getsockname()[1], mb)
        nic = ["-device", "virtio-net-device,netdev=n0"]
        if backend == "slirp":
            slirp = f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_PORT}"
            cmd = gb.qemu_cmd(script, initrd=str(initrd), devices=["-netdev", slirp, *nic])
            return measure(cmd, port, up, mb, mss)
        # passt exactly as wirt's PasstBackend starts it (wirt.netback.passt), QEMU on the other end,
        # its NIC offering the same MTU as wirt's (virtio-net's host_mtu: VIRTIO_NET_F_MTU).
        nic = ["-device", f"virtio-net-device,netdev=n0,host_mtu={PASST_MTU}"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socket_buffers(ours, theirs)  # as wirt's PasstBackend
        passt = subprocess.Popen([shutil.which("passt") or "passt", "-f", "-q", "-F", str(theirs.fileno()),
                                  "-m", str(PASST_MTU), "-t", f"{port}:{GUEST_PORT}"], pass_fds=[theirs.fileno()],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        if not os.environ.get("BENCH_QEMU_PASST_DEFAULT_SCHED"):
            batch_scheduling(passt.pid)  # as wirt's PasstBackend
        try:
            stream = f"stream,id=n0,server=off,addr.type=fd,addr.str={ours.fileno()}"
            cmd = gb.qemu_cmd(script, initrd=str(initrd), devices=["-netdev", stream, *nic])
            return measure(cmd, port, up, mb, mss, pass_fds=(ours.fileno(),), extra_pids=(passt.pid,))
        finally:
            ours.close()
            passt.terminate()
            passt.wait(10)


def best(results: list[Result]) -> Result:
    """The best figures of several runs each way (notes of all runs kept)."""
    r = Result()
    for x in results:
        for attr in ("upload", "download"):
            v = getattr(x, attr)
            if v is not None and (getattr(r, attr) is None or v > getattr(r, attr)):
                setattr(r, attr, v)
        for attr in ("upload_cpu", "download_cpu"):  # the lowest CPU time per MB
            v = getattr(x, attr)
            if v is not None and (getattr(r, attr) is None or v < getattr(r, attr)):
                setattr(r, attr, v)
        r.notes += x.notes
    return r


def each(label: str, r: Result, runs: int) -> Result:
    """With several runs, print each one's figures (the table shows the best): the spread says
    how far a difference between two builds can be trusted on a shared machine."""
    if runs > 1:
        print(f"  {label} run: {fmt(r.upload).strip()} / {fmt(r.download).strip()} MB/s, "
              f"{cpu_fmt(r.upload_cpu)} / {cpu_fmt(r.download_cpu)} ms of host CPU per MB", flush=True)
    return r


def cpu_fmt(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "-"


def fmt(v: float | None) -> str:
    return f"{v:8.1f}" if v is not None else f"{'failed':>8s}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=32, help="MiB sent each way (default 32)")
    ap.add_argument("--qemu", default="passt", help="QEMU backends: passt, slirp, both (passt,slirp) or none")
    ap.add_argument("--runs", type=int, default=1, help="runs per configuration; the best is shown")
    ap.add_argument("--host-mss", type=int, default=1460,
                    help="largest TCP segment the host sends the guest (default 1460, Ethernet's; "
                         "0: loopback's 65483)")
    ap.add_argument("--profile", action="store_true",
                    help="time wirt's host-side paths per phase (bench/ioprofile.py; adds a little overhead)")
    args = ap.parse_args()
    qemu_backends = [b.strip() for b in args.qemu.replace("both", "passt,slirp").split(",") if b.strip()]
    if qemu_backends == ["none"] or not gb.qemu_exe():
        qemu_backends = []
    if bad := [b for b in qemu_backends if b not in ("passt", "slirp")]:
        raise SystemExit(f"--qemu: {', '.join(bad)} unknown; use passt, slirp, both or none")
    if args.host_mss and not 88 <= args.host_mss <= 65483:
        raise SystemExit(f"--host-mss {args.host_mss}: give 88-65483 bytes, or 0 for the loopback's")
    if not shutil.which("passt"):
        raise SystemExit("passt not found: install Debian's passt package (make test does)")

    program = gb.build_guest_program(Path(__file__).with_name("netio.c"))
    with tempfile.TemporaryDirectory(prefix="wirt-bench-net-") as tmp:
        initrd = gb.initrd_with({"bin/netio": program}, Path(tmp))
        args.profile_file = Path(tmp) / "profile.jsonl" if args.profile else None
        return report(args, qemu_backends, initrd)


def report(args: argparse.Namespace, qemu_backends: list[str], initrd: Path) -> int:
    """Measure and print the table."""
    print(f"TCP, {args.mb} MiB each way, bench/netio.c in the guest (64 KiB writes and reads), "
          "MB/s = 10^6 bytes/s")
    print(f"{'hypervisor':30s} {'guest->host':>11s} {'host->guest':>11s}")
    print(gb.host_load())
    print(f"passt: {shutil.which('passt')} (the first on PATH, for both hypervisors)")
    print(f"host -> guest segments: at most {args.host_mss or 65483} bytes"
          + ("" if args.host_mss else " (loopback's)"))
    w = best([each("wirt", run_wirt(args.mb, args.host_mss, initrd, args.profile_file), args.runs)
              for _ in range(args.runs)])
    print(f"{'wirt (passt)':30s} {fmt(w.upload):>11s} {fmt(w.download):>11s}", flush=True)
    print(f"{'  host CPU, ms per MB':30s} {cpu_fmt(w.upload_cpu):>11s} {cpu_fmt(w.download_cpu):>11s}")
    for note in w.notes:
        print(f"  wirt: {note}")
    if not qemu_backends:
        print("qemu: not run (qemu-system-riscv64 not installed or --qemu none)")
    for backend in qemu_backends:
        q = best([each("qemu", run_qemu(args.mb, args.host_mss, backend, initrd), args.runs)
                  for _ in range(args.runs)])
        label = f"qemu {gb.qemu_version()} " + ("(passt, stream fd)" if backend == "passt" else "(slirp)")
        print(f"{label:30s} {fmt(q.upload):>11s} {fmt(q.download):>11s}", flush=True)
        print(f"{'  host CPU, ms per MB':30s} {cpu_fmt(q.upload_cpu):>11s} {cpu_fmt(q.download_cpu):>11s}")
        for note in q.notes:
            print(f"  qemu: {note}")
        ratios = [f"{a / b:.2f}" if a and b else "-" for a, b in ((w.upload, q.upload), (w.download, q.download))]
        print(f"{'wirt/qemu (' + backend + ')':30s} {ratios[0]:>11s} {ratios[1]:>11s}", flush=True)
        cpu = [f"{b / a:.2f}" if a and b else "-" for a, b in ((w.upload_cpu, q.upload_cpu),
                                                                (w.download_cpu, q.download_cpu))]
        print(f"{'  qemu/wirt host CPU per MB':30s} {cpu[0]:>11s} {cpu[1]:>11s}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
