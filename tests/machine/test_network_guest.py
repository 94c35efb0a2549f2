"""Guest networking through `wirt run`: passt port forwards, two VMs on a socket hub or a
point-to-point socket, a host tap device; and the one-line errors of --net/--mac/--port."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostpage import serve_page

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"

# A one-connection TCP server in the guest: busybox nc runs HANDLER with the connection on
# stdin/stdout. The handler answers the first line and keeps it in /tmp/got for the console.
_SERVER = ("printf '#!/bin/sh\\nread l; echo \"$l\" > /tmp/got; echo \"guest got $l\"\\n' > /tmp/h; "
           "chmod +x /tmp/h; ")


def wirt_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", _MAIN, *args]


def wirt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(wirt_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(wirt_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_path(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def static_ip(addr: str) -> str:
    """Guest commands: give eth0 a static address (busybox ip) and bring it up."""
    return f"ip addr add {addr}/24 dev eth0 && ip link set eth0 up && "


def client(server: str, token: str) -> str:
    """Guest commands: ping `server` until it answers, then send `token` to its port 7000."""
    return (f"i=0; until ping -c 1 -W 1 {server} >/tmp/ping; do i=$((i+1)); [ $i -lt 300 ] || exit 3; done; "
            f"cat /tmp/ping; i=0; until echo {token} | nc {server} 7000 >/tmp/r && [ -s /tmp/r ]; do "
            f"i=$((i+1)); [ $i -lt 300 ] || exit 4; sleep 1; done; cat /tmp/r")


# ---- one-line errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--net", "bogus"], "unknown network; use none, user, socket:PATH"),
    (["--net", "socket:"], "give the socket's path"),
    (["--net", "tap:much-too-long-name"], "tap device's name"),
    (["--net", "socket:/nonexistent/hub.sock"], "no such socket; start the hub"),
    (["--net", "tap:wirtnosuch0"], "does not exist; create it with: ip tuntap add"),
    (["--net", "socket-listen:/tmp", "--port", "8080:80"], "--port forwards"),
    (["--net", "user", "--mac", "01:00:5e:00:00:01"], "multicast"),
    (["--net", "user", "--mac", "nonsense"], "bad MAC address"),
    (["--mac", "52:54:00:12:34:56"], "add --net"),
    (["--net", "user", "--port", "99999:80"], "not in 1-65535"),
])
def test_network_options_fail_with_one_line(args: list[str], message: str) -> None:
    r = wirt("run", *args, "--", "true")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_hub_command_errors(tmp_path: Path) -> None:
    r = wirt("net", "hub", str(tmp_path / "missing-dir" / "hub.sock"))
    assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr
    r = wirt("net")
    assert r.returncode == 2 and "hub" in r.stderr


# ---- passt port forwarding -------------------------------------------------------------------------
@pytest.mark.slow
def test_host_reaches_a_guest_server_through_a_port_forward() -> None:
    """A host client connects to 127.0.0.1:HOST; passt forwards it to the guest's nc on port 7000."""
    port = free_port()
    token = secrets.token_hex(8)
    vm = start("run", "--net", "user", "--port", f"{port}:7000", "--",
               "udhcpc -i eth0 -q -n -t 5 >/dev/null 2>&1; " + _SERVER
               + "timeout 600 nc -l -p 7000 -e /tmp/h; echo \"server saw $(cat /tmp/got)\"")
    answer = b""
    deadline = time.monotonic() + 600
    try:
        while vm.poll() is None and time.monotonic() < deadline:
            # passt accepts on the host at once; until the guest listens it closes the connection
            # again without data, so try until the guest's answer comes back.
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(f"{token}\n".encode())
                    s.shutdown(socket.SHUT_WR)
                    answer = b"".join(iter(lambda: s.recv(4096), b""))
            except OSError:
                answer = b""
            if answer:
                break
            time.sleep(0.5)
    finally:
        rc, out, err = finish(vm, timeout=300)
    assert answer.decode().strip() == f"guest got {token}", (answer, out, err)
    assert rc == 0, err
    assert f"server saw {token}" in out


