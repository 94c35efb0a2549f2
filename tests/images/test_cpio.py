"""The newc cpio writer, checked with GNU cpio where installed and with our own reader."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirt.images.cpio import MAGIC, CpioWriter, read_newc


def _sample() -> bytes:
    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.add_dir("bin")
    w.add_file("bin/busybox", b"\x7fELF" + bytes(range(256)) * 3, 0o755)
    w.add_symlink("bin/sh", "busybox")
    w.add_dir("etc")
    w.add_file("etc/empty", b"")
    w.add_file("init", b"#!/bin/sh\necho hi\n", 0o755)
    w.add_char_device("dev-console", 5, 1)
    w.close()
    return buf.getvalue()


def test_layout_is_newc_and_aligned() -> None:
    data = _sample()
    assert data.startswith(MAGIC)
    assert len(data) % 4 == 0
    entries = list(read_newc(data))
    assert [e.name for e in entries] == ["bin", "bin/busybox", "bin/sh", "etc", "etc/empty", "init", "dev-console"]
    by = {e.name: e for e in entries}
    assert by["bin"].is_dir and by["bin/sh"].is_symlink and by["bin/sh"].data == b"busybox"
    assert stat.S_IMODE(by["init"].mode) == 0o755 and by["init"].is_file
    assert stat.S_ISCHR(by["dev-console"].mode) and by["dev-console"].rdev == (5, 1)
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_deterministic() -> None:
    assert _sample() == _sample()


def test_rejects_duplicates_and_use_after_close() -> None:
    w = CpioWriter(io.BytesIO())
    w.add_file("a", b"1")
    with pytest.raises(ValueError):
        w.add_file("a", b"2")
    w.close()
    with pytest.raises(ValueError):
        w.add_file("b", b"")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed (apt-get install cpio)")
def test_gnu_cpio_lists_and_extracts(tmp_path: Path) -> None:
    data = _sample()
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout.decode()
    assert listing.split() == ["bin", "bin/busybox", "bin/sh", "etc", "etc/empty", "init", "dev-console"]
    verbose = subprocess.run(["cpio", "-tv", "--quiet"], input=data, capture_output=True, check=True).stdout.decode()
    assert "bin/sh -> busybox" in verbose
    assert "5,   1" in verbose or "5, 1" in verbose  # the console device numbers
    # Extract everything but the device node (creating one needs privileges).
    buf = io.BytesIO()
    w = CpioWriter(buf)
    for e in read_newc(data):
        if e.is_dir:
            w.add_dir(e.name)
        elif e.is_symlink:
            w.add_symlink(e.name, e.data.decode())
        elif e.is_file:
            w.add_file(e.name, e.data, stat.S_IMODE(e.mode))
    w.close()
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=buf.getvalue(), cwd=out, check=True)
    assert (out / "bin/busybox").read_bytes() == b"\x7fELF" + bytes(range(256)) * 3
    assert (out / "bin/sh").is_symlink() and (out / "bin/sh").readlink() == Path("busybox")
    assert (out / "init").stat().st_mode & 0o111
    assert (out / "etc/empty").read_bytes() == b""


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(names, st.binary(max_size=70), max_size=8))
def test_roundtrip(files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    w = CpioWriter(buf)
    for name, data in files.items():
        w.add_file(name, data)
    w.close()
    raw = buf.getvalue()
    assert len(raw) % 4 == 0
    assert {e.name: e.data for e in read_newc(raw)} == files
