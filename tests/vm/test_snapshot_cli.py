"""`wirt snapshot ...` and `wirt fork` on real VM processes running the tiny echo firmware
(fast: no Linux). The guest's state is its RAM and UART; these check the plumbing end to end:
full snapshots of running VMs, restore into a running VM, the tree listing, fork, and errors."""

from __future__ import annotations

import json
import time

from wirt.cli import main
from wirt.vm.control import call


def _console(vm) -> str:
    return call(vm.paths.control, "console-tail", lines=50)["text"]


def _echoes(vm, text: str, timeout: float = 10.0) -> None:
    vm.console_input(text)
    end = time.monotonic() + timeout
    while text not in _console(vm):
        assert time.monotonic() < end, f"{vm.name} did not echo {text!r}"
        time.sleep(0.05)


def test_full_snapshot_restore_and_fork_of_a_running_vm(tiny_vm, capsys):
    tiny_vm.start()
    _echoes(tiny_vm, "hello")
    assert main(["snapshot", "create", "tiny", "s1"]) == 0
    assert "full" in capsys.readouterr().out
    assert (tiny_vm.paths.snapshots / "s1" / "memory.img").is_file()
    _echoes(tiny_vm, "more")
    assert main(["snapshot", "create", "tiny", "s2"]) == 0
    assert main(["snapshot", "restore", "tiny", "s1"]) == 0
    assert "running from it" in capsys.readouterr().out
    _echoes(tiny_vm, "again")  # the restored guest runs (an "f" would power it off)
    assert tiny_vm.status().state == "running"

    assert main(["snapshot", "ls", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "*s1" in out and "  s2" in out  # s2 is a child of s1; s1 is current after the restore
    assert main(["snapshot", "ls", "tiny", "--json"]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed["s2"]["parent"] == "s1" and listed["s1"]["kind"] == "full"

    assert main(["fork", "tiny", "s2", "tiny-fork"]) == 0
    assert "running" in capsys.readouterr().out
    from wirt.vm.api import VM

    fork = VM("tiny-fork")
    try:
        _echoes(fork, "cloned")
        assert "cloned" not in _console(tiny_vm)
        assert fork.config.uuid != tiny_vm.config.uuid
    finally:
        fork.stop(force=True)

    assert main(["snapshot", "rm", "tiny", "s2"]) == 0
    assert [s.name for s in tiny_vm.snapshots()] == ["s1"]
    assert fork.snapshots()[0].name == "s2"  # the fork keeps its own link to the memory image


def test_snapshot_errors_are_one_line(tiny_vm, capsys):
    assert main(["snapshot", "create", "tiny", "bad/name"]) == 2
    assert "snapshot name" in capsys.readouterr().err
    assert main(["snapshot", "restore", "tiny", "nope"]) == 2
    assert "has no snapshot 'nope'" in capsys.readouterr().err
    assert main(["snapshot", "create", "tiny", "d1"]) == 0  # stopped: disk-only
    assert "disk-only" in capsys.readouterr().out
    tiny_vm.start()
    assert main(["snapshot", "restore", "tiny", "d1"]) == 2
    err = capsys.readouterr().err
    assert "disk-only: stop the VM" in err and err.count("\n") == 1
    assert tiny_vm.status().state == "running"  # a refused request leaves the VM running
    assert main(["fork", "tiny", "d1", "tiny"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["snapshot", "ls", "nosuchvm"]) == 2


def test_restore_into_a_changed_machine_is_refused(tiny_vm, capsys):
    tiny_vm.start()
    _echoes(tiny_vm, "abc")
    assert main(["snapshot", "create", "tiny", "s1"]) == 0
    tiny_vm.stop(force=True)
    assert main(["set", "tiny", "--memory", "64M"]) == 0
    capsys.readouterr()
    before = tiny_vm.paths.config.read_text()
    assert main(["snapshot", "restore", "tiny", "s1"]) == 2  # stopped: checked against vm.toml
    assert "memory: snapshot 32 MiB, VM 64 MiB" in capsys.readouterr().err
    assert tiny_vm.paths.config.read_text() == before
    tiny_vm.start()
    assert main(["snapshot", "restore", "tiny", "s1"]) == 2  # running: checked against the machine
    assert "memory: snapshot 32 MiB, VM 64 MiB" in capsys.readouterr().err
    _echoes(tiny_vm, "still")


def test_truncated_memory_image_is_refused_and_the_vm_runs_on(tiny_vm, capsys):
    import os

    tiny_vm.start()
    _echoes(tiny_vm, "abc")
    assert main(["snapshot", "create", "tiny", "s1"]) == 0
    image = tiny_vm.paths.snapshots / "s1" / "memory.img"
    os.chmod(image, 0o600)
    with open(image, "r+b") as f:
        f.truncate(image.stat().st_size // 2)
    disks = tiny_vm.config.disks
    capsys.readouterr()
    assert main(["snapshot", "restore", "tiny", "s1"]) == 2
    assert "truncated" in capsys.readouterr().err
    assert tiny_vm.config.disks == disks  # no new overlay was switched in
    _echoes(tiny_vm, "xyz")


# Resealed edits of a full snapshot's metadata outside the machine state: each must be refused in
# one line before anything changes (they were tracebacks, or internal exception text after the
# machine had already been restored).
BODY_EDITS = {
    "signature memory a string": lambda b: b["signature"].__setitem__("memory_size", "x"),
    "signature virtio a number": lambda b: b["signature"].__setitem__("virtio", 5),
    "signature slot a list": lambda b: b["signature"]["virtio"].__setitem__(0, [1]),
    "agent state a string": lambda b: b.__setitem__("agent", "x"),
    "agent address a list": lambda b: b.__setitem__("agent", {"ip": [1, 2], "ready": True}),
    "agent partial line not base64": lambda b: b.__setitem__("agent", {"partial": "!!!"}),
    "fork origin a shell command": lambda b: b.__setitem__("forked_from", {"mac": "x; reboot"}),
    "creation time a list": lambda b: b.__setitem__("created", [1]),
    "stored bytes a string": lambda b: b["memory"].__setitem__("stored_bytes", "lots"),
    "config disks a number": lambda b: b["config"].__setitem__("disks", 5),
}


def test_resealed_snapshot_metadata_is_refused_and_the_vm_runs_on(tiny_vm, capsys):
    import os

    import pytest

    from wirt.machine.snapshot import write_state_file

    tiny_vm.start()
    _echoes(tiny_vm, "abc")
    assert main(["snapshot", "create", "tiny", "s1"]) == 0
    path = tiny_vm.paths.snapshots / "s1" / "snapshot.json"
    good = json.loads(path.read_text())["body"]
    failures = []
    for case, edit in BODY_EDITS.items():
        body = json.loads(json.dumps(good))
        edit(body)
        os.chmod(path, 0o600)
        path.unlink()
        write_state_file(path.parent, body)
        capsys.readouterr()
        code = main(["snapshot", "restore", "tiny", "s1"])
        err = capsys.readouterr().err
        if code != 2 or err.count("\n") != 1 or "Error" in err or "edited or damaged" not in err:
            failures.append(f"{case}: restore gave {code}: {err!r}")
        assert main(["snapshot", "ls", "tiny"]) == 0
        out = capsys.readouterr().out
        if "damaged" not in out:
            failures.append(f"{case}: `wirt snapshot ls` does not call it damaged: {out!r}")
        if tiny_vm.status().state != "running":
            pytest.fail(f"{case}: the VM is {tiny_vm.status(query=False)}")
    assert not failures, "\n".join(failures)
    # the state a guest with a running agent leaves (wirt.vm.agent.GuestAgent.state) still restores
    body = json.loads(json.dumps(good))
    body["agent"] = {"ready": True, "version": 1, "ip": "10.0.2.15", "partial": "aGVsbG8="}
    os.chmod(path, 0o600)
    path.unlink()
    write_state_file(path.parent, body)
    assert main(["snapshot", "restore", "tiny", "s1"]) == 0, capsys.readouterr().err
    _echoes(tiny_vm, "xyz")
