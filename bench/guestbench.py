"""Shared by bench/disk.py and bench/net.py: run one guest command under `wirt run` and under
QEMU's virt board with the very same firmware, kernel, initramfs and kernel command line
(as bench/boot.py does), and add files to the default initramfs.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


@dataclass
class GuestRun:
    """What one guest run printed, its exit status and its wall time (process start to exit)."""

    status: int
    output: str
    errors: str
    seconds: float


def run(cmd: list[str], timeout: float = 1800) -> GuestRun:
    """Run a hypervisor process to completion, capturing its console output."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return GuestRun(124, out, "timed out", time.perf_counter() - t0)
    return GuestRun(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)


def wirt_cmd(command: str, *options: str, profile: Path | None = None) -> list[str]:
    """`wirt run OPTIONS -- COMMAND` in this Python; with `profile`, under bench/ioprofile.py
    writing its phase figures to that file."""
    if profile is not None:
        return [sys.executable, str(Path(__file__).with_name("ioprofile.py")), "--out", str(profile), "--",
                "run", *options, "--", command]
    return [sys.executable, "-c", _MAIN, "run", *options, "--", command]


def host_load() -> str:
    """The host's load averages, printed with every benchmark (the figures depend on them)."""
    import os

    one, five, _ = os.getloadavg()
    return f"host load average: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def print_profile(label: str, path: Path) -> None:
    """The phases bench/ioprofile.py wrote to `path`, one line each."""
    import json

    from ioprofile import phase_report

    if not path.exists():
        print(f"  {label}: no profile written")
        return
    for line in path.read_text().splitlines():
        print(f"  {label}: {phase_report(json.loads(line))}")
    path.unlink()


def qemu_exe() -> str | None:
    """qemu-system-riscv64's path, or None."""
    return shutil.which("qemu-system-riscv64")


def qemu_version() -> str:
    """The version qemu-system-riscv64 reports ("7.2.22"), so a table names the QEMU it ran."""
    exe = qemu_exe()
    if exe is None:
        return "?"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    return m.group(1) if m else "?"


def qemu_banner() -> str:
    """One line naming the QEMU a benchmark compares against, so its figures can be placed."""
    exe = qemu_exe()
    return f"qemu: {qemu_version()} ({exe})" if exe else "qemu: not installed"


def qemu_cmd(command: str, initrd: str | None = None, memory: str = "512M", devices: list[str] = (),
             cpus: int = 1) -> list[str]:
    """QEMU's virt board booting the default guest's files with `wirt run`'s exact command line
    (with several `cpus`, one host thread per vCPU: MTTCG)."""
    from wirt.cli.run import _bootargs
    from wirt.images.guest import default_guest

    guest = default_guest()
    exe = qemu_exe()
    assert exe is not None
    append = _bootargs(command, "", devices=bool(devices))
    smp = ["-smp", str(cpus)] + (["-accel", "tcg,thread=multi"] if cpus > 1 else [])
    return [exe, "-M", "virt", "-m", memory.rstrip("B"), *smp, "-nographic", "-no-reboot",
            "-bios", str(guest.firmware), "-kernel", str(guest.kernel),
            "-initrd", initrd or str(guest.initrd), "-append", append, *devices]


def initrd_with(files: dict[str, bytes], work: Path) -> Path:
    """The default initramfs with `files` (guest path -> executable contents) appended as a
    second cpio archive (Linux unpacks concatenated archives in order: early-userspace
    buffer-format.rst)."""
    from wirt.images.cpio import CpioWriter
    from wirt.images.guest import default_guest

    base = default_guest().initrd.read_bytes()
    extra = io.BytesIO()
    w = CpioWriter(extra)
    for name, data in sorted(files.items()):
        w.add_file(name, data, perm=0o755)
    w.close()
    key = hashlib.sha256(base[:4096] + extra.getvalue()).hexdigest()[:12]
    out = work / f"initrd-{key}.cpio"
    out.write_bytes(base + b"\0" * (-len(base) % 512) + extra.getvalue())
    return out


def build_guest_program(source: Path) -> bytes:
    """A static riscv64 Linux program from one freestanding C file (no libc) and the headers beside
    it (guestsys.h), cached by their content."""
    from wirt.paths import cache_dir

    cc = shutil.which("riscv64-unknown-elf-gcc")
    if cc is None:
        raise SystemExit("riscv64-unknown-elf-gcc not found: install gcc-riscv64-unknown-elf (make test does)")
    text = source.read_bytes() + b"".join(h.read_bytes() for h in sorted(source.parent.glob("*.h")))
    out = cache_dir() / "programs" / f"{source.stem}-{hashlib.sha256(text).hexdigest()[:12]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([cc, "-march=rv64gc", "-mabi=lp64d", "-O2", "-static", "-nostdlib", "-ffreestanding",
                        "-fno-builtin", "-fno-tree-loop-distribute-patterns", "-mno-relax", "-o", str(tmp),
                        str(source)], check=True)
        tmp.rename(out)
    return out.read_bytes()
