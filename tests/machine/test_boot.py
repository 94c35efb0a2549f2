"""Boot the real Debian riscv64 kernel through OpenSBI with `wirt run` (slow: seconds to minutes).

These run the command line in a subprocess exactly as a user would, so they check the whole
path: default guest from the cache (or the mirror), board, console streaming, exit status.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt_run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, "run", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_cpuinfo_shows_four_harts_with_isa_and_mmu():
    """--cpus 4: OpenSBI starts every hart (HSM), Linux brings all four online."""
    r = wirt_run("--cpus", "4", "--", "sh", "-c", "nproc; cat /proc/cpuinfo")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.splitlines()
    assert out[0] == "4", r.stdout[-2000:]
    assert [ln.split(":")[1].strip() for ln in out if ln.startswith("processor")] == ["0", "1", "2", "3"]
    lines = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out)}
    assert lines["isa"].startswith("rv64imafdc")
    assert lines["mmu"] in ("sv48", "sv39")


def test_exit_status_comes_back():
    r = wirt_run("--", "sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr[-2000:]


def test_shell_arithmetic_output():
    r = wirt_run("--deterministic", "--", "sh", "-c", "echo $((6*7))")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "42"


def test_interactive_shell_on_a_terminal():
    """A shell on the console through a pseudo-terminal; Ctrl-A x quits and the tty is restored."""
    import os
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([sys.executable, "-c", _MAIN, "run"], stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    buf = bytearray()

    def read_until(needle: bytes, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in buf:
                return True
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    buf.extend(os.read(master, 65536))
                except OSError:
                    return needle in buf
        return needle in buf

    try:
        assert read_until(b"wirt:/# ", 600), buf[-2000:].decode(errors="replace")
        buf.clear()
        os.write(master, b"echo $((6*7)); uname -m\r")
        assert read_until(b"riscv64\r\n", 60), buf[-2000:].decode(errors="replace")
        assert b"\r\n42\r\n" in buf
        os.write(master, b"\x01x")  # Ctrl-A x
        assert proc.wait(30) == 0
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
