"""Numbers from the virtio 1.2 specification shared by the transport, the rings and the devices."""

from __future__ import annotations

# §2.1 Device Status Field
STATUS_ACKNOWLEDGE = 0x01
STATUS_DRIVER = 0x02
STATUS_DRIVER_OK = 0x04
STATUS_FEATURES_OK = 0x08
STATUS_DEVICE_NEEDS_RESET = 0x40
STATUS_FAILED = 0x80

# §6 Reserved Feature Bits
F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_VERSION_1 = 32

# §5 Device Types
ID_NET = 1
ID_BLOCK = 2
ID_CONSOLE = 3
ID_RNG = 4

# §4.2.2 MMIO Device Register Layout, InterruptStatus bits
INT_USED_BUFFER = 0x1
INT_CONFIG_CHANGE = 0x2


def bit(n: int) -> int:
    """The feature mask for feature bit `n`."""
    return 1 << n
