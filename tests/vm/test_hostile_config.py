"""Hostile or broken files around a VM (issue 20, class 4): one bad vm.toml never breaks the others,
deep nesting is a one-line error, not a RecursionError, in vm.toml, JSON state files and control
requests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wirt.errors import WirtError
from wirt.vm.control import ControlServer
from wirt.vm.store import VMStore

DEEP = 50_000


@pytest.mark.parametrize("text", [
    "x = " + "[" * DEEP + "]" * DEEP,
    "x = " + "{a = " * DEEP + "1" + "}" * DEEP,
    "schema_version = 1\nname = \"bad\"\n" + "#" * (2 << 20),
])
def test_broken_vm_toml_is_one_line_and_ls_lists_the_others(tiny_vm, firmware, text, capsys):
    from wirt.cli import main
    from wirt.vm.api import VM

    VM.create("bad", memory="32M", disk=None, image="none", net="none", firmware=str(firmware))
    VMStore().paths("bad").config.write_text(text)
    with pytest.raises(WirtError) as err:
        VMStore().load("bad")
    assert "\n" not in str(err.value) and "vm.toml" in str(err.value)
    capsys.readouterr()
    assert main(["ls"]) == 0
    out, errout = capsys.readouterr()
    assert "tiny" in out and "bad" in out and "invalid" in out
    assert "bad: " in errout and "Traceback" not in errout
    assert main(["ls", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tiny"]["state"] == "stopped" and rows["bad"]["state"] == "invalid" and rows["bad"]["reason"]


def test_deeply_nested_json_files_are_errors_not_crashes(tiny_vm):
    from wirt.machine.snapshot import read_state_file
    from wirt.vm.store import read_json

    deep = "[" * DEEP + "]" * DEEP
    folder = tiny_vm.paths.snapshots / "s1"
    folder.mkdir()
    (folder / "snapshot.json").write_text(deep)
    with pytest.raises(WirtError, match="not valid JSON"):
        read_state_file(folder)
    tiny_vm.paths.run.mkdir()
    tiny_vm.paths.info.write_text(deep)
    assert read_json(tiny_vm.paths.info) is None
    r = subprocess.run([sys.executable, "-m", "wirt", "ls"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "tiny" in r.stdout


def test_deeply_nested_control_request_is_a_structured_error(tmp_path):
    from wirt.vm.control import ControlClient

    path = tmp_path / "c.sock"
    srv = ControlServer(path, {"ping": lambda req: {"pong": True}})
    srv.start()
    try:
        with ControlClient(path) as c:
            c.sock.sendall(b"[" * DEEP + b"]" * DEEP + b"\n")
            reply = json.loads(c.sock.recv(65536).split(b"\n")[0])
            assert reply["error"]["code"] == "bad-json"
            assert c.raw({"id": 2, "cmd": "ping"}) == {"id": 2, "ok": True, "pong": True}
    finally:
        srv.close()


def _not_a_file(path, kind: str) -> None:
    """Replace `path` with a FIFO (an open blocks) or a link to /dev/zero (endless)."""
    import os

    if path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("which", ["vm.toml", "last-exit.json", "run/pid", "run/info.json",
                                   "snapshots/s1/snapshot.json", "snapshots/tree.json"])
def test_files_that_are_not_files_never_hang_wirt(tiny_vm, firmware, which, kind):
    """A VM folder can be copied in: any of its files may be a FIFO or a link to /dev/zero. `wirt ls`,
    `wirt status` and `wirt snapshot ls` finish (a broken vm.toml is listed as invalid with the reason),
    and the other VMs are listed as usual."""
    from wirt.vm.api import VM

    VM.create("other", memory="32M", disk=None, image="none", net="none", firmware=str(firmware))
    _not_a_file(tiny_vm.paths.root / which, kind)

    def wirt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "wirt", *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    r = wirt("ls", "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["other"]["state"] == "stopped"
    if which == "vm.toml":
        assert rows["tiny"]["state"] == "invalid" and "not a regular file" in rows["tiny"]["reason"]
    else:
        assert rows["tiny"]["state"] == "stopped"
        for args in (("status", "tiny"), ("snapshot", "ls", "tiny")):
            r = wirt(*args)
            assert r.returncode in (0, 2) and "Traceback" not in r.stderr, (args, r.stderr)
            assert r.stderr.strip().count("\n") == 0, r.stderr
    if which.endswith("snapshot.json"):
        r = wirt("snapshot", "restore", "tiny", "s1")
        assert r.returncode == 2 and "not a regular file" in r.stderr and r.stderr.count("\n") == 1, r.stderr
