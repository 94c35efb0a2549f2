"""PLIC: priorities, threshold, per-context enables, claim/complete, level gateway."""

import json

import pytest

from wirt.devices.plic import Plic
from wirt.errors import WirtError

PRIO = 0x0
PENDING = 0x1000
ENABLE = 0x2000
CTX = 0x200000


def make(nctx=2, ndev=96):
    return Plic(nctx, ndev=ndev)


def enable(p, ctx, *srcs):
    words = {}
    for s in srcs:
        words[s // 32] = words.get(s // 32, p.read(ENABLE + 0x80 * ctx + 4 * (s // 32), 4)) | (1 << (s % 32))
    for w, v in words.items():
        p.write(ENABLE + 0x80 * ctx + 4 * w, 4, v)


def claim(p, ctx):
    return p.read(CTX + 0x1000 * ctx + 4, 4)


def complete(p, ctx, src):
    p.write(CTX + 0x1000 * ctx + 4, 4, src)


def test_priority_register_and_mask():
    p = make()
    p.write(PRIO + 4 * 5, 4, 0xFFFF_FFFF)
    assert p.read(PRIO + 4 * 5, 4) == 7  # 3 priority bits as on virt
    p.write(PRIO + 0, 4, 5)  # source 0 does not exist
    assert p.read(PRIO, 4) == 0
    p.write(PRIO + 4 * 200, 4, 5)  # beyond ndev
    assert p.read(PRIO + 4 * 200, 4) == 0


def test_pending_bits_follow_level_lines():
    p = make()
    p.line(10).raise_()
    p.line(33).raise_()
    assert p.read(PENDING, 4) == 1 << 10
    assert p.read(PENDING + 4, 4) == 1 << 1
    p.write(PENDING, 4, 0)  # read-only
    assert p.read(PENDING, 4) == 1 << 10
    p.line(10).lower()  # withdrawn before claim
    assert p.read(PENDING, 4) == 0


def test_enable_bits_per_context_and_source0_hardwired():
    p = make(nctx=4)
    p.write(ENABLE + 0x80 * 1, 4, 0xFFFF_FFFF)
    assert p.read(ENABLE + 0x80 * 1, 4) == 0xFFFF_FFFE
    assert p.read(ENABLE, 4) == 0
    p.write(ENABLE + 0x80 * 1 + 8, 4, 0xFFFF_FFFF)  # sources 64..95, ndev = 96
    assert p.read(ENABLE + 0x80 * 1 + 8, 4) == 0xFFFF_FFFF
    p.write(ENABLE + 0x80 * 1 + 12, 4, 0xFFFF_FFFF)  # only 96 exists
    assert p.read(ENABLE + 0x80 * 1 + 12, 4) == 1


def test_output_needs_enable_priority_and_threshold():
    p = make()
    p.line(3).raise_()
    assert not p.output(1)  # not enabled, priority 0
    enable(p, 1, 3)
    assert not p.output(1)  # priority 0 never interrupts
    p.write(PRIO + 4 * 3, 4, 2)
    assert p.output(1) and not p.output(0)
    p.write(CTX + 0x1000 * 1, 4, 2)  # threshold 2: priority must exceed it
    assert p.read(CTX + 0x1000 * 1, 4) == 2
    assert not p.output(1)
    p.write(CTX + 0x1000 * 1, 4, 1)
    assert p.output(1)


def test_claim_order_highest_priority_then_lowest_id():
    p = make()
    for src, prio in ((5, 1), (7, 3), (9, 3), (2, 2)):
        p.write(PRIO + 4 * src, 4, prio)
        enable(p, 0, src)
        p.line(src).raise_()
    order = []
    while True:
        s = claim(p, 0)
        if not s:
            break
        order.append(s)
    assert order == [7, 9, 2, 5]
    assert not p.output(0)  # all in service
    assert p.read(PENDING, 4) == 0


def test_claim_ignores_threshold():
    p = make()
    p.write(PRIO + 4 * 4, 4, 1)
    enable(p, 0, 4)
    p.write(CTX, 4, 7)
    p.line(4).raise_()
    assert not p.output(0)
    assert claim(p, 0) == 4


def test_claimed_source_blocked_until_complete_then_level_resampled():
    p = make()
    p.write(PRIO + 4 * 10, 4, 1)
    enable(p, 1, 10)
    line = p.line(10)
    line.raise_()
    assert claim(p, 1) == 10
    assert not p.output(1)
    # still asserted while in service: no new request
    line.lower()
    line.raise_()
    assert p.read(PENDING, 4) == 0 and claim(p, 1) == 0
    complete(p, 1, 10)  # line still high -> pending again at once
    assert p.output(1)
    assert claim(p, 1) == 10
    line.lower()
    complete(p, 1, 10)  # line low -> nothing
    assert not p.output(1) and claim(p, 1) == 0


def test_complete_ignored_when_not_enabled_for_context():
    p = make()
    p.write(PRIO + 4 * 8, 4, 1)
    enable(p, 0, 8)
    p.line(8).raise_()
    assert claim(p, 0) == 8
    complete(p, 1, 8)  # context 1 does not have source 8 enabled
    assert not p.output(0)
    complete(p, 0, 8)
    assert p.output(0)


def test_two_contexts_see_the_same_source():
    p = make()
    p.write(PRIO + 4 * 1, 4, 1)
    enable(p, 0, 1)
    enable(p, 1, 1)
    p.line(1).raise_()
    assert p.output(0) and p.output(1)
    assert claim(p, 1) == 1
    assert not p.output(0) and not p.output(1)
    assert claim(p, 0) == 0


def test_64bit_and_narrow_accesses():
    p = make()
    p.write(ENABLE, 8, (0x3 << 32) | 0x6)
    assert p.read(ENABLE, 8) == (0x3 << 32) | 0x6
    assert p.read(ENABLE + 1, 1) == 0
    assert p.read(ENABLE, 1) == 0x6
    p.write(PRIO + 4, 1, 3)  # narrow stores ignored
    assert p.read(PRIO + 4, 4) == 0


def test_unmapped_reads_zero_and_bad_contexts_ignored():
    p = make(nctx=2)
    assert p.read(CTX + 0x1000 * 5 + 4, 4) == 0
    p.write(CTX + 0x1000 * 5, 4, 1)
    assert p.read(0x1F_0000, 4) == 0
    assert p.read(CTX + 8, 4) == 0


def test_line_bounds():
    p = make(ndev=31)
    with pytest.raises(WirtError):
        p.line(0)
    with pytest.raises(WirtError):
        p.line(32)
    with pytest.raises(WirtError):
        Plic(1, ndev=2000)


def test_state_round_trip():
    p = make()
    p.write(PRIO + 4 * 10, 4, 3)
    p.write(PRIO + 4 * 11, 4, 2)
    enable(p, 1, 10, 11)
    p.write(CTX + 0x1000, 4, 1)
    p.line(10).raise_()
    p.line(11).raise_()
    assert claim(p, 1) == 10
    st = json.loads(json.dumps(p.state()))
    q = make()
    q.load_state(st)
    assert q.state() == p.state()
    assert q.output(1)  # 11 still pending
    assert claim(q, 1) == 11
    complete(q, 1, 10)  # 10 was in service and its line is high in the snapshot
    assert claim(q, 1) == 10


def test_reset_resamples_lines():
    p = make()
    p.line(4).raise_()
    p.write(PRIO + 16, 4, 1)
    p.reset()
    assert p.read(PRIO + 16, 4) == 0
    assert p.read(PENDING, 4) == 1 << 4


def test_uart_interrupt_through_plic_to_s_mode_context():
    from wirt.devices.uart import Uart16550

    p = make()
    uart = Uart16550(p.line(10))
    p.write(PRIO + 4 * 10, 4, 1)
    enable(p, 1, 10)
    uart.write(1, 1, 0x01)  # IER.ERBFI
    uart.feed(b"k")
    assert p.output(1) and not p.output(0)
    assert claim(p, 1) == 10
    assert uart.read(0, 1) == ord("k")  # handler drains the UART, line drops
    complete(p, 1, 10)
    assert not p.output(1)
    uart.feed(b"j")
    assert p.output(1)
