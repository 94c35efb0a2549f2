"""A real three-node Ray cluster on this machine (conftest.fleet): agents on their own
WIRT_HOMEs, placement of 12 VMs by policy as Ray custom resources, a refusal naming what is
short where, the VM commands through `wirt --cluster ADDR`, migration of a stopped and of a
running VM, and node failure with the restart policy. The VMs here run the tiny echo firmware
(a real VM process, no Linux), except the slow test that moves a booted guest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.vm.conftest import echo_firmware
from wirt.cli import main
from wirt.cluster import services
from wirt.cluster.resources import VCPU


def wirt(fleet, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--cluster", fleet.address, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def ls(fleet, capsys) -> dict[str, dict]:
    import json

    rc, out, err = wirt(fleet, capsys, "ls", "--json")
    assert rc == 0, err
    return {r["name"]: r for r in json.loads(out)}  # Ray's own event lines go to stderr


def wait_free_vcpus(want: float, timeout: float = 30.0) -> float:
    """The cluster's free vCPUs as Ray reports them, waiting up to `timeout` for `want`: Ray's
    available_resources is the GCS's view, which follows a placement group's creation or removal
    after a resource report (about 100 ms), not at once."""
    import ray

    deadline = time.monotonic() + timeout
    while (free := ray.available_resources().get(VCPU, 0)) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    return free


@pytest.fixture(autouse=True)
def no_vms_left(fleet, capsys) -> Iterator[None]:
    """Each test starts with an empty fleet: a test that fails half-way must not leave VMs that
    hold the vCPUs the next test needs."""
    yield
    import json

    rc, out, _ = wirt(fleet, capsys, "ls", "--json")
    names = [r["name"] for r in json.loads(out)] if rc == 0 else []
    if names:
        wirt(fleet, capsys, "rm", "--force", *names)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("fw") / "echo.bin"
    p.write_bytes(echo_firmware())
    return p


def test_each_node_has_its_agent_home_and_capacity(fleet) -> None:
    for name, home in fleet.homes.items():
        info = services.call(services.agent(name).info.remote())
        assert info["node"] == name and info["home"] == str(home)
    nodes = {n["name"]: n for n in services.call(services.controller().nodes.remote())}
    assert {k: (v["vcpus"], v["memory_mib"], v["labels"]) for k, v in nodes.items()} == {
        "n0": (4, 2048, {"zone": "a"}), "n1": (2, 1024, {"zone": "a"}), "n2": (6, 3072, {"zone": "b"})}


def test_twelve_vms_placed_by_policy_and_the_thirteenth_refused(fleet, capsys) -> None:
    small = ["--image", "initramfs", "--memory", "128M", "--net", "none", "--disk", "none"]
    # each VM takes 1 vCPU and 128 MiB + 256 MiB overhead: n0 holds 4, n1 2, n2 6 -- 12 in all
    placed = {}
    for name in ("p1", "p2"):
        rc, out, err = wirt(fleet, capsys, "create", name, *small, "--policy", "pack")
        assert rc == 0, err
        placed[name] = out.split(" on node ")[1].split(":")[0]
    assert placed == {"p1": "n1", "p2": "n1"}  # pack fills the fullest node first
    for name in ("s1", "s2", "s3"):
        rc, out, err = wirt(fleet, capsys, "create", name, *small, "--label", "app=db")
        assert rc == 0, err
        placed[name] = out.split(" on node ")[1].split(":")[0]
    assert [placed[n] for n in ("s1", "s2", "s3")] == ["n2", "n0", "n2"]  # spread: the emptiest
    rc, out, err = wirt(fleet, capsys, "create", "zb", *small, "--node-label", "zone=b")
    assert rc == 0 and "on node n2" in out, err
    rc, out, err = wirt(fleet, capsys, "create", "anti", *small, "--anti-affinity", "app=db")
    assert rc != 0 and "n0: anti-affinity" in err and "n1: vCPUs short by 1" in err  # n1 is full (pack)
    for i in range(6):
        rc, out, err = wirt(fleet, capsys, "create", f"f{i}", *small)
        assert rc == 0, err
    rows = ls(fleet, capsys)
    assert len(rows) == 12
    assert sorted(r["node"] for r in rows.values()) == ["n0"] * 4 + ["n1"] * 2 + ["n2"] * 6
    assert wait_free_vcpus(0) == 0  # the cluster's vCPUs are held in Ray
    rc, out, err = wirt(fleet, capsys, "create", "thirteen", *small)
    assert rc == 2 and err.count("\n") == 1
    assert "cannot place 'thirteen'" in err
    for node in ("n0", "n1", "n2"):
        assert f"{node}: vCPUs short by 1" in err
    rc, out, err = wirt(fleet, capsys, "rm", *rows)
    assert rc == 0, err
    assert ls(fleet, capsys) == {}
    assert wait_free_vcpus(12) == 12


def test_lifecycle_and_migration_across_nodes(fleet, capsys, firmware: Path) -> None:
    tiny = ["--image", "none", "--memory", "32M", "--net", "none", "--disk", "1M", "--firmware", str(firmware)]
    rc, out, err = wirt(fleet, capsys, "create", "mover", *tiny, "--on", "n1")
    assert rc == 0 and "on node n1" in out, err
    uuid = ls(fleet, capsys)["mover"]["uuid"]
    rc, out, err = wirt(fleet, capsys, "start", "mover")
    assert rc == 0 and "on node n1" in out, err
    assert ls(fleet, capsys)["mover"]["state"] == "running"
    rc, out, err = wirt(fleet, capsys, "stop", "mover", "--force")
    assert rc == 0, err
    # a stopped VM: disks and config move, the source copy is gone
    rc, out, err = wirt(fleet, capsys, "migrate", "mover", "n0")
    assert rc == 0 and "n1 -> n0" in out and "stopped" in out, err
    assert not (fleet.homes["n1"] / "vms" / "mover").exists()
    assert (fleet.homes["n0"] / "vms" / "mover" / "vm.toml").is_file()
    row = ls(fleet, capsys)["mover"]
    assert row["node"] == "n0" and row["uuid"] == uuid and row["state"] == "stopped"
    rc, out, err = wirt(fleet, capsys, "start", "mover")
    assert rc == 0 and "on node n0" in out, err
    # a running one: snapshot, transfer, resume; the downtime is reported
    rc, out, err = wirt(fleet, capsys, "migrate", "mover", "n2", "--offline")
    assert rc == 2 and "stop it first" in err
    rc, out, err = wirt(fleet, capsys, "migrate", "mover", "n2")
    assert rc == 0 and "n0 -> n2" in out and "guest paused" in out, err
    row = ls(fleet, capsys)["mover"]
    assert (row["node"], row["state"], row["uuid"]) == ("n2", "running", uuid)
    assert not list((fleet.homes["n2"] / "vms" / "mover" / "snapshots").glob("migrate-*"))
    rc, out, err = wirt(fleet, capsys, "rm", "mover")
    assert rc == 2 and "stop it first" in err
    rc, out, err = wirt(fleet, capsys, "rm", "--force", "mover")
    assert rc == 0, err
    assert not (fleet.homes["n2"] / "vms" / "mover").exists()


def test_wirt_cluster_setting_routes_the_vm_commands(fleet, capsys, firmware: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """WIRT_CLUSTER=ADDR does what --cluster ADDR does."""
    monkeypatch.setenv("WIRT_CLUSTER", fleet.address)
    capsys.readouterr()
    assert main(["create", "envvm", "--image", "none", "--memory", "32M", "--net", "none", "--disk", "none",
                 "--firmware", str(firmware), "--on", "n2"]) == 0
    assert "on node n2" in capsys.readouterr().out
    assert (fleet.homes["n2"] / "vms" / "envvm" / "vm.toml").is_file()
    assert main(["rm", "envvm"]) == 0
    assert not (fleet.homes["n2"] / "vms" / "envvm").exists()


@pytest.mark.slow
def test_running_guest_migrates_with_its_processes_and_disk(fleet, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A booted Linux guest moves n0 -> n2 while a counter runs in it: the same process keeps
    counting on the new node, and the disk holds what was written before the move."""
    from wirt.cluster.local import DEAD_PROXY_ENV
    from wirt.images.guest import default_guest

    # The fleet's processes meet a dead proxy (cluster.local); the default guest is fetched into
    # this host's image cache here, with the network settings this test run started with.
    for key in DEAD_PROXY_ENV:
        monkeypatch.delenv(key, raising=False)
    default_guest()
    monkeypatch.undo()
    rc, out, err = wirt(fleet, capsys, "create", "live", "--image", "initramfs", "--memory", "128M", "--net", "none",
                        "--disk", "4M", "--on", "n0")
    assert rc == 0, err
    rc, out, err = wirt(fleet, capsys, "start", "live")
    assert rc == 0, err
    try:
        rc, out, err = wirt(fleet, capsys, "exec", "--timeout", "900", "live", "--",
                            "sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done' "
                            ">/dev/null 2>&1 & echo $!; dd if=/dev/urandom of=/dev/vda bs=64k count=64 2>/dev/null; "
                            "sync; md5sum /dev/vda")
        assert rc == 0, err
        pid, md5 = out.split()[0], out.split()[1]
        rc, out, err = wirt(fleet, capsys, "exec", "live", "--", "sleep 1; cat /tmp/count")
        before = int(out)
        rc, out, err = wirt(fleet, capsys, "migrate", "live", "n2")
        assert rc == 0 and "n0 -> n2" in out and "guest paused" in out, err
        print(out)  # the downtime, for the log
        rc, out, err = wirt(fleet, capsys, "exec", "live", "--",
                            f"sleep 1; cat /tmp/count; kill -0 {pid} && echo alive; md5sum /dev/vda")
        assert rc == 0, err
        count, alive, md5_after = out.split()[0], out.split()[1], out.split()[2]
        assert int(count) > before and alive == "alive" and md5_after == md5
        assert ls(fleet, capsys)["live"]["node"] == "n2"
    finally:
        wirt(fleet, capsys, "rm", "--force", "live")


