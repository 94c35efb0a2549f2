"""Where does a VM go? A pure function of the request and the nodes (no Ray, no host access),
so the controller, the dry-run benchmark and the tests share one decision.

Filters first, as Nova's scheduler and Kubernetes' do: the node is alive, has the labels the
request selects (`node_labels`), hosts a VM with each `affinity` label and none with an
`anti_affinity` label, and has the vCPUs and memory free. Then a policy orders what is left:
"spread" takes the emptiest node after placement (the larger of its vCPU and memory shares),
"pack" the fullest, so whole nodes stay free. Ties go to the node name, so the result is
repeatable. A refusal names, per node, what is short and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wirt.errors import WirtError
from wirt.units import human_size

__all__ = ["NodeView", "Request", "PlacementError", "place", "parse_labels", "POLICIES"]

POLICIES = ("spread", "pack")


class PlacementError(WirtError):
    """No node can take the VM; the message says why for each node."""


@dataclass
class NodeView:
    """What placement knows of one node: its budgets (wirt_vcpu, wirt_mem_mib), what wirt VMs
    placed there already take, their labels, the node's labels and its per-VM overhead."""

    name: str
    vcpus: float
    memory_mib: float
    used_vcpus: float = 0.0
    used_memory_mib: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    vm_labels: list[dict[str, str]] = field(default_factory=list)
    overhead: int = 256 << 20
    alive: bool = True

    def demand_mib(self, memory: int) -> float:
        return float(-(-(memory + self.overhead) // (1 << 20)))

    def take(self, req: Request) -> None:
        """Book `req` here (the dry run and a batch of placements keep the view current)."""
        self.used_vcpus += req.cpus
        self.used_memory_mib += self.demand_mib(req.memory)
        self.vm_labels.append(dict(req.labels))


@dataclass
class Request:
    """One VM to place."""

    name: str
    cpus: int
    memory: int
    labels: dict[str, str] = field(default_factory=dict)
    node_labels: dict[str, str] = field(default_factory=dict)
    affinity: dict[str, str] = field(default_factory=dict)
    anti_affinity: dict[str, str] = field(default_factory=dict)
    policy: str = "spread"
    node: str | None = None


def parse_labels(items: list[str] | None, what: str = "--label") -> dict[str, str]:
    """['app=web', 'tier=1'] -> {'app': 'web', 'tier': '1'}; one-line errors for bad items."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key or not all(c.isalnum() or c in "._-/" for c in key + value):
            raise WirtError(f"{what} {item!r}: write KEY=VALUE with letters, digits, '.', '_', '-' or '/' "
                            "(e.g. app=web)")
        out[key] = value
    return out


def _has(labels: list[dict[str, str]], key: str, value: str) -> bool:
    return any(lb.get(key) == value for lb in labels)


def _short(node: NodeView, req: Request) -> list[str]:
    """Why `req` does not fit on `node`, empty if it does."""
    if not node.alive:
        return ["the node is down"]
    out = []
    for k, v in req.node_labels.items():
        if node.labels.get(k) != v:
            out.append(f"node label {k}={v} missing" + (f" (it has {k}={node.labels[k]})" if k in node.labels else ""))
    for k, v in req.affinity.items():
        if not _has(node.vm_labels, k, v):
            out.append(f"affinity: no VM labelled {k}={v} here")
    for k, v in req.anti_affinity.items():
        if _has(node.vm_labels, k, v):
            out.append(f"anti-affinity: a VM labelled {k}={v} is here")
    free_cpu = node.vcpus - node.used_vcpus
    if req.cpus > free_cpu + 1e-9:
        out.append(f"vCPUs short by {req.cpus - free_cpu:g} (needs {req.cpus}, {max(0.0, free_cpu):g} "
                   f"of {node.vcpus:g} free)")
    need = node.demand_mib(req.memory)
    free_mem = node.memory_mib - node.used_memory_mib
    if need > free_mem + 1e-9:
        out.append(f"memory short by {human_size(int((need - free_mem) * (1 << 20)))} (needs "
                   f"{human_size(int(need) << 20)} with overhead, {human_size(max(0, int(free_mem)) << 20)} of "
                   f"{human_size(int(node.memory_mib) << 20)} free)")
    return out


def _load(node: NodeView, req: Request) -> float:
    """The node's fuller share (vCPUs or memory) once `req` is on it."""
    cpu = (node.used_vcpus + req.cpus) / node.vcpus if node.vcpus else 1.0
    mem = (node.used_memory_mib + node.demand_mib(req.memory)) / node.memory_mib if node.memory_mib else 1.0
    return max(cpu, mem)


def place(req: Request, nodes: list[NodeView]) -> NodeView:
    """The node `req` goes to, by its policy; PlacementError naming each node's shortfall if none."""
    if req.policy not in POLICIES:
        raise WirtError(f"--policy {req.policy}: unknown; use spread or pack")
    if not nodes:
        raise PlacementError(f"cannot place {req.name!r}: the cluster has no wirt nodes; "
                             "start one with `wirt cluster up`")
    pool = nodes
    if req.node is not None:
        pool = [n for n in nodes if n.name == req.node]
        if not pool:
            raise PlacementError(f"cannot place {req.name!r} on {req.node!r}: no such node; nodes: "
                                 + ", ".join(sorted(n.name for n in nodes)))
    fits, reasons = [], []
    for n in pool:
        why = _short(n, req)
        if why:
            reasons.append(f"{n.name}: " + ", ".join(why))
        else:
            fits.append(n)
    if not fits:
        raise PlacementError(f"cannot place {req.name!r} ({req.cpus} vCPU, {human_size(req.memory)}): "
                             + "; ".join(sorted(reasons)))
    if req.policy == "spread":
        return min(fits, key=lambda n: (_load(n, req), n.name))
    return min(fits, key=lambda n: (-_load(n, req), n.name))
