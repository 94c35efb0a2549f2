"""vm.toml schema: validation of names, sizes and every key, with one-line errors naming file, key and fix."""

from __future__ import annotations

import pytest
import tomli_w

from wirt.errors import WirtError
from wirt.vm.schema import VMConfig, parse_net_mode, parse_port, validate_name
from wirt.vm.store import VMStore


@pytest.mark.parametrize("name", ["", "a/b", "..", "a..b", "../etc", ".hidden", "x" * 65, "a\x01b", "tab\tx",
                                  "-dash", "sp ace", "ünï", "a\\b", None, 5])
def test_bad_names_refused_in_one_line(name):
    with pytest.raises(WirtError) as e:
        validate_name(name)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["web", "web-1", "a.b_c", "X" * 64, "9lives"])
def test_good_names(name):
    assert validate_name(name) == name


def test_roundtrip():
    cfg = VMConfig.new("web", cpus=2, memory="1G", ports=["8080:80", "53:53/udp"], cpu_affinity=[1, 0])
    d = cfg.to_dict()
    assert d["memory"] == "1G" and d["schema_version"] == 1
    back = VMConfig.from_dict(tomllib_roundtrip(d))
    assert back == cfg
    assert back.cpu_affinity == [0, 1]
    assert [str(p) for p in back.network.ports] == ["8080:80", "53:53/udp"]


def tomllib_roundtrip(d):
    import tomllib

    return tomllib.loads(tomli_w.dumps(d))


@pytest.mark.parametrize("key,value,words", [
    ("memory", "lots", ["memory", "not a size", "512M"]),
    ("memory", -5, ["memory", "too small"]),
    ("memory", "5P", ["memory", "too large"]),
    ("memory", "100000001", ["memory", "4 KiB"]),
    ("cpus", -1, ["cpus", "out of range"]),
    ("cpus", "two", ["cpus", "whole number"]),
    ("cpus", True, ["cpus"]),
    ("schema_version", 99, ["schema_version", "upgrade wirt"]),
    ("uuid", "nope", ["uuid", "UUID"]),
    ("memroy", "1G", ["memroy", "not a known setting"]),
    ("cpu_affinity", [0, 0], ["cpu_affinity", "twice"]),
    ("network", {"mode": "carrier-pigeon"}, ["network.mode", "tap:IF"]),
    ("network", {"mode": "user", "mac": "01:00:5e:00:00:01"}, ["network.mac", "multicast"]),
    ("network", {"mode": "user", "mac": "zz"}, ["network.mac"]),
    ("network", {"mode": "none", "ports": ["80:80"]}, ["network.ports", "user"]),
    ("network", {"mode": "user", "ports": ["80:80", "80:81"]}, ["forwarded twice"]),
    ("network", {"mode": "user", "ports": ["0:80"]}, ["out of range"]),
    ("disks", [{"path": "d.qcow2", "size": "-1G"}], ["disks[0].size"]),
    ("disks", [{"path": "d.qcow2", "size": "100P"}], ["disks[0].size", "too large"]),
    ("disks", [{"path": "d.qcow2", "format": "vmdk"}], ["disks[0].format"]),
    ("disks", [{"path": ""}], ["disks[0].path"]),
    ("disks", [{"path": "a"}, {"path": "./a"}], ["attached twice"]),
    ("boot", {"append": 5}, ["boot.append"]),
])
def test_malformed_vm_toml_names_file_key_and_fix(tmp_path, key, value, words):
    store = VMStore(tmp_path)
    cfg = VMConfig.new("web")
    p = store.create(cfg)
    d = cfg.to_dict()
    d[key] = value
    p.config.write_text(tomli_w.dumps(d))
    with pytest.raises(WirtError) as e:
        store.load("web")
    msg = str(e.value)
    assert "\n" not in msg
    assert str(p.config) in msg
    assert ";" in msg  # problem; fix
    for w in words:
        assert w in msg, msg


def test_invalid_toml_and_name_mismatch(tmp_path):
    store = VMStore(tmp_path)
    p = store.create(VMConfig.new("web"))
    p.config.write_text("cpus = [\n")
    with pytest.raises(WirtError, match="not valid TOML"):
        store.load("web")
    d = VMConfig.new("other").to_dict()
    p.config.write_text(tomli_w.dumps(d))
    with pytest.raises(WirtError, match="does not match the directory"):
        store.load("web")


def test_ports_and_net_modes():
    assert parse_port("8080:80") == parse_port("8080:80/tcp")
    assert parse_port("53:53/udp").protocol == "udp"
    for bad in ("80", "a:b", "1:2/sctp", "70000:1", "1:0"):
        with pytest.raises(WirtError):
            parse_port(bad)
    assert parse_net_mode("tap:tap0") == "tap:tap0"
    assert parse_net_mode("socket:lab") == "socket:lab"
    for bad in ("tap:", "tap:" + "x" * 16, "socket:", "bridge", ""):
        with pytest.raises(WirtError):
            parse_net_mode(bad)


def test_duplicate_name_refused(tmp_path):
    store = VMStore(tmp_path)
    store.create(VMConfig.new("web"))
    with pytest.raises(WirtError, match="already exists"):
        store.create(VMConfig.new("web"))
