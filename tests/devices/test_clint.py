"""CLINT register decode (incl. 32-bit halves) and the timer condition via SimpleTimer."""

import json

import pytest

from wirt.devices.clint import Clint, SimpleTimer, TimerPort
from wirt.errors import WirtError

MTIMECMP = 0x4000
MTIME = 0xBFF8


def make(n=2):
    t = SimpleTimer(n)
    return Clint(t, n), t


def test_simple_timer_is_a_timer_port():
    assert isinstance(SimpleTimer(1), TimerPort)


def test_msip_per_hart_bit0_only():
    c, t = make()
    c.write(4, 4, 0xFFFF_FFFF)
    assert t.msip(1) and not t.msip(0)
    assert c.read(4, 4) == 1
    assert c.read(0, 4) == 0
    c.write(4, 4, 0)
    assert not t.msip(1)
    c.write(8, 4, 1)  # hart 2 does not exist
    assert c.read(8, 4) == 0


def test_mtime_64_and_32_bit_halves():
    c, t = make()
    c.write(MTIME, 8, 0x1122_3344_5566_7788)
    assert t.mtime == 0x1122_3344_5566_7788
    assert c.read(MTIME, 4) == 0x5566_7788
    assert c.read(MTIME + 4, 4) == 0x1122_3344
    c.write(MTIME + 4, 4, 0xAABB_CCDD)
    assert c.read(MTIME, 8) == 0xAABB_CCDD_5566_7788
    c.write(MTIME, 4, 0x0102_0304)
    assert c.read(MTIME, 8) == 0xAABB_CCDD_0102_0304


def test_mtimecmp_decode_per_hart():
    c, t = make()
    c.write(MTIMECMP + 8, 8, 0xDEAD_BEEF_0000_0001)
    assert t.read_mtimecmp(1) == 0xDEAD_BEEF_0000_0001
    assert t.read_mtimecmp(0) == 0xFFFF_FFFF_FFFF_FFFF
    assert c.read(MTIMECMP + 8, 4) == 1
    assert c.read(MTIMECMP + 12, 4) == 0xDEAD_BEEF
    # the 32-bit update sequence OpenSBI/Linux use on rv32-style code paths
    c.write(MTIMECMP, 4, 0xFFFF_FFFF)
    c.write(MTIMECMP + 4, 4, 0)
    c.write(MTIMECMP, 4, 500)
    assert t.read_mtimecmp(0) == 500
    assert c.read(MTIMECMP + 16, 8) == 0  # hart 2 does not exist
    c.write(MTIMECMP + 16, 8, 5)


def test_narrow_accesses():
    c, t = make()
    c.write(MTIME, 8, 0x1122_3344_5566_7788)
    assert c.read(MTIME + 1, 1) == 0x77
    assert c.read(MTIME + 6, 2) == 0x1122
    c.write(MTIME + 7, 1, 0xFF)
    assert t.mtime == 0xFF22_3344_5566_7788


def test_timer_interrupt_condition():
    c, t = make(1)
    c.write(MTIME, 8, 100)
    c.write(MTIMECMP, 8, 150)
    assert not t.mtip(0)
    t.advance(49)
    assert not t.mtip(0)
    t.advance(1)
    assert t.mtip(0)  # mtime >= mtimecmp
    c.write(MTIMECMP, 8, 1000)  # writing mtimecmp clears MTIP
    assert not t.mtip(0)
    assert c.read(MTIME, 8) == 150


def test_unmapped_reads_zero():
    c, _ = make()
    assert c.read(0x8000, 4) == 0
    c.write(0x8000, 4, 1)
    assert c.read(0xBFF0, 8) == 0


def test_state_round_trip():
    c, t = make()
    c.write(MTIME, 8, 42)
    c.write(MTIMECMP + 8, 8, 99)
    c.write(4, 4, 1)
    st = json.loads(json.dumps({"clint": c.state(), "timer": t.state()}))
    c2, t2 = make()
    c2.load_state(st["clint"])
    t2.load_state(st["timer"])
    assert t2.state() == t.state()
    assert c2.read(MTIMECMP + 8, 8) == 99 and c2.read(4, 4) == 1
    c3 = Clint(SimpleTimer(1), 1)
    with pytest.raises(WirtError):
        c3.load_state(st["clint"])
