"""virtio-9p: a host folder shared with the guest over 9P2000.L (virtio 1.2 §5.11 is reserved for
9P; Linux's net/9p/trans_virtio.c and fs/9p define what the guest sends).

`protocol` encodes and decodes messages, `safefs` resolves every name beneath the shared folder
(openat2 with RESOLVE_BENEATH), `server` keeps the fid table and answers requests, `device` is the
virtio device type (ID 9) that hands descriptor chains to the server.
"""

from wirt.devices.virtio.p9.device import VirtioP9
from wirt.devices.virtio.p9.server import P9Server

__all__ = ["VirtioP9", "P9Server"]
