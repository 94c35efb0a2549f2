"""`wirt exec` and the network of real Debian guests in VM processes (slow: each boot takes 30-60 s).

One initramfs VM (user network through passt) is booted once and shared by the checks of exec,
network and stats; one VM boots the Debian root disk (`wirt create --image debian`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from guestshell import shell_session
from hostpage import serve_page

pytestmark = pytest.mark.slow
AGENT_WAIT = 300.0  # boot to agent on a loaded 2-core machine
_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    """A running initramfs VM with user networking, its agent up."""
    from vmhome import module_home

    from wirt.vm.api import VM

    with module_home(tmp_path_factory):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # a free host port for the forward to the guest's port 8080
        probe.close()
        vm = VM.create("g", memory="192M", disk="16M", image="initramfs", net="user", ports=[f"{port}:8080"])
        vm.host_port = port
        vm.start()
        r = vm.exec("true", timeout=AGENT_WAIT)
        assert r.status == 0
        yield vm


def test_exec_separates_stdout_stderr_and_status(guest) -> None:
    r = guest.exec("echo to-out; echo to-err >&2; exit 7", kill_after=120)
    assert (r.stdout, r.stderr, r.status) == (b"to-out\n", b"to-err\n", 7)
    r = guest.exec(["printf", "%s|", "two words", "$HOME", "'q'"], kill_after=120)  # a list is quoted, not re-split
    assert r.stdout == b"two words|$HOME|'q'|" and r.ok


def test_exec_is_binary_safe_both_ways(guest) -> None:
    blob = bytes(range(256)) * 64  # 16 KiB: several chunks, every byte value, NULs
    r = guest.exec("cat; cat >&2", stdin=blob, kill_after=120)
    assert r.stdout == blob and r.status == 0 and r.stderr == b""
    r = guest.exec("printf '\\000\\377\\r\\n'; printf '\\001' >&2; exit 255", kill_after=120)
    assert (r.stdout, r.stderr, r.status) == (b"\x00\xff\r\n", b"\x01", 255)


def test_wirt_exec_cli_streams_and_exits_with_the_status(guest) -> None:
    r = wirt("exec", "g", "--", "echo a; echo b >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, b"a\n", b"b\n")
    r = wirt("exec", "g", "--kill-after", "2", "--", "sleep 60")
    assert r.returncode == 2 and b"did not finish within 2 s" in r.stderr and b"Traceback" not in r.stderr
    assert guest.exec("ps -o comm | grep -c '^sleep$' || true", kill_after=120).stdout.strip() == b"0"  # killed in the guest


def test_network_reaches_a_host_server_and_is_counted(guest) -> None:
    before = guest.stats()
    with serve_page(b"hello from the host through passt\n") as port:
        # The agent ran DHCP at boot; passt maps the gateway address to the host's loopback.
        r = guest.exec("gw=$(ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p'); "
                       f"wget -qO- http://$gw:{port}/", kill_after=60)
    assert r.status == 0, r.stderr
    assert r.stdout == b"hello from the host through passt\n"
    after = guest.stats()
    assert after["net_rx_bytes"] > before["net_rx_bytes"] and after["net_tx_bytes"] > before["net_tx_bytes"]
    st = guest.status()
    assert st.live["ip"] and st.live["agent"] is True and st.live["warnings"] == []
    mac = guest.exec("cat /sys/class/net/eth0/address", kill_after=120).stdout.decode().strip()
    assert mac == guest.config.network.mac


def test_a_vm_port_forward_reaches_a_guest_server(guest) -> None:
    """`wirt create --port H:G`: a host client on H talks to a server in the guest on G (passt)."""
    result = {}
    server = threading.Thread(target=lambda: result.update(r=guest.exec("echo from-guest | nc -l -p 8080",
                                                                         kill_after=60)))
    server.start()
    deadline = time.monotonic() + 60
    got = b""
    while not got and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", guest.host_port), timeout=5) as c:
                c.sendall(b"from-host\n")
                c.shutdown(socket.SHUT_WR)
                got = c.makefile("rb").read()
        except OSError:
            time.sleep(0.5)  # the guest's nc is not listening yet
    server.join(70)
    assert got == b"from-guest\n"
    assert result["r"].status == 0 and result["r"].stdout == b"from-host\n"
    from test_ports import _non_loopback_ipv4

    other = _non_loopback_ipv4()
    if other is not None:  # not asked for with an address: the forward listens on 127.0.0.1 only
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, guest.host_port), timeout=5).close()


def test_guest_reads_host_entropy_from_virtio_rng(guest) -> None:
    r = guest.exec("cat /sys/devices/virtual/misc/hw_random/rng_current; "
                   "head -c 64 /dev/hwrng | od -An -tx1 | tr -d ' \\n'", kill_after=60)
    assert r.status == 0, r.stderr
    current, data = r.stdout.decode().split("\n", 1)
    assert current.startswith("virtio_rng")
    assert len(data) == 128 and data != "0" * 128


def test_exec_i_streams_stdin_and_the_initramfs_has_no_terminal(guest) -> None:
    r = subprocess.run([sys.executable, "-c", _MAIN, "exec", "-i", "g", "--", "while read -r l; do echo \"<$l>\"; done"],
                       input=b"a\nb\n", capture_output=True, timeout=300)
    assert (r.returncode, r.stdout) == (0, b"<a>\n<b>\n"), r.stderr
    r = wirt("exec", "-t", "g", "--", "true")  # busybox has no script(1)
    assert r.returncode == 127 and b"no script(1)" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


def test_graceful_stop_goes_through_the_agent(guest) -> None:
    st = guest.stop(timeout=60)
    assert st.state == "stopped" and st.reason == "poweroff"
    r = wirt("exec", "g", "--", "true")
    assert r.returncode == 2 and b"is stopped" in r.stderr


def test_debian_root_disk_vm_runs_python3_through_exec(home) -> None:
    from wirt.images.rootdisk import root_disk
    from wirt.vm.api import VM

    base = root_disk()
    r = wirt("create", "deb", "--image", "debian", "--init", "minimal", "--memory", "256M", "--disk", "4G",
             "--net", "none")
    assert r.returncode == 0 and b"overlay" in r.stdout, r.stderr
    vm = VM.get("deb")
    assert vm.config.boot.root
    vm.start()
    try:
        r = vm.exec("python3 -c 'import sys; print(6*7, sys.version_info[0])' && "
                    "findmnt -no SOURCE / && echo kept > /root/f && hostname && df -B1M --output=size / | tail -1",
                    timeout=AGENT_WAIT)
        assert r.status == 0, r.stderr
        assert r.stdout.split()[:4] == [b"42", b"3", b"/dev/vda", b"deb"]
        assert int(r.stdout.split()[4]) > 3800  # MiB: the minimal init grew the 2 GiB file system to the 4 GiB disk
        shell_session(wirt, "deb")
        assert vm.stop(timeout=60).reason == "poweroff"  # the agent synced and remounted read-only
    finally:
        if vm.status(query=False).running:
            vm.stop(force=True)
    check = subprocess.run(["qemu-img", "check", str(vm.paths.disk("disk0.qcow2"))], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert root_disk() == base
