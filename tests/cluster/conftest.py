"""A real multi-node Ray cluster on this machine for the cluster tests: one head and two worker
nodes on the loopback (ray.cluster_utils.Cluster), each with fake capacities as its wirt
resources and its own WIRT_HOME (the node's processes, and so its agent, inherit it). Started
once per test module; the VMs left running are stopped and the Ray processes ended at teardown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wirt.cluster.resources import MEM_MIB, NODE_PREFIX, VCPU

# (name, vCPUs, memory MiB, labels): different capacities, as the placement test asks
NODES = [("n0", 4, 2048, {"zone": "a"}), ("n1", 2, 1024, {"zone": "a"}), ("n2", 6, 3072, {"zone": "b"})]


@dataclass
class Fleet:
    address: str
    cluster: Any
    homes: dict[str, Path]
    nodes: dict[str, Any] = field(default_factory=dict)


def _node_args(name: str, vcpus: int, mem: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"num_cpus": 1, "resources": {VCPU: vcpus, MEM_MIB: mem, NODE_PREFIX + name: 1},
            "labels": labels, "object_store_memory": 80 << 20}


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    import ray
    from ray.cluster_utils import Cluster

    from wirt.cluster import services

    base = tmp_path_factory.mktemp("fleet")
    homes = {name: base / name for name, *_ in NODES}
    cluster = None
    nodes: dict[str, Any] = {}
    try:
        for name, vcpus, mem, labels in NODES:
            # WIRT_ZYGOTE=0: no warm zygote per node home (each would load the core in the background)
            with _env(WIRT_HOME=str(homes[name]), WIRT_ZYGOTE="0", RAY_DEDUP_LOGS="0"):
                args = _node_args(name, vcpus, mem, labels)
                if cluster is None:
                    cluster = Cluster(initialize_head=True, head_node_args={
                        **args, "include_dashboard": False,
                        # a killed node is declared dead after about 1.5 s instead of 15
                        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
                    nodes[name] = cluster.head_node
                else:
                    nodes[name] = cluster.add_node(**args)
        services.connect(cluster.address)
        services.start_controller("n0")
        for name, *_ in NODES:
            services.start_agent(name)
        yield Fleet(cluster.address, cluster, homes, nodes)
    finally:
        from wirt.vm.api import VM

        for home in homes.values():
            for vm in VM.list(home) if home.exists() else []:
                with contextlib.suppress(Exception):
                    if vm.status(query=False).running:
                        vm.stop(force=True)
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
