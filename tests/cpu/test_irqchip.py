"""The PLIC served inside the core (cpu/irqchip.py): claims and completions run without an
MMIO exit, on the same state devices/plic.Plic shows, and a completion that would raise a
line again is left to Python (an exit) with nothing changed."""

import numpy as np
import pytest

from wirt.cpu import layout as L
from wirt.cpu.hart import Hart
from wirt.devices.plic import Plic
from wirt.machine.rvenc import REG, assemble, jal, li32, lw, sw

RAM_BASE = 0x8000_0000
PLIC_BASE = 0x0C00_0000
CTX1 = PLIC_BASE + 0x20_1000  # hart 0, S-mode: threshold at +0, claim/complete at +4
SRC = 3


def rig(program: list[int], harts: int = 1):
    """Harts running `program` from RAM, bound to a PLIC with source SRC enabled at priority 1
    for every hart's S-mode context; returns (harts, plic, list of on_rise masks)."""
    ram = np.zeros(1 << 16, dtype=np.uint8)
    code = assemble(program)
    ram[: len(code)] = np.frombuffer(code, dtype=np.uint8)
    rises: list[int] = []
    plic = Plic(2 * harts, ndev=8, base=PLIC_BASE, on_rise=rises.append)
    hs = []
    for h in range(harts):
        hart = Hart(ram, RAM_BASE, h, jit="off")
        plic.bind_hart(h, hart.s)
        hart.attach_irqchip(plic.pl)
        hs.append(hart)
    plic.write(4 * SRC, 4, 1)
    for h in range(harts):
        plic.write(0x2000 + 0x80 * (2 * h + 1), 4, 1 << SRC)
    return hs, plic, rises


PROGRAM = [*li32("t0", CTX1), lw("a0", "t0", 4), sw("a0", "t0", 4), lw("a1", "t0", 4), lw("a2", "t0", 0),
           jal("zero", 0)]


def x(hart: Hart, name: str) -> int:
    return int(hart.s[REG[name]])


def test_claim_and_complete_run_in_the_core():
    (hart,), plic, rises = rig(PROGRAM)
    plic.line(SRC).raise_()
    assert rises == [1] and hart.s[L.EXT_IP] == L.MIP_SEIP
    assert hart.run(3) == L.EXIT_BUDGET  # li32 (2) and the claim: no exit
    assert x(hart, "a0") == SRC
    assert hart.s[L.EXT_IP] == 0 and not plic.output(1)  # claimed: the line fell
    plic.line(SRC).lower()  # the driver acknowledged the device
    assert hart.run(1) == L.EXIT_BUDGET  # the completion
    assert plic.state()["claimed"] == "0x0"
    plic.line(SRC).raise_()  # the gateway is open again
    assert rises == [1, 1]
    assert hart.run(2) == L.EXIT_BUDGET
    assert x(hart, "a1") == SRC and x(hart, "a2") == 0  # claimed again; threshold 0
    assert hart.instret == 6


def test_completion_of_a_still_asserted_source_is_left_to_python():
    (hart,), plic, rises = rig(PROGRAM)
    plic.line(SRC).raise_()
    assert hart.run(3) == L.EXIT_BUDGET
    before = plic.state()
    assert hart.run(1) == L.EXIT_MMIO  # completing would make SRC pending again at once
    assert hart.ex[L.EX_ADDR] == CTX1 + 4 and hart.ex[L.EX_STORE] == 1 and hart.ex[L.EX_VALUE] == SRC
    assert plic.state() == before
    plic.write(CTX1 + 4 - PLIC_BASE, 4, SRC)  # what the machine does with the exit
    assert plic.state()["pending"] == hex(1 << SRC) and rises == [1, 1]
    assert hart.s[L.EXT_IP] == L.MIP_SEIP


def test_a_claim_lowers_the_other_harts_line():
    (h0, h1), plic, rises = rig(PROGRAM, harts=2)
    plic.line(SRC).raise_()
    assert rises == [0b11]
    assert h0.s[L.EXT_IP] == L.MIP_SEIP and h1.s[L.EXT_IP] == L.MIP_SEIP
    assert h0.run(3) == L.EXIT_BUDGET
    assert x(h0, "a0") == SRC
    assert h1.s[L.EXT_IP] == 0  # nothing left for hart 1 to claim


@pytest.mark.parametrize("offset", [
    0x20_1000,        # hart 0's S-mode threshold
    4 * SRC,          # a priority
    0x2000 + 0x80,    # an enable word
])
def test_writes_that_may_raise_a_line_exit(offset):
    (hart,), plic, _ = rig([*li32("t0", PLIC_BASE + offset), sw("zero", "t0", 0), jal("zero", 0)])
    before = plic.state()
    assert hart.run(3) == L.EXIT_MMIO and hart.ex[L.EX_ADDR] == PLIC_BASE + offset
    assert plic.state() == before


def test_without_a_plic_every_access_exits():
    ram = np.zeros(1 << 16, dtype=np.uint8)
    code = assemble(PROGRAM)
    ram[: len(code)] = np.frombuffer(code, dtype=np.uint8)
    hart = Hart(ram, RAM_BASE, 0, jit="off")
    assert hart.run(3) == L.EXIT_MMIO and hart.ex[L.EX_ADDR] == CTX1 + 4


STATUS = 0x1000_1060  # a virtio-mmio slot's InterruptStatus; InterruptACK 4 bytes above


def test_interrupt_status_and_acknowledge_run_in_the_core():
    program = [*li32("t1", STATUS), lw("a0", "t1", 0), sw("a0", "t1", 4), lw("a1", "t1", 0), jal("zero", 0)]
    (hart,), plic, rises = rig(program)
    isr = plic.status_line(SRC, STATUS)
    isr.change(1)  # a used buffer: the device raises its line
    assert rises == [1] and hart.s[L.EXT_IP] == L.MIP_SEIP
    assert hart.run(5) == L.EXIT_BUDGET  # the read and the acknowledgement: no exit
    assert x(hart, "a0") == 1 and x(hart, "a1") == 0 and isr.value == 0
    assert hart.s[L.EXT_IP] == 0 and plic.state()["pending"] == "0x0"  # the line fell unclaimed
    isr.change(2)
    assert rises == [1, 1] and plic.state()["level"] == hex(1 << SRC)


def test_other_registers_of_a_status_device_exit():
    program = [*li32("t1", STATUS), lw("a0", "t1", 8), jal("zero", 0)]
    (hart,), plic, _ = rig(program)
    plic.status_line(SRC, STATUS)
    assert hart.run(3) == L.EXIT_MMIO and hart.ex[L.EX_ADDR] == STATUS + 8
