"""Confining a VM process after set-up (docs/security.md): a Landlock ruleset limiting the file
system to the VM's folder, wirt's image cache and base images (read only), the files named for it and what Python needs to
import, then a seccomp filter allowing only the system calls a running VM needs.

Called by the VM process (wirt.vm.process) on the thread that runs the CPU, once the machine is
built, the disks and network back-end are open and the control socket listens. Whatever the
kernel lacks is reported as a notice in the VM's log and `wirt status`, never silently skipped.
`WIRT_CONFINE=0` turns confinement off (with a notice), for debugging.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass, field

from wirt.paths import cache_dir
from wirt.vm.access import bases_dir, grants_file, vm_policy
from wirt.vm.schema import VMConfig
from wirt.vm.store import VMPaths

__all__ = ["Confinement", "confine_vm", "TEST_HOOKS_ENV"]

#: tests set this to 1 to get the control command "debug-forbidden-syscall" (never in production)
TEST_HOOKS_ENV = "WIRT_TEST_HOOKS"


@dataclass
class Confinement:
    """What was applied: seccomp (allowed call count, 0 if not), the Landlock ABI (0 if not), notices."""

    seccomp: int = 0
    landlock: int = 0
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"seccomp filter ({self.seccomp} system calls)" if self.seccomp else "no seccomp filter",
                 f"Landlock ABI {self.landlock}" if self.landlock else "no Landlock"]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {"seccomp": self.seccomp, "landlock": self.landlock, "notices": list(self.notices)}


def _readable() -> list[str]:
    """Folders Python reads at run time: its own install, the module search path, system libraries."""
    out = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(),
           "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/localtime",
           "/etc/ld.so.cache", "/dev/urandom", "/dev/null", f"/proc/{os.getpid()}", "/sys/devices/system/cpu"}
    out.update(p for p in sys.path if p and os.path.isabs(p))
    return sorted(p for p in out if os.path.exists(p))


def confine_vm(paths: VMPaths, cfg: VMConfig) -> Confinement:
    """Confine this VM process (see the module docstring); returns what was applied."""
    from wirt.confine import landlock, seccomp

    c = Confinement()
    if os.environ.get("WIRT_CONFINE") == "0":
        c.notices.append("confinement is off (WIRT_CONFINE=0): the VM process is not sandboxed")
        return c
    policy = vm_policy(paths, cfg.uuid)
    try:
        filt, count = seccomp.build()
    except (OSError, RuntimeError, ImportError, AttributeError) as exc:
        filt, count = None, 0
        c.notices.append(f"seccomp unavailable ({exc}): the VM process's system calls are not filtered")
    try:
        home = paths.root.parent.parent
        # a writable disk the user named outside the folder stays writable (its grant says so)
        writable = [str(paths.disk(d.path)) for d in cfg.disks
                    if not d.read_only and os.path.realpath(paths.disk(d.path)) in policy.files]
        shared_rw = [m.host for m in cfg.mounts if not m.read_only and policy.allows(m.host, write=True)]
        shared_ro = [m.host for m in cfg.mounts if m.read_only and policy.allows(m.host)]
        c.landlock = landlock.restrict([str(paths.root), *writable, *shared_rw],
                                       [str(cache_dir().expanduser()), str(bases_dir(home)),
                                        *policy.files, *shared_ro,
                                        str(grants_file(home, cfg.uuid)), *_readable()])
    except OSError as exc:
        c.notices.append(f"Landlock unavailable ({exc.strerror or exc}): file access is limited by wirt's "
                         "own path checks only")
    if filt is not None:
        try:
            filt.load()
            c.seccomp = count
        except OSError as exc:
            c.notices.append(f"seccomp filter refused by the kernel ({exc}): system calls are not filtered")
    return c
