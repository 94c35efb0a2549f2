"""Admission control: may this VM start next to the ones already running?

Three budgets, each with the shortfall named when a start is refused:
- memory: guest RAM + per-process overhead of all running VMs plus this one must fit in
  (host memory - reserve) x memory_overcommit;
- CPUs: vCPUs of all running VMs plus this one must fit in host cores x cpu_overcommit;
- disk: every writable disk must be able to grow to its full virtual size within the free
  space of the host file system, unless thin provisioning is allowed (settings).
The arithmetic is pure (no host access) so it can be tested with a fake inventory.
"""

from __future__ import annotations

from dataclasses import dataclass

from wirt.errors import WirtError
from wirt.units import human_size
from wirt.vm.inventory import HostInventory
from wirt.vm.settings import Settings

__all__ = ["Demand", "admit", "AdmissionError"]


class AdmissionError(WirtError):
    """A start refused for lack of host resources."""


@dataclass(frozen=True)
class Demand:
    """What one VM needs from the host: guest RAM, vCPUs and disk bytes that may still be written."""

    name: str
    memory: int
    cpus: int
    disk_growth: int = 0


def admit(vm: Demand, running: list[Demand], host: HostInventory, settings: Settings) -> None:
    """Raise AdmissionError saying what is short, and by how much, if `vm` may not start."""
    problems = []
    mem_budget = int(max(0, host.memory_total - settings.memory_reserve) * settings.memory_overcommit)
    mem_used = sum(r.memory + settings.vm_overhead for r in running)
    mem_need = vm.memory + settings.vm_overhead
    if mem_used + mem_need > mem_budget:
        short = mem_used + mem_need - mem_budget
        problems.append(
            f"memory: needs {human_size(mem_need)} (RAM {human_size(vm.memory)} + overhead "
            f"{human_size(settings.vm_overhead)}) but only {human_size(max(0, mem_budget - mem_used))} "
            f"of {human_size(mem_budget)} is free ({len(running)} VMs running) -- short by {human_size(short)}; "
            "lower --memory, stop a VM or raise memory_overcommit in config.toml")
    cpu_budget = host.cores * settings.cpu_overcommit
    cpu_used = sum(r.cpus for r in running)
    if cpu_used + vm.cpus > cpu_budget:
        short = cpu_used + vm.cpus - cpu_budget
        problems.append(
            f"CPUs: needs {vm.cpus} vCPUs but {cpu_used} of {cpu_budget:g} are in use "
            f"({host.cores} cores x overcommit {settings.cpu_overcommit:g}) -- short by {short:g}; "
            "lower --cpus, stop a VM or raise cpu_overcommit in config.toml")
    if not settings.thin_provisioning:
        need = vm.disk_growth + sum(r.disk_growth for r in running)
        if need > host.disk_free:
            problems.append(
                f"disk: the disks may still grow by {human_size(need)} (this VM {human_size(vm.disk_growth)}) "
                f"but only {human_size(host.disk_free)} is free -- short by {human_size(need - host.disk_free)}; "
                "free some space, shrink the disks or set thin_provisioning = true in config.toml")
    if problems:
        raise AdmissionError(f"cannot start {vm.name!r}: " + "; ".join(problems))
