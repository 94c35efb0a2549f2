"""Lists of buffers (I/O vectors): guest RAM views that one request reads or writes in order.

Shared by virtqueues (a descriptor chain's buffers) and disk images (`readv`/`writev`, which
hand the whole list to one `preadv`/`pwritev`).
"""

from __future__ import annotations

__all__ = ["total_len", "take", "scatter", "IOV_MAX"]

#: Most buffers one preadv/pwritev takes (Linux UIO_MAXIOV).
IOV_MAX = 1024


def total_len(views: list[memoryview]) -> int:
    """Total bytes in a list of buffers."""
    return sum(v.nbytes for v in views)


def take(views: list[memoryview], n: int) -> tuple[list[memoryview], list[memoryview]]:
    """Split buffers after the first `n` bytes (fewer if the buffers hold less): (head, rest)."""
    if n <= 0:
        return [], list(views)
    head: list[memoryview] = []
    for i, v in enumerate(views):
        size = v.nbytes
        if size < n:
            head.append(v)
            n -= size
        elif size == n:
            head.append(v)
            return head, list(views[i + 1:])
        else:
            head.append(v[:n])
            return head, [v[n:], *views[i + 1:]]
    return head, []


def scatter(views: list[memoryview], data: bytes | memoryview) -> int:
    """Copy `data` into buffers in order; returns the bytes written (truncated to their size)."""
    src = memoryview(data).cast("B")
    done = 0
    for v in views:
        if done >= len(src):
            break
        n = min(v.nbytes, len(src) - done)
        v[:n] = src[done: done + n]
        done += n
    return done
