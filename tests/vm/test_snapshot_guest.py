"""Snapshots of running Debian guests in VM processes (slow: boots the real kernel).

- two counter processes in a 2-vCPU guest keep running after a restore,
  from where they were;
- two forks of one snapshot of a 2-vCPU guest run at once, keep its counters running on both
  vCPUs, diverge, and neither changes the other's disk.
"""

from __future__ import annotations

import time

import pytest
from guestconsole import run, value, wait_shell

pytestmark = pytest.mark.slow

COUNTER = "(i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done) &"
# a second one, in /tmp/m: with two busy processes the guest's scheduler keeps both vCPUs busy
COUNTER1 = "(i=0; while true; do i=$((i+1)); echo $i > /tmp/m; done) &"


@pytest.fixture
def guest(home):
    from wirt.vm.api import VM

    made = []

    def make(name: str, net: str = "none", cpus: int = 1):
        vm = VM.create(name, memory="256M", disk="16M", net=net, image="initramfs", cpus=cpus)
        made.append(vm)
        return vm

    yield made, make
    for vm in made:
        if vm.status(query=False).running:
            vm.stop(force=True)


def count(vm, path: str = "/tmp/n") -> int:
    """The guest counter's value (read again if it caught the file between truncate and write:
    with two vCPUs the writer runs truly beside the reader, so that happens often)."""
    for _ in range(50):
        text = value(vm, f"$(cat {path})", "n")
        if text.isdigit():
            return int(text)
    raise AssertionError(f"/tmp/n holds {text!r}")


def test_counter_keeps_running_after_restore(guest):
    _, make = guest
    vm = make("snap1", cpus=2)
    vm.start()
    wait_shell(vm)
    assert value(vm, "$(nproc)", "cpus") == "2"
    run(vm, COUNTER + " " + COUNTER1 + " echo started-$((1+1))", "started-2")
    time.sleep(1)
    run(vm, "printf 'disk-%s\\n' before | dd of=/dev/vda conv=fsync 2>/dev/null; echo w-$((1+1))", "w-2")
    before = count(vm)
    before1 = count(vm, "/tmp/m")
    info = vm.snapshot("s1")
    at_snapshot = count(vm)
    assert info.kind == "full" and info.memory_bytes > 0
    run(vm, "printf 'disk-%s\\n' after! | dd of=/dev/vda conv=fsync 2>/dev/null; echo w-$((2+1))", "w-3")
    time.sleep(3)
    later = count(vm)
    assert later > at_snapshot + 10

    assert vm.restore("s1") == "running"
    restored = count(vm)
    assert before <= restored < later  # back to the snapshot's count, not the later one
    restored1 = count(vm, "/tmp/m")
    assert restored1 >= before1
    time.sleep(2)
    assert count(vm) > restored  # and the processes are still counting, on both vCPUs
    assert count(vm, "/tmp/m") > restored1
    assert "disk-before" in run(vm, "head -c 12 /dev/vda; echo", "disk-before")

    # a stopped VM restores its disks now and resumes the saved state at the next start
    vm.stop(force=True)
    assert vm.restore("s1") == "on next start"
    time.sleep(10)  # the snapshot is old now: without a clock fix the guest would lag by this much
    vm.start()
    resumed = count(vm)  # no boot: the shell and the counter are already there
    assert before <= resumed < later
    deadline = time.monotonic() + 30
    while abs(int(value(vm, "$(date +%s)", "t")) - time.time()) > 4:  # the agent sets the clock
        assert time.monotonic() < deadline, "the guest's clock was not brought forward"
        time.sleep(1)
    assert [(s.name, s.current) for s in vm.snapshots()] == [("s1", True)]


def test_forks_run_at_once_and_diverge(guest):
    made, make = guest
    vm = make("origin", net="user", cpus=2)
    vm.start()
    wait_shell(vm)
    run(vm, "printf 'origin\\n' | dd of=/dev/vda conv=fsync 2>/dev/null; echo o-$((1+1))", "o-2")
    run(vm, COUNTER + " " + COUNTER1 + " echo started-$((1+1))", "started-2")
    vm.snapshot("base")
    a = vm.fork("base", "fork-a", start=True)
    b = vm.fork("base", "fork-b", start=True)
    made += [a, b]
    assert a.config.network.mac != b.config.network.mac != vm.config.network.mac
    for f, word in ((a, "apple"), (b, "berry")):
        assert "origin" in run(f, "head -c 6 /dev/vda; echo", "origin")
        run(f, f"printf '{word}\\n' | dd of=/dev/vda conv=fsync 2>/dev/null; echo x-$((1+1))", "x-2")
        run(f, f"echo {word} > /tmp/who; echo y-$((1+1))", "y-2")
    for f in (a, b):  # a fork of a 2-vCPU guest: its processes go on, on both vCPUs
        assert value(f, "$(nproc)", "cpus") == "2"
        n, m = count(f), count(f, "/tmp/m")
        time.sleep(2)
        assert count(f) > n and count(f, "/tmp/m") > m
    assert value(a, "$(cat /tmp/who) $(head -c 5 /dev/vda)", "a") == "apple apple"
    assert value(b, "$(cat /tmp/who) $(head -c 5 /dev/vda)", "b") == "berry berry"
    assert "origin" in run(vm, "head -c 6 /dev/vda; echo", "origin")
    for f in (a, b):  # each fork's guest took on its own MAC address (set through the agent)
        mac = f.config.network.mac
        deadline = time.monotonic() + 30
        while mac not in value(f, "$(cat /sys/class/net/*/address)", "mac"):
            assert time.monotonic() < deadline, f"{f.name} still has the source's MAC address"
            time.sleep(1)


def test_refused_restore_leaves_the_guest_working(guest):
    """A resealed snapshot with a bad machine state (the hart's RAM size word: the core's bounds
    check) and one with a bad device state are refused, and `exec` still answers."""
    import json
    import os

    from wirt.cpu import layout as L
    from wirt.errors import WirtError
    from wirt.machine.snapshot import write_state_file

    _, make = guest
    vm = make("refused")
    vm.start()
    assert vm.exec("echo up-$((6*7))", timeout=300).stdout == b"up-42\n"
    vm.snapshot("s1")
    folder = vm.paths.snapshots / "s1"
    disks = vm.config.disks
    for edit in (lambda m: m["hart"]["s"].__setitem__(L.RAM_SIZE, 1 << 40),
                 lambda m: m["virtio"][0]["queues"][0].__setitem__("used_idx", "garbage")):
        body = json.loads((folder / "snapshot.json").read_text())["body"]
        edit(body["machine"])
        os.chmod(folder / "snapshot.json", 0o600)
        (folder / "snapshot.json").unlink()
        write_state_file(folder, body)
        with pytest.raises(WirtError, match="snapshot state") as err:
            vm.restore("s1")
        assert "\n" not in str(err.value)
        assert vm.config.disks == disks  # no overlay was switched in
        r = vm.exec("echo still-$((6*7))", timeout=60)
        assert r.stdout == b"still-42\n" and r.status == 0
