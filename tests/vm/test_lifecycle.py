"""VM processes with the echo firmware: start/stop, crash detection, stale files, rm, CLI."""

from __future__ import annotations

import os
import signal
import time

import pytest

from wirt.errors import WirtError
from wirt.vm.status import pid_alive, read_pid


def _wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_start_stop_graceful(tiny_vm):
    st = tiny_vm.start()
    assert st.state == "running" and st.pid
    assert tiny_vm.paths.pid.exists() and tiny_vm.paths.control.exists()
    with pytest.raises(WirtError, match="already running"):
        tiny_vm.start()
    st = tiny_vm.stop(timeout=10)
    assert st.state == "stopped" and st.reason == "poweroff"
    assert not tiny_vm.paths.run.exists()  # run/ only while running
    assert b"powerof" in tiny_vm.log_path().read_bytes()  # the typed "poweroff -f", echoed
    with pytest.raises(WirtError, match="not running"):
        tiny_vm.stop()


def test_kill_9_crash_and_stale_files(tiny_vm):
    tiny_vm.start()
    pid = read_pid(tiny_vm.paths.pid)
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: tiny_vm.status().state == "crashed")
    st = tiny_vm.status()
    assert "SIGKILL" in st.reason
    assert not tiny_vm.paths.run.exists()
    st = tiny_vm.start()
    assert st.state == "running" and st.pid != pid
    # now kill the VM process and its monitor: nobody cleans up, the next start must
    monitor = read_pid(tiny_vm.paths.run / "monitor.pid")
    os.killpg(monitor, signal.SIGKILL)  # the VM process and its monitor: nobody cleans up
    pid = read_pid(tiny_vm.paths.pid)
    # SIGKILL lands asynchronously: wait until both processes are gone (or zombies), not just one
    assert _wait(lambda: not pid_alive(pid) and not pid_alive(monitor))
    assert tiny_vm.paths.pid.exists() and tiny_vm.paths.control.exists()  # stale
    st = tiny_vm.status()
    assert st.state == "crashed" and "vanished" in st.reason
    st = tiny_vm.start()
    assert st.state == "running" and st.pid != pid


def test_force_stop_and_rm(tiny_vm):
    tiny_vm.start()
    with pytest.raises(WirtError, match="stop it first"):
        tiny_vm.remove()
    assert tiny_vm.status().state == "running"
    st = tiny_vm.stop(force=True)
    assert st.state == "stopped"
    tiny_vm.start()
    tiny_vm.remove(force=True)
    assert not tiny_vm.paths.root.exists()


def test_graceful_stop_timeout_says_use_force(home, tmp_path):
    from wirt.machine import rvenc as E
    from wirt.vm.api import VM

    fw = tmp_path / "spin.bin"
    fw.write_bytes(E.assemble([E.jal("zero", 0)]))  # ignores the console
    vm = VM.create("spin", memory="32M", disk=None, image="none", net="none", firmware=str(fw))
    vm.start()
    try:
        with pytest.raises(WirtError, match="--force"):
            vm.stop(timeout=0.5)
        assert vm.status().state == "running"
    finally:
        vm.stop(force=True)


def test_set_applies_at_next_start(tiny_vm):
    tiny_vm.start()
    tiny_vm.set(memory="64M")
    assert tiny_vm.status().live["memory"] == 32 << 20
    tiny_vm.restart(force=True)
    assert tiny_vm.status().live["memory"] == 64 << 20


def test_bad_boot_file_fails_start_with_reason(home, tmp_path):
    from wirt.vm.api import VM

    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x6f\x00\x00\x00")
    vm = VM.create("bad", memory="32M", disk=None, image="none", net="none", firmware=str(fw),
                   kernel=str(fw))  # not a RISC-V Image: the Machine refuses it
    with pytest.raises(WirtError, match="failed to start"):
        vm.start()
    assert vm.status().state == "crashed"


def test_cli_roundtrip(home, firmware, capsys, monkeypatch):
    from wirt import cli

    main = cli.main
    assert main(["create", "c1", "--memory", "32M", "--disk", "1M", "--image", "none", "--net", "none",
                 "--firmware", str(firmware)]) == 0
    assert main(["create", "c1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["create", "x/y"]) == 2
    assert main(["start", "c1"]) == 0
    capsys.readouterr()
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "c1" in out and "running" in out and "32 MiB" in out
    assert main(["top", "--once", "--interval", "0.2"]) == 0
    assert "c1" in capsys.readouterr().out
    assert main(["rm", "c1"]) == 2
    assert "stop it first" in capsys.readouterr().err
    assert main(["stop", "c1", "--timeout", "10"]) == 0
    assert main(["logs", "c1"]) == 0
    assert "ended: poweroff" in capsys.readouterr().out
    assert main(["rm", "c1"]) == 0
    assert main(["ls"]) == 0
    assert "no VMs" in capsys.readouterr().out
