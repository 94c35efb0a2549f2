"""VM density: how many idle VMs this host holds, wirt beside QEMU on the same kernel and initramfs.

Starts N small VMs (image "initramfs", default 128M, no network) one after another and measures
for each the time from `start` until its guest agent runs a command (`exec true`). Once all are
up and have idled for --settle seconds: the host memory per idle VM as PSS (proportional set
size: pages shared between processes are split among them, so a VM process and the monitor
forked from it are not counted twice; RSS where smaps_rollup is missing), and the host CPU % per
idle VM over --sample seconds. Where qemu-system-riscv64 is installed it does the same with N
QEMU VMs booting the very same firmware, kernel, initramfs and kernel command line, with a
virtio console on a Unix socket so the same wirt-agent answers there, and prints the ratios.
The host's available memory divided by the memory per idle VM estimates how many such VMs fit,
and wirt's own admission control (default settings) says how many it would start before refusing.

With --boot it instead boots the Debian root disk once per init (systemd, wirt's minimal init)
and reports the time from start until the guest agent answers, and for systemd until
`systemctl is-system-running --wait` returns (the full multi-user boot), with QEMU beside it on a
qcow2 overlay of the same disk with the same kernel, initramfs and kernel command line.

Usage: python bench/density.py [-n 4] [--memory 128M] [--settle 10] [--sample 10] [--no-qemu]
       python bench/density.py --boot [--memory 1G] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

AGENT_WAIT = 600.0


@dataclass
class Sample:
    """One VM's figures."""

    ready_s: float
    pids: list[int]