# ---- socket backend: two VMs ------------------------------------------------------------------------
@pytest.mark.slow
def test_two_vms_exchange_packets_through_a_hub(tmp_path: Path) -> None:
    """`wirt net hub` plus two `wirt run --net socket:PATH`: ping and a TCP exchange between them."""
    path = tmp_path / "hub.sock"
    hub = subprocess.Popen(wirt_cmd("net", "hub", str(path)), stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    token = secrets.token_hex(8)
    try:
        wait_for_path(path, hub)
        server = start("run", "--net", f"socket:{path}", "--",
                       static_ip("10.9.0.1") + _SERVER + "timeout 600 nc -l -p 7000 -e /tmp/h; cat /tmp/got")
        client_vm = start("run", "--net", f"socket:{path}", "--", static_ip("10.9.0.2") + client("10.9.0.1", token))
        c_rc, c_out, c_err = finish(client_vm)
        s_rc, s_out, s_err = finish(server, timeout=120 if c_rc == 0 else 5)
    finally:
        hub.terminate()
        _, hub_err = hub.communicate(timeout=30)
    assert c_rc == 0, (c_out, c_err)
    assert "64 bytes from 10.9.0.1" in c_out
    assert f"guest got {token}" in c_out
    assert s_rc == 0 and token in s_out.split(), (s_out, s_err)
    assert hub.returncode == 0 and "2 members" in hub_err
    assert not path.exists()  # the hub removes its socket


@pytest.mark.slow
def test_two_vms_on_a_point_to_point_socket(tmp_path: Path) -> None:
    """One VM listens (`--net socket-listen:PATH`), the other connects; no hub in between."""
    path = tmp_path / "link.sock"
    token = secrets.token_hex(8)
    server = start("run", "--net", f"socket-listen:{path}", "--",
                   static_ip("10.9.1.1") + _SERVER + "timeout 600 nc -l -p 7000 -e /tmp/h; cat /tmp/got")
    try:
        wait_for_path(path, server)
        client_vm = start("run", "--net", f"socket:{path}", "--", static_ip("10.9.1.2") + client("10.9.1.1", token))
        c_rc, c_out, c_err = finish(client_vm)
    finally:
        s_rc, s_out, s_err = finish(server, timeout=120)
    assert c_rc == 0, (c_out, c_err)
    assert "64 bytes from 10.9.1.1" in c_out and f"guest got {token}" in c_out
    assert s_rc == 0 and token in s_out.split(), (s_out, s_err)


# ---- tap ---------------------------------------------------------------------------------------------
@pytest.fixture
def tap_device():
    """A host tap device with 10.213.77.1/24 (needs root and the ip tool; removed afterwards)."""
    ip = shutil.which("ip")
    if ip is None:
        pytest.fail("ip not found: install iproute2 (make test does)")
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        # Not a missing package: this host does not let the test make a network device.
        pytest.skip("creating a tap device needs root and /dev/net/tun")
    name = f"wirtt{os.getpid() % 100000}"
    subprocess.run([ip, "tuntap", "add", "dev", name, "mode", "tap"], check=True, capture_output=True)
    try:
        subprocess.run([ip, "addr", "add", "10.213.77.1/24", "dev", name], check=True, capture_output=True)
        subprocess.run([ip, "link", "set", name, "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run([ip, "link", "del", name], capture_output=True)


@pytest.mark.slow
def test_guest_reaches_the_host_through_a_tap_device(tap_device: str) -> None:
    with serve_page(f"hello over {tap_device}\n".encode(), host="10.213.77.1") as port:
        r = wirt("run", "--net", f"tap:{tap_device}", "--mac", "52:54:00:77:77:02", "--",
                 static_ip("10.213.77.2") + "cat /sys/class/net/eth0/address; "
                 "i=0; until ping -c 1 -W 1 10.213.77.1 >/tmp/ping; do i=$((i+1)); [ $i -lt 60 ] || exit 3; done; "
                 f"cat /tmp/ping; wget -qO- http://10.213.77.1:{port}/", timeout=900)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "52:54:00:77:77:02" in r.stdout  # --mac reached the guest
    assert "64 bytes from 10.213.77.1" in r.stdout
    assert f"hello over {tap_device}" in r.stdout
