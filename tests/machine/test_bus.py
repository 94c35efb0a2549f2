"""MmioBus: mapping, overlap refusal, lookup and fault on unmapped addresses."""

import pytest

from wirt.devices.mmio import MmioDevice
from wirt.machine.bus import BusFault, MmioBus
from wirt.errors import WirtError


class Ram:
    """A tiny register file device recording accesses."""

    def __init__(self, size):
        self.size = size
        self.mem = bytearray(size)
        self.log = []

    def read(self, offset, size):
        self.log.append(("r", offset, size))
        return int.from_bytes(self.mem[offset : offset + size], "little")

    def write(self, offset, size, value):
        self.log.append(("w", offset, size, value))
        self.mem[offset : offset + size] = value.to_bytes(size, "little")

    def reset(self):
        pass

    def state(self):
        return {}

    def load_state(self, d):
        pass


def test_device_protocol_runtime_check():
    assert isinstance(Ram(4), MmioDevice)


def test_offsets_are_relative_to_base():
    bus = MmioBus()
    a, b = Ram(0x100), Ram(0x1000)
    bus.add(0x1000_0000, a)
    bus.add(0x0C00_0000, b, "plic")
    bus.write(0x1000_0010, 4, 0xDEADBEEF)
    assert a.log == [("w", 0x10, 4, 0xDEADBEEF)]
    assert bus.read(0x1000_0010, 2) == 0xBEEF
    assert bus.find(0x0C00_0FFF) == (b, 0xFFF)
    assert bus.find(0x1000_00FF) == (a, 0xFF)
    assert [d[2] for d in bus.devices()] == ["plic", "Ram"]


def test_unmapped_access_faults():
    bus = MmioBus()
    bus.add(0x1000, Ram(0x100))
    assert bus.find(0xFFF) is None
    assert bus.find(0x1100) is None
    assert bus.find(0) is None
    with pytest.raises(BusFault) as e:
        bus.read(0x2000, 4)
    assert e.value.addr == 0x2000 and not e.value.is_write
    with pytest.raises(BusFault) as e:
        bus.write(0x10FE, 4, 1)  # straddles the device end
    assert e.value.is_write


def test_straddle_after_cache_hit():
    bus = MmioBus()
    bus.add(0x1000, Ram(0x100))
    bus.read(0x1000, 4)  # warm the cache
    with pytest.raises(BusFault):
        bus.read(0x10FC, 8)
    assert bus.read(0x10F8, 8) == 0


def test_devices_sharing_a_page_each_get_their_own_accesses():
    """Two devices in one 4 KiB page, and one larger than the page table covers (bisected):
    every access reaches the device it lies in, in whichever order they were mapped."""
    bus = MmioBus()
    a, b, big, c = Ram(0x100), Ram(0x100), Ram(0x2000_0000), Ram(0x80)
    bus.add(0x1000_0100, b)
    bus.add(0x1000_0000, a)
    bus.add(0x4000_0000, big)
    bus.add(0x1000_0F80, c)
    for dev, addr in ((a, 0x1000_0000), (b, 0x1000_0100), (a, 0x1000_00FC), (c, 0x1000_0F80),
                      (big, 0x4000_0000), (big, 0x5FFF_FFF8), (b, 0x1000_01FC)):
        bus.write(addr, 4, addr & 0xFFFF_FFFF)
        assert dev.log[-1][0] == "w"
        assert bus.read(addr, 4) == addr & 0xFFFF_FFFF
    with pytest.raises(BusFault):
        bus.read(0x1000_0200, 4)  # in the shared page, but between the devices
    with pytest.raises(BusFault):
        bus.read(0x1000_00FE, 4)  # straddles a's end into b
    assert bus.find(0x1000_0180) == (b, 0x80)


@pytest.mark.parametrize(
    "base,size",
    [(0x1000, 0x100), (0x0F80, 0x100), (0x10FF, 1), (0x0F00, 0x1000), (0x1080, 0x10)],
)
def test_overlap_refused(base, size):
    bus = MmioBus()
    bus.add(0x1000, Ram(0x100), "uart")
    with pytest.raises(WirtError, match="overlaps uart"):
        bus.add(base, Ram(size))


def test_adjacent_ok_and_zero_size_refused():
    bus = MmioBus()
    bus.add(0x1000, Ram(0x100))
    bus.add(0x1100, Ram(0x100))
    bus.add(0x0F00, Ram(0x100))
    assert bus.find(0x10FF)[1] == 0xFF and bus.find(0x1100)[1] == 0
    with pytest.raises(WirtError, match="size is 0"):
        bus.add(0x5000, Ram(0))


def test_lookup_many_devices():
    bus = MmioBus()
    devs = {}
    for n in reversed(range(64)):
        d = Ram(0x1000)
        devs[n] = d
        bus.add(0x1000_1000 + n * 0x2000, d)
    for n in range(64):
        base = 0x1000_1000 + n * 0x2000
        assert bus.find(base + 0x123) == (devs[n], 0x123)
        assert bus.find(base + 0x1000) is None  # gap
        assert bus.find(base + 0xFFF) == (devs[n], 0xFFF)
