"""IrqLine: level tracking, change-only forwarding, thread safety."""

import threading

from wirt.devices.irq import IrqLine


def test_forwards_only_changes():
    seen = []
    line = IrqLine(seen.append)
    line.set(True)
    line.raise_()
    line.lower()
    line.set(0)
    line.set(1)
    assert seen == [True, False, True]
    assert line.level is True


def test_connect_replays_level():
    line = IrqLine()
    line.raise_()
    seen = []
    line.connect(seen.append)
    assert seen == [True]


def test_concurrent_toggling_keeps_sink_consistent():
    state = {"level": False, "flips": 0, "bad": 0}

    def sink(level):
        if level == state["level"]:  # must strictly alternate: no lost or doubled edge
            state["bad"] += 1
        state["level"] = level
        state["flips"] += 1

    line = IrqLine(sink)

    def worker(v):
        for _ in range(2000):
            line.set(v)
            line.set(not v)

    ts = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert state["bad"] == 0
    assert state["level"] == line.level
