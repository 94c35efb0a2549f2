"""Fixtures for the hypervisor tests: a private WIRT_HOME and a tiny bare-metal "guest".

The tiny guest is firmware that echoes UART input back and powers the machine off (SiFive
test finisher, 0x5555) when it reads 'f' -- the graceful stop types "poweroff -f", so it
exercises the real stop path without booting Linux.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wirt.machine import rvenc as E


def _lbu(rd: str, rs1: str, imm: int) -> int:
    return E._i(0x03, 4, rd, rs1, imm)


def _andi(rd: str, rs1: str, imm: int) -> int:
    return E._i(0x13, 7, rd, rs1, imm)


def echo_firmware() -> bytes:
    """UART echo loop; 'f' powers off (DESIGN.md memory map: UART 0x1000_0000, finisher 0x10_0000)."""
    words = [*E.li32("t0", 0x1000_0000), *E.li32("t3", 0x10_0000), *E.li32("t4", 0x5555),
             E.addi("t5", "zero", ord("f"))]
    loop = len(words)
    words += [_lbu("t1", "t0", 5), _andi("t1", "t1", 1)]
    words.append(E.beq("t1", "zero", (loop - len(words)) * 4))
    words += [_lbu("t2", "t0", 0), E.sb("t2", "t0", 0)]
    words.append(E.bne("t2", "t5", (loop - len(words)) * 4))
    words += [E.sw("t4", "t3", 0), E.jal("zero", 0)]
    return E.assemble(words)


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    p = tmp_path / "echo.bin"
    p.write_bytes(echo_firmware())
    return p


@pytest.fixture
def tiny_vm(home: Path, firmware: Path):
    """A created (not started) VM running the echo firmware; killed at teardown if still up."""
    from wirt.vm.api import VM

    vm = VM.create("tiny", memory="32M", disk="1M", image="none", net="none", firmware=str(firmware))
    yield vm
    try:
        if vm.status(query=False).running:
            vm.stop(force=True)
    except Exception:
        pass
