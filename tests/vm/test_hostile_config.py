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
