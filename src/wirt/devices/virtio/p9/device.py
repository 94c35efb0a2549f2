"""The virtio-9p device type (ID 9): one request queue, the mount tag in configuration space
(Linux include/uapi/linux/virtio_9p.h: feature VIRTIO_9P_MOUNT_TAG, config {le16 tag_len; u8 tag[]}).

Requests are served on the thread that notified the queue (the CPU thread), like virtio-blk: a
read goes with preadv straight into the guest's buffers, a write with pwritev from them.
"""

from __future__ import annotations

import struct
from typing import Any

from wirt.devices.virtio.device import COMMON_FEATURES, VirtioDevice
from wirt.devices.virtio.p9.protocol import ProtocolError
from wirt.devices.virtio.p9.server import P9Server
from wirt.devices.virtio.spec import bit
from wirt.devices.virtio.virtqueue import Virtqueue, VirtqueueError

__all__ = ["VirtioP9", "ID_9P", "MAX_TAG"]

ID_9P = 9
F_MOUNT_TAG = 0
#: Longest tag accepted (QEMU's limit too; Linux reads tag_len bytes whatever it is).
MAX_TAG = 255
QUEUE_SIZE = 128  # Linux's VIRTQUEUE_NUM for 9p


class VirtioP9(VirtioDevice):
    """Shares host folder `root` under mount tag `tag` (the guest mounts `-t 9p TAG`)."""

    device_id = ID_9P
    queue_sizes = (QUEUE_SIZE,)

    def __init__(self, root: str, tag: str, read_only: bool = False) -> None:
        super().__init__()
        raw = tag.encode()
        if not raw or len(raw) > MAX_TAG:
            raise ValueError(f"mount tag {tag!r} must be 1 to {MAX_TAG} bytes")
        self.tag = raw
        self.server = P9Server(root, read_only)

    @property
    def read_only(self) -> bool:
        return self.server.read_only

    def features(self) -> int:
        return COMMON_FEATURES | bit(F_MOUNT_TAG)

    def config(self) -> bytes:
        return struct.pack("<H", len(self.tag)) + self.tag

    def queue_notify(self, queue: Virtqueue) -> None:
        assert self.transport is not None
        while (chain := queue.pop()) is not None:
            try:
                n = self.server.handle(chain.readable, chain.writable)
            except ProtocolError as exc:  # not even a header: the driver broke the transport's rules
                raise VirtqueueError(f"9p request: {exc}") from None
            queue.push(chain.head, n)
        self.transport.notify_used(queue)

    def reset(self) -> None:
        self.server.reset()

    def close(self) -> None:
        self.server.close()

    def state(self) -> dict[str, Any]:
        return {"tag": self.tag.decode(), "read_only": self.read_only, "server": self.server.state()}

    def load_state(self, d: dict[str, Any]) -> None:
        server = d.get("server")
        self.server.load_state(server if isinstance(server, dict) else {})
