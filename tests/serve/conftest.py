"""Fixtures for `wirt serve` (helpers in serverproc.py): a private WIRT_HOME, a server, the echo firmware."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the serve extra is not installed (make test installs it)")

from serverproc import Server, echo_firmware, stop_all  # noqa: E402


@pytest.fixture
def server(home: Path):
    s = Server(home)
    yield s
    s.stop()
    stop_all(home)


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    p = tmp_path / "echo.bin"
    p.write_bytes(echo_firmware())
    return p




@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server per module for tests that leave no VM behind (saves a server start per test)."""
    home = tmp_path_factory.mktemp("shared-home")
    s = Server(home)
    yield s
    s.stop()
    stop_all(home)
