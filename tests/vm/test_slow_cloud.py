"""A Debian VM that behaves like a cloud instance (slow): systemd, cloud-init user-data, networkd,
host name, root file system grown to the disk, a service reached through a port forward, SSH.

One VM boots (systemd with cloud-init: minutes on this emulated hart), and every check shares it.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BOOT_WAIT = 1500.0  # a full systemd + cloud-init boot on a loaded 2-core machine
_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"

USER_DATA = """#cloud-config
users:
  - name: alice
    shell: /bin/bash
    ssh_authorized_keys: [{key}]
write_files:
  - path: /srv/www/index.html
    content: "served by a systemd unit that cloud-init wrote\\n"
  - path: /etc/systemd/system/hello-web.service
    content: |
      [Unit]
      Description=a web server provisioned by cloud-init
      [Service]
      ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/www
      [Install]
      WantedBy=multi-user.target
runcmd:
  - [systemctl, daemon-reload]
  - [systemctl, enable, --now, hello-web.service]
  - [sh, -c, "echo ran > /run/wirt-runcmd"]
"""


def wirt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_cloud_init_vm_is_provisioned_and_reachable(home, tmp_path: Path) -> None:
    from wirt.vm.api import VM
    from wirt.vm.ssh import free_loopback_port

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ud = tmp_path / "user-data"
    ud.write_text(USER_DATA.replace("{key}", key.with_suffix(".pub").read_text().strip()))
    web = free_loopback_port()
    r = wirt("create", "web-1", "--memory", "1G", "--disk", "4G", "--user-data", str(ud), "--ssh-key", str(key) + ".pub",
             "--port", f"{web}:8080", timeout=1800)  # builds the cloud image if needed
    assert r.returncode == 0, r.stderr
    vm = VM.get("web-1")
    assert (vm.config.boot.init, vm.config.network.ssh_port > 0, vm.config.disks[1].path) == ("systemd", True, "seed.raw")
    vm.start()
    try:
        # is-system-running --wait returns when the boot's jobs are done, cloud-init's stages among them
        # (`cloud-init status --wait` would poll in a second Python process, halving the guest's CPU).
        r = vm.exec("systemctl is-system-running --wait; cat /proc/1/comm; "
                    "hostname; df -B1M --output=size / | tail -1; ip -4 -o addr show dev eth0; "
                    "systemctl is-active systemd-networkd ssh wirt-agent hello-web; cat /run/wirt-runcmd; "
                    "id -un alice", timeout=BOOT_WAIT, kill_after=BOOT_WAIT)
        out = r.stdout.decode().split("\n")
        assert out[0] == "running", r.stdout.decode() + vm.exec("systemctl --failed; cloud-init status -l").stdout.decode()
        assert out[1:3] == ["systemd", "web-1"]
        assert int(out[3]) > 3800  # MiB: systemd-growfs filled the 4 GiB disk
        assert "inet 192.0.2.2/" in out[4]  # networkd's DHCP lease from passt
        assert out[5:9] == ["active"] * 4
        assert out[9:11] == ["ran", "alice"]  # runcmd ran; the user exists

        with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=120) as page:  # the service, via --port
            assert page.read() == b"served by a systemd unit that cloud-init wrote\n"

        argv = vm.ssh_command(["uname", "-m"], key=str(key))
        r = subprocess.run(argv, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (0, b"riscv64\n"), r.stderr
        alice = [a.replace("root@", "alice@") for a in argv[:-3]] + ["--", "id", "-un"]  # cloud-init's key for alice
        r = subprocess.run(alice, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (0, b"alice\n"), r.stderr
        r = wirt("ssh", "web-1", "--ssh-key", str(key), "--", "cat /proc/1/comm")  # the CLI: no prompt
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
