"""Write-behind: start the host's write-back of a stream of sequential guest writes early.

A guest that streams writes and then flushes (`dd conv=fsync`, a copy followed by `sync`, a
database checkpoint) otherwise leaves everything dirty in the host's page cache until the flush,
whose fdatasync then writes it all out while the guest waits: a fifth to a quarter of a 256 MiB
sequential write phase of `bench/disk.py`, with the hart thread blocked. Once a run of
back-to-back writes passes CHUNK bytes, a background thread asks the kernel to start writing that
range out (sync_file_range(2) with SYNC_FILE_RANGE_WRITE, which neither waits for the I/O nor
makes anything durable), so the flush finds most of it on its way to the disk already; the
kernel's own write-back would wait for 30 s or for a tenth of the host's memory to be dirty.

Only sequential streams are written out early: random writes never form a run, so a page the
guest writes again and again is not written out again and again. Durability is unchanged: data
is durable when a flush (fdatasync) returns, as before, and an error of an early write-back
surfaces there too (the kernel keeps it for the next fdatasync of the file).
"""

from __future__ import annotations

import ctypes
import queue
import threading

__all__ = ["CHUNK", "WriteBehind"]

CHUNK = 4 << 20          # bytes of a sequential run handed to write-back at a time
LARGE = 64 << 10         # a write at least this large may start a new run; smaller ones elsewhere
                         # (qcow2 metadata, a random 4 KiB write) leave the current run alone
_SYNC_FILE_RANGE_WRITE = 2   # linux/fs.h: start write-out of dirty pages not already under it

_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)   # Linux only
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    _sync_file_range.restype = ctypes.c_int


class WriteBehind:
    """Tracks one file's writes; hands each CHUNK of a sequential run to a write-back thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.enabled = _sync_file_range is not None
        self._start = self._end = -1     # the current run of back-to-back writes
        self._jobs: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None
        #: bytes handed to write-back (tests and stats)
        self.submitted = 0

    def wrote(self, offset: int, length: int) -> None:
        """`length` bytes were just written at `offset` (called by HostFile after each write)."""
        if offset == self._end:
            self._end += length
        elif length >= LARGE:
            self._start, self._end = offset, offset + length
        else:
            return
        if self._end - self._start >= CHUNK and self.enabled:
            self._submit(self._start, self._end - self._start)
            self._start = self._end

    def _submit(self, offset: int, length: int) -> None:
        if self._thread is None or not self._thread.is_alive():   # (not alive: a forked child)
            self._jobs = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._work, args=(self._jobs,),
                                            name="wirt-writeback", daemon=True)
            self._thread.start()
        assert self._jobs is not None
        self._jobs.put((offset, length))
        self.submitted += length

    def _work(self, jobs: queue.SimpleQueue) -> None:
        while (job := jobs.get()) is not None:
            # A failure (EIO, or EBADF after a fork closed the file) needs no action: the range
            # stays dirty, and the next fdatasync writes it or reports the error.
            _sync_file_range(self.fd, job[0], job[1], _SYNC_FILE_RANGE_WRITE)

    def close(self) -> None:
        """Wait for the write-back thread to finish its last call (before the file is closed,
        so that it never acts on a descriptor number reused by another file)."""
        if self._thread is not None and self._thread.is_alive():
            assert self._jobs is not None
            self._jobs.put(None)
            self._thread.join()
        self._thread = None
