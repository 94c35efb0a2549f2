"""VM snapshots on stopped VMs and in-process machines (vm/snapshots.py): the layer tree, restore,
remove with garbage collection, fork by hard links, and refusals that change nothing.

Disks are checked with real qemu-img (`check`, `compare`), so the layer chains are real qcow2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from wirt.errors import WirtError
from wirt.storage import open_image
from wirt.vm.snapshots import VMSnapshots, fork_vm
from wirt.vm.store import VMStore

MIB = 1 << 20


def qemu_img(*args: str) -> str:
    exe = shutil.which("qemu-img")
    if exe is None:
        pytest.fail("qemu-img is missing; `make test` installs it (Debian package qemu-utils)")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout


def write_disk(store: VMStore, name: str, data: bytes, offset: int = 0) -> None:
    cfg = store.load(name)
    with open_image(store.paths(name).disk(cfg.disks[0].path), read_only=False) as img:
        img.write(offset, data)


def read_disk(store: VMStore, name: str, length: int, offset: int = 0) -> bytes:
    cfg = store.load(name)
    with open_image(store.paths(name).disk(cfg.disks[0].path), read_only=True) as img:
        return img.read(offset, length)


@pytest.fixture
def stopped(tiny_vm):
    store = VMStore()
    write_disk(store, "tiny", b"first state")
    return store, store.load("tiny"), VMSnapshots(store.paths("tiny"))


def test_disk_snapshots_form_a_tree_and_restore_reverts(stopped):
    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    write_disk(store, "tiny", b"second state")
    snaps.create_disk_only(store, store.load("tiny"), "s2")
    write_disk(store, "tiny", b"third state!")
    assert read_disk(store, "tiny", 12) == b"third state!"

    info = {s.name: s for s in snaps.list()}
    assert info["s1"].parent is None and info["s2"].parent == "s1"
    assert info["s2"].current and info["s1"].kind == "disk"

    snaps.restore_stopped(store, store.load("tiny"), "s1")
    assert read_disk(store, "tiny", 11) == b"first state"
    write_disk(store, "tiny", b"branch")
    snaps.create_disk_only(store, store.load("tiny"), "s3")  # a second child of s1
    assert {s.name: s.parent for s in snaps.list()} == {"s1": None, "s2": "s1", "s3": "s1"}
    snaps.restore_stopped(store, store.load("tiny"), "s2")
    assert read_disk(store, "tiny", 12) == b"second state"

    cfg = store.load("tiny")
    active = store.paths("tiny").disk(cfg.disks[0].path)
    chain = qemu_img("info", "--backing-chain", "--output=json", str(active))
    assert len(json.loads(chain)) == 3  # overlay -> s2's layer -> s1's layer (the original disk)
    qemu_img("check", str(active))


def test_frozen_layers_are_read_only_and_never_copied(stopped):
    store, cfg, snaps = stopped
    original = store.paths("tiny").disk(cfg.disks[0].path)
    inode = original.stat().st_ino
    snaps.create_disk_only(store, cfg, "s1")
    assert original.stat().st_ino == inode and original.stat().st_mode & 0o777 == 0o400
    body = snaps.read("s1")
    assert store.paths("tiny").root / body["disks"][0]["layer"] == original


def test_remove_collects_layers_nothing_needs(stopped):
    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    write_disk(store, "tiny", b"x" * 70000)  # more than one cluster
    snaps.create_disk_only(store, store.load("tiny"), "s2")
    snaps.restore_stopped(store, store.load("tiny"), "s1")
    layers = snaps.layers
    before = set(layers.iterdir())
    snaps.remove(store.load("tiny"), "s2")  # its layer backs nothing now: deleted
    after = set(layers.iterdir())
    assert len(after) == len(before) - 1
    snaps.remove(store.load("tiny"), "s1")  # the original disk backs the VM's overlay: kept
    assert read_disk(store, "tiny", 11) == b"first state"
    assert snaps.list() == [] and snaps.current() is None


def test_bad_names_and_missing_snapshots_are_refused(stopped):
    store, cfg, snaps = stopped
    with pytest.raises(WirtError, match="snapshot name"):
        snaps.create_disk_only(store, cfg, "../x")
    with pytest.raises(WirtError, match="reserved"):
        snaps.create_disk_only(store, cfg, "layers")
    with pytest.raises(WirtError, match="has no snapshot 'nope'"):
        snaps.restore_stopped(store, cfg, "nope")
    snaps.create_disk_only(store, cfg, "s1")
    with pytest.raises(WirtError, match="already has a snapshot 's1'"):
        snaps.create_disk_only(store, store.load("tiny"), "s1")


def test_snapshot_of_another_vm_is_refused_and_nothing_changes(stopped, firmware):
    from wirt.vm.api import VM

    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    VM.create("other", memory="32M", disk="1M", image="none", net="none", firmware=str(firmware))
    other = VMSnapshots(store.paths("other"))
    other.root.mkdir(exist_ok=True)
    shutil.copytree(snaps.folder("s1"), other.folder("s1"))
    before = (store.paths("other").config.read_text(), read_disk(store, "other", 16))
    with pytest.raises(WirtError, match="belongs to VM 'tiny'"):
        other.restore_stopped(store, store.load("other"), "s1")
    assert (store.paths("other").config.read_text(), read_disk(store, "other", 16)) == before


def test_corrupted_snapshot_is_refused_and_nothing_changes(stopped):
    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    write_disk(store, "tiny", b"later")
    path = snaps.folder("s1") / "snapshot.json"
    os.chmod(path, 0o600)
    path.write_text(path.read_text().replace('"disk"', '"full"', 1))
    before = store.paths("tiny").config.read_text()
    with pytest.raises(WirtError, match="checksum mismatch"):
        snaps.restore_stopped(store, store.load("tiny"), "s1")
    assert store.paths("tiny").config.read_text() == before
    assert read_disk(store, "tiny", 5) == b"later"


def test_restore_refuses_a_changed_disk_set(stopped):
    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    cfg = store.load("tiny")
    cfg.disks = []
    store.save(cfg)
    with pytest.raises(WirtError, match="disk set changed"):
        snaps.restore_stopped(store, store.load("tiny"), "s1")


def test_fork_shares_layers_by_hard_links_and_diverges(stopped):
    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    fcfg, notes = fork_vm(store, "tiny", "s1", "fork1")
    assert fcfg.uuid != cfg.uuid and fcfg.network.mac != cfg.network.mac
    src_layer = store.paths("tiny").root / snaps.read("s1")["disks"][0]["layer"]
    dst_layer = store.paths("fork1").root / snaps.read("s1")["disks"][0]["layer"]
    assert os.path.samefile(src_layer, dst_layer)  # linked, not copied
    assert read_disk(store, "fork1", 11) == b"first state"
    write_disk(store, "fork1", b"fork writes")
    write_disk(store, "tiny", b"tiny writes")
    assert read_disk(store, "fork1", 11) == b"fork writes"
    assert read_disk(store, "tiny", 11) == b"tiny writes"
    # the source can go away; the fork keeps its own links
    store.destroy("tiny")
    assert read_disk(store, "fork1", 11) == b"fork writes"
    fork_disk = store.paths("fork1").disk(store.load("fork1").disks[0].path)
    qemu_img("check", str(fork_disk))


def test_fork_name_taken_or_snapshot_missing(stopped):
    store, cfg, snaps = stopped
    snaps.create_disk_only(store, cfg, "s1")
    with pytest.raises(WirtError, match="already exists"):
        fork_vm(store, "tiny", "s1", "tiny")
    with pytest.raises(WirtError, match="has no snapshot"):
        fork_vm(store, "tiny", "nope", "fork2")
    assert not store.exists("fork2")
