"""The official riscv-tests ISA suite, run from the folder named by WIRT_RISCV_TESTS.

Build it locally with Debian's cross compiler (see docs/testing.md); it is never committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SUITES = ("rv64ui", "rv64um", "rv64ua", "rv64uc", "rv64si", "rv64mi", "rv64uf", "rv64ud")


def _binaries() -> list[Path]:
    folder = os.environ.get("WIRT_RISCV_TESTS")
    if not folder:
        return []
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.name.split("-")[0] in SUITES and "-" in p.name
                  and p.suffix == "")


BINARIES = _binaries()


@pytest.mark.skipif(bool(BINARIES), reason="riscv-tests are configured")
def test_riscv_tests_configured() -> None:
    pytest.skip("riscv-tests skipped: set WIRT_RISCV_TESTS to a folder of built riscv-tests "
                "binaries (see docs/testing.md)")


@pytest.mark.parametrize("jit", ["off", "force"])
@pytest.mark.parametrize("path", BINARIES, ids=[p.name for p in BINARIES])
def test_riscv_test(path: Path, jit: str) -> None:
    """Each binary under the interpreter alone and with every block translated (WIRT_JIT=force)."""
    from wirt.machine.baremetal import BareMetal

    m = BareMetal(str(path), 64 << 20, output=lambda b: None, jit=jit)
    result = m.run(50_000_000)
    assert result.reason == "exit", f"{path.name} did not finish: {result}"
    assert result.exit_code == 0, f"{path.name} failed test case {result.exit_code}"
