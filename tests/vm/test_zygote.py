"""VM processes forked from the warm zygote (vm/zygote.py) behave like freshly started ones:
console, graceful and forced stop, crash detection; and WIRT_ZYGOTE=0 keeps it off."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from wirt.vm import zygote
from wirt.vm.control import call
from wirt.vm.status import pid_alive, read_pid


def _wait(pred, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture
def warm(home, monkeypatch):
    monkeypatch.setenv("WIRT_ZYGOTE", "1")
    yield home
    zygote.stop(home)


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_forked_vm_process_runs_stops_and_crashes_like_a_fresh_one(warm, tiny_vm):
    tiny_vm.start()  # no zygote yet: a fresh interpreter, and the zygote starts in the background
    assert b"wirt.vm.process" in _cmdline(read_pid(tiny_vm.paths.pid))
    _wait(lambda: zygote.socket_path(warm).exists() and zygote.socket_path(warm).with_suffix(".pid").exists())
    tiny_vm.stop(force=True)

    tiny_vm.start()
    pid = read_pid(tiny_vm.paths.pid)
    assert b"wirt.vm.zygote" in _cmdline(pid)  # forked from the zygote
    assert pid_alive(pid, "tiny") and not pid_alive(pid, "other")
    tiny_vm.console_input("echo")
    _wait(lambda: "echo" in call(tiny_vm.paths.control, "console-tail")["text"], 10)
    st = tiny_vm.stop(timeout=20)  # graceful: "poweroff -f" typed; the firmware powers off on 'f'
    assert st.state == "stopped"

    tiny_vm.start()
    os.kill(read_pid(tiny_vm.paths.pid), signal.SIGKILL)
    _wait(lambda: tiny_vm.status().state == "crashed", 10)
    assert "SIGKILL" in tiny_vm.status().reason

    zpid = int(zygote.socket_path(warm).with_suffix(".pid").read_text())
    zygote.stop(warm)
    _wait(lambda: not pid_alive(zpid), 10)


def test_zygote_off(home, tiny_vm):
    tiny_vm.start()
    assert b"wirt.vm.process" in _cmdline(read_pid(tiny_vm.paths.pid))
    tiny_vm.stop(force=True)
    assert not (home / "zygote").exists()
