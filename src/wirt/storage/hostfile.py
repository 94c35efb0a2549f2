"""A host file opened for positional I/O: the one place image formats touch the file descriptor.

It keeps `end`, the highest byte offset written or present, so a format knows which clusters are
fresh (never written, so they read as zeros) without asking the kernel.
"""

from __future__ import annotations

import os

from wirt.errors import WirtError
from wirt.fileio import check_regular
from wirt import hostiov
from wirt.hostiov import HostIov
from wirt.iovec import IOV_MAX, take, total_len
from wirt.storage.writebehind import WriteBehind


#: Up to this many segments an I/O vector goes to os.preadv/pwritev as memoryviews: cheaper
#: than building the iovec array (10 us) for a 4 KiB request's one or two buffers.
_FEW = 8


class HostFile:
    """Positional reads and writes on one file; reads past the end return zeros."""

    def __init__(self, path: str, read_only: bool):
        self.path = path
        self.read_only = read_only
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block
        try:
            self.fd = os.open(path, flags)
        except FileNotFoundError:
            raise WirtError(f"{path}: no such file; check the path") from None
        except IsADirectoryError:
            raise WirtError(f"{path}: is a directory, not a disk image") from None
        except PermissionError:
            mode = "reading" if read_only else "writing"
            raise WirtError(f"{path}: permission denied opening for {mode}; "
                            f"{'fix its permissions' if read_only else 'open it read-only or fix its permissions'}"
                            ) from None
        except OSError as exc:
            raise WirtError(f"{path}: cannot open it ({exc.strerror or exc})") from None
        try:
            check_regular(self.fd, path, "disk image")
        except BaseException:
            os.close(self.fd)
            raise
        self.end = os.fstat(self.fd).st_size
        self.synced = True
        #: starts the host's write-back of sequential writes before the guest's flush
        self.writeback = None if read_only else WriteBehind(self.fd)

    def size(self) -> int:
        """The current length of the file according to the kernel."""
        return os.fstat(self.fd).st_size

    def pread(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset`, zero-padded past the end of the file."""
        try:
            data = os.pread(self.fd, length, offset)
            while len(data) < length:
                more = os.pread(self.fd, length - len(data), offset + len(data))
                if not more:
                    return data + bytes(length - len(data))
                data += more
        except OSError as exc:
            raise self._read_error(offset, exc) from None
        return data

    def readinto(self, offset: int, view: memoryview) -> None:
        """Fill `view` from `offset`, zero-filling past the end of the file."""
        done, total = 0, len(view)
        while done < total:
            try:
                n = os.preadv(self.fd, [view[done:]], offset + done)
            except OSError as exc:
                raise self._read_error(offset + done, exc) from None
            if n <= 0:
                view[done:] = bytes(total - done)
                return
            done += n

    def _read_error(self, offset: int, exc: OSError) -> WirtError:
        # e.g. /proc/self/mem named as a backing file: a regular file whose reads fail (EIO)
        return WirtError(f"{self.path}: cannot read at offset {offset} ({exc.strerror or exc}); "
                         "is it really a disk image?")

    def readv(self, offset: int, views: list[memoryview]) -> None:
        """Fill the buffers in order from `offset` with as few preadv calls as the kernel allows
        (one per IOV_MAX buffers), zero-filling past the end of the file."""
        while views:
            batch = views[:IOV_MAX]
            want = total_len(batch)
            try:
                n = os.preadv(self.fd, batch, offset)
            except OSError as exc:
                raise self._read_error(offset, exc) from None
            if n <= 0:
                for v in views:
                    v[:] = bytes(v.nbytes)
                return
            offset += n
            views = views[IOV_MAX:] if n == want else take(views, n)[1]

    def readv_iov(self, offset: int, iov: HostIov) -> None:
        """`readv` into an I/O vector (one preadv per IOV_MAX segments, no Python object per
        segment), zero-filling past the end of the file."""
        if len(iov) <= _FEW:
            self.readv(offset, iov.views())
            return
        try:
            n = hostiov.preadv(self.fd, offset, iov)
        except OSError as exc:
            raise self._read_error(offset, exc) from None
        if n < iov.total:
            iov.split(n)[1].zero()

    def pwritev_iov(self, offset: int, iov: HostIov) -> None:
        """`pwritev` from an I/O vector (one call per IOV_MAX segments)."""
        assert not self.read_only, "write to a read-only host file"
        if len(iov) <= _FEW:
            self.pwritev(offset, iov.views())
            return
        hostiov.pwritev(self.fd, offset, iov)
        if offset + iov.total > self.end:
            self.end = offset + iov.total
        self.synced = False
        self.writeback.wrote(offset, iov.total)

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of `data` at `offset`."""
        assert not self.read_only, "write to a read-only host file"
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        total, done = len(view), 0
        while done < total:
            done += os.pwrite(self.fd, view[done:] if done else view, offset + done)
        if offset + total > self.end:
            self.end = offset + total
        self.synced = False
        self.writeback.wrote(offset, total)

    def pwritev(self, offset: int, buffers: list) -> None:
        """Write several buffers back to back at `offset` (one pwritev per IOV_MAX buffers)."""
        assert not self.read_only, "write to a read-only host file"
        # os.pwritev takes any buffer and total_len counts nbytes, so a memoryview (a guest page,
        # usually) is used as it is: a cast per buffer cost 0.3 us, 77 us for a 1 MiB request.
        views = [b if type(b) is memoryview else memoryview(b) for b in buffers]
        end = offset + total_len(views)
        pos = offset
        while views:
            batch = views[:IOV_MAX]
            want = total_len(batch)
            n = os.pwritev(self.fd, batch, pos)
            pos += n
            # a short write (rare) continues after the bytes that were taken
            views = views[IOV_MAX:] if n == want else take(views, n)[1]
        if end > self.end:
            self.end = end
        self.synced = False
        self.writeback.wrote(offset, end - offset)

    def extend_to(self, length: int) -> None:
        """Grow the file to at least `length` bytes (a sparse hole reads as zeros)."""
        if self.size() < length:
            os.ftruncate(self.fd, length)
        self.end = max(self.end, length)
        self.synced = False

    def sync(self) -> None:
        """Make everything written so far durable (a write barrier for crash ordering)."""
        if not self.read_only:
            os.fdatasync(self.fd)
        self.synced = True

    def close(self) -> None:
        if self.fd >= 0:
            if self.writeback is not None:
                self.writeback.close()
            os.close(self.fd)
            self.fd = -1
