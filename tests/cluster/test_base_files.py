"""The file side of base images by content (wirt.cluster.bases), without Ray: the hash memo,
which files a node hands out by hash, finding a VM's bases among its files, pointing an overlay
at a moved base, and finding an image without building or touching the network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from wirt.cluster.bases import BaseStore, external_backings, find_image, set_backing
from wirt.errors import WirtError
from wirt.storage import open_image
from wirt.storage.qcow2_create import create_qcow2


def make_base(path: Path, data: bytes) -> str:
    create_qcow2(str(path), 1 << 20)
    with open_image(path, read_only=False) as img:
        img.write(0, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hash_memo_follows_the_file_and_only_hashed_files_are_handed_out(tmp_path: Path) -> None:
    store = BaseStore(tmp_path / "home")
    base = tmp_path / "base.qcow2"
    sha = make_base(base, b"one")
    assert store.hash(base) == sha
    assert store.source(sha) == base
    with pytest.raises(WirtError, match="no base image with sha256"):
        store.source("0" * 64)
    new = make_base(tmp_path / "new.qcow2", b"two")
    os.replace(tmp_path / "new.qcow2", base)  # another file under the name (a rebuild): hashed again
    assert new != sha and store.hash(base) == new
    with pytest.raises(WirtError):
        store.source(sha)  # the old bytes are gone: not handed out under their hash
    with pytest.raises(WirtError, match="not a SHA-256"):
        store.lookup("../etc/passwd")


def test_store_keeps_a_verified_file_by_hash_read_only(tmp_path: Path) -> None:
    store = BaseStore(tmp_path / "home")
    staged = store.staging()
    staged.mkdir()
    sha = make_base(staged / "base", b"data")
    path = store.add(staged / "base", sha, "qcow2")
    assert path == tmp_path / "home" / "bases" / f"{sha}.qcow2"
    assert store.lookup(sha) == path and store.source(sha) == path
    assert path.stat().st_mode & 0o777 == 0o444


def test_a_sealed_overlay_is_pointed_at_its_moved_base(tmp_path: Path) -> None:
    vm = tmp_path / "vm"
    (vm / "snapshots" / "layers").mkdir(parents=True)
    base = tmp_path / "elsewhere" / "base.qcow2"
    base.parent.mkdir()
    make_base(base, b"from the base")
    disk = vm / "disk0.qcow2"
    create_qcow2(str(disk), None, backing=str(base), backing_format="qcow2")
    layer = vm / "snapshots" / "layers" / "top.qcow2"
    create_qcow2(str(layer), None, backing="../../disk0.qcow2", backing_format="qcow2")  # inside: not a base
    os.chmod(disk, 0o400)  # a frozen snapshot layer
    rels = ["disk0.qcow2", "snapshots/layers/top.qcow2"]
    assert external_backings(vm, rels) == [("disk0.qcow2", str(base), str(base))]
    moved = tmp_path / "store" / "copy.qcow2"
    moved.parent.mkdir()
    moved.write_bytes(base.read_bytes())
    base.unlink()
    set_backing(disk, str(moved))
    assert disk.stat().st_mode & 0o777 == 0o400
    assert external_backings(vm, rels) == [("disk0.qcow2", str(moved), str(moved))]
    with open_image(layer, read_only=True) as img:  # the whole chain opens and reads the base's bytes
        assert img.read(0, 13) == b"from the base"


def test_find_image_neither_builds_nor_fetches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("WIRT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")  # nothing listens there
    assert find_image("debian") is None and find_image("debian", cloud=True) is None
    assert find_image("no-such-name") is None and find_image(str(tmp_path / "missing.qcow2")) is None
    assert find_image("initramfs") is None
    own = tmp_path / "own.qcow2"
    make_base(own, b"x")
    assert find_image(str(own)) == own.resolve()
    assert not (tmp_path / "empty-cache").exists()
