"""`exec` with "attach" through the whole host path (control socket, VMService, GuestAgent) to the real
wirt-agent script, which runs under the host's sh on a pseudo-terminal as it runs on the guest's
/dev/hvc0 (fast; tests/vm/test_slow_exec.py does the same against a booted guest)."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from wirt.errors import WirtError
from wirt.images.agent import AGENT
from wirt.vm.agent import GuestAgent
from wirt.vm.attached import AttachedExec
from wirt.vm.control import ControlServer
from wirt.vm.service import VMService

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("stty", "base64", "dd", "mkfifo", "setsid",
                                                                     "script")),
                                reason="host lacks coreutils/util-linux tools the agent uses")


@pytest.fixture
def control(tmp_path: Path):
    """A control socket whose VM is the agent script on a host pty; yields its path."""
    master, slave = pty.openpty()
    script = tmp_path / "wirt-agent"
    script.write_text(AGENT)
    proc = subprocess.Popen(["sh", str(script), os.ttyname(slave), str(tmp_path / "state")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    agent = GuestAgent(lambda data: os.write(master, data))
    stop = threading.Event()

    def reader() -> None:  # the console device's part: guest bytes to the agent's host end
        while not stop.is_set():
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            agent.on_output(data)

    threading.Thread(target=reader, daemon=True).start()
    runner = SimpleNamespace(agent=agent, paused=False)
    cfg = SimpleNamespace(name="t", cpus=1, memory=0)
    server = ControlServer(tmp_path / "control.sock", VMService(cfg, runner, hub=None).commands())
    server.start()
    assert agent.wait_ready(20)
    yield tmp_path / "control.sock"
    stop.set()
    server.close()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    os.close(master)
    os.close(slave)


def _read_until(events, want: bytes) -> bytes:
    out = b""
    for ev in events:
        assert ev.kind != "exit", f"ended before {want!r}: {out!r}"
        out += ev.data
        if want in out:
            return out
    raise AssertionError(out)


def test_attached_stdin_is_streamed_line_by_line(control: Path) -> None:
    with AttachedExec(control, "while read -r l; do echo \"<$l>\"; done; exit 4", wait=10) as s:
        events = s.events()
        s.write(b"first\n")
        _read_until(events, b"<first>")  # answered before any more input was sent
        big = b"x" * 100_000 + b"\n"  # many chunks, more than the guest's FIFO holds at once
        s.write(big)
        _read_until(events, b"x" * 1000)
        s.eof()
        rest = [ev for ev in events]
    assert rest[-1].kind == "exit" and rest[-1].status == 4


def test_attached_tty_has_the_size_resizes_and_takes_ctrl_c(control: Path) -> None:
    with AttachedExec(control, "stty size; while read -r l; do stty size; done", tty=(31, 97), wait=10) as s:
        events = s.events()
        _read_until(events, b"31 97")
        s.resize(50, 132)
        s.write(b"\r")
        _read_until(events, b"50 132")
        s.write(b"\x04")  # ^D: end of input
        assert [ev for ev in events][-1].status == 0
    with AttachedExec(control, "echo go; sleep 100", tty=(24, 80), wait=10) as s:
        events = s.events()
        _read_until(events, b"go")
        s.write(b"\x03")
        assert [ev for ev in events][-1].status == 130  # SIGINT from the terminal's line discipline


def test_attach_errors_are_one_line(control: Path) -> None:
    with pytest.raises(WirtError, match=r"\"tty\" must be \[ROWS, COLUMNS\]"):
        list(AttachedExec(control, "true", tty=(0, 80)).events())
