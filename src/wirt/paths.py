"""Where wirt keeps files: the user's cache directory (downloads, built images, compiled core)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$WIRT_CACHE, else $XDG_CACHE_HOME/wirt, else ~/.cache/wirt."""
    if os.environ.get("WIRT_CACHE"):
        return Path(os.environ["WIRT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wirt"
