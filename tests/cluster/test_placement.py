"""Placement decisions (wirt.cluster.placement): policies, labels, affinity, refusals."""

from __future__ import annotations

import pytest

from wirt.cluster.placement import NodeView, PlacementError, Request, parse_labels, place
from wirt.errors import WirtError

M = 1 << 20


def nodes() -> list[NodeView]:
    return [NodeView("a", 4, 2048, labels={"zone": "x"}), NodeView("b", 2, 1024, labels={"zone": "x"}),
            NodeView("c", 6, 3072, labels={"zone": "y"})]


def test_spread_takes_the_emptiest_and_pack_the_fullest() -> None:
    ns = nodes()
    got = []
    for i in range(3):
        r = Request(f"s{i}", 1, 128 * M)
        n = place(r, ns)
        n.take(r)
        got.append(n.name)
    assert got == ["c", "a", "c"]
    ns = nodes()
    got = []
    for i in range(3):
        r = Request(f"p{i}", 1, 128 * M, policy="pack")
        n = place(r, ns)
        n.take(r)
        got.append(n.name)
    assert got == ["b", "b", "a"]


def test_labels_affinity_and_anti_affinity() -> None:
    ns = nodes()
    assert place(Request("z", 1, 64 * M, node_labels={"zone": "x"}, policy="pack"), ns).name == "b"
    db = Request("db", 1, 64 * M, labels={"app": "db"})
    ns[0].take(db)  # db runs on a
    assert place(Request("web", 1, 64 * M, affinity={"app": "db"}), ns).name == "a"
    assert place(Request("db2", 1, 64 * M, anti_affinity={"app": "db"}), ns).name == "c"
    with pytest.raises(PlacementError, match="a: anti-affinity: a VM labelled app=db is here"):
        place(Request("db3", 1, 64 * M, anti_affinity={"app": "db"}, node="a"), ns)


def test_refusal_names_the_short_resource_on_each_node() -> None:
    ns = nodes()
    ns[2].alive = False
    with pytest.raises(PlacementError) as e:
        place(Request("big", 3, 1800 * M), ns)
    text = str(e.value)
    assert "a: memory short by" in text and "b: vCPUs short by 1 (needs 3, 2 of 2 free)" in text
    assert "c: the node is down" in text
    with pytest.raises(PlacementError, match="no such node"):
        place(Request("x", 1, M, node="nope"), ns)


def test_label_syntax() -> None:
    assert parse_labels(["app=web", "tier=1"]) == {"app": "web", "tier": "1"}
    with pytest.raises(WirtError, match="KEY=VALUE"):
        parse_labels(["app"])