def proc_figures(pids: list[int]) -> tuple[int, float]:
    """(PSS bytes, CPU seconds) summed over `pids` (proc(5): smaps_rollup, else RSS from stat)."""
    mem, cpu = 0, 0.0
    tck, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        f = stat[stat.rindex(b")") + 2:].split()
        cpu += (int(f[11]) + int(f[12])) / tck
        try:
            pss = [ln for ln in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if ln.startswith("Pss:")]
            mem += int(pss[0].split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            mem += int(f[21]) * page
    return mem, cpu


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def idle_figures(samples: list[Sample], settle: float, sample: float) -> tuple[float, float]:
    """(mean PSS bytes, mean CPU %) per VM after `settle` s of idling, CPU over `sample` s."""
    time.sleep(settle)
    pids = [s.pids for s in samples]
    before = [proc_figures(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(sample)
    after = [proc_figures(p) for p in pids]
    dt = time.monotonic() - t0
    rss = statistics.mean(a[0] for a in after)
    cpu = statistics.mean((a[1] - b[1]) / dt * 100 for a, b in zip(after, before))
    return rss, cpu


# ---- wirt ----------------------------------------------------------------------------------------
def run_wirt(n: int, memory: str, settle: float, sample: float) -> tuple[list[Sample], float, float]:
    from wirt.vm.api import VM
    from wirt.vm.status import read_pid

    home = tempfile.mkdtemp(prefix="wirt-density-")
    os.environ["WIRT_HOME"] = home
    vms = []
    samples = []
    try:
        for i in range(n):
            vm = VM.create(f"idle{i}", memory=memory, disk=None, image="initramfs", net="none")
            vms.append(vm)
            t0 = time.perf_counter()
            vm.start()
            r = vm.exec("true", timeout=AGENT_WAIT)
            ready = time.perf_counter() - t0
            if r.status != 0:
                raise SystemExit(f"wirt VM {vm.name}: `true` exited with {r.status}")
            pids = [p for p in (read_pid(vm.paths.pid), read_pid(vm.paths.run / "monitor.pid")) if p]
            samples.append(Sample(ready, pids))
            print(f"  wirt VM {i + 1}/{n}: agent answered {ready:6.1f} s after start", flush=True)
        rss, cpu = idle_figures(samples, settle, sample)
        return samples, rss, cpu
    finally:
        for vm in vms:
            try:
                vm.stop(force=True)
            except Exception:  # noqa: BLE001 -- best effort cleanup
                pass
        shutil.rmtree(home, ignore_errors=True)


# ---- QEMU ------------------------------------------------------------------------------------------
class QemuVM:
    """A qemu-system-riscv64 VM whose virtio console (/dev/hvc0) is a Unix socket we connect to."""

    def __init__(self, qemu: str, guest, memory: str, bootargs: str, workdir: Path, index: int,
                 disk: Path | None = None) -> None:
        from wirt.vm.agent import GuestAgent

        self.sock_path = workdir / f"q{index}.sock"
        # The disk first, as wirt attaches it (virtio-mmio slot order: /dev/vda).
        drive = ["-drive", f"file={disk},if=none,id=d0,format=qcow2", "-device", "virtio-blk-device,drive=d0"] if disk else []
        self.proc = subprocess.Popen(
            [qemu, "-M", "virt", "-m", memory.rstrip("B"), "-smp", "1", "-nographic", "-nodefaults",
             "-serial", "null", "-monitor", "none", "-bios", str(guest.firmware), "-kernel", str(guest.kernel),
             "-initrd", str(guest.initrd), "-append", bootargs, *drive,
             "-chardev", f"socket,id=agent,path={self.sock_path},server=on,wait=off",
             "-device", "virtio-serial-device", "-device", "virtconsole,chardev=agent"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.sock_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"qemu did not start (exit status {self.proc.poll()})")
            time.sleep(0.02)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.sock_path))
        self.agent = GuestAgent(self.sock.sendall)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.agent.on_output(data)

    def exec_true(self, command: str = "true", timeout: float = 120) -> int:
        if not self.agent.wait_ready(AGENT_WAIT):
            raise SystemExit("the QEMU guest's agent did not come up")
        session = self.agent.start(command)
        status = 0
        for ev in self.agent.events(session, timeout=timeout):
            status = ev.status
        return status

    def close(self) -> None:
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


def run_qemu(qemu: str, n: int, memory: str, settle: float, sample: float) -> tuple[list[Sample], float, float]:
    from wirt.images.guest import default_guest
    from wirt.vm.runner import BASE_BOOTARGS

    guest = default_guest()
    work = Path(tempfile.mkdtemp(prefix="wirt-density-qemu-"))
    vms: list[QemuVM] = []
    samples = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            vm = QemuVM(qemu, guest, memory, BASE_BOOTARGS, work, i)  # the kernel command line of a wirt VM
            vms.append(vm)
            status = vm.exec_true()
            ready = time.perf_counter() - t0
            if status != 0:
                raise SystemExit(f"QEMU VM {i}: `true` exited with {status}")
            samples.append(Sample(ready, [vm.proc.pid]))
            print(f"  qemu VM {i + 1}/{n}: agent answered {ready:6.1f} s after start", flush=True)
        rss, cpu = idle_figures(samples, settle, sample)
        return samples, rss, cpu
    finally:
        for vm in vms:
            vm.close()
        shutil.rmtree(work, ignore_errors=True)


# ---- boot to agent, root disk, both inits ---------------------------------------------------------
BOOTED = "systemctl is-system-running --wait >/dev/null; true"  # returns when the boot is done


def boot_wirt(init: str, memory: str) -> tuple[float, float | None]:
    """(start -> agent answers, start -> boot finished or None) of a root-disk VM with `init`."""
    from wirt.vm.api import VM

    home = tempfile.mkdtemp(prefix="wirt-boot-")
    os.environ["WIRT_HOME"] = home
    try:
        vm = VM.create("boot", memory=memory, disk="4G", init=init, net="none")
        t0 = time.perf_counter()
        vm.start()
        if vm.exec("true", timeout=AGENT_WAIT * 2).status != 0:
            raise SystemExit("wirt: `true` failed")
        agent = time.perf_counter() - t0
        done = None
        if init == "systemd":
            vm.exec(BOOTED, timeout=AGENT_WAIT, kill_after=AGENT_WAIT * 2)
            done = time.perf_counter() - t0
        vm.stop(force=True)
        return agent, done
    finally:
        shutil.rmtree(home, ignore_errors=True)


def boot_qemu(qemu: str, init: str, memory: str) -> tuple[float, float | None]:
    """The same as boot_wirt under QEMU, on a qcow2 overlay of the same root disk."""
    from wirt.images.guest import default_guest
    from wirt.images.rootdisk import root_disk
    from wirt.images.rootinit import root_cmdline
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm.runner import BASE_BOOTARGS

    work = Path(tempfile.mkdtemp(prefix="wirt-boot-qemu-"))
    try:
        disk = work / "root.qcow2"
        create_qcow2(str(disk), 4 << 30, backing=str(root_disk()), backing_format="qcow2")
        t0 = time.perf_counter()
        vm = QemuVM(qemu, default_guest(), memory, f"{BASE_BOOTARGS} {root_cmdline(init)}", work, 0, disk)
        try:
            if vm.exec_true() != 0:
                raise SystemExit("qemu: `true` failed")
            agent = time.perf_counter() - t0
            done = None
            if init == "systemd":
                vm.exec_true(BOOTED, timeout=AGENT_WAIT)
                done = time.perf_counter() - t0
            return agent, done
        finally:
            vm.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def boot_main(memory: str, no_qemu: bool) -> None:
    qemu = None if no_qemu else shutil.which("qemu-system-riscv64")
    print(f"root disk boot, {memory}, start -> guest agent answers (and -> systemd boot finished)")
    for init in ("minimal", "systemd"):
        rows = {"wirt": boot_wirt(init, memory)}
        if qemu:
            rows["qemu"] = boot_qemu(qemu, init, memory)
        for name, (agent, done) in rows.items():
            tail = f", boot finished {done:6.1f} s" if done is not None else ""
            print(f"  {init:8s} {name:5s} agent {agent:6.1f} s{tail}", flush=True)
        if "qemu" in rows:
            (wa, wd), (qa, qd) = rows["wirt"], rows["qemu"]
            extra = f", boot finished {wd / qd:.1f}x" if wd and qd else ""
            print(f"  {init:8s} wirt/qemu: agent {wa / qa:.1f}x{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boot", action="store_true", help="boot-to-agent of the root disk, systemd and minimal init")
    ap.add_argument("-n", "--count", type=int, default=4, help="VMs to start (default 4)")
    ap.add_argument("--memory", default="128M", help="guest RAM of each VM (default 128M)")
    ap.add_argument("--settle", type=float, default=10.0, help="idle seconds before measuring (default 10)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds CPU use is measured over (default 10)")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    if args.count < 1:
        raise SystemExit("-n must be at least 1")
    if args.boot:
        return boot_main(args.memory if args.memory != "128M" else "1G", args.no_qemu)

    from wirt.images.guest import default_guest
    from wirt.units import human_size

    guest = default_guest()
    print(f"{args.count} idle VMs of {args.memory}, image initramfs (Linux {guest.kernel_version}), "
          f"host: {os.cpu_count()} CPUs, {human_size(mem_available())} available")
    rows = {"wirt": run_wirt(args.count, args.memory, args.settle, args.sample)}
    qemu = shutil.which("qemu-system-riscv64")
    if qemu and not args.no_qemu:
        rows["qemu"] = run_qemu(qemu, args.count, args.memory, args.settle, args.sample)
    print(f"\n{'':6s} {'start->agent mean / max':>24s} {'PSS per idle VM':>16s} {'CPU % per idle VM':>18s} "
          f"{'VMs in available RAM':>21s}")
    avail = mem_available()
    for name, (samples, rss, cpu) in rows.items():
        ready = [s.ready_s for s in samples]
        print(f"{name:6s} {statistics.mean(ready):11.1f} s / {max(ready):6.1f} s {human_size(int(rss)):>16s} "
              f"{cpu:17.1f}% {int(avail // rss) if rss else 0:>21d}")
    n, why = admitted(args.memory)
    print(f"admission: wirt admits {n} idle VMs of {args.memory} on this host before it refuses one ({why})")
    if "qemu" in rows:
        (ws, wr, wc), (qs, qr, qc) = rows["wirt"], rows["qemu"]
        wm, qm = statistics.mean(s.ready_s for s in ws), statistics.mean(s.ready_s for s in qs)
        print(f"ratio  wirt/qemu: start->agent {wm / qm:.1f}x, memory {wr / qr:.1f}x, "
              f"CPU {wc / qc:.1f}x" if qc > 0 else f"ratio  wirt/qemu: start->agent {wm / qm:.1f}x, memory {wr / qr:.1f}x")
    else:
        print("qemu  : not run (qemu-system-riscv64 not installed or --no-qemu)")


def admitted(memory: str, cap: int = 100_000) -> tuple[int, str]:
    """How many VMs of `memory` (1 vCPU, no disk) wirt's admission control lets run at once here,
    with the default settings, and the refusal that stops the next one."""
    from wirt.units import parse_size
    from wirt.vm.admission import AdmissionError, Demand, admit
    from wirt.vm.inventory import host_inventory
    from wirt.vm.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="wirt-density-"))
    host, settings = host_inventory(home), load_settings(home)
    running: list[Demand] = []
    while len(running) < cap:
        vm = Demand(f"vm{len(running)}", parse_size(memory), 1)
        try:
            admit(vm, running, host, settings)
        except AdmissionError as exc:
            return len(running), str(exc).split(": ", 1)[-1].split(" -- ")[0]
        running.append(vm)
    return cap, "cap reached"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
