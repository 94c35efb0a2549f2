"""The ar/.deb reader on packages built by the real dpkg-deb, with each data.tar compression."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wirt.errors import WirtError
from wirt.images import deb

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")

FILES = {
    "usr/bin/tool": b"#!/bin/sh\necho tool\n",
    "usr/lib/x/data.bin": bytes(range(256)) * 100,
    "usr/share/doc/pkg/odd-size": b"123",  # odd sizes exercise ar padding
}


def test_ar_members(helpers: Any, tmp_path: Path) -> None:
    path = helpers.build_deb(tmp_path / "p.deb", "pkg", "1.0", "riscv64", FILES)
    with open(path, "rb") as f:
        names = [m.name for m in deb.ar_members(f)]
    assert names[0] == "debian-binary"
    assert names[1].startswith("control.tar") and names[2] == "data.tar.xz"


@pytest.mark.parametrize("compression", ["xz", "gzip", "none", "zstd"])
def test_extract(helpers: Any, tmp_path: Path, compression: str) -> None:
    src = helpers.build_deb(tmp_path / "p.deb", "pkg", "1.0", "riscv64", FILES)
    # rebuild with the requested compression from the extracted tree
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-R", str(src), str(tree)], check=True)
    out = tmp_path / f"p-{compression}.deb"
    result = subprocess.run(["dpkg-deb", f"-Z{compression}", "--build", str(tree), str(out)], capture_output=True)
    if result.returncode:
        pytest.skip(f"dpkg-deb cannot write {compression}: {result.stderr.decode().strip()}")
    if compression == "zstd" and shutil.which("zstd") is None:
        with pytest.raises(WirtError, match="zstd"):
            deb.extract(out, lambda n: True)
        return
    got = deb.extract(out, lambda name: name.startswith("usr/"))
    assert {k: v.data for k, v in got.items()} == FILES
    assert got["usr/bin/tool"].mode == 0o644 or got["usr/bin/tool"].mode & 0o400
    one = deb.extract_one(out, "usr/share/doc/pkg/odd-size")
    assert one.data == b"123"


def test_extract_one_missing_member(helpers: Any, tmp_path: Path) -> None:
    path = helpers.build_deb(tmp_path / "p.deb", "pkg", "1.0", "riscv64", FILES)
    with pytest.raises(WirtError, match="does not contain /usr/bin/nothing"):
        deb.extract_one(path, "usr/bin/nothing")


def test_not_a_deb(helpers: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"this is no ar archive")
    with pytest.raises(WirtError, match="not a valid .deb"):
        deb.extract(bad, lambda n: True)
    truncated = tmp_path / "trunc.deb"
    good = helpers.build_deb(tmp_path / "p.deb", "pkg", "1.0", "riscv64", FILES).read_bytes()
    truncated.write_bytes(good[: len(good) - 200])
    with pytest.raises(WirtError):
        deb.extract(truncated, lambda n: True)


def test_progress_reports_compressed_bytes(helpers: Any, tmp_path: Path) -> None:
    path = helpers.build_deb(tmp_path / "p.deb", "pkg", "1.0", "riscv64", FILES)
    seen: list[tuple[int, int]] = []
    deb.extract(path, lambda n: True, lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] > 0
