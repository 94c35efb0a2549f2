"""`wirt cp` with a real Debian guest (slow: one initramfs boot shared by the checks): a 100 MiB
file both ways with identical checksums, a tree with modes, times and a symlink, and the errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def wirt(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    """A running initramfs VM (RAM-backed /tmp), started with `wirt start --wait`."""
    from vmhome import module_home

    from wirt.vm.api import VM

    with module_home(tmp_path_factory):
        r = wirt("create", "cp", "--image", "initramfs", "--memory", "384M", "--disk", "none", "--net", "none")
        assert r.returncode == 0, r.stderr
        r = wirt("start", "--wait", "--timeout", "600", "cp")
        assert r.returncode == 0 and "guest agent up after" in r.stdout, r.stderr
        vm = VM.get("cp")
        assert vm.status().live["agent"] is True
        yield vm


def _sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def test_a_100_mib_file_round_trips(guest, tmp_path):
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    r = wirt("cp", str(src), "cp:/tmp/")
    assert r.returncode == 0, r.stderr
    g = guest.exec("sha256sum /tmp/big.bin", kill_after=300)
    assert g.stdout.split()[0].decode() == _sha(src)
    back = tmp_path / "back.bin"
    r = wirt("cp", "cp:/tmp/big.bin", str(back))
    assert r.returncode == 0, r.stderr
    assert back.stat().st_size == 100 << 20 and _sha(back) == _sha(src)
    guest.exec("rm /tmp/big.bin", kill_after=60)


def test_one_file_keeps_mode_and_time_and_leaves_no_temporary(guest, tmp_path):
    """A single file goes without tar (bytes, then size check, mode, time, rename)."""
    f = tmp_path / "tool"
    f.write_bytes(os.urandom(200_000))
    f.chmod(0o750)
    os.utime(f, (1_600_000_000, 1_600_000_000))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    empty.chmod(0o604)
    guest.exec("mkdir -p /tmp/one/tool/ && echo old > /tmp/one/renamed", kill_after=60)
    for args in ((str(f), "cp:/tmp/one/renamed"), (str(f), "cp:/tmp/"), (str(empty), "cp:/tmp/one")):
        r = wirt("cp", *args)  # onto an existing file, into a folder, an empty file
        assert r.returncode == 0, r.stderr
    g = guest.exec("cd /tmp && stat -c '%n %a %Y %s' tool one/renamed one/empty && sha256sum tool one/renamed; "
                   "ls -a /tmp /tmp/one | grep -c wirt-cp", kill_after=120)
    lines = g.stdout.decode().split("\n")
    assert lines[:3] == ["tool 750 1600000000 200000", "one/renamed 750 1600000000 200000", "one/empty 604 "
                         f"{int(empty.stat().st_mtime)} 0"], g.stderr
    assert [x.split()[0] for x in lines[3:5]] == [_sha(f)] * 2 and lines[5] == "0"
    r = wirt("cp", str(f), "cp:/tmp/one")  # /tmp/one/tool is a folder: refused, nothing left behind
    assert r.returncode == 2 and "/tmp/one/tool: is a directory" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert guest.exec("ls -a /tmp/one /tmp/one/tool | grep -c wirt-cp", kill_after=60).stdout == b"0\n"


def test_a_tree_keeps_modes_times_and_symlinks(guest, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (tree / "sub" / "run.sh").chmod(0o751)
    (tree / "sub" / "deeper" / "data").write_bytes(os.urandom(70000))
    (tree / "secret").write_text("s")
    (tree / "secret").chmod(0o600)
    (tree / "link").symlink_to("sub/run.sh")
    os.utime(tree / "sub" / "deeper" / "data", (1_500_000_000, 1_500_000_000))
    (tree / "sub").chmod(0o710)
    os.utime(tree / "sub", (1_400_000_000, 1_400_000_000))
    r = wirt("cp", "-r", str(tree), "cp:/tmp/t1")  # a new name
    assert r.returncode == 0, r.stderr
    g = guest.exec("cd /tmp/t1 && stat -c '%n %a %Y' sub sub/run.sh secret sub/deeper/data && readlink link && "
                   "sh link", kill_after=120)
    assert g.status == 0, g.stderr
    lines = g.stdout.decode().split("\n")
    assert lines[:4] == ["sub 710 1400000000", f"sub/run.sh 751 {int((tree / 'sub' / 'run.sh').stat().st_mtime)}",
                         f"secret 600 {int((tree / 'secret').stat().st_mtime)}", "sub/deeper/data 644 1500000000"]
    assert lines[4:6] == ["sub/run.sh", "hi"]
    out = tmp_path / "out"
    out.mkdir()
    r = wirt("cp", "-r", "cp:/tmp/t1", str(out))  # into an existing folder
    assert r.returncode == 0, r.stderr
    t = out / "t1"
    assert os.readlink(t / "link") == "sub/run.sh"
    assert (t / "sub" / "deeper" / "data").read_bytes() == (tree / "sub" / "deeper" / "data").read_bytes()
    assert (t / "sub" / "deeper" / "data").stat().st_mtime == 1_500_000_000
    assert (t / "sub").stat().st_mode & 0o777 == 0o710 and (t / "sub").stat().st_mtime == 1_400_000_000
    assert (t / "secret").stat().st_mode & 0o777 == 0o600 and (t / "sub" / "run.sh").stat().st_mode & 0o777 == 0o751


def test_cp_errors_are_one_line(guest, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    for args, text in ((("cp:/nonexistent", str(tmp_path)), "no such file or directory"),
                       (("cp:/tmp", str(tmp_path)), "is a directory; use -r"),
                       ((str(tmp_path / "d"), "cp:/tmp/"), "is a directory; use -r"),
                       ((str(tmp_path / "f"), "cp:/no/such/dir/f"), "no such directory"),
                       ((str(tmp_path / "f"), "cp:tmp"), "absolute path"),
                       ((str(tmp_path / "f"), str(tmp_path / "g")), "exactly one side"),
                       ((str(tmp_path / "f"), "nosuchvm:/tmp/"), "nosuchvm")):
        r = wirt("cp", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = wirt("cp", str(tmp_path / "f"), "cp:/tmp/f")  # the port is usable after the failures
    assert r.returncode == 0, r.stderr
    assert guest.exec("cat /tmp/f", kill_after=60).stdout == b"x"