def test_node_failure_marks_lost_and_restarts_by_policy(fleet, capsys, firmware: Path) -> None:
    tiny = ["--image", "none", "--memory", "32M", "--net", "none", "--disk", "1M", "--firmware", str(firmware)]
    for name, extra in (("phoenix", ["--restart-policy", "on-node-failure"]), ("dodo", [])):
        rc, out, err = wirt(fleet, capsys, "create", name, *tiny, "--on", "n1", *extra)
        assert rc == 0, err
        assert wirt(fleet, capsys, "start", name)[0] == 0
    old_pid = ls(fleet, capsys)["phoenix"]["pid"]
    fleet.kill("n1")  # n1's raylet and workers die; its VM processes (as after a partition) do not
    deadline = time.monotonic() + 120
    rows = {}
    while time.monotonic() < deadline:
        rows = ls(fleet, capsys)
        if rows["dodo"]["state"] == "lost" and rows["phoenix"]["node"] != "n1" and rows["phoenix"]["state"] == "running":
            break
        time.sleep(0.5)
    assert rows["dodo"]["state"] == "lost" and "n1" in rows["dodo"]["reason"]
    assert rows["phoenix"]["state"] == "running" and rows["phoenix"]["node"] in ("n0", "n2")
    assert rows["phoenix"]["pid"] != old_pid
    rc, out, err = wirt(fleet, capsys, "start", "dodo")
    assert rc == 2 and "lost" in err
    rc, out, err = wirt(fleet, capsys, "cluster", "status")
    assert rc == 0 and "dodo: lost (node n1 went down" in out, err
    assert [ln.split()[:2] for ln in out.splitlines() if ln.startswith("n1 ")] == [["n1", "down"]]
    assert not (fleet.homes["n1"] / "vms" / "phoenix").exists()  # adopted: its files moved
    # n1 comes back: its VM is its own again (the process never stopped)
    fleet.restart("n1")
    deadline = time.monotonic() + 60
    while ls(fleet, capsys)["dodo"]["state"] == "lost" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (ls(fleet, capsys)["dodo"]["node"], ls(fleet, capsys)["dodo"]["state"]) == ("n1", "running")
    rc, out, err = wirt(fleet, capsys, "rm", "--force", "phoenix", "dodo")
    assert rc == 0, err


def test_ray_uses_loopback_only(fleet) -> None:
    """Every Ray process of the fleet (and this driver) listens on and talks to loopback only."""
    from tests.cluster.conftest import off_loopback_sockets

    assert fleet.address.startswith("127.0.0.1:")
    assert off_loopback_sockets(os.getpid()) == []
