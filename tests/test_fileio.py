"""wirt.fileio: the one atomic, durable file update used by VM state and the image cache."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wirt.fileio import atomic_path, atomic_write


def test_atomic_path_makes_parents_and_sets_mode(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "kernel"
    with atomic_path(dest, 0o644, parents=True) as tmp:
        assert tmp.parent == dest.parent and not dest.exists()
        tmp.write_bytes(b"image")
    assert dest.read_bytes() == b"image"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert os.listdir(dest.parent) == ["kernel"]


def test_atomic_path_without_parents_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "gone" / "status.json", "{}")
    assert not (tmp_path / "gone").exists()


def test_failure_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    atomic_write(dest, b"old")
    with pytest.raises(ValueError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("checksum mismatch")
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]
