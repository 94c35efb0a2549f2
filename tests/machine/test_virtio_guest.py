"""virtio-blk and virtio-net under the real Debian kernel, through `wirt run` (slow)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hostpage import serve_page

pytestmark = pytest.mark.slow

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"
MIB = 1 << 20


def wirt(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def words(r: subprocess.CompletedProcess) -> list[str]:
    """The command's output words, without kernel log lines ("[  92.7] watchdog: ...") that a
    heavily loaded host makes the guest print on the console mid-run."""
    return [w for line in r.stdout.splitlines() if not line.lstrip().startswith("[") for w in line.split()]


def test_block_data_survives_a_reboot_and_read_only_disks_refuse_writes(tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"\0" * (8 * MIB))
    first = wirt("run", "--disk", str(disk), "--",
                 "dd if=/dev/urandom of=/dev/vda bs=65536 count=16 conv=fsync 2>/dev/null; "
                 "sync; head -c 1048576 /dev/vda | md5sum")
    assert first.returncode == 0, first.stderr
    written = hashlib.md5(disk.read_bytes()[:MIB]).hexdigest()
    assert words(first)[0] == written  # the guest's view equals the host file
    assert written != hashlib.md5(b"\0" * MIB).hexdigest()

    second = wirt("run", "--disk", str(disk), "--", "head -c 1048576 /dev/vda | md5sum")
    assert second.returncode == 0, second.stderr
    assert words(second)[0] == written  # a fresh boot reads the same bytes back

    before = disk.read_bytes()
    ro = wirt("run", "--disk", f"{disk},ro", "--",
              "cat /sys/block/vda/ro; dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync")
    assert words(ro)[0] == "1"
    assert ro.returncode != 0  # the write fails inside the guest
    assert disk.read_bytes() == before


def test_guest_fetches_a_page_from_the_host_through_passt() -> None:
    """The initramfs leases eth0's address by DHCP before the command: no manual step."""
    with serve_page(b"hello from the host through passt\n") as port:
        r = wirt("run", "--net", "user", "--", f"wget -qO- http://192.0.2.1:{port}/")
    assert r.returncode == 0, r.stderr
    assert "hello from the host through passt" in r.stdout


def test_disk_options_are_checked() -> None:
    r = wirt("run", "--root", "--", "true")
    assert r.returncode == 2 and "--disk" in r.stderr and "Traceback" not in r.stderr
    r = wirt("run", "--disk", "/nonexistent.img", "--", "true")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_debian_root_disk_runs_python3_on_a_qcow2_overlay(tmp_path: Path) -> None:
    """`wirt image build`'s disk boots as root through a qcow2 overlay; the base stays intact."""
    from wirt.images.rootdisk import root_disk

    base = root_disk()
    before = base.stat().st_mtime_ns
    overlay = tmp_path / "root.qcow2"
    r = wirt("disk", "create", "--backing", str(base), "-F", "qcow2", str(overlay))
    assert r.returncode == 0, r.stderr
    with serve_page(b"page for the root disk\n") as port:  # the minimal init leased an address and DNS
        r = wirt("run", "--disk", str(overlay), "--root", "--net", "user", "--",
                 "python3 -c 'print(6*7)' && apt-get --version | head -1 && echo kept > /root/f && "
                 f"grep -q ^nameserver /etc/resolv.conf && busybox wget -qO- http://192.0.2.1:{port}/")
    assert r.returncode == 0, r.stderr
    assert "42" in r.stdout.split() and "apt" in r.stdout and "page for the root disk" in r.stdout
    r = wirt("run", "--disk", str(overlay), "--root", "--", "cat /root/f")
    assert words(r) == ["kept"]
    assert base.stat().st_mtime_ns == before
    check = subprocess.run(["qemu-img", "check", str(overlay)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
