"""A `wirt shell` session driven by pexpect, shared by the slow tests of root-disk guests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pexpect

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def shell_session(wirt: Callable[..., subprocess.CompletedProcess], name: str) -> None:
    """`wirt shell` under a pexpect pty: the guest's terminal has its size, follows a resize (SIGWINCH
    here), Ctrl-C interrupts the guest's `sleep 100`, and `exit 3` is the status."""
    env = {**os.environ, "TERM": "xterm-256color"}
    child = pexpect.spawn(sys.executable, ["-c", _MAIN, "shell", name], dimensions=(37, 111), timeout=120, env=env)
    try:
        # What is typed is echoed too, so each check looks for output that differs from its input.
        child.sendline("stty size; echo ok$((6*7))")  # typed ahead of the prompt: kept
        child.expect("37 111")
        child.expect("ok42")
        child.setwinsize(45, 150)  # the kernel sends `wirt shell` SIGWINCH; it resizes the guest's terminal
        child.sendline("sleep 1; stty size")
        child.expect("45 150")
        child.sendline("echo sl''eeping; sleep 100; echo not-interrupted")
        child.expect("sleeping")
        child.sendcontrol("c")
        child.sendline("echo rc=$?")
        child.expect("rc=130")  # sleep died of SIGINT from the guest's line discipline
        assert b"not-interrupted" not in child.before
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3, child.before
    r = wirt("exec", "-t", name, "--", "tty; stty size; echo out; echo err >&2")  # no terminal here: 24x80
    lines = r.stdout.decode().replace("\r", "").splitlines()
    assert r.returncode == 0 and lines[0].startswith("/dev/pts/") and lines[1:] == ["24 80", "out", "err"], r
