"""Port forwards (fast): on 127.0.0.1 unless an address is given (checked against a real passt),
changed with `wirt set --port/--no-port`, and kept by a fork on free host ports."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from wirt.cli import main
from wirt.errors import WirtError
from wirt.vm.schema import PortForward, parse_port


def test_parse_port_defaults_to_loopback():
    assert parse_port("8080:80") == PortForward(8080, 80, "tcp", "127.0.0.1")
    assert parse_port("0.0.0.0:8080:80/udp") == PortForward(8080, 80, "udp", "0.0.0.0")
    assert str(parse_port("8080:80")) == "8080:80" and str(parse_port("0.0.0.0:8080:80")) == "0.0.0.0:8080:80"
    assert parse_port("0.0.0.0:1:2").backend_spec() == "0.0.0.0:1:2/tcp"
    for bad in ("300.0.0.1:80:80", "localhost:80:80", "1.2.3:80:80"):
        with pytest.raises(WirtError, match="port forwarding|IPv4"):
            parse_port(bad)


def _non_loopback_ipv4() -> str | None:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _reachable(addr: str, port: int) -> bool:
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection((addr, port), timeout=2).close()
            return True
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)  # passt may not listen yet


@pytest.mark.skipif(_non_loopback_ipv4() is None, reason="the host has no non-loopback IPv4 address")
def test_forward_listens_on_loopback_unless_exposed():
    import shutil

    if shutil.which("passt") is None:
        pytest.skip("passt is not installed (make test installs it)")
    from wirt.netback.passt import PasstBackend

    other = _non_loopback_ipv4()
    assert other is not None
    p1, p2 = _free_port(), _free_port()
    b = PasstBackend([parse_port(f"{p1}:80").backend_spec(), parse_port(f"0.0.0.0:{p2}:80").backend_spec()])
    try:
        assert _reachable("127.0.0.1", p1)
        assert not _reachable(other, p1)       # not asked for: not on the host's other address
        assert _reachable(other, p2)           # asked for with 0.0.0.0
    finally:
        b.close()


def test_set_ports_and_fork_keeps_them(home, firmware, capsys):
    from wirt.vm.api import VM

    vm = VM.create("web", memory="32M", disk="1M", image="none", net="user", ports=["18080:80"],
                   firmware=str(firmware))
    assert main(["set", "web", "--port", "0.0.0.0:18443:443", "--port", "18080:8080"]) == 0
    assert [str(p) for p in vm.config.network.ports] == ["0.0.0.0:18443:443", "18080:8080"]
    assert "ports" in capsys.readouterr().out
    assert main(["set", "web", "--no-port", "--port", "5353:53/udp"]) == 0
    assert [str(p) for p in vm.config.network.ports] == ["5353:53/udp"]
    assert main(["set", "web", "--port", "18080:80", "--port", "0.0.0.0:18443:443"]) == 0
    capsys.readouterr()
    assert main(["set", "web", "--port", "1:2:3"]) == 2
    assert "not a port forwarding" in capsys.readouterr().err

    vm.snapshot("s")
    assert main(["fork", "web", "s", "web2", "--no-start"]) == 0
    out = capsys.readouterr().out
    twin = VM.get("web2").config.network.ports
    old = vm.config.network.ports
    assert [(p.guest, p.protocol, p.address) for p in twin] == [(p.guest, p.protocol, p.address) for p in old]
    assert all(a.host != b.host for a, b in zip(twin, old))
    assert "moved to free host ports" in out and f"-> {twin[0]}" in out

    assert main(["set", "web2", "--no-port"]) == 0
    assert VM.get("web2").config.network.ports == []
    VM.create("quiet", memory="32M", disk=None, image="none", net="none", firmware=str(firmware))
    assert main(["set", "quiet", "--port", "8080:80"]) == 2
    assert "user network" in capsys.readouterr().err
