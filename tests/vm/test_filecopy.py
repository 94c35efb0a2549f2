"""The host end of `wirt cp` from a guest (wirt.vm.filecopy._extract), fast: archives a hostile guest
could send must not write outside the destination, and set-uid bits do not reach the host."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from wirt.errors import WirtError
from wirt.vm.filecopy import _extract


def _tar(members: list[tuple[str, str, bytes | str, int]]) -> tarfile.TarFile:
    """An archive of (name, kind, data-or-link, mode) members, opened for streaming like the channel."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 1_600_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                t.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                t.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r|")


def test_a_tree_lands_under_the_new_name_with_modes_and_times(tmp_path):
    tar = _tar([("./top", "dir", b"", 0o750), ("./top/a", "file", b"A" * 10, 0o4755),
                ("./top/sub", "dir", b"", 0o700), ("./top/sub/b", "file", b"B", 0o600),
                ("./top/l", "sym", "sub/b", 0o777), ("./top/h", "hard", "./top/a", 0o644)])
    _extract(tar, "top", tmp_path / "copy")
    d = tmp_path / "copy"
    assert (d / "a").read_bytes() == b"A" * 10 and (d / "sub" / "b").read_bytes() == b"B"
    assert os.stat(d / "a").st_mode & 0o7777 == 0o755  # set-uid dropped
    assert os.stat(d).st_mode & 0o777 == 0o750 and os.stat(d / "sub").st_mode & 0o777 == 0o700
    assert os.readlink(d / "l") == "sub/b" and os.stat(d / "h").st_ino == os.stat(d / "a").st_ino
    assert os.stat(d / "sub" / "b").st_mtime == 1_600_000_000 and os.stat(d).st_mtime == 1_600_000_000


@pytest.mark.parametrize("members", [
    [("./top", "dir", b"", 0o755), ("./top/../escaped", "file", b"x", 0o644)],
    [("/etc/escaped", "file", b"x", 0o644)],
    [("./other", "file", b"x", 0o644)],
    [("./top", "dir", b"", 0o755), ("./top/l", "sym", "{outside}", 0o777), ("./top/l/escaped", "file", b"x", 0o644)],
    [("./top", "dir", b"", 0o755), ("./top/l", "sym", "..", 0o777), ("./top/l/escaped", "file", b"x", 0o644)],
    [("./top", "dir", b"", 0o755), ("./top/h", "hard", "../outside/victim", 0o644)],
])
def test_hostile_archives_write_nothing_outside(tmp_path, members):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    dest = tmp_path / "dest"
    dest.mkdir()
    members = [(n, k, d.replace("{outside}", str(outside)) if isinstance(d, str) else d, m) for n, k, d, m in members]
    with pytest.raises(WirtError, match="outside"):
        _extract(_tar(members), "top", dest / "top")
    assert sorted(os.listdir(outside)) == ["victim"] and (outside / "victim").read_text() == "keep"
    assert not (tmp_path / "escaped").exists() and not (dest / "escaped").exists()
