"""Read Debian binary packages (.deb) without dpkg: an `ar` reader and a streaming data.tar extractor.

Format (deb(5), ar(5)): the file starts with `!<arch>\\n`; each member has a 60-byte header
(name[16] mtime[12] uid[6] gid[6] mode[8] size[10] "`\\n"), its data, and one `\\n` of padding
when the size is odd. Members, in order: `debian-binary` ("2.0\\n"), `control.tar[.gz|.xz|.zst]`,
`data.tar[.gz|.xz|.bz2|.zst]` — the installed files.
"""

from __future__ import annotations

import importlib
import io
import lzma
import shutil
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wirt.errors import WirtError

AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60


@dataclass(frozen=True)
class ArMember:
    """One member of an ar archive: where its data starts in the file and how long it is."""

    name: str
    offset: int
    size: int


def ar_members(f: BinaryIO) -> list[ArMember]:
    """List the members of the ar archive in the seekable file `f`."""
    f.seek(0)
    if f.read(len(AR_MAGIC)) != AR_MAGIC:
        raise ValueError("not an ar archive (bad magic)")
    members = []
    pos = len(AR_MAGIC)
    while True:
        f.seek(pos)
        header = f.read(AR_HEADER)
        if not header:
            break
        if len(header) != AR_HEADER or header[58:60] != b"`\n":
            raise ValueError(f"corrupt ar member header at offset {pos}")
        name = header[0:16].decode("ascii", "replace").rstrip(" ")
        name = name.removesuffix("/")  # GNU ar ends names with '/'; dpkg-deb does not
        size = int(header[48:58].decode("ascii").strip() or 0)
        members.append(ArMember(name, pos + AR_HEADER, size))
        pos += AR_HEADER + size + (size & 1)  # data is padded to an even offset
    return members


class _Window(io.RawIOBase):
    """A read-only view of `size` bytes of `f` starting at `offset`, reporting bytes read."""

    def __init__(self, f: BinaryIO, offset: int, size: int, report: Callable[[int], None] | None) -> None:
        self._f, self._offset, self._size, self._pos, self._report = f, offset, size, 0, report

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._offset + self._pos)
        data = self._f.read(n)
        buf[: len(data)] = data
        self._pos += len(data)
        if self._report:
            self._report(self._pos)
        return len(data)


@dataclass(frozen=True)
class DebMember:
    """A file unpacked from data.tar: its path (without the leading `./`), bytes and mode."""

    path: str
    data: bytes
    mode: int


def _check_deb(f: BinaryIO, members: list[ArMember], path: Path) -> ArMember:
    if not members or members[0].name != "debian-binary":
        raise WirtError(f"{path} is not a Debian package (no debian-binary member); delete it and retry")
    f.seek(members[0].offset)
    if not f.read(members[0].size).startswith(b"2."):
        raise WirtError(f"{path} has an unsupported .deb format version; delete it and retry")
    for m in members:
        if m.name.startswith("data.tar"):
            return m
    raise WirtError(f"{path} has no data.tar member; delete it and retry")


@contextmanager
def open_data_tar(path: Path, report: Callable[[int, int], None] | None = None) -> Iterator[tarfile.TarFile]:
    """Open the data.tar of the .deb at `path` as a streaming tarfile (read members in order).

    `report(done, total)` is called with compressed bytes consumed, for a progress bar.
    """
    with open(path, "rb") as f:
        try:
            members = ar_members(f)
        except ValueError as exc:
            raise WirtError(f"{path} is not a valid .deb ({exc}); delete it and retry") from None
        m = _check_deb(f, members, path)
        on_read = (lambda done: report(done, m.size)) if report else None
        raw = io.BufferedReader(_Window(f, m.offset, m.size, on_read), buffer_size=1 << 20)
        suffix = m.name.removeprefix("data.tar")
        modes = {"": "r|", ".gz": "r|gz", ".xz": "r|xz", ".bz2": "r|bz2"}
        if suffix in modes:
            with tarfile.open(fileobj=raw, mode=modes[suffix]) as tar:
                yield tar
        elif suffix == ".zst":
            with _zstd_stream(raw, path) as plain, tarfile.open(fileobj=plain, mode="r|") as tar:
                yield tar
        else:
            raise WirtError(f"{path}: unsupported data member {m.name}")


@contextmanager
def _zstd_stream(raw: BinaryIO, path: Path) -> Iterator[BinaryIO]:
    """Decompress zstd with the stdlib (Python 3.14+) or else the `zstd` program."""
    try:
        zstd = importlib.import_module("compression.zstd")
    except ModuleNotFoundError:
        zstd = None
    if zstd is not None:
        with zstd.ZstdFile(raw) as plain:
            yield plain
        return
    exe = shutil.which("zstd")
    if exe is None:
        raise WirtError(f"{path.name} is zstd-compressed: install the zstd program (Debian package zstd)")
    proc = subprocess.Popen([exe, "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        try:
            while chunk := raw.read(1 << 20):
                proc.stdin.write(chunk)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()  # type: ignore[union-attr]

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield proc.stdout  # type: ignore[misc]
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
        feeder.join()


def normalize(name: str) -> str:
    """A tar member name as an installed path without the leading `./` or `/`."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def extract(
    path: Path,
    want: Callable[[str], bool],
    report: Callable[[int, int], None] | None = None,
) -> dict[str, DebMember]:
    """Unpack the regular files of data.tar whose path satisfies `want`, in one streaming pass."""
    found: dict[str, DebMember] = {}
    try:
        with open_data_tar(path, report) as tar:
            for info in tar:
                name = normalize(info.name)
                if not info.isfile() or not want(name):
                    continue
                fobj = tar.extractfile(info)
                assert fobj is not None
                found[name] = DebMember(name, fobj.read(), info.mode & 0o7777)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise WirtError(f"cannot unpack {path}: {exc}; delete it and retry") from None
    return found


def extract_one(path: Path, member: str) -> DebMember:
    """One file of data.tar, or a WirtError naming the package if it is not there."""
    got = extract(path, lambda name: name == member)
    if member not in got:
        raise WirtError(f"{path.name} does not contain /{member}; the package layout changed")
    return got[member]
