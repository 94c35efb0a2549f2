"""A small 9P2000.L client over the fake virtio driver, speaking like Linux's v9fs (tests only)."""

from __future__ import annotations

import errno
import os
import struct

from virtio_driver import FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.p9 import VirtioP9
from wirt.devices.virtio.p9 import protocol as P
from wirt.devices.virtio.p9.protocol import Reader, Writer

NOFID = P.NOFID


class P9Error(OSError):
    pass


class Client:
    """Sends one request per chain (readable request, then writable reply buffers) and decodes replies."""

    def __init__(self, root: str, read_only: bool = False, tag: str = "/mnt/host") -> None:
        self.mem = new_memory(32 << 20)
        self.dev = VirtioP9(root, tag, read_only)
        self.t = VirtioMmio(self.dev, self.mem, IrqLine())
        self.drv = FakeDriver(self.t, self.mem)
        self.reinit()
        self.tag = 1
        self.next_fid = 1

    def reinit(self) -> None:
        """(Re-)initialise the device like a driver probing it; buffers go above the new rings."""
        (self.q,) = self.drv.init()
        self.buf_base = self.drv.alloc.next + 0x1000

    def raw(self, out: list[bytes], in_lens: list[int]) -> tuple[int, bytes]:
        """Post one chain, kick, return (written, reply bytes)."""
        self.drv.alloc.next = self.buf_base  # reuse buffer space: one request at a time
        head = self.q.add(out, in_lens)
        self.q.kick()
        used = dict(self.q.get_used())
        assert head in used, "request not answered"
        return used[head], self.q.read_in(head)[: used[head]]

    def rpc(self, mtype: int, body: bytes, reply_len: int = 8192, data: bytes = b"",
            split: list[int] | None = None) -> Reader:
        size = P.HEADER.size + len(body) + len(data)
        msg = P.HEADER.pack(size, mtype, self.tag) + body
        out = [msg, data] if data else [msg]
        n, reply = self.raw(out, split or [reply_len])
        rsize, rtype, rtag = P.HEADER.unpack_from(reply)
        assert rsize == n and rtag == self.tag
        self.tag = (self.tag + 1) % 0xFFFF
        r = Reader(reply, P.HEADER.size)
        if rtype == P.RLERROR:
            e = r.u32()
            raise P9Error(e, os.strerror(e))
        assert rtype == mtype + 1, (rtype, mtype)
        return r

    # ---- messages ----
    def fid(self) -> int:
        self.next_fid += 1
        return self.next_fid

    def version(self, msize: int = 512000) -> tuple[int, str]:
        r = self.rpc(P.TVERSION, Writer().u32(msize).str("9P2000.L").body())
        return r.u32(), r.str()

    def attach(self) -> int:
        self.version()
        fid = self.fid()
        self.rpc(P.TATTACH, Writer().u32(fid).u32(NOFID).str("root").str("").u32(0).body())
        self.root = fid
        return fid

    def walk(self, fid: int, *names: str, newfid: int | None = None) -> tuple[int, list[bytes]]:
        nf = self.fid() if newfid is None else newfid
        w = Writer().u32(fid).u32(nf).u16(len(names))
        for n in names:
            w.str(n)
        r = self.rpc(P.TWALK, w.body())
        qids = [bytes(r.buf[r.pos + 13 * i: r.pos + 13 * i + 13]) for i in range(r.u16())]
        if len(qids) != len(names):
            raise P9Error(errno.ENOENT, "partial walk")
        return nf, qids

    def lopen(self, fid: int, flags: int) -> None:
        self.rpc(P.TLOPEN, Writer().u32(fid).u32(flags).body())

    def lcreate(self, dfid: int, name: str, flags: int = os.O_RDWR, mode: int = 0o644) -> None:
        self.rpc(P.TLCREATE, Writer().u32(dfid).str(name).u32(flags).u32(mode).u32(0).body())

    def read(self, fid: int, offset: int, count: int, split: list[int] | None = None) -> bytes:
        r = self.rpc(P.TREAD, Writer().u32(fid).u64(offset).u32(count).body(), split=split or [11 + count])
        n = r.u32()
        return bytes(r.buf[r.pos: r.pos + n])

    def write(self, fid: int, offset: int, data: bytes) -> int:
        return self.rpc(P.TWRITE, Writer().u32(fid).u64(offset).u32(len(data)).body(), data=data).u32()

    def clunk(self, fid: int) -> None:
        self.rpc(P.TCLUNK, Writer().u32(fid).body())

    def getattr(self, fid: int) -> dict:
        r = self.rpc(P.TGETATTR, Writer().u32(fid).u64(0x7FF).body())
        valid = r.u64()
        q = bytes(r.buf[r.pos: r.pos + 13])
        r.pos += 13
        d = {"valid": valid, "qid": q, "mode": r.u32(), "uid": r.u32(), "gid": r.u32(), "nlink": r.u64(),
             "rdev": r.u64(), "size": r.u64(), "blksize": r.u64(), "blocks": r.u64()}
        d["atime"] = (r.u64(), r.u64())
        d["mtime"] = (r.u64(), r.u64())
        return d

    def setattr(self, fid: int, valid: int, mode: int = 0, uid: int = 0, gid: int = 0, size: int = 0,
                atime: tuple[int, int] = (0, 0), mtime: tuple[int, int] = (0, 0)) -> None:
        self.rpc(P.TSETATTR, Writer().u32(fid).u32(valid).u32(mode).u32(uid).u32(gid).u64(size)
                 .u64(atime[0]).u64(atime[1]).u64(mtime[0]).u64(mtime[1]).body())

    def readdir(self, fid: int, count: int = 4096) -> list[tuple[str, int]]:
        out, offset = [], 0
        while True:
            r = self.rpc(P.TREADDIR, Writer().u32(fid).u64(offset).u32(count).body())
            n = r.u32()
            end = r.pos + n
            if n == 0:
                return out
            while r.pos < end:
                r.pos += 13
                offset = r.u64()
                dtype = r.u8()
                out.append((r.str(), dtype))

    def mkdir(self, dfid: int, name: str, mode: int = 0o755) -> None:
        self.rpc(P.TMKDIR, Writer().u32(dfid).str(name).u32(mode).u32(0).body())

    def symlink(self, dfid: int, name: str, target: str) -> None:
        self.rpc(P.TSYMLINK, Writer().u32(dfid).str(name).str(target).u32(0).body())

    def readlink(self, fid: int) -> str:
        return self.rpc(P.TREADLINK, Writer().u32(fid).body()).str()

    def unlinkat(self, dfid: int, name: str, flags: int = 0) -> None:
        self.rpc(P.TUNLINKAT, Writer().u32(dfid).str(name).u32(flags).body())

    def renameat(self, odfid: int, oname: str, ndfid: int, nname: str) -> None:
        self.rpc(P.TRENAMEAT, Writer().u32(odfid).str(oname).u32(ndfid).str(nname).body())

    def link(self, dfid: int, fid: int, name: str) -> None:
        self.rpc(P.TLINK, Writer().u32(dfid).u32(fid).str(name).body())

    def mknod(self, dfid: int, name: str, mode: int) -> None:
        self.rpc(P.TMKNOD, Writer().u32(dfid).str(name).u32(mode).u32(0).u32(0).u32(0).body())

    def statfs(self, fid: int) -> tuple[int, int]:
        r = self.rpc(P.TSTATFS, Writer().u32(fid).body())
        return r.u32(), r.u32()

    def fsync(self, fid: int) -> None:
        self.rpc(P.TFSYNC, Writer().u32(fid).u32(0).body())

    def open_path(self, path: str, flags: int = os.O_RDONLY) -> int:
        fid, _ = self.walk(self.root, *[p for p in path.split("/") if p])
        self.lopen(fid, flags)
        return fid

    def read_all(self, path: str) -> bytes:
        fid = self.open_path(path)
        data = self.read(fid, 0, 65536)
        self.clunk(fid)
        return data
