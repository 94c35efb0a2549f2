"""Name resolution that cannot leave the shared folder: openat2(2) with RESOLVE_BENEATH.

Every name the guest sends is one path component, looked up from a descriptor of the directory
it names with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS and O_NOFOLLOW: a
symbolic link is never followed on the host (the guest's kernel reads it and walks the target
itself, inside the mount), `..` cannot climb above the descriptor, and since no string path is
ever resolved twice, a rename on the host between two steps cannot redirect a later one.
Descriptors are O_PATH; a file is opened for I/O by re-opening its own descriptor through
/proc/self/fd, which reaches exactly that inode (regular files and directories only).
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = ["openat2", "check_name", "SafeRoot", "BENEATH"]

_SYS_OPENAT2 = 437  # the same number on every architecture (asm-generic and x86-64)
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x02, 0x04, 0x08
BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW = 0x1000, 0x100
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


class _OpenHow(ctypes.Structure):  # struct open_how (linux/openat2.h)
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, name: str, flags: int, mode: int = 0, resolve: int = BENEATH) -> int:
    """openat2(2): a new descriptor for `name` below `dirfd` (OSError on failure)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0, resolve)
    raw = os.fsencode(name)
    while True:
        fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(raw), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), name)


def check_name(name: str) -> str:
    """A single directory entry name, or OSError(EINVAL): no '/', NUL, '.', '..' or empty name."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or len(name.encode("utf-8", "surrogateescape")) > 255:
        raise OSError(errno.EINVAL, f"not a file name: {name!r}")
    return name


def fchownat_empty(fd: int, uid: int, gid: int) -> None:
    """Change the owner of what O_PATH `fd` is (a symbolic link itself included), not following it."""
    if _libc.fchownat(ctypes.c_int(fd), b"", ctypes.c_uint32(uid & 0xFFFF_FFFF), ctypes.c_uint32(gid & 0xFFFF_FFFF),
                      ctypes.c_int(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def utimensat(dirfd: int, name: bytes, atime: tuple[int, int], mtime: tuple[int, int], flags: int = 0) -> None:
    """utimensat(2) with (seconds, nanoseconds) pairs; nanoseconds UTIME_NOW or UTIME_OMIT as usual."""
    ts = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if _libc.utimensat(ctypes.c_int(dirfd), ctypes.c_char_p(name), ts, ctypes.c_int(flags)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class SafeRoot:
    """The shared folder: an O_PATH descriptor of it and of /proc/self/fd (opened before the VM
    process is confined), and the lookups below it."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.proc_fd = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:  # openat2 needs Linux 5.6; refuse at set-up, not at the guest's first lookup
            os.close(openat2(self.fd, ".", os.O_PATH))
        except OSError as exc:
            self.close()
            raise OSError(exc.errno, f"openat2 on {self.path}: {exc.strerror} (Linux 5.6 or newer is needed)") from None

    def lookup(self, dirfd: int, name: str) -> int:
        """An O_PATH descriptor of entry `name` of directory `dirfd` (a symlink is not followed)."""
        return openat2(dirfd, check_name(name), os.O_PATH | os.O_NOFOLLOW)

    def lookup_path(self, parts: tuple[str, ...]) -> int:
        """An O_PATH descriptor of `parts` below the root (each a checked name; () is the root)."""
        rel = "/".join(check_name(p) for p in parts) or "."
        return openat2(self.fd, rel, os.O_PATH | os.O_NOFOLLOW)

    def reopen(self, fd: int, flags: int) -> int:
        """A real descriptor of the regular file or directory O_PATH `fd` refers to (the caller
        checked its type: never a symlink, device or FIFO)."""
        return os.open(str(fd), flags | os.O_CLOEXEC, dir_fd=self.proc_fd)

    def proc_name(self, fd: int) -> bytes:
        """`fd`'s entry in /proc/self/fd, for *at calls relative to `proc_fd` that reach its inode."""
        return str(fd).encode()

    def close(self) -> None:
        for fd in (self.fd, self.proc_fd):
            try:
                os.close(fd)
            except OSError:
                pass
