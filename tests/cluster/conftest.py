"""A real multi-node Ray cluster on this machine for the cluster tests (wirt.cluster.local): one
head and two worker nodes, each with fake capacities as its wirt resources and its own
WIRT_HOME. Started once per test module; VMs left running are stopped and the Ray processes
ended at teardown.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from wirt.cluster.local import LocalCluster, NodeSpec, local_cluster

# different capacities, as the placement test asks
NODES = [NodeSpec("n0", 4, 2048, {"zone": "a"}), NodeSpec("n1", 2, 1024, {"zone": "a"}),
         NodeSpec("n2", 6, 3072, {"zone": "b"})]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(NODES, tmp_path_factory.mktemp("fleet")) as c:
        yield c


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root: int) -> set[int]:
    """`root` and all its descendants (from /proc/*/stat's parent pids)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def _addr(hex_addr: str) -> str:
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    # /proc/net/tcp* print the address as host-order 32-bit words (little-endian here)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(raw)}:{int(port, 16)}"


def off_loopback_sockets(root: int) -> list[str]:
    """The TCP sockets of `root`'s process tree that listen on, or talk to, an address other than
    loopback (the workplace rule: test servers reach only 127.0.0.0/8 and ::1). Empty is good."""
    inodes: dict[str, int] = {}
    for pid in process_tree(root):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes[link[8:-1]] = pid
        except OSError:
            pass
    bad = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[9] not in inodes:
                continue
            local, remote, listening = _addr(f[1]), _addr(f[2]), f[3] == "0A"
            for a in ([local] if listening else [local, remote]):
                ip = ipaddress.ip_address(a.rsplit(":", 1)[0])
                ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is loopback too
                if not ip.is_loopback and not (ip.is_unspecified and not listening):
                    bad.append(f"pid {inodes[f[9]]} {'listens on' if listening else 'talks'} "
                               f"{local} -> {remote} ({Path(f'/proc/{inodes[f[9]]}/comm').read_text().strip()})")
    return bad
