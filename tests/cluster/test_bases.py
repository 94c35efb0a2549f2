"""Base images by content hash across nodes (wirt.cluster.bases), on a real three-node Ray
cluster on this machine whose nodes have their own WIRT_HOME *and* their own image cache
(WIRT_CACHE), as separate hosts do: a `wirt image build --name` disk exists on node a only.

A VM created on b with that image gets the disk fetched from a, verified and kept in b's store;
moved while running to c, its base follows (from b's store, which c must not use in place) and
its overlay is pointed at c's copy; a second VM on c finds the base there by hash and fetches
nothing, nor when it moves to a, which has the image's own file; when c fails, a VM restarted
on b from c's folder gets its base copied into b's store by hash and is pointed at it; an image no node
has, and a base whose bytes changed on its node, are refused in one line. The VMs run the tiny
echo firmware (a real VM process, no Linux).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import free_port
from tests.vm.conftest import echo_firmware
from wirt.cli import main
from wirt.cluster import services
from wirt.cluster.bases import qcow2_header
from wirt.cluster.local import LocalCluster, NodeSpec, local_cluster
from wirt.images import named
from wirt.storage import open_image
from wirt.storage.qcow2_create import create_qcow2

BASE_SIZE = 8 << 20


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("hosts")
    specs = [NodeSpec(n, 4, 2048, {"zone": "x"} if n != "a" else {}, env={"WIRT_CACHE": str(base / f"cache-{n}")})
             for n in ("a", "b", "c")]
    with local_cluster(specs, base / "homes") as c:
        yield c


@pytest.fixture(scope="module")
def tiny_base(hosts: LocalCluster) -> tuple[Path, bytes]:
    """A qcow2 root disk with random contents, recorded as image 'tiny-base' in node a's cache only."""
    cache_a = Path(hosts.specs["a"].env["WIRT_CACHE"])
    path = cache_a / "rootdisk" / "tiny-base.qcow2"
    path.parent.mkdir(parents=True)
    data = os.urandom(BASE_SIZE // 2)
    create_qcow2(str(path), BASE_SIZE)
    with open_image(path, read_only=False) as img:
        img.write(0, data)
    named.save("tiny-base", path, [], cache=cache_a)
    return path, data


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The echo firmware, and a RISC-V Image header of 1 MiB as the kernel it never jumps to (a
    VM booting from a root disk needs a kernel; these stand in for wirt's guest)."""
    d = tmp_path_factory.mktemp("boot")
    (d / "echo.bin").write_bytes(echo_firmware())
    (d / "Image").write_bytes(struct.pack("<IIQQQIIQ8s4sI", 0x13, 0, 0x200000, 1 << 20, 0, 2, 0, 0,
                                          b"RISCV\0\0\0", b"RSC\x05", 0).ljust(4096, b"\0"))
    return ["--firmware", str(d / "echo.bin"), "--kernel", str(d / "Image"), "--memory", "32M", "--disk", "16M"]


def wirt(hosts: LocalCluster, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--cluster", hosts.address, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def ls(hosts: LocalCluster, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    rc, out, err = wirt(hosts, capsys, "ls", "--json")
    assert rc == 0, err
    return {r["name"]: r for r in json.loads(out)}


def backing_of(path: Path) -> str:
    return qcow2_header(path).backing_file


def guest_bytes(vm_dir: Path, length: int) -> bytes:
    """What the guest reads at the start of disk 0 (through its whole backing chain)."""
    with open_image(vm_dir / "disk0.qcow2", read_only=True) as img:
        return img.read(0, length)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_base_follows_its_vm_by_content_hash(hosts, capsys, tiny_base, boot) -> None:
    path, data = tiny_base
    sha = sha256(path)
    port = free_port()
    # b has no image 'tiny-base': it is fetched from a, verified and kept under its hash
    rc, out, err = wirt(hosts, capsys, "create", "v1", "--image", "tiny-base", *boot, "--on", "b",
                        "--net", "user", "--port", f"127.0.0.1:{port}:80")
    assert rc == 0 and "on node b" in out, err
    assert "fetched base image 'tiny-base'" in err and "from node a to b" in err and f"sha256 {sha[:16]}" in err
    stored = hosts.homes["b"] / "bases" / f"{sha}.qcow2"
    assert sha256(stored) == sha
    assert backing_of(hosts.homes["b"] / "vms" / "v1" / "disk0.qcow2") == str(stored)
    assert [p.name for p in (hosts.homes["b"] / "bases").iterdir() if p.name.startswith(".")] == []
    vm_b = hosts.homes["b"] / "vms" / "v1"
    with open_image(vm_b / "disk0.qcow2", read_only=False) as img:  # the VM's own write over the base
        img.write(BASE_SIZE // 2, b"written on b")
    before = ls(hosts, capsys)["v1"]
    rc, out, err = wirt(hosts, capsys, "start", "v1")
    assert rc == 0, err

    # running, to c: the base comes from b's own store (not usable in place by c), the overlay
    # (frozen in the migration snapshot, read-only) is pointed at c's copy, the guest continues
    rc, out, err = wirt(hosts, capsys, "migrate", "v1", "c")
    assert rc == 0 and "b -> c" in out and "guest paused" in out, err
    assert "from node b to c" in err
    stored_c = hosts.homes["c"] / "bases" / f"{sha}.qcow2"
    assert sha256(stored_c) == sha
    after = ls(hosts, capsys)["v1"]
    assert (after["node"], after["state"]) == ("c", "running")
    assert {k: after[k] for k in ("uuid", "mac", "ports")} == {k: before[k] for k in ("uuid", "mac", "ports")}
    assert after["ports"] == [f"{port}:80"]
    deadline = time.monotonic() + 60  # the forward now listens for the VM's process on c
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert wirt(hosts, capsys, "stop", "v1", "--force")[0] == 0
    vm_c = hosts.homes["c"] / "vms" / "v1"
    assert guest_bytes(vm_c, BASE_SIZE // 2 + 12) == data + b"written on b"
    assert str(hosts.homes["b"]) not in (vm_c / "disk0.qcow2").read_bytes()[:65536].decode("latin-1")
    assert (vm_c / "disk0.note").read_text() == f"qcow2 overlay on {stored_c}\n"

    # a second VM on c: the base is found there by its hash (a still names it), nothing is fetched
    rc, out, err = wirt(hosts, capsys, "create", "v2", "--image", "tiny-base", *boot, "--net", "none", "--on", "c")
    assert rc == 0, err
    assert "fetched" not in err
    assert backing_of(hosts.homes["c"] / "vms" / "v2" / "disk0.qcow2") == str(stored_c)
    assert guest_bytes(hosts.homes["c"] / "vms" / "v2", len(data)) == data
    # moved to a, which built the image: a's own cache file serves, nothing is fetched
    rc, out, err = wirt(hosts, capsys, "migrate", "v2", "a")
    assert rc == 0 and "c -> a" in out and "fetched" not in err, err
    assert backing_of(hosts.homes["a"] / "vms" / "v2" / "disk0.qcow2") == str(path)
    assert not (hosts.homes["a"] / "bases" / f"{sha}.qcow2").exists()
    assert wirt(hosts, capsys, "rm", "v1", "v2")[0] == 0


def test_a_vm_restarted_after_its_node_failed_gets_its_base_into_the_new_nodes_store(hosts, capsys, tiny_base,
                                                                                      boot) -> None:
    sha = sha256(tiny_base[0])
    rc, out, err = wirt(hosts, capsys, "create", "v5", "--image", "tiny-base", *boot, "--net", "none", "--on", "c",
                        "--node-label", "zone=x", "--restart-policy", "on-node-failure")
    assert rc == 0, err
    assert backing_of(hosts.homes["c"] / "vms" / "v5" / "disk0.qcow2") == str(hosts.homes["c"] / "bases" / f"{sha}.qcow2")
    assert wirt(hosts, capsys, "start", "v5")[0] == 0
    (hosts.homes["b"] / "bases" / f"{sha}.qcow2").unlink(missing_ok=True)  # v1 left b: b has the base nowhere
    hosts.kill("c")  # its folder stays readable (one machine), its store is c's own
    deadline = time.monotonic() + 120
    row: dict = {}
    while time.monotonic() < deadline:
        row = ls(hosts, capsys)["v5"]
        if row["node"] != "c" and row["state"] == "running":
            break
        time.sleep(0.5)
    assert row["node"] == "b" and row["state"] == "running", row  # zone=x: b
    backing = backing_of(hosts.homes["b"] / "vms" / "v5" / "disk0.qcow2")
    assert backing == str(hosts.homes["b"] / "bases" / f"{sha}.qcow2") and sha256(Path(backing)) == sha
    assert wirt(hosts, capsys, "rm", "--force", "v5")[0] == 0


def test_an_image_no_node_has_is_refused_in_one_line(hosts, capsys) -> None:
    rc, out, err = wirt(hosts, capsys, "create", "v3", "--image", "nosuch", "--disk", "16M", "--net", "none")
    assert rc == 2 and err.count("\n") == 1
    assert "image 'nosuch' is on no node of the cluster (asked" in err
    assert "`wirt image build --name nosuch`" in err
    assert "v3" not in ls(hosts, capsys)


def test_a_base_whose_bytes_changed_is_refused_in_one_line(hosts, capsys, tiny_base, boot) -> None:
    path, _ = tiny_base
    assert services.call(services.agent("a").find_base.remote("tiny-base"))["sha256"] == sha256(path)  # hashed
    # the bytes on a change behind its hash memo (same size and mtime: bit rot, an edit in place)
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size - 100)
        f.write(b"\xff" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    for home in hosts.homes.values():
        for stored in (home / "bases").glob("*.qcow2"):
            stored.unlink()  # no VM uses them now: b must fetch again, and a has only its changed file
    rc, out, err = wirt(hosts, capsys, "create", "v4", "--image", "tiny-base", *boot, "--net", "none", "--on", "b")
    assert rc == 2 and err.count("\n") == 1, err
    assert "base image 'tiny-base' from a does not match its content hash" in err and "rebuild or restore" in err
    assert list((hosts.homes["b"] / "bases").glob("*.qcow2")) == []
    assert [p for p in (hosts.homes["b"] / "bases").iterdir() if p.name.startswith(".incoming")] == []
    assert "v4" not in ls(hosts, capsys) and not (hosts.homes["b"] / "vms" / "v4").exists()
