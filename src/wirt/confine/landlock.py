"""Landlock (Linux 5.13+): the VM process may open files only under the folders it was given.

Rules are set on folders (and everything below them): read-write for the VM's own folder,
read-only for wirt's image cache, the files named explicitly, and what Python itself needs to
import modules lazily (its prefix, sys.path, the C library). Once `restrict` ran, the kernel
refuses any other path to this process and its threads, whatever a bug in it tries. The kernel
interface is three system calls (landlock_create_ruleset, landlock_add_rule,
landlock_restrict_self), called through ctypes: there is no BPF to write.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["abi_version", "restrict"]

# <linux/landlock.h>; system call numbers are the same on every architecture (asm-generic)
_SYS_CREATE, _SYS_ADD, _SYS_RESTRICT = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# access rights by ABI version
_FS_V1 = (1 << 13) - 1          # execute, write, read file, read dir, remove dir/file, make char..sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14
_READ = (1 << 0) | (1 << 2) | (1 << 3)  # EXECUTE (mapping libraries), READ_FILE, READ_DIR
_WRITE_FILE = 1 << 1
_FILE_RIGHTS = (1 << 0) | _WRITE_FILE | (1 << 2) | _TRUNCATE  # the rights a rule on a file may carry


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (or it is disabled)."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    v = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(v))


def restrict(read_write: list[str], read_only: list[str]) -> int:
    """Limit this process to the given folders (or files); returns the ABI version used.

    Paths that do not exist are skipped. Raises OSError when the kernel refuses."""
    abi = abi_version()
    if abi < 1:
        raise OSError(0, "this kernel has no Landlock")
    handled = _FS_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    attr = _RulesetAttr(handled)
    fd = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset: " + os.strerror(ctypes.get_errno()))
    try:
        for paths, access in ((read_write, handled), (read_only, _READ)):
            for p in paths:
                try:
                    pfd = os.open(p, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    rights = access if os.path.isdir(p) else access & _FILE_RIGHTS & handled
                    rule = _PathBeneath(rights, pfd)
                    if libc.syscall(_SYS_ADD, ctypes.c_int(fd), ctypes.c_int(_RULE_PATH_BENEATH),
                                    ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"landlock_add_rule {p}: {os.strerror(err)}")
                finally:
                    os.close(pfd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS)")
        if libc.syscall(_SYS_RESTRICT, ctypes.c_int(fd), ctypes.c_uint32(0)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, "landlock_restrict_self: " + os.strerror(err))
    finally:
        os.close(fd)
    return abi
