"""A Debian VM that behaves like a cloud instance: systemd, networkd, host name, grown root, SSH,
cloud-init, a packaged service, `wirt shell` (slow).

One VM boots with systemd (the default of `wirt create`); on this emulated hart that takes
minutes, so every check shares the one boot. Its disk is a `wirt image build --packages
nginx-light,cloud-init` image: the package is baked in rather than installed by cloud-init's
`packages:`, which would run `apt-get update` over trixie's whole index on the emulated hart (many
minutes more); the image builder enables its service as its postinst would. cloud-init's
user-data then writes a web site and a file, and a host client reaches nginx through `--port`.
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
write_files:
  - path: /etc/nginx/sites-enabled/wirt-site
    content: |
      server {
        listen 80 default_server;
        root /srv/site;
      }
  - path: /srv/site/index.html
    content: "served by nginx in web-1\\n"
runcmd:
  - [sh, -c, "echo provisioned > /root/cloud-init-ran"]
"""


def test_systemd_vm_boots_like_a_cloud_instance(home, tmp_path) -> None:
    from wirt.vm.api import VM

    r = wirt("image", "build", "--packages", "nginx-light,cloud-init", "--name", "web-base", timeout=1800)
    assert r.returncode == 0, r.stderr
    ud = tmp_path / "user-data.yaml"
    ud.write_text(USER_DATA)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    r = wirt("create", "web-1", "--image", "web-base", "--memory", "1G", "--disk", "4G", "--user-data", str(ud),
             "--port", f"{port}:80", timeout=1800)
    assert r.returncode == 0, r.stderr
    vm = VM.get("web-1")
    assert (vm.config.boot.init, vm.config.network.ssh_port > 0) == ("systemd", True)
    vm.start()
    try:
        r = vm.exec("systemctl is-system-running --wait; cat /proc/1/comm; hostname; "
                    "df -B1M --output=size / | tail -1; ip -4 -o addr show dev eth0; "
                    "systemctl is-active systemd-networkd ssh wirt-agent nginx; cat /root/cloud-init-ran; "
                    "cloud-init status | grep '^status:'", timeout=BOOT_WAIT, kill_after=BOOT_WAIT)
        out = r.stdout.decode().split("\n")
        assert out[0] == "running", r.stdout.decode() + vm.exec("systemctl --failed").stdout.decode()
        assert out[1:3] == ["systemd", "web-1"]
        assert int(out[3]) > 3800  # MiB: systemd-growfs filled the 4 GiB disk
        assert "inet 192.0.2.2/" in out[4]  # networkd's DHCP lease from passt
        assert out[5:9] == ["active"] * 4, r.stdout.decode()  # nginx: the packaged service started
        assert out[9:11] == ["provisioned", "status: done"], r.stdout.decode()  # cloud-init's runcmd ran
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
    finally:
        if vm.status(query=False).running:
            vm.stop(force=True)
    check = subprocess.run(["qemu-img", "check", str(vm.paths.disk("disk0.qcow2"))], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    r = wirt("ssh", "web-1", "--", "true")
    assert r.returncode == 2 and b"not running" in r.stderr
