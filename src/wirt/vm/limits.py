"""Resource enforcement inside the VM process: cgroup v2 when we may, else rlimits; CPU pinning.

cgroup v2 (Documentation/admin-guide/cgroup-v2.rst): if the process's own cgroup is on a
unified hierarchy and writable (delegated to us), the cgroup `<current>/wirt/NAME` is created, the process moves
in, and
    cpu.max    = "<cpus x 100000> 100000"   (at most `cpus` host CPUs' worth of time)
    memory.max = guest RAM + overhead       (the kernel OOM-kills the VM, not the host)
    io.weight  = "default <w>"              (proportional disk bandwidth)
are written. The "no internal processes" rule means controllers can only be enabled in
subtree_control of a cgroup without member processes; when that fails we fall back.

Fallback: RLIMIT_AS = guest RAM + headroom (setrlimit(2)), so a runaway process fails its
own allocations instead of exhausting the host. There is no rlimit for CPU share.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LimitPlan", "Applied", "apply_limits", "find_cgroup_v2", "parse_affinity"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD = 100_000  # microseconds, the kernel's default cpu.max period


@dataclass(frozen=True)
class LimitPlan:
    name: str
    cpus: int
    memory: int            # guest RAM bytes
    overhead: int          # host memory for the process itself
    rlimit_headroom: int
    io_weight: int = 100
    affinity: tuple[int, ...] = ()


@dataclass
class Applied:
    """What was enforced, for status output and logs."""

    method: str = "none"            # "cgroup2", "rlimit" or "none"
    cgroup: str = ""
    details: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # what could not be enforced, for the log and status


def parse_affinity(text: str) -> list[int]:
    """'0,1' or '0-3,6' -> [0, 1] / [0, 1, 2, 3, 6] (the cpuset list format of cpuset(7))."""
    from wirt.errors import WirtError

    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise WirtError(f"--cpu-affinity {text!r}: write host CPU numbers such as 0,1 or 0-3")
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a or b >= 4096:
            raise WirtError(f"--cpu-affinity {text!r}: bad range {part!r}")
        out.update(range(a, b + 1))
    return sorted(out)


def find_cgroup_v2() -> Path | None:
    """The directory of this process's cgroup on a writable unified hierarchy, or None."""
    if not (CGROUP_ROOT / "cgroup.controllers").is_file():
        return None  # not cgroup v2 at the mount point (v1 or hybrid)
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                d = CGROUP_ROOT / line[3:].lstrip("/")
                return d if os.access(d, os.W_OK) else None
    except OSError:
        pass
    return None


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _apply_cgroup(plan: LimitPlan, current: Path, applied: Applied) -> bool:
    """Create current/wirt/NAME, enable controllers, write the limits, move in. False on failure."""
    try:
        base = current / "wirt"
        base.mkdir(exist_ok=True)
        avail = set((current / "cgroup.controllers").read_text().split())
        want = [c for c in ("cpu", "memory", "io") if c in avail]
        for parent in (current, base):
            with contextlib.suppress(OSError):
                _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in want))
        mine = base / plan.name
        mine.mkdir(exist_ok=True)
        enabled = set((mine / "cgroup.controllers").read_text().split())
        if "cpu" in enabled:
            _write(mine / "cpu.max", f"{plan.cpus * CPU_PERIOD} {CPU_PERIOD}")
            applied.details.append(f"cpu.max {plan.cpus} CPUs")
        if "memory" in enabled:
            _write(mine / "memory.max", str(plan.memory + plan.overhead))
            applied.details.append(f"memory.max {plan.memory + plan.overhead}")
        if "io" in enabled:
            with contextlib.suppress(OSError):
                _write(mine / "io.weight", f"default {plan.io_weight}")
                applied.details.append(f"io.weight {plan.io_weight}")
        if not applied.details:
            return False
        _write(mine / "cgroup.procs", str(os.getpid()))
        applied.method, applied.cgroup = "cgroup2", str(mine)
        return True
    except OSError as exc:
        applied.details.append(f"cgroup v2 not usable ({exc.strerror or exc})")
        return False


def apply_limits(plan: LimitPlan, use_cgroup: bool = True) -> Applied:
    """Enforce `plan` on the calling process; never raises for a missing mechanism (it falls back)."""
    applied = Applied()
    current = find_cgroup_v2() if use_cgroup else None
    if current is None or not _apply_cgroup(plan, current, applied):
        why = ("no writable cgroup v2 hierarchy" if current is None
               else next((d for d in applied.details if d.startswith("cgroup v2")), "cgroup v2 not usable"))
        limit = plan.memory + plan.rlimit_headroom
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            applied.method = "rlimit"
            applied.details.append(f"RLIMIT_AS {limit}")
            applied.notices.append(f"cgroup v2 unavailable ({why}): memory is limited by RLIMIT_AS only "
                                   "(address space, not resident memory); no CPU share or I/O weight")
        except (ValueError, OSError) as exc:
            applied.details.append(f"setrlimit failed: {exc}")
            applied.notices.append(f"no resource limits ({why}; setrlimit failed: {exc}): the VM process "
                                   "may use as much host memory as it can get")
    if plan.affinity:
        try:
            os.sched_setaffinity(0, plan.affinity)
            applied.details.append("affinity " + ",".join(map(str, plan.affinity)))
        except OSError as exc:
            applied.details.append(f"affinity {list(plan.affinity)} refused: {exc.strerror}")
    return applied
