"""virtio-9p (9P2000.L) through the fake virtio driver: every request v9fs sends, read-only shares,
and every way out of the shared folder (symlinks, `..`, absolute names, a rename race)."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading

import pytest

from p9_client import Client, P9Error
from virtio_driver import FakeDriver  # noqa: F401 -- the same sys.path entry as p9_client
from wirt.devices.virtio import mmio as R
from wirt.devices.irq import IrqLine
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.p9 import VirtioP9
from wirt.devices.virtio.p9 import protocol as P
from wirt.devices.virtio.p9.protocol import Writer


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(VirtioMmio, "strict", True)


@pytest.fixture
def share(tmp_path):
    root = tmp_path / "share"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello from the host\n")
    (root / "sub" / "deep.bin").write_bytes(bytes(range(256)) * 64)
    (root / "to-etc").symlink_to("/etc")
    (root / "to-passwd").symlink_to("/etc/passwd")
    (root / "up").symlink_to("..")
    (tmp_path / "secret").write_text("outside\n")
    return root


def errno_of(fn, *args) -> int:
    with pytest.raises(P9Error) as e:
        fn(*args)
    return e.value.errno


def test_device_id_tag_and_version(share):
    c = Client(str(share), tag="/srv/data")
    assert c.drv.r(R.DEVICE_ID) == 9
    assert c.drv.config(0, 2) == len("/srv/data")
    assert bytes(c.drv.config(2 + i, 1) for i in range(9)) == b"/srv/data"
    assert c.drv.device_features() & 1  # VIRTIO_9P_MOUNT_TAG
    assert c.version(512000) == (512000, "9P2000.L")
    assert c.version(1 << 30)[0] == 1 << 20  # capped
    assert c.version(8192)[1] == "9P2000.L"
    r = c.rpc(P.TVERSION, Writer().u32(8192).str("9P2000.u").body())
    assert (r.u32(), r.str()) == (8192, "unknown")


def test_walk_open_read_getattr_readdir(share):
    c = Client(str(share))
    c.attach()
    assert c.read_all("hello.txt") == b"hello from the host\n"
    fid, qids = c.walk(c.root, "sub", "deep.bin")
    assert qids[0][0] == P.QTDIR and qids[1][0] == P.QTFILE
    a = c.getattr(fid)
    st = os.stat(share / "sub" / "deep.bin")
    assert (a["size"], a["mode"], a["uid"], a["nlink"]) == (16384, st.st_mode, st.st_uid, 1)
    assert a["mtime"] == (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9)
    c.lopen(fid, os.O_RDONLY)
    # a read whose data lands across several guest buffers (Linux's zero-copy reads: 11-byte header, pages)
    data = c.read(fid, 1000, 9000, split=[11, 4096, 4096, 4096])
    assert data == (bytes(range(256)) * 64)[1000:10000]
    assert c.read(fid, 16384, 100) == b""  # end of file
    c.clunk(fid)
    assert errno_of(c.getattr, fid) == errno.EBADF  # clunked
    d, _ = c.walk(c.root)  # clone
    c.lopen(d, os.O_RDONLY | os.O_DIRECTORY)
    names = dict(c.readdir(d, count=64))  # small count: several readdir rounds
    assert set(names) == {".", "..", "sub", "hello.txt", "to-etc", "to-passwd", "up"}
    assert names["sub"] == 4 and names["hello.txt"] == 8 and names["to-etc"] == 10
    assert c.statfs(c.root)[0] == 0x01021997
    assert errno_of(c.walk, c.root, "nope") == errno.ENOENT
    # partial walk: the qids found, no new fid
    r = c.rpc(P.TWALK, Writer().u32(c.root).u32(99).u16(2).str("sub").str("nope").body())
    assert r.u16() == 1
    assert errno_of(c.getattr, 99) == errno.EBADF


def test_create_write_setattr_mkdir_unlink_rename_link(share):
    c = Client(str(share))
    c.attach()
    d, _ = c.walk(c.root, "sub")
    f, _ = c.walk(d)
    c.lcreate(f, "new.txt", os.O_RDWR, 0o640)
    assert c.write(f, 0, b"written by the guest") == 20
    assert c.write(f, 8, b"BY") == 2
    c.fsync(f)
    assert (share / "sub" / "new.txt").read_bytes() == b"written BY the guest"
    assert stat.S_IMODE(os.stat(share / "sub" / "new.txt").st_mode) == 0o640 & ~_umask()
    assert c.read(f, 0, 7) == b"written"
    # a large write split over many buffers, as pwritev
    big = os.urandom(300_000)
    assert c.write(f, 0, big) == len(big)
    assert (share / "sub" / "new.txt").read_bytes()[:len(big)] == big
    c.clunk(f)
    g, _ = c.walk(c.root, "sub", "new.txt")
    c.setattr(g, 0x1 | 0x8 | 0x20 | 0x100, mode=0o600, size=5, mtime=(1_000_000_000, 5))
    st = os.stat(share / "sub" / "new.txt")
    assert (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns) == (0o600, 5, 1_000_000_000 * 10**9 + 5)
    c.mkdir(c.root, "made", 0o750)
    assert (share / "made").is_dir()
    m, _ = c.walk(c.root, "made")
    c.renameat(d, "new.txt", m, "moved.txt")
    assert (share / "made" / "moved.txt").read_bytes() == big[:5]
    assert c.getattr(g)["size"] == 5  # the fid follows its file
    c.link(m, g, "hard.txt")
    assert os.stat(share / "made" / "hard.txt").st_ino == os.stat(share / "made" / "moved.txt").st_ino
    c.symlink(m, "ln", "moved.txt")
    lf, _ = c.walk(m, "ln")
    assert c.readlink(lf) == "moved.txt"
    assert errno_of(c.lopen, lf, os.O_RDONLY) == errno.ELOOP
    c.unlinkat(m, "ln")
    c.unlinkat(m, "hard.txt")
    c.unlinkat(m, "moved.txt")
    assert errno_of(c.unlinkat, c.root, "made") == errno.EISDIR
    c.unlinkat(c.root, "made", 0x200)  # AT_REMOVEDIR
    assert not (share / "made").exists()
    assert errno_of(c.mknod, c.root, "fifo", stat.S_IFIFO | 0o644) == errno.EPERM
    # O_EXCL on an existing name
    e, _ = c.walk(c.root)
    assert errno_of(c.lcreate, e, "hello.txt", os.O_RDWR | os.O_EXCL) == errno.EEXIST


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_read_only_share_refuses_every_change(share):
    before = sorted(str(p.relative_to(share)) for p in share.rglob("*"))
    c = Client(str(share), read_only=True)
    c.attach()
    assert c.read_all("hello.txt") == b"hello from the host\n"
    f, _ = c.walk(c.root, "hello.txt")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        assert errno_of(c.lopen, f, flags) == errno.EROFS
    c.lopen(f, os.O_RDONLY)
    assert errno_of(c.write, f, 0, b"x") == errno.EROFS
    d, _ = c.walk(c.root)
    assert errno_of(c.lcreate, d, "x", os.O_RDWR) == errno.EROFS
    assert errno_of(c.mkdir, c.root, "x") == errno.EROFS
    assert errno_of(c.symlink, c.root, "x", "y") == errno.EROFS
    assert errno_of(c.unlinkat, c.root, "hello.txt") == errno.EROFS
    assert errno_of(c.renameat, c.root, "hello.txt", c.root, "x") == errno.EROFS
    assert errno_of(c.link, c.root, f, "x") == errno.EROFS
    assert errno_of(c.setattr, f, 0x8, 0, 0, 0, 0) == errno.EROFS
    assert errno_of(c.mknod, c.root, "x", stat.S_IFREG) == errno.EROFS
    assert c.dev.server.fids[f].open_flags & os.O_ACCMODE == os.O_RDONLY
    assert sorted(str(p.relative_to(share)) for p in share.rglob("*")) == before
    assert (share / "hello.txt").read_bytes() == b"hello from the host\n"


def test_no_escape_through_symlinks_dotdot_or_names(share, tmp_path):
    c = Client(str(share))
    c.attach()
    # `..` from the root stays at the root; from below it goes back up, never higher
    fid, qids = c.walk(c.root, "..", "..", "hello.txt")
    c.lopen(fid, os.O_RDONLY)
    assert c.read(fid, 0, 100) == b"hello from the host\n"
    assert errno_of(c.walk, c.root, "..", "secret") == errno.ENOENT
    assert errno_of(c.walk, c.root, "sub", "..", "..", "secret") == errno.ENOENT
    # symlinks are never followed by the server: walking through one fails, opening one fails
    for link, target in (("to-etc", "passwd"), ("up", "secret")):
        r = c.rpc(P.TWALK, Writer().u32(c.root).u32(77).u16(2).str(link).str(target).body())
        assert r.u16() == 1  # the link itself, not through it
        assert errno_of(c.getattr, 77) == errno.EBADF
        assert errno_of(c.walk, c.walk(c.root, link)[0], target) in (errno.ENOTDIR, errno.ELOOP)
    lf, _ = c.walk(c.root, "to-passwd")
    assert errno_of(c.lopen, lf, os.O_RDONLY) == errno.ELOOP
    assert c.readlink(lf) == "/etc/passwd"  # the guest gets the text and resolves it in its own tree
    assert c.getattr(lf)["mode"] & stat.S_IFMT(0o170000) == stat.S_IFLNK
    # a name with a slash, an absolute name, "." or empty is not one directory entry
    for bad in ("sub/deep.bin", "/etc", ".", ""):
        assert errno_of(c.walk, c.root, bad) == errno.EINVAL
    for bad in ("../escape", "/tmp/escape", "a/b"):
        d, _ = c.walk(c.root)
        assert errno_of(c.lcreate, d, bad, os.O_RDWR) == errno.EINVAL
        assert errno_of(c.mkdir, c.root, bad) == errno.EINVAL
        assert errno_of(c.renameat, c.root, "hello.txt", c.root, bad) == errno.EINVAL
    # creating through a symlink (an existing name that links out) refuses instead of following
    d, _ = c.walk(c.root)
    assert errno_of(c.lcreate, d, "to-passwd", os.O_RDWR) == errno.ELOOP
    # a hard link of a symlink (which could land on the link's target) is refused
    assert errno_of(c.link, c.root, lf, "hard") == errno.EPERM
    # setattr on a symlink never reaches its target
    st_before = os.stat("/etc/passwd")
    assert errno_of(c.setattr, lf, 0x1, 0o777) == errno.EOPNOTSUPP
    c.setattr(lf, 0x20 | 0x100, mtime=(1_000_000_000, 0))
    assert os.stat("/etc/passwd").st_mtime_ns == st_before.st_mtime_ns
    assert os.lstat(share / "to-passwd").st_mtime_ns == 1_000_000_000 * 10**9
    assert (tmp_path / "secret").read_text() == "outside\n"


def test_no_escape_through_a_rename_race(share, tmp_path):
    """The host swaps a directory for a symlink to the folder above while the guest walks into it
    and reads: the guest sees the directory's file or an error, never the file outside."""
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "f").write_text("OUTSIDE")
    real = share / "d"
    real.mkdir()
    (real / "f").write_text("inside")
    stop = threading.Event()

    def swapper():
        link, moved = share / "d-link", share / "d-real"
        while not stop.is_set():
            try:
                os.symlink(str(outside), link)
                os.rename(real, moved)
                os.rename(link, real)   # d is now a symlink to the victim
                os.rename(real, link)
                os.rename(moved, real)  # d is the real directory again
                os.unlink(link)
            except OSError:
                pass

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    c = Client(str(share))
    c.attach()
    seen = set()
    try:
        for _ in range(400):
            try:
                fid, _ = c.walk(c.root, "d", "f")
                c.lopen(fid, os.O_RDONLY)
                seen.add(c.read(fid, 0, 100))
                c.clunk(fid)
            except P9Error as exc:
                seen.add(exc.errno)
    finally:
        stop.set()
        t.join()
    assert b"OUTSIDE" not in seen
    assert b"inside" in seen or seen <= {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}


