"""Goldfish RTC: time latch, set time via offset, alarm, interrupt."""

import json

from wirt.devices.irq import IrqLine
from wirt.devices.rtc import GoldfishRtc

TIME_LOW, TIME_HIGH, ALARM_LOW, ALARM_HIGH = 0x00, 0x04, 0x08, 0x0C
IRQ_ENABLED, CLEAR_ALARM, ALARM_STATUS, CLEAR_INTERRUPT = 0x10, 0x14, 0x18, 0x1C


class FakeClock:
    def __init__(self, t=1_700_000_000 * 10**9):
        self.t = t

    def __call__(self):
        return self.t


def make():
    clock = FakeClock()
    irq = IrqLine()
    return GoldfishRtc(irq, clock=clock), clock, irq


def test_time_low_latches_high():
    rtc, clock, _ = make()
    clock.t = (5 << 32) | 0xFFFF_FFF0
    lo = rtc.read(TIME_LOW, 4)
    clock.t += 0x100  # carries into the high half after the latch
    hi = rtc.read(TIME_HIGH, 4)
    assert (hi << 32) | lo == (5 << 32) | 0xFFFF_FFF0
    assert rtc.read(TIME_LOW, 8) == clock.t


def test_default_clock_is_wall_time():
    import time

    rtc = GoldfishRtc()
    t = rtc.read(TIME_LOW, 8)
    assert abs(t - time.time_ns()) < 60 * 10**9


def test_guest_sets_time_as_offset():
    rtc, clock, _ = make()
    target = 1_000_000_000 * 10**9 + 123
    rtc.write(TIME_HIGH, 4, target >> 32)  # Linux writes high then low
    rtc.write(TIME_LOW, 4, target & 0xFFFF_FFFF)
    assert rtc.now() == target
    clock.t += 10**9
    lo = rtc.read(TIME_LOW, 4)
    assert (rtc.read(TIME_HIGH, 4) << 32) | lo == target + 10**9
    assert clock.t == 1_700_000_001 * 10**9  # host clock untouched


def test_alarm_fires_on_poll_and_interrupts_when_enabled():
    rtc, clock, irq = make()
    when = clock.t + 5 * 10**9
    rtc.write(ALARM_HIGH, 4, when >> 32)
    rtc.write(ALARM_LOW, 4, when & 0xFFFF_FFFF)
    rtc.write(IRQ_ENABLED, 4, 1)
    assert rtc.read(ALARM_STATUS, 4) == 1
    assert rtc.next_deadline() == when
    rtc.poll(when - 1)
    assert not irq.level
    clock.t = when
    rtc.poll()
    assert irq.level
    assert rtc.read(ALARM_STATUS, 4) == 0 and rtc.next_deadline() is None
    rtc.write(CLEAR_INTERRUPT, 4, 1)
    assert not irq.level


def test_alarm_masked_then_enabled():
    rtc, clock, irq = make()
    rtc.write(ALARM_HIGH, 4, clock.t >> 32)
    rtc.write(ALARM_LOW, 4, (clock.t - 1) & 0xFFFF_FFFF)  # in the past: fires at once
    assert not irq.level
    rtc.write(IRQ_ENABLED, 4, 1)
    assert irq.level
    assert rtc.read(IRQ_ENABLED, 4) == 1


def test_clear_alarm_disarms():
    rtc, clock, irq = make()
    when = clock.t + 10
    rtc.write(IRQ_ENABLED, 4, 1)
    rtc.write(ALARM_HIGH, 4, when >> 32)
    rtc.write(ALARM_LOW, 4, when & 0xFFFF_FFFF)
    rtc.write(CLEAR_ALARM, 4, 1)
    clock.t += 100
    rtc.poll()
    assert not irq.level and rtc.read(ALARM_STATUS, 4) == 0


def test_deadline_follows_guest_offset():
    rtc, clock, _ = make()
    rtc.write(TIME_HIGH, 4, 0)
    rtc.write(TIME_LOW, 4, 1000)  # guest clock = 1000 ns
    rtc.write(ALARM_HIGH, 4, 0)
    rtc.write(ALARM_LOW, 4, 3000)
    assert rtc.next_deadline() == clock.t + 2000


def test_state_round_trip():
    rtc, clock, irq = make()
    rtc.write(TIME_HIGH, 4, 7)
    rtc.write(IRQ_ENABLED, 4, 1)
    rtc.write(ALARM_HIGH, 4, 8)
    rtc.write(ALARM_LOW, 4, 9)
    st = json.loads(json.dumps(rtc.state()))
    irq2 = IrqLine()
    rtc2 = GoldfishRtc(irq2, clock=clock)
    rtc2.load_state(st)
    assert rtc2.state() == rtc.state()
    assert rtc2.now() == rtc.now()
    assert rtc2.next_deadline() == rtc.next_deadline()
