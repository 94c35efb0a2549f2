"""Fuzzing the snapshot loader (issue 20): random values put at random places of a resealed
snapshot's machine state, machine signature and memory description. A restore either refuses with one line and leaves the machine exactly
as it was, or loads a state the machine then runs without a host-side failure."""

from __future__ import annotations

import json
import os

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_snapshot import machine
from test_snapshot_refusals import _state

from wirt.errors import WirtError
from wirt.machine.attach import attach_rng
from wirt.machine.snapshot import MEMORY_FILE, STATE_FILE, restore_machine, save_machine, write_state_file

leaf = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 66), 1 << 66), st.floats(), st.text(max_size=8),
                 st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(node, prefix=()):
    """Every (path, value) in a state tree (lists of numbers are sampled, not enumerated)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,), v
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i in list(range(min(len(node), 4))) + ([len(node) - 1] if len(node) > 4 else []):
            yield prefix + (i,), node[i]
            yield from _paths(node[i], prefix + (i,))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    m = machine(bytearray())
    attach_rng(m)
    assert m.run(max_insns=9000).reason == "limit"
    folder = tmp_path_factory.mktemp("snap") / "s"
    save_machine(m, folder)
    body = json.loads((folder / STATE_FILE).read_text())["body"]
    # the machine state, and the signature and memory description a restore reads before it
    paths = [(part, *p) for part in ("machine", "signature", "memory") for p, _ in _paths(body[part])]
    return folder, body, paths, m


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_state_damage(saved, tmp_path_factory, data):
    folder, body, paths, m = saved
    body = json.loads(json.dumps(body))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = body
        try:
            for k in path[:-1]:
                node = node[k]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced a parent
        key = path[-1]
        if (isinstance(node, dict) and isinstance(key, str)) or (isinstance(node, list) and isinstance(key, int)
                                                                  and key < len(node)):
            node[key] = data.draw(leaf)
    work = tmp_path_factory.mktemp("f") / "s"
    work.mkdir()
    os.link(folder / MEMORY_FILE, work / MEMORY_FILE)  # the image is not what is fuzzed here
    write_state_file(work, body)
    restore_machine(m, folder)  # one machine for all examples: back to the good state first
    assert m.run(max_insns=3000).reason == "limit"
    before = _state(m)
    try:
        restore_machine(m, work)
    except WirtError as exc:
        assert "\n" not in str(exc)
        assert _state(m) == before
        return
    assert m.run(max_insns=20000).reason in ("limit", "poweroff", "fail", "fatal")
