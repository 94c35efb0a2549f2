"""A node's capacity and a VM's demand as Ray custom resources.

Each node advertises what its own admission rules allow (wirt.vm.admission): `wirt_vcpu` =
cores x cpu_overcommit, `wirt_mem_mib` = (memory - reserve) x memory_overcommit, in MiB, and
`wirt_node_NAME` = 1 to name it. A placed VM holds a Ray placement group of one bundle
{wirt_vcpu: cpus, wirt_mem_mib: RAM + per-VM overhead, wirt_node_NAME: a sliver} from create
to rm, so Ray's own accounting refuses a double booking even when two controllers race.
"""

from __future__ import annotations

import re

from wirt.errors import WirtError
from wirt.vm.inventory import HostInventory
from wirt.vm.settings import Settings

__all__ = ["VCPU", "MEM_MIB", "NODE_PREFIX", "PIN", "node_resources", "node_name_of", "demand_bundle",
           "mib", "check_node_name"]

VCPU = "wirt_vcpu"
MEM_MIB = "wirt_mem_mib"
NODE_PREFIX = "wirt_node_"
PIN = 0.001  # the sliver of wirt_node_NAME a bundle or an actor asks for, to land on that node
_NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def mib(n: int) -> int:
    """Bytes to whole MiB, rounded up (a demand never shrinks by rounding)."""
    return -(-n // (1 << 20))


def check_node_name(name: str) -> str:
    """A node name becomes part of a Ray resource and actor name: letters, digits, '_' and '-'."""
    if not isinstance(name, str) or not _NODE_RE.fullmatch(name):
        raise WirtError(f"node name {name!r} is not allowed; use letters, digits, '_' and '-' "
                        "(at most 63), e.g. --name host-1")
    return name


def node_resources(name: str, host: HostInventory, settings: Settings) -> dict[str, float]:
    """The custom resources a node started by `wirt cluster up` advertises (its admission budgets)."""
    mem = int(max(0, host.memory_total - settings.memory_reserve) * settings.memory_overcommit)
    return {VCPU: float(host.cores * settings.cpu_overcommit), MEM_MIB: float(mem >> 20),
            NODE_PREFIX + check_node_name(name): 1.0}


def node_name_of(resources: dict[str, float]) -> str | None:
    """The wirt node name in a Ray node's resource table, or None for a node without an agent."""
    for key in resources:
        if key.startswith(NODE_PREFIX) and "_group_" not in key:
            return key[len(NODE_PREFIX):]
    return None


def demand_bundle(node: str, cpus: int, memory: int, overhead: int) -> dict[str, float]:
    """The placement-group bundle of one VM pinned to `node`."""
    return {VCPU: float(cpus), MEM_MIB: float(mib(memory + overhead)), NODE_PREFIX + node: PIN}
