"""What the host has: cores, memory, free disk space (the input of admission control)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HostInventory", "host_inventory"]


@dataclass(frozen=True)
class HostInventory:
    """Host resources. Memory figures come from /proc/meminfo (proc(5)); cores are the CPUs this
    process may run on (sched_getaffinity), which respects cpusets and container limits."""

    cores: int
    memory_total: int
    memory_available: int
    disk_free: int


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    except OSError:
        pass
    return out


def _cgroup_memory_limit() -> int | None:
    """A memory limit on our own cgroup (v2 memory.max or v1 memory.limit_in_bytes), if any:
    inside a container the host's /proc/meminfo overstates what we may use."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            f = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.max"
        elif "memory" in ctrls.split(","):
            f = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes"
        else:
            continue
        try:
            text = f.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def host_inventory(data_dir: Path | None = None) -> HostInventory:
    """Measure the host now. `data_dir` is where disks grow (free space is measured there)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    mi = _meminfo()
    total = mi.get("MemTotal", 0)
    avail = mi.get("MemAvailable", mi.get("MemFree", 0))
    limit = _cgroup_memory_limit()
    if limit is not None and limit < total:
        total = limit
        avail = min(avail, limit)
    d = Path(data_dir) if data_dir else Path.home()
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        free = shutil.disk_usage(d).free
    except OSError:
        free = 0
    return HostInventory(cores=cores, memory_total=total, memory_available=avail, disk_free=free)
