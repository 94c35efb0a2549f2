"""A Debian VM that behaves like a cloud instance: systemd, networkd, host name, grown root, SSH (slow).

One VM boots with systemd (the default of `wirt create`); on this emulated hart that takes
minutes, so every check shares the one boot. (cloud-init's stages add many more minutes of
Python on the hart; its inputs and seed disk are tested without a boot: tests/images/test_cloudinit.py.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
BOOT_WAIT = 1200.0  # a full systemd boot on a loaded 2-core machine
_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_systemd_vm_boots_like_a_cloud_instance(home) -> None:
    from wirt.vm.api import VM

    r = wirt("create", "web-1", "--memory", "1G", "--disk", "4G", timeout=1800)  # builds the image if needed
    assert r.returncode == 0, r.stderr
    vm = VM.get("web-1")
    assert (vm.config.boot.init, vm.config.network.ssh_port > 0) == ("systemd", True)
    vm.start()
    try:
        r = vm.exec("systemctl is-system-running --wait; cat /proc/1/comm; hostname; "
                    "df -B1M --output=size / | tail -1; ip -4 -o addr show dev eth0; "
                    "systemctl is-active systemd-networkd ssh wirt-agent", timeout=BOOT_WAIT, kill_after=BOOT_WAIT)
        out = r.stdout.decode().split("\n")
        assert out[0] == "running", r.stdout.decode() + vm.exec("systemctl --failed").stdout.decode()
        assert out[1:3] == ["systemd", "web-1"]
        assert int(out[3]) > 3800  # MiB: systemd-growfs filled the 4 GiB disk
        assert "inet 192.0.2.2/" in out[4]  # networkd's DHCP lease from passt
        assert out[5:8] == ["active"] * 3

        argv = vm.ssh_command(["uname", "-m"])
        r = subprocess.run(argv, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (0, b"riscv64\n"), r.stderr
        r = wirt("ssh", "web-1", "--", "cat /proc/1/comm")  # the command, with the pinned host key: no prompt
        assert (r.returncode, r.stdout) == (0, b"systemd\n"), r.stderr

        st = vm.stop(timeout=300)  # systemctl poweroff through the agent
        assert (st.state, st.reason) == ("stopped", "poweroff")
    finally:
        if vm.status(query=False).running:
            vm.stop(force=True)
    check = subprocess.run(["qemu-img", "check", str(vm.paths.disk("disk0.qcow2"))], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    r = wirt("ssh", "web-1", "--", "true")
    assert r.returncode == 2 and b"not running" in r.stderr
