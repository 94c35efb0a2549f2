"""A Debian VM that behaves like a cloud instance: systemd, networkd, host name, grown root, SSH,
cloud-init, a packaged service, `wirt shell` (slow).

One VM boots with systemd (the default of `wirt create`); on this emulated hart that takes
minutes, so the checks share its boots. It is made as a user would make it: `wirt create
--user-data FILE` on the default image (the Debian disk with cloud-init, built on first use), and
the user-data is a plain Multipass-style cloud-config: `packages: [nginx-light]` (cloud-init runs
apt-get update and install in the guest, from the mirror the image came from), a web page by
`write_files` and a `runcmd`. A host client then reaches nginx through `--port`. A second boot
after `wirt set --disk-size` checks that the root file system grows again and that the service
apt enabled starts by itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import pytest
from guestshell import shell_session

pytestmark = pytest.mark.slow
BOOT_WAIT = 1200.0  # a full systemd boot on a loaded 2-core machine
_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


USER_DATA = """#cloud-config
packages:
  - nginx-light
write_files:
  - path: /var/www/html/index.html
    content: "served by nginx in web-1\\n"
runcmd:
  - [sh, -c, "echo provisioned > /root/cloud-init-ran"]
"""


def test_systemd_vm_boots_like_a_cloud_instance(home, tmp_path) -> None:
    from wirt.vm.api import VM

    ud = tmp_path / "user-data.yaml"
    ud.write_text(USER_DATA)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    r = wirt("create", "web-1", "--memory", "1G", "--disk", "4G", "--user-data", str(ud), "--port", f"{port}:80",
             timeout=1800)  # the default image: the Debian disk with cloud-init (built here on first use)
    assert r.returncode == 0, r.stderr
    vm = VM.get("web-1")
    assert (vm.config.image, vm.config.boot.init, vm.config.network.ssh_port > 0) == ("debian", "systemd", True)
    vm.start()
    try:
        r = vm.exec("systemctl is-system-running --wait; cat /proc/1/comm; hostname; "
                    "df -B1M --output=size / | tail -1; ip -4 -o addr show dev eth0; "
                    "systemctl is-active systemd-networkd ssh wirt-agent nginx; cat /root/cloud-init-ran; "
                    "cloud-init status --wait | grep '^status:'; dpkg-query -W -f '${db:Status-Status}\\n' nginx-light",
                    timeout=BOOT_WAIT, kill_after=BOOT_WAIT)
        out = r.stdout.decode().split("\n")
        assert out[0] == "running", r.stdout.decode() + vm.exec("systemctl --failed").stdout.decode()
        assert out[1:3] == ["systemd", "web-1"]
        assert int(out[3]) > 3800  # MiB: systemd-growfs filled the 4 GiB disk
        assert "inet 192.0.2.2/" in out[4]  # networkd's DHCP lease from passt
        assert out[5:9] == ["active"] * 4, r.stdout.decode()  # nginx: installed by cloud-init's packages:, started
        assert out[9:12] == ["provisioned", "status: done", "installed"], r.stdout.decode()  # runcmd ran, apt installed
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as page:  # through --port
            assert page.read() == b"served by nginx in web-1\n"  # the file cloud-init wrote, served by nginx
        shell_session(wirt, "web-1")  # a terminal through the agent, under systemd

        argv = vm.ssh_command(["uname", "-m"])
        r = subprocess.run(argv, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (0, b"riscv64\n"), r.stderr
        r = wirt("ssh", "web-1", "--", "cat /proc/1/comm")  # the command, with the pinned host key: no prompt
        assert (r.returncode, r.stdout) == (0, b"systemd\n"), r.stderr

        st = vm.stop(timeout=300)  # systemctl poweroff through the agent
        assert (st.state, st.reason) == ("stopped", "poweroff")

        r = wirt("set", "web-1", "--disk-size", "6G")  # applies at the next start: the file system grows again
        assert r.returncode == 0, r.stderr
        vm.start()
        r = vm.exec("systemctl is-system-running --wait; df -B1M --output=size / | tail -1; systemctl is-active nginx; "
                    "cat /var/www/html/index.html", timeout=BOOT_WAIT, kill_after=BOOT_WAIT)
        out = r.stdout.decode().split("\n")
        assert out[0] == "running", r.stdout.decode() + vm.exec("systemctl --failed").stdout.decode()
        assert int(out[1]) > 5800, r.stdout.decode()  # MiB: grown to the 6 GiB disk at this boot
        assert out[2:4] == ["active", "served by nginx in web-1"]  # enabled by apt's postinst, started by systemd
        r = wirt("ssh", "web-1", "--", "hostname")  # the same pinned host key after a reboot
        assert (r.returncode, r.stdout) == (0, b"web-1\n"), r.stderr
        assert vm.stop(timeout=300).reason == "poweroff"
    finally:
        if vm.status(query=False).running:
            vm.stop(force=True)
    check = subprocess.run(["qemu-img", "check", str(vm.paths.disk("disk0.qcow2"))], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    r = wirt("ssh", "web-1", "--", "true")
    assert r.returncode == 2 and b"not running" in r.stderr
