"""When Python's garbage collector runs in a wirt process.

Start-up imports numba, llvmlite and wirt's modules and loads the compiled core: hundreds of
thousands of objects that live as long as the process. With the default thresholds the
collector ran about 250 times meanwhile, two of them full collections, walking those objects
again and again; `wirt run -- true` took 2.17-2.32 s with them and 1.67-1.83 s without
(alternating, in-process). So a command raises the first generation's threshold at start
(`defer_collections`), and a machine, when it starts running its guest, freezes everything
alive (gc.freeze: moved to the permanent generation, which no collection visits) and restores
the default threshold (`settle_collections`): the collections during the run see only the
objects made since. Commands that never run a machine keep collecting, only less often.

At exit the last collection is skipped the same way (`skip_final_collection`): with numba and
LLVM loaded it took 0.15-0.25 s after the guest had powered off, for memory the OS takes back
anyway. Files and sockets are closed by the code that owns them before it runs; nothing here
changes what reaches disk.
"""

from __future__ import annotations

import atexit
import gc

_DEFAULT = gc.get_threshold()
_START_THRESHOLD = 200_000    # allocations between first-generation collections at start-up
_registered = False
_settled = False


def defer_collections() -> None:
    """Collect rarely while the process starts (its objects live as long as it does)."""
    gc.set_threshold(_START_THRESHOLD, _DEFAULT[1], _DEFAULT[2])


def settle_collections() -> None:
    """Start-up is over: freeze what is alive and collect as usual from here on. Once per
    process (a process that runs many machines, such as a test session, would otherwise keep
    every garbage cycle alive at each freeze)."""
    global _settled
    if not _settled:
        _settled = True
        gc.freeze()
    gc.set_threshold(*_DEFAULT)


def skip_final_collection() -> None:
    """Freeze the heap when the process exits (once per process; a no-op when called again)."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(gc.freeze)
