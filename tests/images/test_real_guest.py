"""The real default guest from the real Debian mirror (slow: downloads ~115 MB on a cold cache).

Uses the user's cache (`$WIRT_CACHE` or ~/.cache/wirt), so only the first run downloads.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from wirt.images import cache
from wirt.images.cpio import read_newc
from wirt.images.guest import GuestImage, default_guest, is_riscv_image
from wirt.images.scripts import parse_exit_status, run_param

pytestmark = pytest.mark.slow

EXPECTED_ORDER = [
    "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4", "virtio_blk", "virtio_mmio",
    "failover", "net_failover", "virtio_net", "virtio_rng",
]  # fmt: skip


@pytest.fixture(scope="module")
def real_guest() -> GuestImage:
    return default_guest()


def test_real_default_guest(real_guest: GuestImage, monkeypatch: pytest.MonkeyPatch) -> None:
    g = real_guest
    assert g.kernel_version.startswith("6.12.") and g.kernel_version.endswith("-riscv64")
    header = g.kernel.read_bytes()[:64]
    assert header[0x30:0x38] == b"RISCV\0\0\0" and header[0x38:0x3C] == b"RSC\x05"
    assert is_riscv_image(header) and g.kernel.stat().st_size > 10_000_000
    assert g.firmware.is_file() and g.firmware.stat().st_size > 100_000
    assert set(g.versions) == {f"linux-image-{g.kernel_version}", "busybox-static", "opensbi"}
    assert list(g.modules) == EXPECTED_ORDER  # virtio_console is built in

    entries = {e.name: e for e in read_newc(g.initrd.read_bytes())}
    assert entries["init"].is_file and entries["bin/busybox"].data[:4] == b"\x7fELF"
    assert entries["bin/sh"].is_symlink and entries["bin/devmem"].is_symlink and entries["bin/cttyhack"].is_symlink
    for name in g.modules:
        assert entries[f"lib/modules/{name}.ko"].data[:4] == b"\x7fELF"
    if shutil.which("cpio"):
        listing = subprocess.run(["cpio", "-t", "--quiet"], input=g.initrd.read_bytes(), capture_output=True, check=True)
        names = listing.stdout.decode().split()
        assert "init" in names and "bin/busybox" in names and "lib/modules/ext4.ko" in names

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network I/O with a warm cache")

    monkeypatch.setattr(cache, "urlopen", no_network)
    assert default_guest() == g


@pytest.mark.skipif(shutil.which("qemu-system-riscv64") is None, reason="qemu-system-riscv64 not installed")
def test_boots_under_qemu_and_reports_status(real_guest: GuestImage) -> None:
    """Cross-check of /init's contract on QEMU's virt board (same finisher address as wirt's)."""
    g = real_guest
    command = "echo guest-says-hi; grep -c . /proc/modules; exit 3"
    proc = subprocess.run(
        ["qemu-system-riscv64", "-M", "virt", "-smp", "1", "-m", "512M", "-nographic", "-no-reboot",
         "-bios", str(g.firmware), "-kernel", str(g.kernel), "-initrd", str(g.initrd),
         "-append", f"console=ttyS0 quiet panic=1 {run_param(command)}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "guest-says-hi" in proc.stdout
    assert f"\n{len(g.modules)}" in proc.stdout.replace("\r", "")  # every module got loaded
    assert parse_exit_status(proc.stdout) == 3
    assert proc.returncode == 3  # the finisher's fail code reached QEMU
