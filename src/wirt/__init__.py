"""wirt: a type-2 hypervisor written in Python that runs emulated RISC-V virtual machines."""

import hashlib as _hashlib
import os as _os
from pathlib import Path as _Path

from wirt.paths import cache_dir as _cache_dir


def _core_source_key() -> str:
    """A digest of the CPU core's sources. numba's cache only notices edits to the file that
    holds a function, not to the constants it imports, so the cache folder is keyed by this."""
    h = _hashlib.sha256()
    root = _Path(__file__).parent / "cpu"
    for p in sorted(root.rglob("*.py")):    # the core includes cpu/jit's translator
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# wirt does no linear algebra: without this, numpy's OpenBLAS starts a thread per host core
# that spins for a while after import, taking host CPU from the vCPU and compiler threads.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# numba reads its cache location when it is first imported: keep the compiled CPU core in
# the user's cache directory (not beside the sources, which may be read-only).
_os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache_dir() / "numba" / _core_source_key()))
if "numba.core.config" in __import__("sys").modules:
    # numba came first (a program importing it before wirt): it read the variable already,
    # and its caches are placed when a function is decorated, which is still to come.
    __import__("sys").modules["numba.core.config"].CACHE_DIR = _os.environ["NUMBA_CACHE_DIR"]

__version__ = "0.1.0"


def __getattr__(name: str):
    """`wirt.VM` without importing the hypervisor layer (and numba) on every `import wirt`."""
    if name == "VM":
        from wirt.vm.api import VM

        return VM
    raise AttributeError(f"module 'wirt' has no attribute {name!r}")
