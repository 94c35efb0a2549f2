"""Shared helpers for the storage tests: qemu-img access and deterministic test data.

Imported as a plain module (pytest puts this directory on sys.path), so it works with `pytest` and
`python -m pytest` alike."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable

import pytest


def qemu_img_path() -> str:
    """Path of qemu-img; a clear failure (not a skip) when it is missing, since CI installs it."""
    exe = shutil.which("qemu-img")
    if not exe:
        pytest.fail("qemu-img is not installed: install Debian's qemu-utils (apt-get install qemu-utils); "
                    "the qcow2 interoperability tests need it")
    return exe


def qemu_img(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run qemu-img with `args`; returns the completed process (stdout/stderr as text)."""
    proc = subprocess.run([qemu_img_path(), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"qemu-img {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def qemu_io(path: str, *commands: str, fmt: str = "qcow2") -> None:
    """Run qemu-io commands on an image (it ships with qemu-utils next to qemu-img)."""
    exe = shutil.which("qemu-io")
    if not exe:
        pytest.fail("qemu-io is not installed: install Debian's qemu-utils (apt-get install qemu-utils)")
    args = [exe, "-f", fmt]
    for c in commands:
        args += ["-c", c]
    proc = subprocess.run(args + [path], capture_output=True, text=True)
    assert proc.returncode == 0 and "error" not in proc.stdout.lower(), proc.stdout + proc.stderr


def assert_qemu_clean(path: str, allow_leaks: bool = False) -> str:
    """qemu-img check reports no corruption (and no leaks unless allowed); returns its output."""
    proc = qemu_img("check", path, check=False)
    out = proc.stdout + proc.stderr
    ok = (0, 3) if allow_leaks else (0,)
    assert proc.returncode in ok, f"qemu-img check {path} -> {proc.returncode}:\n{out}"
    assert "ERROR" not in out and "corrupt" not in out.lower(), out
    return out


def pattern(seed: int, length: int) -> bytes:
    """Deterministic, incompressible-enough bytes for `seed`."""
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "little")).digest()
    while len(out) < length:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:length])


def mixed_data(length: int, seed: int = 0) -> bytes:
    """Random, zero and repetitive regions, so compression and zero detection both matter."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < length:
        kind = rnd.randrange(3)
        n = rnd.randrange(1, 200_000)
        if kind == 0:
            out += pattern(rnd.randrange(1 << 30), n)
        elif kind == 1:
            out += bytes(n)
        else:
            out += (b"wirt-%d " % rnd.randrange(100)) * (n // 8 + 1)
    return bytes(out[:length])


def kill_writer(child: Callable[[int], None], delay: float, wait_first_ack: bool = False) -> int:
    """Fork a writer running `child(ack_fd)`, SIGKILL it `delay` seconds later (after its first
    acknowledgement with `wait_first_ack`) and return the last count it acknowledged: the child
    writes a little-endian uint32 to `ack_fd` whenever everything up to that count is durable."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            child(w)
        finally:
            os._exit(0)
    os.close(w)
    raw = os.read(r, 4) if wait_first_ack else b""
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(r, 4096):
        raw += chunk
    os.close(r)
    return struct.unpack_from("<I", raw, len(raw) // 4 * 4 - 4)[0] if len(raw) >= 4 else 0
