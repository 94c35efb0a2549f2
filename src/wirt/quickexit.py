"""Process exit without the interpreter's last garbage collection.

With numba and LLVM loaded, the collection Python runs while it shuts down walks hundreds of
thousands of objects: 0.15-0.25 s at the end of every `wirt run`, after the guest has powered
off, for memory the OS takes back anyway. Freezing every object at exit (gc.freeze: moved to
the permanent generation, which no collection visits) skips it. Files and sockets are closed
by the code that owns them before this runs; nothing here changes what reaches disk.
"""

from __future__ import annotations

import atexit
import gc

_registered = False


def skip_final_collection() -> None:
    """Freeze the heap when the process exits (once per process; a no-op when called again)."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(gc.freeze)
