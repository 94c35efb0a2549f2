"""Per-VM file locks: concurrent commands on one VM (two `wirt start`, `stop` during `rm`) are
serialized with fcntl.flock on `vms/NAME/.lock` (flock(2): the lock dies with the process,
so a killed command never leaves a VM locked)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from wirt.errors import NotFoundError, StateError

__all__ = ["vm_lock"]

DEFAULT_WAIT = 30.0


@contextlib.contextmanager
def vm_lock(vm_dir: Path, wait: float = DEFAULT_WAIT) -> Iterator[None]:
    """Hold the VM's exclusive lock for the body; wait up to `wait` seconds for another holder."""
    path = Path(vm_dir) / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        raise NotFoundError(f"VM {Path(vm_dir).name!r} does not exist; see `wirt ls`") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateError(f"VM {Path(vm_dir).name!r} is busy with another wirt command; "
                                    "wait for it to finish and try again") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
