"""virtio-net (virtio 1.2 §5.1): one receive and one transmit queue over a frame backend.

The device speaks to any backend with `start(deliver)`, `send(frame)` and `close()` (see
`wirt.netback`), and uses `start_many`/`send_many` where the backend has them; it does not know
which one. Offered: VERSION_1, MAC, STATUS (link up), MTU
(the backend's: 65520 behind passt, so bulk TCP moves 64 KiB frames), INDIRECT_DESC, EVENT_IDX.
MRG_RXBUF (a frame may fill several receive buffers), CSUM (the device completes checksums the
guest leaves partial) and, behind backends whose frames carry correct checksums (passt),
GUEST_CSUM (received frames are marked DATA_VALID, so the guest does not verify them again).
Not offered: GSO/TSO, control queue, MQ.
Every buffer therefore starts with the 12-byte `virtio_net_hdr_v1` (§5.1.6: with VERSION_1
the header always has `num_buffers`); without MRG_RXBUF every received frame fits in one chain.

Receive: the backend's thread calls `receive_many(frames)` with every frame of one read (or
`receive(frame)`). Frames wait in a bounded queue until the guest has posted receive buffers
(they are not dropped just because the guest has not refilled yet); when the queue is full,
newer frames are dropped, as a NIC's full ring would. Each batch is written straight into the
guest's buffers (one copy) with one interrupt.
Transmit: on a notify of queue 1 the chains available are walked and their frames copied out
of guest RAM into one buffer, checksums completed, in one compiled call (`txframes.gather`),
and handed to `backend.send_many` in one batch (passt: one socket write per frame, straight
from the frames): on a transmit thread of the device's own (`tx_thread`, what `attach_net`
gives a machine that is not deterministic), so the vCPU returns to the guest as soon as it has
notified, or on the notifying (CPU) thread. The thread takes no more chains while the backend
holds a backlog for its peer (`wait_drained`), so the guest's ring backs up rather than frames
being dropped.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import deque
from typing import Any, Callable, Protocol

import numpy as np

from wirt.devices.virtio import txframes
from wirt.devices.virtio.device import COMMON_FEATURES, VirtioDevice
from wirt.devices.virtio.spec import ID_NET, bit
from wirt.devices.virtio.virtqueue import Chain, Virtqueue, scatter, take
from wirt.numbacall import compiled_entry

__all__ = ["VirtioNet", "FrameBackend", "HDR_LEN"]

log = logging.getLogger(__name__)

# §5.1.3 Feature bits
F_CSUM = 0
F_GUEST_CSUM = 1
F_MTU = 3
F_MAC = 5
F_MRG_RXBUF = 15
F_STATUS = 16
# §5.1.4 config status
S_LINK_UP = 1

RXQ = 0
TXQ = 1
QUEUE_SIZE = 256
HDR_LEN = txframes.HDR_LEN  # struct virtio_net_hdr_v1 (§5.1.6)
# flags=0, gso_type=GSO_NONE, hdr_len, gso_size, csum_start, csum_offset = 0, num_buffers=1
_RX_HDR = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 1)
# §5.1.6 virtio_net_hdr flags
HDR_F_DATA_VALID = 2
_HDR = struct.Struct("<BBHHHHH")
MAX_PENDING_FRAMES = 512
#: Largest frame accepted from the guest (no GSO is offered, so MTU + Ethernet/VLAN header).
MAX_TX_FRAME = 65535 + 18
#: Largest MTU offered (VIRTIO_NET_F_MTU is 16 bits; passt's 65520 fits a 64 KiB frame).
MAX_MTU = 65520


class FrameBackend(Protocol):
    """The frame interface of `wirt.netback` backends. Frames sent are read-only bytes-like
    objects (memoryviews of the device's transmit buffer, which nothing reuses)."""

    def start(self, deliver: Callable[[bytes], None]) -> None: ...

    def send(self, frame: bytes | memoryview) -> None: ...

    def close(self) -> None: ...


class _TxChain:
    """A transmit chain popped: its head, and its frame (None: dropped)."""

    __slots__ = ("head", "frame")

    def __init__(self, head: int, frame: memoryview | None) -> None:
        self.head = head
        self.frame = frame


class VirtioNet(VirtioDevice):
    """A virtio network card attached to a frame backend."""

    device_id = ID_NET
    queue_sizes = (QUEUE_SIZE, QUEUE_SIZE)

    def __init__(self, backend: FrameBackend, mac: bytes, mtu: int | None = None,
                 max_pending: int = MAX_PENDING_FRAMES, tx_thread: bool = False) -> None:
        super().__init__()
        if len(mac) != 6:
            raise ValueError("a MAC address is 6 bytes (see wirt.netback.mac.parse_mac)")
        self.backend = backend
        # The backend vouches that every frame it delivers carries correct checksums (passt
        # builds them all): the guest may then skip verifying them (VIRTIO_NET_F_GUEST_CSUM).
        self.rx_checksums_valid = bool(getattr(backend, "checksums_valid", False))
        self._send_many = getattr(backend, "send_many", None) or (lambda frames: [backend.send(f) for f in frames])
        self._wait_drained: Callable[[float], bool] = getattr(backend, "wait_drained", None) or (lambda t: True)
        self.mac = bytes(mac)
        # The link's MTU (passt: 65520) unless given: Linux adopts VIRTIO_NET_F_MTU as the
        # interface MTU, and above 1500 it posts receive buffers of 64 KiB ("big packets").
        self.mtu = mtu if mtu is not None else min(int(getattr(backend, "mtu", 1500)), MAX_MTU)
        self.link_up = True
        self.max_pending = max_pending
        self._pending: deque[bytes] = deque()
        self._rx_buf_len = 4096  # size of the guest's last receive buffer: how many chains to pop
        self.stats = {"rx_frames": 0, "tx_frames": 0, "rx_dropped": 0, "tx_dropped": 0}
        self._started = False
        self._gather: Callable[..., int] | None = None  # txframes.gather, without the dispatcher
        self._tx_ram: np.ndarray | None = None  # guest RAM of the queue being served
        # Transmit on a thread of its own (tx_thread): a notification only marks the queue due
        # and wakes it, so the vCPU goes back to the guest at once while the frames are gathered
        # and written to the backend (a third of the vCPU thread's time in a bulk upload was
        # that work). `_tx_due` (under the transport's lock) says a notification has not been
        # served yet; a snapshot serves it first (`state`). Off in deterministic runs, where
        # the used ring and the interrupt must follow the notification at a fixed instruction.
        self.tx_thread = tx_thread
        self._tx_due = False
        self._tx_wake = threading.Event()
        self._tx_worker: threading.Thread | None = None
        self._closed = False
        txframes.warm()

    # ---- features and config (§5.1.3, §5.1.4) ------------------------------------------------

    def features(self) -> int:
        f = COMMON_FEATURES | bit(F_MAC) | bit(F_STATUS) | bit(F_MTU) | bit(F_MRG_RXBUF) | bit(F_CSUM)
        if self.rx_checksums_valid:
            f |= bit(F_GUEST_CSUM)
        return f

    def config(self) -> bytes:
        # mac[6], status, max_virtqueue_pairs, mtu
        return self.mac + struct.pack("<HHH", S_LINK_UP if self.link_up else 0, 1, self.mtu)

    def set_link(self, up: bool) -> None:
        """Plug or unplug the cable: updates config status and raises a config-change interrupt."""
        assert self.transport is not None
        with self.transport.lock:
            if self.link_up != bool(up):
                self.link_up = bool(up)
                self.transport.config_changed()

    def attach(self, transport: Any) -> None:
        super().attach(transport)
        if not self._started:
            self._started = True
            start_many = getattr(self.backend, "start_many", None)
            if start_many is not None:
                start_many(self.receive_many)  # several frames per call, one interrupt each batch
            else:
                self.backend.start(self.receive)

    # ---- receive (§5.1.6.3, §5.1.6.4) -------------------------------------------------------------

    def receive(self, frame: bytes) -> None:
        """A frame from the backend (any thread); queued until the guest has buffers."""
        self.receive_many([frame])

    def receive_many(self, frames: list[bytes]) -> None:
        """Frames the backend read together (any thread): queued, then delivered into the
        guest's buffers with one interrupt for all of them (§2.7.10)."""
        transport = self.transport
        if transport is None:
            return
        with transport.lock:
            if not transport.driver_ok or not self.link_up:
                self.stats["rx_dropped"] += len(frames)  # no driver: the frames fall on the floor
                return
            room = self.max_pending - len(self._pending)
            if len(frames) > room:
                self.stats["rx_dropped"] += len(frames) - max(room, 0)
                frames = frames[:max(room, 0)]
            self._pending.extend(frames)
            transport.run_guarded(self._fill_rx)

    def pending_frames(self) -> int:
        """Received frames waiting for guest buffers."""
        return len(self._pending)

    def _fill_rx(self) -> None:
        transport = self.transport
        assert transport is not None
        q = self.queue(RXQ)
        if not q.ready or not transport.driver_ok:
            return
        pending = self._pending
        if self.negotiated(F_MRG_RXBUF):
            self._fill_rx_mergeable(q)
            transport.notify_used(q)
            return
        chain: Chain | None = None
        while pending:
            if chain is None:
                chain = q.pop()
                if chain is None:
                    break  # wait for the guest to refill; a notify on RXQ resumes delivery
            frame = pending.popleft()
            if HDR_LEN + len(frame) > chain.write_len:
                # Without MRG_RXBUF a frame must fit one chain (§5.1.6.3.1); drop it and keep
                # the buffer for the next frame.
                self.stats["rx_dropped"] += 1
                continue
            n = self._write_frame(chain.writable, self._rx_header(1), frame)
            q.push(chain.head, n)
            self.stats["rx_frames"] += 1
            chain = None
        if chain is not None:
            q.unpop()
        transport.notify_used(q)

    def _rx_header(self, num_buffers: int) -> bytes:
        """virtio_net_hdr_v1 of a received frame (§5.1.6.4): no GSO; DATA_VALID when the
        driver took GUEST_CSUM and the backend's checksums are known to be right."""
        valid = self.rx_checksums_valid and self.negotiated(F_GUEST_CSUM)
        return _HDR.pack(HDR_F_DATA_VALID if valid else 0, 0, 0, 0, 0, 0, num_buffers)

    @staticmethod
    def _write_frame(views: list[memoryview], header: bytes, frame: bytes) -> int:
        """Header then frame into buffers, the frame copied once (straight into guest RAM)."""
        hdr_views, rest = take(views, HDR_LEN)
        return scatter(hdr_views, header) + scatter(rest, frame)

    def _fill_rx_mergeable(self, q: Virtqueue) -> None:
        """§5.1.6.4.2 with VIRTIO_NET_F_MRG_RXBUF: a frame fills as many receive chains as it
        needs (Linux posts page-sized ones), the first header's num_buffers counting them.
        Chains are popped in bulk, about as many as the waiting frames need; the ones left
        over at the end are given back unused."""
        pending = self._pending
        chains: list[Chain] = []
        ci = 0  # chains[ci:] are popped and not used yet
        heads: list[int] = []
        lens: list[int] = []
        try:
            while pending:
                frame = pending[0]
                need = HDR_LEN + len(frame)
                room, k = 0, ci
                while room < need and k - ci < q.num:
                    if k == len(chains):
                        want = sum(HDR_LEN + len(f) for f in pending) - room
                        more = q.pop_all(max(1, -(-want // self._rx_buf_len)))
                        if not more:
                            break
                        self._rx_buf_len = max(1, more[0].write_len)
                        chains += more
                    room += chains[k].write_len
                    k += 1
                if room < need:
                    if k - ci < q.num:
                        return  # not enough buffers yet: wait for the guest to post more
                    pending.popleft()  # larger than the whole ring could ever hold
                    self.stats["rx_dropped"] += 1
                    continue
                pending.popleft()
                used = chains[ci:k]
                ci = k
                views = [v for c in used for v in c.writable]
                self._write_frame(views, self._rx_header(len(used)), frame)
                left = need
                for c in used:
                    n = min(c.write_len, left)
                    heads.append(c.head)
                    lens.append(n)
                    left -= n
                self.stats["rx_frames"] += 1
        finally:
            if len(chains) > ci:
                q.unpop(len(chains) - ci)  # popped last, so they are the next available again
            q.push_many(heads, lens)

    # ---- transmit (§5.1.6.2) ----------------------------------------------------------------------

    def queue_notify(self, queue: Virtqueue) -> None:
        assert self.transport is not None
        if queue.index == RXQ:
            self._fill_rx()  # the guest posted receive buffers
            return
        if not self.tx_thread:
            self._send(self._take_tx())
            return
        self._tx_due = True
        if self._tx_worker is None:
            self._tx_worker = threading.Thread(target=self._tx_loop, name="wirt-net-tx", daemon=True)
            self._tx_worker.start()
        self._tx_wake.set()

    def _tx_loop(self) -> None:
        """The transmit thread: serve the queue whenever a notification marked it due."""
        transport = self.transport
        assert transport is not None
        while True:
            self._tx_wake.wait()
            self._tx_wake.clear()
            if self._closed:
                return
            frames = transport.run_guarded(lambda: self._take_tx() if self._tx_due else None)
            if frames:
                try:
                    self._send(frames)
                except Exception as exc:  # a backend's bug: the device fails, as on the CPU thread
                    log.exception("virtio-net: transmit failed")
                    transport.fail(f"internal error: {exc!r}")
                # While the backend still holds a backlog for its peer, take no more chains:
                # the guest's ring fills and its driver stops the queue, as behind a NIC whose
                # link is busy, where frames pushed on would be dropped at the backend's limit
                # (and passt 2023 answers a lost frame with too few duplicate acknowledgements
                # for a fast retransmit: the guest would wait out its timeout).
                while not self._wait_drained(0.5):
                    if self._closed:
                        return

    def _take_tx(self) -> list[memoryview]:
        """Under the transport's lock: every chain made available so far, as frames to send in
        one batch (`backend.send_many`); the driver hears once, after all of them
        (§2.7.10 event index). The frames are gathered out of RAM and their checksums completed
        in one compiled call (txframes.gather); a dropped chain (empty, too large, or a checksum
        outside the frame) is still returned to the driver."""
        assert self.transport is not None
        self._tx_due = False
        queue = self.queue(TXQ)
        if not queue.ready or not self.transport.driver_ok:
            return []
        if queue.ram.arr is not self._tx_ram:  # new RAM (a restore): look the entry up again
            self._tx_ram, self._gather = queue.ram.arr, None
        chains = queue.pop_built(self._gather_tx)
        frames = [c.frame for c in chains if c.frame is not None]
        self.stats["tx_dropped"] += len(chains) - len(frames)
        queue.push_many([c.head for c in chains], [0] * len(chains))
        self.transport.notify_used(queue)
        return frames

    def _send(self, frames: list[memoryview]) -> None:
        """Frames to the backend, in order (outside the transport's lock on the thread)."""
        if not frames:
            return
        self.stats["tx_frames"] += len(frames)
        try:
            self._send_many(frames)
        except OSError as exc:  # backend gone: the cable is cut, the guest goes on
            self.stats["tx_dropped"] += len(frames)
            log.warning("virtio-net: backend send failed: %s", exc)

    def _gather_tx(self, ws: Any, n: int, nsegs: int) -> list[_TxChain]:
        """The frames of the n chains a transmit walk popped (`Virtqueue.pop_built`), as views
        of one fresh buffer (a backend may keep them: nothing reuses it)."""
        need = int(ws.nbytes[0:2 * n:2].sum())
        out = np.empty((need + 7) & ~7 or 8, dtype=np.uint8)
        res = np.empty(2 * n, dtype=np.int64)
        args = (self._tx_ram, ws.off, ws.len, ws.starts, ws.nread, ws.nbytes, n, MAX_TX_FRAME, out,
                out.view(np.uint32), res)
        if self._gather is None:
            txframes.gather(*args)
            self._gather = compiled_entry(txframes.gather, args)
        else:
            self._gather(*args)
        mv = memoryview(out).toreadonly()
        spans = res.tolist()
        return [_TxChain(head, mv[spans[2 * k]:spans[2 * k + 1]] if spans[2 * k] >= 0 else None)
                for k, head in enumerate(ws.heads[:n].tolist())]

    def driver_ok(self) -> None:
        self._fill_rx()

    def reset(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        self._closed = True
        self._tx_wake.set()
        if self._tx_worker is not None and self._tx_worker is not threading.current_thread():
            self._tx_worker.join(timeout=2.0)  # its last batch reaches the backend before it closes
        self.backend.close()

    def state(self) -> dict[str, Any]:
        # Called under the transport's lock: a notification the thread has not served yet is
        # served here, so the snapshot holds no chain the driver was told would be taken (with
        # EVENT_IDX it would not notify for it again).
        if self._tx_due:
            self._send(self._take_tx())
        return {"mac": self.mac.hex(), "link_up": self.link_up}

    def load_state(self, d: dict[str, Any]) -> None:
        self.link_up = bool(d.get("link_up", True))
        self._tx_due = False
