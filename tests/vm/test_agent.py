"""The host end of the guest agent (wirt.vm.agent) and `exec` without a guest agent (fast)."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import pytest

from wirt.errors import WirtError
from wirt.vm.agent import ExecTimeout, GuestAgent

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_agent_lines_become_events() -> None:
    sent: list[bytes] = []
    agent = GuestAgent(sent.append)
    with pytest.raises(WirtError, match="not up"):
        agent.start("true")
    agent.on_output(b"noise before raw mode\r\nrea")
    assert not agent.ready
    agent.on_output(b"dy 1\nip 192.0.2.2\n")
    assert agent.ready and agent.version == 1 and agent.ip == "192.0.2.2"
    s = agent.start("echo hi", stdin=b"\x00\xff")
    assert sent[-1] == b"exec 1 " + _b64(b"echo hi") + b" " + _b64(b"\x00\xff") + b"\n"
    agent.on_output(b"out 1 " + _b64(b"hi\n") + b"\nerr 1 " + _b64(b"\x00\x01") + b"\nout 99 eA==\nout 1 !!!\n")
    agent.on_output(b"exit 1 3\n")
    events = list(agent.events(s, timeout=5))
    assert [(e.kind, e.data, e.status) for e in events] == [
        ("stdout", b"hi\n", 0), ("stderr", b"\x00\x01", 0), ("exit", b"", 3)]


def test_agent_timeout_kills_and_reboot_fails_sessions() -> None:
    sent: list[bytes] = []
    agent = GuestAgent(sent.append)
    agent.on_output(b"ready 1\n")
    s = agent.start("sleep 100")
    with pytest.raises(ExecTimeout, match="killed"):
        list(agent.events(s, timeout=0.2))
    assert sent[-1] == b"kill 1\n"
    s2 = agent.start("sleep 100")
    agent.reset()  # the guest rebooted
    assert not agent.ready
    with pytest.raises(WirtError, match="went away"):
        list(agent.events(s2, timeout=5))
    agent.on_output(b"ready 1\n")
    with pytest.raises(WirtError, match="at most"):
        agent.start("x" * (70 << 10))


def _wirt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_exec_on_a_stopped_vm_and_without_an_agent(tiny_vm) -> None:
    r = _wirt("exec", "tiny", "--", "true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "wirt: error: VM 'tiny' is stopped; start it with `wirt start tiny`"
    with pytest.raises(WirtError, match="not running"):
        tiny_vm.exec("true")
    r = _wirt("exec", "tiny")
    assert r.returncode == 2 and "give the command" in r.stderr
    r = _wirt("exec", "nosuch", "--", "true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    tiny_vm.start()  # bare firmware: the agent channel is there, nobody answers on it
    t0 = time.monotonic()
    r = _wirt("exec", "--timeout", "1", "tiny", "--", "true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "guest agent is not up after 1 s" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 60
    st = tiny_vm.status()
    assert st.live["agent"] is False and st.live["warnings"] == []
