"""Base images by content: the read-only disk a VM's overlay is backed by (the Debian root disk
of wirt's image cache, a `wirt image build --name` disk, or a disk given as `--image PATH`) is
known to the cluster by the SHA-256 of its bytes, so a node that lacks it fetches it from a node
that has it, and never uses a different disk that merely has the same name or path (two builds
of one Debian image differ in their bytes, and an overlay is only valid on the exact base it was
made on).

Each node keeps
  $WIRT_HOME/bases/SHA256.qcow2 (or .raw)   bases fetched from other nodes, named by their hash
                                            (VMs may open them: wirt.vm.access.bases_dir)
  $WIRT_HOME/bases/hashes.json              the hashes of base files elsewhere on the node, by
                                            path, size, mtime and inode: a 1 GB disk is hashed once
A fetch goes through wirt.cluster.transfer (the chunked, sparse-aware pull of migrations) into a
staging file in bases/, is hashed, and only a file whose hash matches takes its name there.
An overlay moved to a node where its base got another path has its backing file name rewritten
(`set_backing`, what `qemu-img rebase -u` does).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from wirt.errors import WirtError
from wirt.fileio import atomic_write, fsync_dir
from wirt.vm.access import bases_dir

__all__ = ["BaseStore", "find_image", "external_backings", "set_backing", "qcow2_header", "check_hash", "FORMATS"]

FORMATS = ("qcow2", "raw")
_QCOW2_MAGIC = b"QFI\xfb"
_HEX = frozenset("0123456789abcdef")


def check_hash(sha: str) -> str:
    """`sha` if it is a SHA-256 in lower-case hex (it becomes a file name in the store)."""
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
        raise WirtError(f"{sha!r} is not a SHA-256 in hex")
    return sha


class BaseStore:
    """One node's base images: its content-addressed folder and the hash memo (see the module
    docstring). Thread-safe: the agent serves several calls at once."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.dir = bases_dir(self.home)
        self.memo_path = self.dir / "hashes.json"
        self._lock = threading.Lock()

    # ---- hashes ------------------------------------------------------------------------------
    def _memo(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.memo_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _stamp(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]

    def hash(self, path: Path) -> str:
        """SHA-256 of file `path` (from the memo while its size, mtime and inode are unchanged)."""
        from wirt.images.cache import sha256_file

        real = os.path.realpath(path)
        stamp = self._stamp(os.stat(real))
        with self._lock:
            hit = self._memo().get(real)
        if hit and hit.get("stamp") == stamp:
            return str(hit["sha256"])
        sha = sha256_file(Path(real))
        with self._lock:
            memo = self._memo()
            memo = {p: m for p, m in memo.items() if os.path.exists(p)}  # forget files that went away
            memo[real] = {"stamp": stamp, "sha256": sha}
            atomic_write(self.memo_path, json.dumps(memo, indent=1, sort_keys=True), parents=True)
        return sha

    def describe(self, path: Path) -> dict[str, Any]:
        """A base file as the cluster passes it around: hash, size, format, data extents and its
        path here."""
        from wirt.cluster.transfer import extents
        from wirt.storage import probe_format

        real = Path(os.path.realpath(path))
        return {"sha256": self.hash(real), "size": real.stat().st_size, "format": probe_format(str(real)),
                "extents": extents(real), "path": str(real)}

    # ---- the content-addressed folder ------------------------------------------------------------
    def lookup(self, sha: str) -> Path | None:
        """The stored base with hash `sha`, or None."""
        check_hash(sha)
        for fmt in FORMATS:
            p = self.dir / f"{sha}.{fmt}"
            if p.is_file():
                return p
        return None

    def hashed(self, sha: str) -> list[Path]:
        """Files outside the store hashed here (by find_image, or as a VM's base) whose bytes are
        still those of hash `sha` (the memo's stamp still holds)."""
        with self._lock:
            memo = self._memo()
        out = []
        for path, m in sorted(memo.items()):
            with contextlib.suppress(OSError):
                if m.get("sha256") == sha and m.get("stamp") == self._stamp(os.stat(path)):
                    out.append(Path(path))
        return out

    def source(self, sha: str) -> Path:
        """The file with hash `sha` this node may hand out: a stored base, or a file hashed here."""
        p = self.lookup(sha)
        if p is None:
            p = next(iter(self.hashed(sha)), None)
        if p is None:
            raise WirtError(f"no base image with sha256 {sha[:12]}... on this node")
        return p

    def staging(self) -> Path:
        """A new folder for a base being received (transfer.receive creates it)."""
        import uuid

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.dir / f".incoming-{uuid.uuid4().hex[:12]}"

    def add(self, staged: Path, sha: str, fmt: str) -> Path:
        """Give the received file `staged`, already verified to hash to `sha`, its name in the store."""
        if fmt not in FORMATS:
            raise WirtError(f"base format {fmt!r} is not qcow2 or raw")
        dest = self.dir / f"{check_hash(sha)}.{fmt}"
        os.chmod(staged, 0o444)  # a base is never written
        os.replace(staged, dest)  # an identical copy that raced us in is simply replaced
        fsync_dir(self.dir)
        return dest


def find_image(image: str, cloud: bool = False) -> Path | None:
    """The root disk `image` names on this node, found without building anything or touching the
    network: "debian" (with cloud-init when `cloud`) if the image cache holds it, a `wirt image
    build --name` name whose disk is here, or a disk file that exists here; None otherwise (and
    for images without a root disk)."""
    if image in ("initramfs", "none"):
        return None
    if image == "debian":
        from wirt.images.cloudinit import CLOUD_PACKAGES
        from wirt.images.rootdisk import cached_root_disk

        return cached_root_disk(CLOUD_PACKAGES if cloud else ())
    from wirt.vm.disks import user_disk

    try:
        return user_disk(image)
    except WirtError:  # a name whose disk left the cache, a missing or unusable file: not here
        return None


def qcow2_header(path: Path) -> Any:
    """The qcow2 header of `path` (wirt.storage.qcow2_format.Header), or None for a file that is
    not qcow2."""
    from wirt.storage.qcow2_format import parse_header

    fd = os.open(path, os.O_RDONLY)
    try:
        buf = os.pread(fd, 65536, 0)
        if buf[:4] != _QCOW2_MAGIC:
            return None
        bits = int.from_bytes(buf[20:24], "big")
        if 16 < bits <= 21:
            buf = os.pread(fd, 1 << bits, 0)
        return parse_header(buf, os.fstat(fd).st_size, str(path))
    finally:
        os.close(fd)


def external_backings(root: Path, files: list[str]) -> list[tuple[str, str, str]]:
    """(file, backing name, backing path) for each qcow2 file among `files` (relative to VM
    folder `root`) whose backing file lies outside the folder: the VM's bases."""
    from wirt.storage.qcow2 import backing_target

    root = Path(root).resolve()
    out = []
    for rel in files:
        p = root / rel
        h = qcow2_header(p)
        if h is None or not h.backing_file:
            continue
        target = os.path.normpath(backing_target(str(p), h.backing_file))
        if not Path(target).is_relative_to(root):
            out.append((rel, h.backing_file, target))
    return out


def set_backing(path: Path, name: str) -> None:
    """Point qcow2 image `path` at backing file `name` (its header only, as `qemu-img rebase -u`):
    the base moved to another path, its contents are the same. A sealed (read-only) snapshot
    layer keeps its mode."""
    h = qcow2_header(path)
    if h is None:
        raise WirtError(f"{path}: not a qcow2 image; only qcow2 files have a backing file")
    h.backing_file = name
    cluster0 = h.pack_cluster0()
    mode = os.stat(path).st_mode & 0o777
    os.chmod(path, mode | 0o200)
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, cluster0, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.chmod(path, mode)
