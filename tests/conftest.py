"""Shared fixtures: building RISC-V test programs with Debian's cross toolchain, a private WIRT_HOME."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from wirt.paths import cache_dir

CC = "riscv64-unknown-elf-gcc"
ASM_DIR = Path(__file__).parent / "cpu" / "asm"


def cross_compiler() -> str:
    """The cross compiler's path; tests need it (the Makefile's setup installs it)."""
    path = shutil.which(CC)
    if path is None:
        pytest.fail(f"{CC} not found: install gcc-riscv64-unknown-elf (make test does this)")
    return path


def build_program(source: str, name: str, march: str = "rv64gc") -> Path:
    """Assemble a test body (text of assembly) into the harness; cached by content."""
    key = hashlib.sha256((source + march + (ASM_DIR / "harness.S").read_text()
                          + (ASM_DIR / "link.ld").read_text()).encode()).hexdigest()[:16]
    out_dir = cache_dir() / "test-programs"
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / f"{name}-{key}.elf"
    if elf.exists():
        return elf
    body = out_dir / f"{name}-{key}.inc"
    body.write_text(source + "\n")
    tmp = elf.with_suffix(f".tmp{os.getpid()}")
    subprocess.run(
        [cross_compiler(), f"-march={march}", "-mabi=lp64", "-nostdlib", "-nostartfiles", "-static",
         "-mcmodel=medany", f"-DBODY=\"{body}\"", "-T", str(ASM_DIR / "link.ld"), "-o", str(tmp),
         str(ASM_DIR / "harness.S")],
        check=True, capture_output=True, text=True)
    tmp.rename(elf)
    return elf


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """WIRT_HOME in a temporary directory (for this process and the VM processes it starts)."""
    h = tmp_path / "home"
    monkeypatch.setenv("WIRT_HOME", str(h))
    # No warm zygote per test home (each would load the core in the background); the tests
    # that check the zygote path turn it on and stop it (tests/vm/test_zygote.py).
    monkeypatch.setenv("WIRT_ZYGOTE", "0")
    return h


@pytest.fixture
def run_asm():
    """Run an assembly test body; returns the BareMetal machine after it exits."""
    from wirt.machine.baremetal import BareMetal

    def run(source: str, name: str = "t", max_insns: int = 1_000_000):
        m = BareMetal(str(build_program(source, name)), 1 << 20, output=lambda b: None)
        result = m.run(max_insns)
        assert result.reason == "exit", f"program did not finish: {result}"
        m.result = result
        return m

    return run


@pytest.fixture(scope="session", autouse=True)
def compiled_core():
    """Compile (or load) the CPU core once before any test: on a fresh machine the first load
    takes a while and says so on stderr, which must not land in a test that checks a VM
    process's one-line errors or its start-up time."""
    from wirt.cpu.hart import core_module

    core_module()
