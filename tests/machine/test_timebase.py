"""Real-time guest time with harts whose speed changes tenfold (the translation tier): TIME_SHIFT
follows the fastest slice at once, and the harts of one machine agree on mtime."""

from __future__ import annotations

import numpy as np

from wirt.cpu import layout as L
from wirt.machine.timebase import MAX_LEAD, SLICE_TICKS, GuestClock


class FakeHost:
    """A host monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.ns = 10**9

    def __call__(self) -> int:
        return self.ns


def run_slice(clock: GuestClock, host: FakeHost, mips: int) -> None:
    """What a hart thread does around one slice (machine/smp.py): anchor, run a slice's budget
    at `mips`, account for it."""
    clock.before_slice()
    insns = min(2_000_000, clock.slice_budget())
    ns = insns * 1000 // mips
    clock.s[L.ICOUNT] += insns
    host.ns += ns
    clock.account(insns, ns)


def new_clock(host: FakeHost, primary: GuestClock | None = None) -> GuestClock:
    """A hart's clock in a machine with several harts."""
    clock = GuestClock(np.zeros(L.S_SIZE, dtype=np.int64), monotonic_ns=host, primary=primary)
    clock.agree = True
    return clock


def test_a_fast_slice_raises_the_shift_at_once():
    host = FakeHost()
    clock = new_clock(host)
    for _ in range(2000):                      # kernel-speed slices: 100 MIPS
        run_slice(clock, host, 100)
    assert int(clock.s[L.TIME_SHIFT]) == 4    # 10 instructions per tick, rounded up to 16
    run_slice(clock, host, 1500)               # a user loop at 1.5 GIPS
    assert int(clock.s[L.TIME_SHIFT]) == 8    # 150 instructions per tick, rounded up to 256
    ahead = clock.now() - clock.host_ticks()
    assert 0 < ahead <= SLICE_TICKS            # that one slice ran ahead, by at most its budget
    for _ in range(200):                       # then in-slice time runs behind the host again
        run_slice(clock, host, 1500)
    assert clock.now() <= clock.host_ticks() + 1
    for _ in range(2000):                      # the shift keeps to the window's fastest slice
        run_slice(clock, host, 100)
    assert int(clock.s[L.TIME_SHIFT]) == 4
    assert clock.now() <= clock.host_ticks() + 1


def test_no_hart_runs_ahead_of_the_host_when_speeds_change_tenfold():
    """Linux takes the harts' time CSRs to agree: a hart ahead of the host (and of the others)
    puts its times in the other harts' future (a remote run-queue clock update then freezes that
    run queue's clock until its own hart catches up: a 2-vCPU guest stopped preempting)."""
    host = FakeHost()
    c0 = new_clock(host)
    c1 = new_clock(host, primary=c0)
    for i in range(5000):
        run_slice(c0, host, 1500 if i % 50 > 10 else 100)  # kernel and user code in turn
        run_slice(c1, host, 1500)
        for c in (c0, c1):
            assert c.now() - c.host_ticks() <= SLICE_TICKS, i


def test_device_polls_follow_the_core_speed_in_real_time_mode_only():
    """Between device polls: at least SLICE instructions, about a millisecond of host time where
    the core runs faster; deterministic mode keeps the fixed count so that a run repeats."""
    host = FakeHost()
    clock = GuestClock(np.zeros(L.S_SIZE, dtype=np.int64), monotonic_ns=host)
    least = 2_000_000
    start = host.ns
    while host.ns - start < 2 * 10**9:   # a lone hart at 3,000 MIPS for 2 s: TIME_SHIFT follows it
        run_slice(clock, host, 3000)
    assert int(clock.s[L.TIME_SHIFT]) == 9   # 300 instructions a tick, rounded up to 512
    assert clock.poll_interval(least) == SLICE_TICKS << int(clock.s[L.TIME_SHIFT]) > least
    slow = GuestClock(np.zeros(L.S_SIZE, dtype=np.int64), monotonic_ns=FakeHost())
    assert slow.poll_interval(least) == least   # TIME_SHIFT 4 at reset: 160,000 per slice
    fixed = GuestClock(np.zeros(L.S_SIZE, dtype=np.int64), deterministic=True)
    fixed.s[L.TIME_SHIFT] = 12
    assert fixed.poll_interval(least) == least


def test_a_lone_hart_never_runs_far_ahead_of_the_host():
    """From the reset shift (160 MIPS) a hart at 1,500 MIPS ran mtime 0.8 s ahead of the host in
    a boot, and the guest's clock then stood still while the host caught up. A lone hart whose
    mtime is more than MAX_LEAD ahead raises its shift at once, as harts that must agree do."""
    host = FakeHost()
    clock = GuestClock(np.zeros(L.S_SIZE, dtype=np.int64), monotonic_ns=host)
    lead = 0
    for i in range(3000):
        run_slice(clock, host, 1500 if i % 4 else 100)   # fast slices, a slow one now and then
        lead = max(lead, clock.now() - clock.host_ticks())
    assert lead <= MAX_LEAD + SLICE_TICKS
