"""The VM store on disk: WIRT_HOME, atomic writes, permissions, API create/remove."""

from __future__ import annotations

import os
import stat

import pytest

from wirt.errors import WirtError
from wirt.vm import store as store_mod
from wirt.vm.store import VMStore, atomic_write, wirt_home


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_wirt_home_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("WIRT_HOME", str(tmp_path / "h"))
    assert wirt_home() == tmp_path / "h"
    monkeypatch.delenv("WIRT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert wirt_home() == tmp_path / "x" / "wirt"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "u"))
    assert wirt_home() == tmp_path / "u" / ".local" / "share" / "wirt"


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f"
    atomic_write(p, "one")
    atomic_write(p, b"two")
    assert p.read_text() == "two"
    assert mode(p) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_failure_keeps_old_version(tmp_path, monkeypatch):
    p = tmp_path / "f"
    atomic_write(p, "old")

    def boom(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(p, "new")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_permissions_of_created_vm(home):
    from wirt.vm.api import VM

    old = os.umask(0o022)
    try:
        vm = VM.create("web", memory="64M", disk="1M", net="none", image="initramfs")
    finally:
        os.umask(old)
    root = vm.paths.root
    assert mode(root) == 0o700
    assert mode(root / "snapshots") == 0o700
    assert mode(root / "vm.toml") == 0o600
    assert mode(root / "disk0.qcow2") == 0o600
    cfg = vm.config
    assert cfg.disks[0].size == 1 << 20 and cfg.disks[0].format == "qcow2"
    from wirt.storage import open_image

    with open_image(root / "disk0.qcow2") as img:
        assert img.size == 1 << 20


def test_create_refuses_bad_input_and_duplicates(home):
    from wirt.vm.api import VM

    VM.create("web", memory="64M", disk="1M", net="none", image="initramfs")
    with pytest.raises(WirtError, match="already exists"):
        VM.create("web", disk="1M", image="initramfs")
    for kwargs in ({"memory": "-1G"}, {"memory": "100T" * 1}, {"disk": "-5"}, {"disk": -5}, {"disk": "100P"},
                   {"cpus": 0}, {"net": "bogus"}, {"ports": ["x"]}):
        with pytest.raises(WirtError) as e:
            VM.create("other", **kwargs)
        assert "\n" not in str(e.value)
    for name in ("a/b", "..", ".x", ""):
        with pytest.raises(WirtError):
            VM.create(name, disk="1M", image="initramfs")
    assert [v.name for v in VM.list()] == ["web"]  # failed creates leave nothing behind


def test_set_grows_only_and_validates(home):
    from wirt.vm.api import VM

    vm = VM.create("web", memory="64M", disk="1M", net="none", image="initramfs")
    vm.set(memory="128M", disk_size="2M")
    assert vm.config.memory == 128 << 20 and vm.config.disks[0].size == 2 << 20
    with pytest.raises(WirtError, match="only grow"):
        vm.set(disk_size="1M")
    with pytest.raises(WirtError, match="memory"):
        vm.set(memory="1K")
    vm.set(cpus=4)
    assert vm.config.cpus == 4
    with pytest.raises(WirtError, match="cpus"):
        vm.set(cpus=65)


def test_lock_serializes(home):
    import threading

    from wirt.vm.api import VM
    from wirt.vm.locks import vm_lock

    vm = VM.create("web", memory="64M", disk=None, net="none", image="initramfs")
    held, release = threading.Event(), threading.Event()

    def holder():
        with vm_lock(vm.paths.root):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(WirtError, match="busy"):
            with vm_lock(vm.paths.root, wait=0.2):
                pass
    finally:
        release.set()
        t.join()
    with vm_lock(vm.paths.root, wait=0.2):
        pass
