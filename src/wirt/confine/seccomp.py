"""The VM process's seccomp filter: after set-up, only the system calls a running VM needs.

Installed by the VM process (wirt.vm.process) once the machine is built, its disks and network
backend are open and the control socket listens; it applies to every thread (TSYNC) and cannot be
removed. Any other system call kills the whole process (SECCOMP_RET_KILL_PROCESS: SIGSYS), and
the VM's monitor reports it as crashed with that reason. So a VM process taken over through a
bug cannot exec a program, fork a process, trace or mount, load modules or BPF, or open network
sockets; which files it may open is Landlock's part (wirt.confine.landlock).

`ALLOWED` is the list with the reason for each entry (docs/security.md prints it), in the manner
of Firecracker's jailer. It was taken from strace of VM processes booting Debian, running
commands through the agent, disk and network I/O, snapshots and restores, pause and stop.
Built with libseccomp (pyseccomp: ctypes bindings to the system's libseccomp2).
"""

from __future__ import annotations

import errno
import os
from typing import Any

__all__ = ["ALLOWED", "build", "install", "seccomp_mode"]

#: system call -> why a running VM process needs it
ALLOWED: dict[str, str] = {
    # guest I/O: disk images, console, control socket, network backend, pipes
    "read": "console, control socket, network frames, pipes",
    "write": "console log, control replies, network frames",
    "pread64": "disk image and qcow2 metadata reads",
    "pwrite64": "disk image writes",
    "preadv": "disk reads straight into guest memory",
    "pwritev": "disk writes from guest memory",
    "preadv2": "as preadv (newer C libraries)",
    "pwritev2": "as pwritev (newer C libraries)",
    "readv": "socket and pipe reads",
    "writev": "socket and pipe writes",
    "lseek": "Python file objects",
    "fsync": "flushes requested by the guest, snapshot files",
    "fdatasync": "qcow2 write barriers",
    "fallocate": "discard (punch hole) in raw images",
    "ftruncate": "growing qcow2 files, snapshot memory images",
    "sync_file_range": "write-back of large snapshot images",
    # files: snapshots, restores, layers (Landlock limits which)
    "openat": "snapshot and layer files, lazy Python imports (paths limited by Landlock)",
    "openat2": "host folders (virtio-9p): every name resolved with RESOLVE_BENEATH below the folder",
    "symlinkat": "host folders (virtio-9p): a symbolic link the guest makes",
    "fchownat": "host folders (virtio-9p): a chown the guest asks for",
    "utimensat": "host folders (virtio-9p): file times the guest sets",
    "open": "as openat (older callers)",
    "close": "every descriptor",
    "close_range": "Python's subprocess-free cleanup paths",
    "fstat": "file sizes",
    "newfstatat": "os.stat, Path.exists",
    "stat": "os.stat on older C libraries",
    "lstat": "os.lstat",
    "statx": "os.stat on newer C libraries",
    "statfs": "free-space checks",
    "fstatfs": "free-space checks",
    "access": "os.access",
    "faccessat": "os.access",
    "faccessat2": "os.access",
    "readlink": "os.path.realpath (path checks)",
    "readlinkat": "os.path.realpath (path checks)",
    "getdents64": "listing snapshot and layer folders",
    "getcwd": "relative paths",
    "mkdir": "snapshot folders",
    "mkdirat": "snapshot folders",
    "rename": "atomic file replacement",
    "renameat": "atomic file replacement",
    "renameat2": "atomic file replacement",
    "unlink": "garbage layers, temporary files",
    "unlinkat": "garbage layers, temporary files",
    "rmdir": "deleted snapshot folders",
    "link": "hard links of snapshot files",
    "linkat": "hard links of snapshot files",
    "chmod": "read-only frozen layers",
    "fchmod": "atomic files' permission bits",
    "fchmodat": "read-only frozen layers",
    "umask": "file creation",
    "fcntl": "descriptor flags (non-blocking, close-on-exec)",
    "ioctl": "terminal and tap device requests on open descriptors",
    "flock": "the VM lock file",
    "dup": "descriptor duplication", "dup2": "descriptor duplication", "dup3": "descriptor duplication",
    "pipe2": "wake-up pipes of event loops",
    "eventfd2": "wake-ups",
    # memory: guest RAM, snapshot images mapped copy-on-write, numpy, the Python heap
    "mmap": "guest RAM, memory images, the heap",
    "munmap": "the heap, snapshot mappings",
    "mremap": "the heap",
    "mprotect": "the heap, thread stacks",
    "madvise": "returning memory, copy-on-write hints",
    "brk": "the heap",
    "mincore": "page residency",
    "membarrier": "the C runtime",
    "mbind": "NUMA placement of guest RAM", "get_mempolicy": "NUMA placement", "set_mempolicy": "NUMA placement",
    # threads: device back-ends, control server, agent, timers
    "clone": "new threads only (CLONE_THREAD required: no new processes)",
    "futex": "locks and events between threads",
    "set_robust_list": "thread start", "get_robust_list": "thread start",
    "rseq": "thread start (glibc)",
    "set_tid_address": "thread start",
    "gettid": "thread ids", "getpid": "process id", "getppid": "parent id",
    "sched_yield": "lock spinning", "sched_getaffinity": "CPU count", "sched_setaffinity": "CPU pinning",
    "exit": "thread end", "exit_group": "process end",
    "tgkill": "signals between its own threads (Python); only to this process",
    "kill": "terminating its network helper (passt) at shutdown; only itself and the children it had",
    "rt_sigaction": "signal handlers", "rt_sigprocmask": "signal masks", "rt_sigreturn": "signal handlers",
    "sigaltstack": "signal stacks", "restart_syscall": "interrupted calls",
    # waiting and time
    "poll": "event loops", "ppoll": "event loops", "select": "event loops", "pselect6": "event loops",
    "epoll_create1": "event loops", "epoll_ctl": "event loops", "epoll_wait": "event loops",
    "epoll_pwait": "event loops", "epoll_pwait2": "event loops",
    "nanosleep": "sleeping", "clock_nanosleep": "sleeping",
    "clock_gettime": "the guest clock", "gettimeofday": "wall time", "time": "wall time",
    "clock_getres": "timer resolution",
    "timerfd_create": "timers", "timerfd_settime": "timers", "timerfd_gettime": "timers",
    "getrandom": "entropy for the guest's virtio-rng",
    # the control socket and network back-ends (already connected sockets; new ones AF_UNIX only)
    "socket": "AF_UNIX only: reconnecting to a hub socket",
    "socketpair": "AF_UNIX pairs",
    "connect": "reconnecting to a hub socket",
    "accept": "control socket connections", "accept4": "control socket connections",
    "sendto": "network frames, control replies", "recvfrom": "network frames, control requests",
    "sendmsg": "network frames", "recvmsg": "network frames, peer credentials",
    "sendmmsg": "network frames", "recvmmsg": "network frames",
    "bind": "the control socket (AF_UNIX, in the VM's run/ folder), set up once confined",
    "listen": "the control socket",
    "shutdown": "closing connections", "getsockopt": "peer credentials (SO_PEERCRED)",
    "setsockopt": "socket buffers", "getsockname": "socket info", "getpeername": "socket info",
    # process information
    "getuid": "ids", "geteuid": "ids", "getgid": "ids", "getegid": "ids", "getgroups": "ids",
    "getresuid": "ids", "getresgid": "ids",
    "getrusage": "CPU time in stats", "getrlimit": "limits", "prlimit64": "limits (read)",
    "sysinfo": "host memory in stats", "uname": "host information",
    "prctl": "thread names", "arch_prctl": "thread-local storage (x86-64)",
    "getpriority": "scheduling", "setpriority": "scheduling",
    "wait4": "reaping the network helper (passt) at shutdown",
    "waitid": "reaping the network helper (passt) at shutdown",
}

