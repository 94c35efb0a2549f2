"""Fuzzing vm.toml, snapshot metadata and the control protocol (issue 20). Whatever the input,
the result is a valid configuration, a one-line WirtError, or a structured error reply: never
another exception."""

from __future__ import annotations

import json
import tomllib

import pytest
import tomli_w
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirt.errors import WirtError
from wirt.vm.control import ControlServer
from wirt.vm.schema import VMConfig

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["512M", "8G", "user", "none", "qcow2", "raw", "../x",
                                                           "/etc/shadow", "tap:x", "8080:80", "0", "-1G"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)
KEYS = ["schema_version", "name", "uuid", "created", "cpus", "memory", "image", "disks", "network", "boot",
        "cpu_affinity", "path", "format", "size", "read_only", "mode", "mac", "ports", "append", "kernel", "root"]


def _valid() -> dict:
    return VMConfig.new("fuzz", memory="64M", net="user", ports=["8080:80"]).to_dict() | {
        "disks": [{"path": "disk0.qcow2", "format": "qcow2", "size": "1G", "read_only": False}]}


@settings(max_examples=examples(150), **SETTINGS)
@given(edits=st.lists(st.tuples(st.lists(st.sampled_from(KEYS + ["0", "x"]), min_size=1, max_size=3), values),
                      max_size=5))
def test_vm_config_from_any_data(edits):
    d = _valid()
    for path, value in edits:
        node = d
        for key in path[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(key, {})
            elif isinstance(node, list) and node:
                node = node[0]
        if isinstance(node, dict):
            node[path[-1]] = value
    try:
        cfg = VMConfig.from_dict(d, "vm.toml")
    except WirtError as exc:
        assert "\n" not in str(exc)
        return
    again = VMConfig.from_dict(tomllib.loads(tomli_w.dumps(cfg.to_dict())), "vm.toml")  # round trip
    assert again == cfg


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from wirt.vm.store import VMStore

    s = VMStore(tmp_path_factory.mktemp("home"))
    (s.vms / "fuzz").mkdir(parents=True)
    return s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    return ControlServer(tmp_path_factory.mktemp("c") / "c.sock", {"ping": lambda req: {}, "stats": lambda req: {"n": 1}})


@settings(max_examples=examples(100), **SETTINGS)
@given(text=st.text(max_size=400))
def test_vm_toml_text(text, store):
    store.paths("fuzz").config.write_text(text)
    try:
        store.load("fuzz")
    except WirtError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=examples(150), **SETTINGS)
@given(line=st.one_of(st.binary(max_size=200),
                      st.builds(lambda v: json.dumps(v).encode(), values),
                      st.builds(lambda c, v: json.dumps({"id": 1, "cmd": c, "arg": v}).encode(),
                                st.sampled_from(["ping", "stats", "nope", "console-input", "exec"]), values)))
def test_control_protocol_lines(line, server):
    reply, _ = server.dispatch(line)
    if isinstance(reply, dict):
        assert reply.get("ok") is True or isinstance(reply.get("error"), dict)
