"""`--mount HOSTDIR:GUESTDIR[:ro]` outside the guest: parsing, vm.toml [[mounts]], grants (an
edited vm.toml cannot share a folder never named), `wirt set --mount/--no-mount`, one-line errors."""

from __future__ import annotations

import pytest
import tomli_w

from wirt.errors import WirtError
from wirt.vm.access import granted
from wirt.vm.api import VM
from wirt.vm.schema import VMConfig, parse_mount
from wirt.vm.store import VMStore


def test_parse_mount_forms_and_errors(tmp_path):
    m = parse_mount(f"{tmp_path}:/mnt/a")
    assert (m.host, m.guest, m.read_only, m.tag) == (str(tmp_path), "/mnt/a", False, "/mnt/a")
    assert parse_mount(f"{tmp_path}:/srv/b:ro").tag == "/srv/b:ro"
    assert parse_mount("/a:b:/c:rw").host == "/a:b"  # a colon in the host folder is kept
    for bad in ("nohost", ":/mnt", "/x:", "/x:relative", "/x:/", "/x:/a b", "/x:/a/../b", "/x:/a;rm", "/x:/a:"):
        with pytest.raises(WirtError) as e:
            parse_mount(bad)
        assert "\n" not in str(e.value) and "--mount" in str(e.value)


def test_vm_toml_mounts_are_checked():
    cfg = VMConfig.new("a").to_dict()
    cfg["mounts"] = [{"host": "relative/dir", "guest": "/mnt/x"}]
    with pytest.raises(WirtError, match=r"mounts\[0\]\.host"):
        VMConfig.from_dict(cfg)
    cfg["mounts"] = [{"host": "/a", "guest": "/mnt/x"}, {"host": "/b", "guest": "/mnt/x", "read_only": True}]
    with pytest.raises(WirtError, match="mounted twice"):
        VMConfig.from_dict(cfg)
    cfg["mounts"] = [{"host": "/a", "guest": "/mnt/x", "extra": 1}]
    with pytest.raises(WirtError, match="not a known setting"):
        VMConfig.from_dict(cfg)


def test_create_grants_set_replaces_and_removes(home, firmware, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with pytest.raises(WirtError, match="is not a folder on this host"):
        VM.create("x", memory="32M", disk=None, image="none", net="none", firmware=str(firmware),
                  mounts=[f"{tmp_path}/missing:/mnt/m"])
    assert "x" not in VMStore().names()
    vm = VM.create("m", memory="32M", disk=None, image="none", net="none", firmware=str(firmware),
                   mounts=[f"{a}:/mnt/a", f"{b}:/mnt/b:ro"])
    assert [str(m) for m in vm.config.mounts] == [f"{a}:/mnt/a", f"{b}:/mnt/b:ro"]
    assert {str(a), str(b)} <= set(granted(VMStore().home, vm.config.uuid))
    c = tmp_path / "c"
    c.mkdir()
    changes = vm.set(add_mounts=[f"{c}:/mnt/a:ro"])  # same guest folder: replaced
    assert [str(m) for m in vm.config.mounts] == [f"{b}:/mnt/b:ro", f"{c}:/mnt/a:ro"] and "mounts" in changes[0]
    assert str(c) in granted(VMStore().home, vm.config.uuid)
    vm.set(mounts=[])
    assert vm.config.mounts == []


def test_a_folder_only_vm_toml_names_is_refused_at_start(tiny_vm, tmp_path):
    outside = tmp_path / "not-granted"
    outside.mkdir()
    cfg = tiny_vm.config.to_dict()
    cfg["mounts"] = [{"host": str(outside), "guest": "/mnt/x", "read_only": False}]
    tiny_vm.paths.config.write_text(tomli_w.dumps(cfg))
    with pytest.raises(WirtError) as err:
        tiny_vm.start()
    assert "mounts[0]" in str(err.value) and "outside VM 'tiny'" in str(err.value) and "\n" not in str(err.value)
    assert not tiny_vm.status(query=False).running