def test_fids_are_released_on_reset_and_bad_requests_answered(share):
    c = Client(str(share))
    c.attach()
    fid = c.open_path("hello.txt")
    assert c.dev.server.fids
    before = len(os.listdir("/proc/self/fd"))
    c.drv.w(R.STATUS, 0)  # device reset: every descriptor closed
    assert not c.dev.server.fids
    assert len(os.listdir("/proc/self/fd")) == before - 3  # root clone, file's O_PATH and open fd
    c.reinit()
    assert errno_of(c.getattr, fid) == errno.EBADF
    c.attach()
    # unknown message, truncated body, lying size: Rlerror, the device keeps working
    assert errno_of(c.rpc, 250, b"") == errno.EOPNOTSUPP
    assert errno_of(c.rpc, P.TWALK, b"\x01\x00") == errno.EPROTO
    n, reply = c.raw([P.HEADER.pack(1000, P.TCLUNK, 7) + b"\0\0\0\0"], [64])
    assert P.HEADER.unpack_from(reply)[1] == P.RLERROR
    assert c.read_all("hello.txt") == b"hello from the host\n"
    assert not c.drv.r(R.STATUS) & 0x40  # no DEVICE_NEEDS_RESET


def test_fids_survive_a_snapshot_and_hostile_state_stays_inside(share, tmp_path):
    c = Client(str(share))
    c.attach()
    f = c.open_path("sub/deep.bin")
    w, _ = c.walk(c.root, "sub")
    c.lcreate(w, "log.txt", os.O_WRONLY | os.O_TRUNC)
    c.write(w, 0, b"before")
    saved = c.t.state()
    # a restore into a fresh device on the same guest RAM (a fork): the guest's fids work again,
    # nothing is truncated twice
    c.dev.close()
    dev2 = VirtioP9(str(share), "/mnt/host")
    t2 = VirtioMmio(dev2, c.mem, IrqLine())
    t2.load_state(saved)
    c.dev, c.t, c.drv.dev = dev2, t2, t2
    d = c
    assert d.read(f, 0, 4) == bytes(range(4))
    assert d.write(w, 6, b" after") == 6
    assert (share / "sub" / "log.txt").read_bytes() == b"before after"
    # hostile saved state: names with slashes, .., links; nothing outside the folder is opened
    d.t.load_state(dict(saved, device={"server": {"msize": 1 << 40, "fids": json.dumps([
        [1, ["..", "secret"], 0], [2, ["to-passwd"], 0], [3, ["sub/../../secret"], 0], [4, ["to-etc", "passwd"], 0],
        [5, ["hello.txt"], os.O_RDWR | os.O_TRUNC], "junk", [6]])}}))
    srv = d.dev.server
    assert sorted(srv.fids) == [2, 5] and srv.msize == 1 << 20
    assert srv.fids[2].open_fd < 0  # the link is a fid, never opened
    assert (share / "hello.txt").read_bytes() == b"hello from the host\n"  # O_TRUNC dropped
