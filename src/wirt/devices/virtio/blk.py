"""virtio-blk (virtio 1.2 §5.2) over any `wirt.storage.block.BlockDevice` (raw, qcow2).

Requests are served synchronously when the driver notifies the queue, on the caller's thread
(the machine's CPU thread), with data moved directly between the image and guest RAM through
memoryviews. Host I/O errors become VIRTIO_BLK_S_IOERR for that request; malformed requests
(no header, no status byte) make the device need a reset.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from wirt.devices.virtio.device import COMMON_FEATURES, VirtioDevice
from wirt.devices.virtio.spec import ID_BLOCK, bit
from wirt.devices.virtio.virtqueue import Chain, Virtqueue, VirtqueueError, gather, scatter, take, total_len
from wirt.errors import WirtError
from wirt.storage.block import BlockDevice

__all__ = ["VirtioBlk"]

log = logging.getLogger(__name__)

# §5.2.3 Feature bits
F_SIZE_MAX = 1
F_SEG_MAX = 2
F_RO = 5
F_BLK_SIZE = 6
F_FLUSH = 9
F_DISCARD = 13
F_WRITE_ZEROES = 14

# §5.2.6 Device Operation: request types and status values
T_IN = 0
T_OUT = 1
T_FLUSH = 4
T_GET_ID = 8
T_DISCARD = 11
T_WRITE_ZEROES = 13
S_OK = 0
S_IOERR = 1
S_UNSUPP = 2

SECTOR = 512  # §5.2.6: sectors are always 512 bytes, whatever blk_size says
ID_BYTES = 20  # §5.2.6: GET_ID returns a 20-byte serial
WZ_FLAG_UNMAP = 1

_HEADER = struct.Struct("<IIQ")  # type, reserved, sector
_SEGMENT = struct.Struct("<QII")  # sector, num_sectors, flags (§5.2.6 discard/write zeroes)

QUEUE_SIZE = 256
SIZE_MAX = 1 << 22  # largest single data buffer the driver may use
MAX_DISCARD_SECTORS = 1 << 22  # 2 GiB per segment
MAX_DISCARD_SEG = 32


class VirtioBlk(VirtioDevice):
    """A virtio block device serving one disk image."""

    device_id = ID_BLOCK
    queue_sizes = (QUEUE_SIZE,)

    def __init__(self, disk: BlockDevice, serial: str = "", blk_size: int = 512) -> None:
        super().__init__()
        if blk_size < SECTOR or blk_size & (blk_size - 1):
            raise ValueError(f"block size {blk_size} is not a power of 2 >= 512")
        self.disk = disk
        self.serial = serial.encode("ascii", "replace")[:ID_BYTES]
        self.blk_size = blk_size
        self.capacity = disk.size // SECTOR
        # Discard granularity: the image's allocation unit (qcow2 cluster) or the block size.
        granule = max(blk_size, int(getattr(disk, "cluster_size", 0) or 0))
        self.discard_alignment = granule // SECTOR

    # ---- feature and config space (§5.2.3, §5.2.4) ---------------------------------------------

    def features(self) -> int:
        f = (COMMON_FEATURES | bit(F_SIZE_MAX) | bit(F_SEG_MAX) | bit(F_BLK_SIZE) | bit(F_FLUSH)
             | bit(F_DISCARD) | bit(F_WRITE_ZEROES))
        if self.disk.read_only:
            f |= bit(F_RO)
        return f

    def config(self) -> bytes:
        # struct virtio_blk_config up to write_zeroes_may_unmap (§5.2.4).
        return struct.pack(
            "<QII HBB I BBHI BBH III II B3x",
            self.capacity, SIZE_MAX, QUEUE_SIZE - 2,
            0, 0, 0,  # geometry (feature not offered)
            self.blk_size,
            0, 0, 0, 0,  # topology (feature not offered)
            0, 0, 1,  # writeback, unused0, num_queues
            MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, self.discard_alignment,
            MAX_DISCARD_SECTORS, MAX_DISCARD_SEG,
            1,  # write_zeroes_may_unmap
        )

    # ---- requests (§5.2.6) ------------------------------------------------------------------------

    def queue_notify(self, queue: Virtqueue) -> None:
        transport = self.transport
        assert transport is not None
        while (chain := queue.pop()) is not None:
            queue.push(chain.head, self._request(chain))
        transport.notify_used(queue)

    def _request(self, chain: Chain) -> int:
        """Serve one request; returns the bytes written into the chain's writable buffers."""
        if chain.read_len < _HEADER.size or chain.write_len < 1:
            # §5.2.6: every request has a 16-byte header and a 1-byte status.
            raise VirtqueueError(f"virtio-blk request without header or status ({chain})")
        rtype, _, sector = _HEADER.unpack(gather(chain.readable, _HEADER.size))
        payload_in = take(chain.readable, _HEADER.size)[1]
        payload_out, status_buf = take(chain.writable, chain.write_len - 1)
        written = 0
        try:
            if rtype == T_IN:
                status, written = self._read(sector, payload_out)
            elif rtype == T_OUT:
                status = self._write(sector, payload_in)
            elif rtype == T_FLUSH:
                self.disk.flush()  # a real fsync for raw; metadata commit + fsync for qcow2
                status = S_OK
            elif rtype == T_GET_ID:
                written = scatter(payload_out, self.serial + bytes(ID_BYTES - len(self.serial)))
                status = S_OK
            elif rtype in (T_DISCARD, T_WRITE_ZEROES):
                if total_len(payload_in) > MAX_DISCARD_SEG * _SEGMENT.size:
                    status = S_UNSUPP  # more segments than max_discard_seg / max_write_zeroes_seg
                else:
                    status = self._discard_or_zero(rtype, gather(payload_in))
            else:
                status = S_UNSUPP
        except (OSError, ValueError, WirtError) as exc:  # host-side I/O failure or damaged image
            log.warning("virtio-blk %s: I/O error: %s", self.disk.path, exc)
            status = S_IOERR
        scatter(status_buf, bytes([status]))
        return written + 1

    def _range_ok(self, sector: int, nbytes: int) -> bool:
        return nbytes % SECTOR == 0 and sector + nbytes // SECTOR <= self.capacity

    def _read(self, sector: int, bufs: list) -> tuple[int, int]:
        nbytes = total_len(bufs)
        if not self._range_ok(sector, nbytes):
            return S_IOERR, 0
        self.disk.readv(sector * SECTOR, bufs)  # one preadv straight into guest RAM
        return S_OK, nbytes

    def _write(self, sector: int, bufs: list) -> int:
        if self.disk.read_only:
            return S_IOERR  # §5.2.6.2: writes to a VIRTIO_BLK_F_RO device fail with IOERR
        if not self._range_ok(sector, total_len(bufs)):
            return S_IOERR
        self.disk.writev(sector * SECTOR, bufs)  # one pwritev straight from guest RAM
        return S_OK

    def _discard_or_zero(self, rtype: int, data: bytes) -> int:
        if len(data) % _SEGMENT.size or not data:
            return S_IOERR
        segments = [_SEGMENT.unpack_from(data, i) for i in range(0, len(data), _SEGMENT.size)]
        if len(segments) > MAX_DISCARD_SEG:
            return S_UNSUPP  # more segments than max_discard_seg / max_write_zeroes_seg
        for sector, count, flags in segments:
            # §5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
            allowed = WZ_FLAG_UNMAP if rtype == T_WRITE_ZEROES else 0
            if flags & ~allowed:
                return S_UNSUPP
            if count > MAX_DISCARD_SECTORS or sector + count > self.capacity:
                return S_IOERR
        if self.disk.read_only:
            return S_IOERR
        for sector, count, _ in segments:
            if rtype == T_DISCARD:
                self.disk.discard(sector * SECTOR, count * SECTOR)
            else:
                self.disk.write_zeroes(sector * SECTOR, count * SECTOR)
        return S_OK

    def state(self) -> dict[str, Any]:
        return {"capacity": self.capacity}
