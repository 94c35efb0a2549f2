"""Several wirt nodes on this one machine (ray.cluster_utils.Cluster), for tests and benchmarks:
each node a real Ray node with its own capacities as wirt resources, labels, and WIRT_HOME (its
processes, and so its agent, inherit it), plus the controller on the first node. Every Ray
process listens on and dials 127.0.0.1 only (services.loopback_only).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wirt.cluster.resources import MEM_MIB, NODE_PREFIX, VCPU
from wirt.cluster.services import LOOPBACK

__all__ = ["NodeSpec", "LocalCluster", "local_cluster", "DEAD_PROXY_ENV"]


@dataclass(frozen=True)
class NodeSpec:
    name: str
    vcpus: float
    memory_mib: float
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # more environment for its processes (e.g. WIRT_CACHE)


@dataclass
class LocalCluster:
    address: str
    cluster: Any                      # the ray.cluster_utils.Cluster
    homes: dict[str, Path]
    nodes: dict[str, Any]             # name -> ray._private.node.Node (remove_node kills one)
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    zygote: bool = False

    def kill(self, name: str) -> None:
        """End node `name`'s Ray processes at once (its raylet and workers, so its agent), as a
        host failure would; its VM processes are not touched."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def restart(self, name: str) -> None:
        """Start node `name` again (same resources, labels and WIRT_HOME) with its agent."""
        from wirt.cluster import services

        self.nodes[name] = _add(self.cluster, self.specs[name], self.homes[name], self.zygote)
        services.start_agent(name)


def _args(s: NodeSpec) -> dict[str, Any]:
    return {"num_cpus": 1, "node_ip_address": LOOPBACK, "resources": {VCPU: s.vcpus, MEM_MIB: s.memory_mib, NODE_PREFIX + s.name: 1},
            "labels": dict(s.labels), "object_store_memory": 80 << 20}


def _add(cluster: Any, s: NodeSpec, home: Path, zygote: bool) -> Any:
    with _env(WIRT_HOME=str(home), WIRT_ZYGOTE="1" if zygote else "0", RAY_DEDUP_LOGS="0", **s.env):
        return cluster.add_node(**_args(s))


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


# Ray's head module for usage stats probes the cloud metadata address (169.254.169.254) and posts
# "disabled" through `requests` even with stats off: in a local cluster it meets a dead loopback
# proxy instead (gRPC and loopback stay direct: no_proxy). Only here: a user's agents may need a
# real proxy setting.
DEAD_PROXY_ENV = {k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")} | {
    k: "127.0.0.1,localhost,::1" for k in ("no_proxy", "NO_PROXY")}


@contextlib.contextmanager
def local_cluster(specs: list[NodeSpec], base: Path, zygote: bool = False) -> Iterator[LocalCluster]:
    """Start the nodes (the first is the head), connect, start the controller and the agents;
    at exit force-stop the VMs left running in the nodes' homes and end every Ray process.
    Every Ray process listens on and dials loopback only."""
    from wirt.cluster import services

    services.loopback_only()
    with _env(**DEAD_PROXY_ENV), _local_cluster(specs, base, zygote) as c:
        yield c


@contextlib.contextmanager
def _local_cluster(specs: list[NodeSpec], base: Path, zygote: bool) -> Iterator[LocalCluster]:
    import ray
    from ray.cluster_utils import Cluster

    from wirt.cluster import services

    homes = {s.name: Path(base) / s.name for s in specs}
    cluster = None
    nodes: dict[str, Any] = {}
    try:
        head = specs[0]
        with _env(WIRT_HOME=str(homes[head.name]), WIRT_ZYGOTE="1" if zygote else "0", RAY_DEDUP_LOGS="0",
                  **head.env):
            cluster = Cluster(initialize_head=True, head_node_args={
                **_args(head), "include_dashboard": False,
                # a killed node is declared dead after about 1.5 s instead of 15
                "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
        nodes[head.name] = cluster.head_node
        for s in specs[1:]:
            nodes[s.name] = _add(cluster, s, homes[s.name], zygote)
        services.connect(cluster.address)
        services.start_controller(specs[0].name)
        for s in specs:
            services.start_agent(s.name)
        yield LocalCluster(cluster.address, cluster, homes, nodes, {s.name: s for s in specs}, zygote)
    finally:
        from wirt.vm.api import VM

        for home in homes.values():
            for vm in VM.list(home) if home.exists() else []:
                with contextlib.suppress(Exception):
                    if vm.status(query=False).running:
                        vm.stop(force=True)
            if zygote:
                from wirt.vm import zygote as zyg

                with contextlib.suppress(Exception):
                    zyg.stop(home)
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
