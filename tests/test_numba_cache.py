"""Where the compiled CPU core is cached: the user's cache directory, keyed by the core's sources,
whether a program imports numba before wirt or not (never beside the sources)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
if sys.argv[1] == "numba-first":
    import numba  # noqa: F401
import wirt
from wirt.cpu import alu
print(alu.div._cache._cache_path)
print(wirt.__file__)
"""


@pytest.mark.parametrize("order", ["numba-first", "wirt-first"])
def test_the_core_is_cached_in_the_user_cache_directory(order: str, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["WIRT_CACHE"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", PROBE, order], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    cache_path, package = out[0], os.path.dirname(out[1])
    assert cache_path.startswith(str(tmp_path / "numba")), cache_path
    assert not cache_path.startswith(package), cache_path