_CLONE_THREAD = 0x00010000
_AF_UNIX = 1


def _children() -> list[int]:
    """This process's child processes (set-up started them: passt)."""
    import glob

    out = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            out += [int(p) for p in open(path).read().split()]
        except (OSError, ValueError):
            pass
    return out


def build() -> tuple[Any, int]:
    """The filter, not yet loaded, and how many calls it allows. Build it before Landlock is on:
    finding libseccomp reads the loader cache and may run ldconfig.

    Raises OSError or RuntimeError when libseccomp is missing (the caller logs a notice)."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.KILL_PROCESS)
    f.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread, including the ones already running
    arch = sc.system_arch()
    n = 0
    for name in ALLOWED:
        if sc.resolve_syscall(arch, name) < 0:
            continue  # not a system call on this architecture (e.g. "open" on arm64)
        if name == "clone":  # threads share the address space; a new process would not
            f.add_rule(sc.ALLOW, name, sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, _CLONE_THREAD))
        elif name == "socket":
            f.add_rule(sc.ALLOW, name, sc.Arg(0, sc.EQ, _AF_UNIX))
        elif name == "tgkill":
            f.add_rule(sc.ALLOW, name, sc.Arg(0, sc.EQ, os.getpid()))
        elif name == "kill":
            for pid in {os.getpid(), *_children()}:  # one rule per allowed target
                f.add_rule(sc.ALLOW, name, sc.Arg(0, sc.EQ, pid))
        else:
            f.add_rule(sc.ALLOW, name)
        n += 1
    # clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes glibc use clone
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    return f, n


def install() -> int:
    """Build and load the filter into this process (all threads); returns how many calls it allows."""
    f, n = build()
    f.load()
    return n


def seccomp_mode(pid: int | str = "self") -> int:
    """The Seccomp field of /proc/PID/status: 0 off, 1 strict, 2 filter."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return 0
