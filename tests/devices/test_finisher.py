"""SiFive test finisher: poweroff, fail with code, reset."""

from wirt.devices.finisher import TestFinisher


def make():
    events = []
    return TestFinisher(lambda k, c: events.append((k, c))), events


def test_codes():
    f, ev = make()
    f.write(0, 4, 0x5555)
    f.write(0, 4, 0x3333 | (42 << 16))
    f.write(0, 4, 0x7777)
    assert ev == [("poweroff", 0), ("fail", 42), ("reset", 0)]


def test_other_values_and_offsets_ignored():
    f, ev = make()
    f.write(0, 4, 0x1234)
    f.write(4, 4, 0x5555)
    f.write(0, 1, 0x55)
    assert ev == []
    assert f.read(0, 4) == 0 and f.read(8, 8) == 0


def test_64bit_store_uses_low_word():
    f, ev = make()
    f.write(0, 8, (0xFFFF << 32) | 0x3333 | (1 << 16))
    assert ev == [("fail", 1)]


def test_state_round_trip():
    f, _ = make()
    g, _ = make()
    g.load_state(f.state())
    assert g.state() == f.state() == {}
