"""The 9P2000.L server: a fid table of O_PATH descriptors below one host folder and the requests
Linux's v9fs client sends (net/9p/client.c, fs/9p/vfs_*_dotl.c).

Every reply is built synchronously by `handle`, on the thread that notified the queue. Errors are
Rlerror with the host's errno. A read-only share answers every modifying request with EROFS and
opens files O_RDONLY. Owners are host ids; a chown the host refuses (wirt not running as root) is
ignored, like QEMU's security_model=none. Device nodes cannot be created (mknod: EPERM) and
existing FIFOs, sockets and devices cannot be opened (EPERM): the server never blocks on one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from wirt.devices.virtio.p9 import protocol as P
from wirt.devices.virtio.p9.protocol import ProtocolError, Reader, Writer, lerror, message, qid
from wirt.devices.virtio.p9.safefs import AT_EMPTY_PATH, UTIME_NOW, UTIME_OMIT, SafeRoot, check_name, \
    fchownat_empty, utimensat
from wirt.iovec import IOV_MAX, take, total_len
from wirt.iovec import scatter

__all__ = ["P9Server", "MAX_MSIZE"]

log = logging.getLogger(__name__)

#: Largest message; Linux's virtio transport caps msize at PAGE_SIZE * (VIRTQUEUE_NUM - 3) = 512000.
MAX_MSIZE = 1 << 20
MAX_FIDS = 1 << 16
READ_HDR = 11    # size[4] type[1] tag[2] count[4] before a read's data
WRITE_HDR = 23   # size[4] type[1] tag[2] fid[4] offset[8] count[4] before a write's data
V9FS_MAGIC = 0x01021997
# Tlopen/Tlcreate flags (P9_DOTL_*, the generic Linux O_* values)
DOTL_ACCMODE, DOTL_CREATE, DOTL_EXCL, DOTL_TRUNC, DOTL_APPEND = 0o3, 0o100, 0o200, 0o1000, 0o2000
DOTL_DSYNC, DOTL_DIRECTORY, DOTL_SYNC = 0o10000, 0o200000, 0o4010000
# Tsetattr valid bits (P9_ATTR_*)
ATTR_MODE, ATTR_UID, ATTR_GID, ATTR_SIZE, ATTR_ATIME, ATTR_MTIME = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
ATTR_ATIME_SET, ATTR_MTIME_SET = 0x80, 0x100
GETATTR_BASIC = 0x7FF
AT_REMOVEDIR = 0x200
LOCK_SUCCESS, LOCK_BLOCKED, LOCK_ERROR = 0, 1, 2
LOCK_RDLCK, LOCK_WRLCK, LOCK_UNLCK = 0, 1, 2
_MODIFYING = {P.TLCREATE, P.TSYMLINK, P.TMKNOD, P.TRENAME, P.TSETATTR, P.TXATTRCREATE, P.TLINK, P.TMKDIR,
              P.TRENAMEAT, P.TUNLINKAT, P.TWRITE}


@dataclass
class Fid:
    """One guest fid: an O_PATH descriptor, its path below the root (for `..`), and once opened a real one."""

    fd: int
    parts: tuple[str, ...]
    mode: int
    open_fd: int = -1
    open_flags: int = 0
    dirents: list[tuple[bytes, int, str]] | None = field(default=None, repr=False)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def _qid(st: os.stat_result) -> bytes:
    kind = P.QTDIR if stat.S_ISDIR(st.st_mode) else P.QTSYMLINK if stat.S_ISLNK(st.st_mode) else P.QTFILE
    # the path must be unique within the share: fold the device in (mount points below the folder)
    return qid(kind, 0, st.st_ino ^ (st.st_dev << 48))


def _dtype(mode: int) -> int:
    """The dirent d_type of a file mode (readdir replies carry it)."""
    return {stat.S_IFDIR: 4, stat.S_IFREG: 8, stat.S_IFLNK: 10, stat.S_IFIFO: 1, stat.S_IFCHR: 2,
            stat.S_IFBLK: 6, stat.S_IFSOCK: 12}.get(stat.S_IFMT(mode), 0)


class P9Server:
    """Serves one host folder (`root`) to one guest; `read_only` refuses every change (EROFS)."""

    def __init__(self, root: str, read_only: bool = False) -> None:
        self.root = SafeRoot(root)
        self.read_only = read_only
        self.msize = MAX_MSIZE
        self.fids: dict[int, Fid] = {}

    # ---- fid table ---------------------------------------------------------------------------------
    def _fid(self, n: int) -> Fid:
        f = self.fids.get(n)
        if f is None:
            raise OSError(errno.EBADF, f"unknown fid {n}")
        return f

    def _new_fid(self, n: int, fd: int, parts: tuple[str, ...]) -> Fid:
        try:
            if n in self.fids or n == P.NOFID:
                raise OSError(errno.EBADF, f"fid {n} is in use")
            if len(self.fids) >= MAX_FIDS:
                raise OSError(errno.EMFILE, "too many fids")
            f = Fid(fd, parts, os.stat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
        self.fids[n] = f
        return f

    def _clunk(self, n: int) -> None:
        f = self.fids.pop(n, None)
        if f is not None:
            for fd in (f.open_fd, f.fd):
                if fd >= 0:
                    os.close(fd)

    def reset(self) -> None:
        """Forget every fid (device reset or Tversion)."""
        for n in list(self.fids):
            self._clunk(n)

    def close(self) -> None:
        self.reset()
        self.root.close()

    # ---- snapshots: fids are saved as paths below the root and walked again on restore -------------
    def state(self) -> dict[str, Any]:
        fids = [[n, list(f.parts), f.open_flags if f.open_fd >= 0 else -1] for n, f in self.fids.items()]
        # one JSON string: the snapshot checker matches lists entry by entry against a fresh machine's
        return {"msize": self.msize, "fids": json.dumps(fids, separators=(",", ":"))}

    def load_state(self, d: dict[str, Any]) -> None:
        """Re-establish the guest's fids after a restore or fork. The saved data is untrusted: each
        path is walked again below the root like a guest walk; a file since removed or renamed
        leaves its fid unknown (the guest then gets EBADF for it), never a file elsewhere."""
        self.reset()
        msize = d.get("msize", MAX_MSIZE)
        self.msize = max(4096, min(msize, MAX_MSIZE)) if isinstance(msize, int) else MAX_MSIZE
        keep = os.O_ACCMODE | os.O_APPEND | os.O_DSYNC | os.O_SYNC | os.O_DIRECTORY
        try:
            saved = json.loads(d.get("fids", "[]")) if isinstance(d.get("fids"), str) else []
        except (ValueError, RecursionError):
            saved = []
        for item in saved[:MAX_FIDS] if isinstance(saved, list) else []:
            try:
                n, parts, flags = item
                if not (isinstance(n, int) and isinstance(flags, int) and isinstance(parts, list)
                        and all(isinstance(p, str) for p in parts)):
                    continue
                f = self._new_fid(n, self.root.lookup_path(tuple(parts)), tuple(parts))
                if flags >= 0 and (stat.S_ISREG(f.mode) or stat.S_ISDIR(f.mode)):
                    flags &= keep
                    if self.read_only:
                        flags &= ~(os.O_ACCMODE | os.O_APPEND)
                    if f.is_dir:
                        flags = os.O_RDONLY | os.O_DIRECTORY
                    f.open_fd, f.open_flags = self.root.reopen(f.fd, flags), flags
            except (OSError, ValueError, TypeError):
                continue

    # ---- one request ---------------------------------------------------------------------------------
    def handle(self, readable: list[memoryview], writable: list[memoryview]) -> int:
        """Serve the request in `readable`, write the reply into `writable`; returns the reply's length."""
        head = b"".join(take(readable, P.HEADER.size)[0])
        if len(head) < P.HEADER.size:
            raise ProtocolError("request shorter than a 9P header")
        size, mtype, tag = P.HEADER.unpack(head)
        if size < P.HEADER.size or size > total_len(readable):
            return scatter(writable, lerror(tag, errno.EPROTO))
        try:
            if self.read_only and mtype in _MODIFYING:
                raise OSError(errno.EROFS, "read-only share")
            if mtype == P.TREAD:
                return self._read(Reader(b"".join(take(readable, size)[0]), P.HEADER.size), tag, writable)
            if mtype == P.TWRITE:
                return self._write(readable, size, tag, writable)
            handler = _HANDLERS.get(mtype)
            if handler is None:
                raise OSError(errno.EOPNOTSUPP, f"message type {mtype}")
            body = handler(self, Reader(b"".join(take(readable, size)[0]), P.HEADER.size))
            return scatter(writable, message(mtype + 1, tag, body))
        except OSError as exc:
            return scatter(writable, lerror(tag, exc.errno or errno.EIO))
        except (ProtocolError, UnicodeError, ValueError, OverflowError) as exc:
            log.debug("9p: bad %s: %s", P.NAMES.get(mtype, mtype), exc)
            return scatter(writable, lerror(tag, errno.EPROTO))

    # ---- session -----------------------------------------------------------------------------------
    def t_version(self, r: Reader) -> bytes:
        msize, version = r.u32(), r.str()
        self.reset()
        self.msize = max(4096, min(msize, MAX_MSIZE))
        return Writer().u32(self.msize).str(P.VERSION if version == P.VERSION else "unknown").body()

    def t_auth(self, r: Reader) -> bytes:
        raise OSError(errno.EOPNOTSUPP, "no authentication")

    def t_attach(self, r: Reader) -> bytes:
        fid, _afid, _uname, _aname, _n_uname = r.u32(), r.u32(), r.str(), r.str(), r.u32()
        self._new_fid(fid, os.dup(self.root.fd), ())
        return _qid(os.stat(self.root.fd))

    def t_flush(self, r: Reader) -> bytes:
        r.u16()  # requests are answered before the next is read: nothing is ever in flight
        return b""

    def t_clunk(self, r: Reader) -> bytes:
        n = r.u32()
        self._fid(n)
        self._clunk(n)
        return b""

    def t_remove(self, r: Reader) -> bytes:
        # Linux uses unlinkat; Tremove (remove by fid) clunks the fid either way (9P rules).
        self._clunk(r.u32())
        raise OSError(errno.EOPNOTSUPP, "use unlinkat")

    # ---- walking ---------------------------------------------------------------------------------------
    def t_walk(self, r: Reader) -> bytes:
        fid, newfid, n = r.u32(), r.u32(), r.u16()
        names = [r.str() for _ in range(n)]
        if n > 16:
            raise OSError(errno.EINVAL, "more than 16 names in one walk")
        src = self._fid(fid)
        if newfid != fid and newfid in self.fids:
            raise OSError(errno.EBADF, f"fid {newfid} is in use")
        fd, parts = os.dup(src.fd), src.parts
        qids: list[bytes] = []
        try:
            for name in names:
                if name == "..":  # from the root it stays at the root; else re-resolved from the root
                    nparts = parts[:-1]
                    nfd = self.root.lookup_path(nparts)
                else:
                    nparts = (*parts, check_name(name))
                    nfd = self.root.lookup(fd, name)
                os.close(fd)
                fd, parts = nfd, nparts
                qids.append(_qid(os.stat(fd)))
        except OSError:
            os.close(fd)
            if not qids:
                raise
            return Writer().u16(len(qids)).raw(b"".join(qids)).body()  # partial walk: newfid unused
        if newfid == fid:
            self._clunk(fid)
        self._new_fid(newfid, fd, parts)
        return Writer().u16(len(qids)).raw(b"".join(qids)).body()

    # ---- opening, reading, writing ------------------------------------------------------------------
    def _open_flags(self, flags: int, is_dir: bool) -> int:
        acc = flags & DOTL_ACCMODE
        if self.read_only and (acc != os.O_RDONLY or flags & (DOTL_TRUNC | DOTL_APPEND)):
            raise OSError(errno.EROFS, "read-only share")
        out = {0: os.O_RDONLY, 1: os.O_WRONLY, 2: os.O_RDWR}.get(acc, os.O_RDONLY)
        if is_dir:
            return os.O_RDONLY | os.O_DIRECTORY
        for bit, host in ((DOTL_TRUNC, os.O_TRUNC), (DOTL_APPEND, os.O_APPEND), (DOTL_DSYNC, os.O_DSYNC)):
            if flags & bit:
                out |= host
        if flags & DOTL_SYNC == DOTL_SYNC:
            out |= os.O_SYNC
        return out

    def t_lopen(self, r: Reader) -> bytes:
        f, flags = self._fid(r.u32()), r.u32()
        if f.open_fd >= 0:
            raise OSError(errno.EBADF, "fid already open")
        if stat.S_ISLNK(f.mode):
            raise OSError(errno.ELOOP, "a symbolic link is not opened")
        if not (stat.S_ISREG(f.mode) or stat.S_ISDIR(f.mode)):
            raise OSError(errno.EPERM, "only regular files and directories are opened")
        host = self._open_flags(flags, f.is_dir)
        f.open_fd, f.open_flags = self.root.reopen(f.fd, host), host
        return _qid(os.stat(f.fd)) + Writer().u32(0).body()

    def t_lcreate(self, r: Reader) -> bytes:
        f, name, flags, mode, _gid = self._fid(r.u32()), check_name(r.str()), r.u32(), r.u32(), r.u32()
        if not f.is_dir or f.open_fd >= 0:
            raise OSError(errno.ENOTDIR if not f.is_dir else errno.EBADF, "create needs an unopened directory fid")
        host = self._open_flags(flags, False) | os.O_CREAT | os.O_NOFOLLOW
        if flags & DOTL_EXCL:
            host |= os.O_EXCL
        from wirt.devices.virtio.p9.safefs import openat2

        ofd = openat2(f.fd, name, host, mode & 0o7777)
        try:
            pfd = os.open(self.root.proc_name(ofd), os.O_PATH | os.O_CLOEXEC, dir_fd=self.root.proc_fd)
        except BaseException:
            os.close(ofd)
            raise
        os.close(f.fd)  # the fid now stands for the new, open file (9P lcreate)
        f.fd, f.parts, f.mode, f.open_fd, f.open_flags, f.dirents = pfd, (*f.parts, name), os.stat(pfd).st_mode, ofd, host, None
        return _qid(os.stat(pfd)) + Writer().u32(0).body()

    def _read(self, r: Reader, tag: int, writable: list[memoryview]) -> int:
        f, offset, count = self._fid(r.u32()), r.u64(), r.u32()
        if f.open_fd < 0 or f.is_dir:
            raise OSError(errno.EBADF, "read of an unopened fid")
        count = min(count, self.msize - READ_HDR, max(0, total_len(writable) - READ_HDR))
        hdr, data = take(writable, READ_HDR)
        if total_len(hdr) < READ_HDR:
            raise ProtocolError("no room for the read reply")
        views = take(data, count)[0][:IOV_MAX]
        n = os.preadv(f.open_fd, views, offset) if count else 0
        scatter(hdr, message(P.TREAD + 1, tag, Writer().u32(n).body(), extra=n))
        return READ_HDR + n

    def _write(self, readable: list[memoryview], size: int, tag: int, writable: list[memoryview]) -> int:
        head, rest = take(readable, WRITE_HDR)
        r = Reader(b"".join(head), P.HEADER.size)
        f, offset, count = self._fid(r.u32()), r.u64(), r.u32()
        if f.open_fd < 0 or f.is_dir or f.open_flags & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "write to a fid not open for writing")
        count = min(count, size - WRITE_HDR)
        views = take(rest, count)[0]
        n = 0
        while views:
            batch = views[:IOV_MAX]
            k = os.pwritev(f.open_fd, batch, offset + n) if not f.open_flags & os.O_APPEND else os.writev(f.open_fd, batch)
            n += k
            if k < total_len(batch):
                break
            views = views[IOV_MAX:]
        return scatter(writable, message(P.TWRITE + 1, tag, Writer().u32(n).body()))

    def t_fsync(self, r: Reader) -> bytes:
        f, datasync = self._fid(r.u32()), r.u32()
        if f.open_fd < 0:
            raise OSError(errno.EBADF, "fsync of an unopened fid")
        (os.fdatasync if datasync else os.fsync)(f.open_fd)
        return b""

    def t_readdir(self, r: Reader) -> bytes:
        f, offset, count = self._fid(r.u32()), r.u64(), r.u32()
        if f.open_fd < 0 or not f.is_dir:
            raise OSError(errno.EBADF, "readdir of an unopened directory fid")
        if offset == 0 or f.dirents is None:
            here = _qid(os.stat(f.fd))
            ents = [(here, 4, "."), (here, 4, "..")]
            with os.scandir(f.open_fd) as it:
                for e in it:
                    st_mode = stat.S_IFDIR if e.is_dir(follow_symlinks=False) else stat.S_IFLNK if e.is_symlink() \
                        else stat.S_IFREG if e.is_file(follow_symlinks=False) else 0
                    kind = P.QTDIR if st_mode == stat.S_IFDIR else P.QTSYMLINK if st_mode == stat.S_IFLNK else P.QTFILE
                    ents.append((qid(kind, 0, e.inode()), _dtype(st_mode) if st_mode else 0, e.name))
            f.dirents = ents
        count = min(count, self.msize - READ_HDR)
        out, used = [], 0
        for i in range(offset, len(f.dirents)):
            q, dtype, name = f.dirents[i]
            ent = Writer().raw(q).u64(i + 1).u8(dtype).str(name).body()
            if used + len(ent) > count:
                break
            out.append(ent)
            used += len(ent)
        return Writer().u32(used).raw(b"".join(out)).body()

    # ---- attributes --------------------------------------------------------------------------------------
    def t_getattr(self, r: Reader) -> bytes:
        f, _mask = self._fid(r.u32()), r.u64()
        st = os.stat(f.fd)
        w = Writer().u64(GETATTR_BASIC).raw(_qid(st)).u32(st.st_mode).u32(st.st_uid).u32(st.st_gid)
        w.u64(st.st_nlink).u64(st.st_rdev).u64(st.st_size).u64(st.st_blksize).u64(st.st_blocks)
        for ns in (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns):
            w.u64(ns // 1_000_000_000).u64(ns % 1_000_000_000)
        return w.u64(0).u64(0).u64(0).u64(0).body()  # btime, gen, data_version: not reported

    def t_setattr(self, r: Reader) -> bytes:
        f, valid, mode, uid, gid = self._fid(r.u32()), r.u32(), r.u32(), r.u32(), r.u32()
        size, asec, ansec, msec, mnsec = r.u64(), r.u64(), r.u64(), r.u64(), r.u64()
        link = stat.S_ISLNK(f.mode)
        proc, name = self.root.proc_fd, self.root.proc_name(f.fd)
        if not link and not (stat.S_ISREG(f.mode) or stat.S_ISDIR(f.mode)):
            raise OSError(errno.EPERM, "only files, directories and links are changed")
        if valid & ATTR_MODE:
            if link:
                raise OSError(errno.EOPNOTSUPP, "a symbolic link has no mode of its own")
            os.chmod(name, mode & 0o7777, dir_fd=proc)
        if valid & (ATTR_UID | ATTR_GID):
            try:
                fchownat_empty(f.fd, uid if valid & ATTR_UID else -1, gid if valid & ATTR_GID else -1)
            except OSError as exc:
                if exc.errno != errno.EPERM:  # not root on the host: kept as is (security_model=none)
                    raise
        if valid & ATTR_SIZE:
            if not stat.S_ISREG(f.mode):
                raise OSError(errno.EINVAL, "only a regular file has a size to set")
            if f.open_fd >= 0 and f.open_flags & os.O_ACCMODE != os.O_RDONLY:
                os.ftruncate(f.open_fd, size)
            else:
                wfd = self.root.reopen(f.fd, os.O_WRONLY)
                try:
                    os.ftruncate(wfd, size)
                finally:
                    os.close(wfd)
        if valid & (ATTR_ATIME | ATTR_MTIME):
            def when(bit: int, set_bit: int, sec: int, nsec: int) -> tuple[int, int]:
                if not valid & bit:
                    return 0, UTIME_OMIT
                return (sec, nsec) if valid & set_bit else (0, UTIME_NOW)

            times = when(ATTR_ATIME, ATTR_ATIME_SET, asec, ansec), when(ATTR_MTIME, ATTR_MTIME_SET, msec, mnsec)
            if link:
                utimensat(f.fd, b"", *times, flags=AT_EMPTY_PATH)
            else:
                utimensat(proc, name, *times)
        return b""

    def t_statfs(self, r: Reader) -> bytes:
        f = self._fid(r.u32())
        s = os.fstatvfs(f.fd)
        return (Writer().u32(V9FS_MAGIC).u32(s.f_bsize).u64(s.f_blocks).u64(s.f_bfree).u64(s.f_bavail)
                .u64(s.f_files).u64(s.f_ffree).u64(0).u32(s.f_namemax).body())

    def t_xattrwalk(self, r: Reader) -> bytes:
        raise OSError(errno.EOPNOTSUPP, "extended attributes are not shared")

    def t_xattrcreate(self, r: Reader) -> bytes:
        raise OSError(errno.EOPNOTSUPP, "extended attributes are not shared")

    def t_readlink(self, r: Reader) -> bytes:
        f = self._fid(r.u32())
        if not stat.S_ISLNK(f.mode):
            raise OSError(errno.EINVAL, "not a symbolic link")
        return Writer().str(os.readlink("", dir_fd=f.fd)).body()

    # ---- changing the tree (all names are single entries of a directory fid) --------------------------
    def _dir(self, n: int) -> Fid:
        f = self._fid(n)
        if not f.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        return f

    def _entry_qid(self, d: Fid, name: str) -> bytes:
        return _qid(os.stat(name, dir_fd=d.fd, follow_symlinks=False))

    def t_mkdir(self, r: Reader) -> bytes:
        d, name, mode, _gid = self._dir(r.u32()), check_name(r.str()), r.u32(), r.u32()
        os.mkdir(name, mode & 0o7777, dir_fd=d.fd)
        return self._entry_qid(d, name)

    def t_symlink(self, r: Reader) -> bytes:
        d, name, target, _gid = self._dir(r.u32()), check_name(r.str()), r.str(), r.u32()
        if "\0" in target or not target:
            raise OSError(errno.EINVAL, "bad link target")
        os.symlink(target, name, dir_fd=d.fd)  # stored as text, never followed by the server
        return self._entry_qid(d, name)

    def t_mknod(self, r: Reader) -> bytes:
        raise OSError(errno.EPERM, "device nodes, FIFOs and sockets are not created in a shared folder")

    def t_link(self, r: Reader) -> bytes:
        d, f, name = self._dir(r.u32()), self._fid(r.u32()), check_name(r.str())
        if not stat.S_ISREG(f.mode):
            raise OSError(errno.EPERM, "only regular files are hard-linked")
        os.link(self.root.proc_name(f.fd), name, src_dir_fd=self.root.proc_fd, dst_dir_fd=d.fd, follow_symlinks=True)
        return b""

    def t_unlinkat(self, r: Reader) -> bytes:
        d, name, flags = self._dir(r.u32()), check_name(r.str()), r.u32()
        if flags & AT_REMOVEDIR:
            os.rmdir(name, dir_fd=d.fd)
        else:
            os.unlink(name, dir_fd=d.fd)
        return b""

    def t_renameat(self, r: Reader) -> bytes:
        od, oname, nd, nname = self._dir(r.u32()), check_name(r.str()), self._dir(r.u32()), check_name(r.str())
        os.rename(oname, nname, src_dir_fd=od.fd, dst_dir_fd=nd.fd)
        return b""

    def t_rename(self, r: Reader) -> bytes:
        raise OSError(errno.EOPNOTSUPP, "use renameat")  # Linux then sends Trenameat

    # ---- locks: POSIX record locks on the host file (the guest as a whole is one lock owner) -----
    def t_lock(self, r: Reader) -> bytes:
        f, ltype, _flags, start, length = self._fid(r.u32()), r.u8(), r.u32(), r.u64(), r.u64()
        r.u32(), r.str()  # proc_id, client_id
        if f.open_fd < 0:
            raise OSError(errno.EBADF, "lock of an unopened fid")
        op = {LOCK_RDLCK: fcntl.LOCK_SH, LOCK_WRLCK: fcntl.LOCK_EX, LOCK_UNLCK: fcntl.LOCK_UN}.get(ltype)
        if op is None:
            raise OSError(errno.EINVAL, "bad lock type")
        try:
            fcntl.lockf(f.open_fd, op | (fcntl.LOCK_NB if op != fcntl.LOCK_UN else 0), length, start)
            status = LOCK_SUCCESS
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                status = LOCK_BLOCKED
            elif exc.errno == errno.EBADF:  # a write lock on a file opened read-only
                status = LOCK_ERROR
            else:
                raise
        return Writer().u8(status).body()

    def t_getlock(self, r: Reader) -> bytes:
        f, _ltype, start, length, proc_id, client = self._fid(r.u32()), r.u8(), r.u64(), r.u64(), r.u32(), r.str()
        if f.open_fd < 0:
            raise OSError(errno.EBADF, "getlock of an unopened fid")
        # the guest holds no lock the host could report against itself: the range is free
        return Writer().u8(LOCK_UNLCK).u64(start).u64(length).u32(proc_id).str(client).body()


_HANDLERS = {
    P.TVERSION: P9Server.t_version, P.TAUTH: P9Server.t_auth, P.TATTACH: P9Server.t_attach,
    P.TFLUSH: P9Server.t_flush, P.TCLUNK: P9Server.t_clunk, P.TREMOVE: P9Server.t_remove,
    P.TWALK: P9Server.t_walk, P.TLOPEN: P9Server.t_lopen, P.TLCREATE: P9Server.t_lcreate,
    P.TFSYNC: P9Server.t_fsync, P.TREADDIR: P9Server.t_readdir, P.TGETATTR: P9Server.t_getattr,
    P.TSETATTR: P9Server.t_setattr, P.TSTATFS: P9Server.t_statfs, P.TXATTRWALK: P9Server.t_xattrwalk,
    P.TXATTRCREATE: P9Server.t_xattrcreate, P.TREADLINK: P9Server.t_readlink, P.TMKDIR: P9Server.t_mkdir,
    P.TSYMLINK: P9Server.t_symlink, P.TMKNOD: P9Server.t_mknod, P.TLINK: P9Server.t_link,
    P.TUNLINKAT: P9Server.t_unlinkat, P.TRENAMEAT: P9Server.t_renameat, P.TRENAME: P9Server.t_rename,
    P.TLOCK: P9Server.t_lock, P.TGETLOCK: P9Server.t_getlock,
}
