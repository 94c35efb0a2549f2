"""A private WIRT_HOME for a test module's shared guest (the slow guest tests)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """WIRT_HOME in a fresh folder for a module's shared guest; on exit its VMs are forced off,
    its zygote stopped and WIRT_HOME restored."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("WIRT_HOME")
    os.environ["WIRT_HOME"] = str(home)
    try:
        yield home
    finally:
        from wirt.vm import zygote
        from wirt.vm.api import VM

        for vm in VM.list(home):
            with contextlib.suppress(Exception):
                if vm.status(query=False).running:
                    vm.stop(force=True)
        zygote.stop(home)
        if old is None:
            os.environ.pop("WIRT_HOME", None)
        else:
            os.environ["WIRT_HOME"] = old
