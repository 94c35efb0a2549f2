"""virtio-console both directions; virtio-net with a loopback backend and through the socket hub."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from virtio_driver import FakeDriver, new_memory
from wirt.devices.irq import IrqLine
from wirt.devices.virtio import mmio as R
from wirt.devices.virtio.console import VirtioConsole
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.net import HDR_LEN, VirtioNet
from wirt.netback.mac import vm_mac
from wirt.netback.socket import SocketHub, connect_socket


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(VirtioMmio, "strict", True)


def wait_for(cond, timeout=10.0):
    """Poll until cond() is true; fails (without asserting any timing) if it never becomes true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


# ---- console -------------------------------------------------------------------------------------

def test_console_both_directions():
    out = []
    mem = new_memory()
    irq = IrqLine()
    con = VirtioConsole(on_output=out.append)
    t = VirtioMmio(con, mem, irq)
    d = FakeDriver(t, mem)
    assert d.r(R.DEVICE_ID) == 3
    con.feed(b"early input ")  # before the driver exists: kept, not dropped
    rx, tx = d.init()
    con.feed(b"more")
    assert con.pending_input() == 16
    h1 = rx.add([], [10])
    h2 = rx.add([], [64])
    rx.kick()
    used = dict(rx.get_used())
    assert used == {h1: 10, h2: 6}
    assert rx.read_in(h1) + rx.read_in(h2)[:6] == b"early input more"
    assert irq.level
    d.ack()
    # input arriving while buffers are posted is delivered at once
    h3 = rx.add([], [64])
    rx.kick()
    con.feed(b"ping")
    assert rx.get_used() == [(h3, 4)] and rx.read_in(h3)[:4] == b"ping"
    # guest -> host
    tx.add([b"hello ", b"host"], [])
    tx.kick()
    assert out == [b"hello host"]


def test_console_input_survives_reset_and_state():
    mem = new_memory()
    con = VirtioConsole()
    t = VirtioMmio(con, mem, IrqLine())
    d = FakeDriver(t, mem)
    d.init()
    con.feed(b"pending")
    d.w(R.STATUS, 0)
    assert con.pending_input() == 7
    s = t.state()
    con2 = VirtioConsole()
    VirtioMmio(con2, mem, IrqLine()).load_state(s)
    assert con2.pending_input() == 7


def test_console_feed_from_thread():
    mem = new_memory()
    con = VirtioConsole()
    t = VirtioMmio(con, mem, IrqLine())
    d = FakeDriver(t, mem)
    rx, _ = d.init()
    for _ in range(8):
        rx.add([], [4])
    rx.kick()
    th = threading.Thread(target=lambda: [con.feed(bytes([i])) for i in range(32)])
    th.start()
    th.join()
    got = b"".join(rx.read_in(h)[:n] for h, n in rx.get_used())
    assert got == bytes(range(8))  # one byte per feed, one buffer each
    assert con.pending_input() == 24
    for _ in range(6):
        rx.add([], [4])
    rx.kick()
    got += b"".join(rx.read_in(h)[:n] for h, n in rx.get_used())
    assert got == bytes(range(32))


# ---- net --------------------------------------------------------------------------------------------

class Loopback:
    """A frame backend that records sent frames and lets the test inject received ones."""

    def __init__(self):
        self.sent = []
        self.deliver = None
        self.closed = False

    def start(self, deliver):
        self.deliver = deliver

    def send(self, frame):
        self.sent.append(frame)

    def close(self):
        self.closed = True


def net_device(backend, name="vm", tx_thread=False):
    mem = new_memory()
    irq = IrqLine()
    nic = VirtioNet(backend, vm_mac(name), tx_thread=tx_thread)
    t = VirtioMmio(nic, mem, irq)
    return nic, t, FakeDriver(t, mem), irq


def test_net_config_and_features():
    nic, t, d, _ = net_device(Loopback(), "a")
    assert d.r(R.DEVICE_ID) == 1
    feats = d.device_features()
    assert feats >> 5 & 1 and feats >> 16 & 1 and feats >> 15 & 1  # MAC, STATUS, MRG_RXBUF
    mac = bytes(d.config(i, 1) for i in range(6))
    assert mac == vm_mac("a") and mac[0] == 0x52
    assert d.config(6, 2) == 1  # link up
    assert d.config(10, 2) == 1500
    d.init()
    gen = d.r(R.CONFIG_GENERATION)
    nic.set_link(False)
    assert d.config(6, 2) == 0 and d.r(R.CONFIG_GENERATION) == gen + 1 and d.isr() & 2


def test_net_tx_and_rx_with_pending_queue():
    be = Loopback()
    nic, t, d, irq = net_device(be)
    rx, tx = d.init(features=d.device_features() & ~(1 << 15))  # without MRG_RXBUF
    frame = bytes(range(60))
    tx.add([bytes(HDR_LEN), frame[:20], frame[20:]], [])
    tx.kick()
    assert be.sent == [frame]
    # frames arriving before the guest posted rx buffers wait in the queue
    be.deliver(b"\x01" * 60)
    be.deliver(b"\x02" * 1600)  # larger than the 1526-byte buffer: dropped
    be.deliver(b"\x03" * 70)
    assert nic.pending_frames() == 3
    h1 = rx.add([], [HDR_LEN + 1514])
    h2 = rx.add([], [HDR_LEN, 1514])  # header in its own buffer
    rx.kick()
    used = dict(rx.get_used())
    assert used == {h1: HDR_LEN + 60, h2: HDR_LEN + 70}
    hdr = rx.read_in(h1)[:HDR_LEN]
    assert struct.unpack("<BBHHHHH", hdr)[-1] == 1  # num_buffers
    assert rx.read_in(h1)[HDR_LEN:HDR_LEN + 60] == b"\x01" * 60
    assert rx.read_in(h2)[HDR_LEN:HDR_LEN + 70] == b"\x03" * 70
    assert nic.stats["rx_dropped"] == 1 and nic.pending_frames() == 0
    assert irq.level


def _wait_for(cond, timeout=5.0):
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


def test_net_tx_thread_sends_in_order_and_returns_buffers():
    """With a transmit thread a notification returns at once; the thread sends every frame
    in the order made available, fills the used ring and interrupts."""
    be = Loopback()
    nic, t, d, irq = net_device(be, tx_thread=True)
    rx, tx = d.init()
    frames = [bytes([i]) * (60 + i) for i in range(12)]
    heads = []
    for k in range(0, 12, 3):  # four notifications of three chains (of the queue's 16 entries)
        for f in frames[k:k + 3]:
            heads.append(tx.add([bytes(HDR_LEN), f], [], indirect=True))
        tx.kick()
    _wait_for(lambda: len(be.sent) == 12)
    assert [bytes(f) for f in be.sent] == frames
    _wait_for(lambda: irq.level)
    assert sorted(h for h, _ in tx.get_used()) == sorted(heads)
    assert nic.stats["tx_frames"] == 12
    nic.close()
    assert be.closed and not nic._tx_worker.is_alive()


def test_net_snapshot_serves_a_notification_the_thread_has_not():
    """A snapshot taken between a notification and the thread's turn serves it first: the
    driver (with EVENT_IDX) would not notify again for chains it was told would be taken."""
    be = Loopback()
    nic, t, d, irq = net_device(be, tx_thread=True)
    rx, tx = d.init()
    with t.lock:  # the thread cannot take the queue while the "CPU thread" holds the lock
        h = tx.add([bytes(HDR_LEN), b"\x07" * 60], [])
        tx.kick()
        state = t.state()
        assert [bytes(f) for f in be.sent] == [b"\x07" * 60]
        assert [u for u, _ in tx.get_used()] == [h]
        assert state["queues"][1]["last_avail"] == state["queues"][1]["used_idx"] == 1
    nic.close()
    assert len(be.sent) == 1  # the thread found nothing left to send


def test_net_rx_mergeable_buffers():
    """With MRG_RXBUF a frame spreads over as many posted buffers as it needs (num_buffers in
    the first header); it waits while too few are posted."""
    be = Loopback()
    nic, t, d, irq = net_device(be)
    rx, tx = d.init()
    frame = bytes(i & 0xFF for i in range(1400))
    hs = [rx.add([], [512]) for _ in range(2)]
    rx.kick()
    be.deliver(frame)
    assert nic.pending_frames() == 1 and rx.get_used() == []  # 1024 bytes posted: not enough
    hs.append(rx.add([], [256, 256]))
    rx.kick()
    used = rx.get_used()
    assert [h for h, _ in used] == hs and [n for _, n in used] == [512, 512, HDR_LEN + 1400 - 1024]
    data = b"".join(rx.read_in(h) for h in hs)
    assert struct.unpack("<BBHHHHH", data[:HDR_LEN])[-1] == 3
    assert data[HDR_LEN:HDR_LEN + 1400] == frame
    assert nic.pending_frames() == 0 and nic.stats["rx_frames"] == 1 and irq.level


def test_net_rx_queue_is_bounded_and_dropped_without_driver():
    be = Loopback()
    nic, t, d, _ = net_device(be)
    be.deliver(b"x" * 60)  # no driver yet
    assert nic.pending_frames() == 0 and nic.stats["rx_dropped"] == 1
    d.init()
    for _ in range(nic.max_pending + 10):
        be.deliver(b"y" * 60)
    assert nic.pending_frames() == nic.max_pending
    d.w(R.STATUS, 0)  # reset drops what the old driver never took
    assert nic.pending_frames() == 0


def test_net_close_closes_backend():
    be = Loopback()
    nic, t, d, _ = net_device(be)
    t.close()
    assert be.closed


def test_two_nics_through_socket_hub(tmp_path):
    with SocketHub(tmp_path / "hub.sock") as hub:
        a = net_device(connect_socket(hub.path), "a")
        b = net_device(connect_socket(hub.path), "b")
        try:
            wait_for(lambda: hub.members == 2)
            (a_rx, a_tx), (b_rx, b_tx) = a[2].init(), b[2].init()
            for _ in range(4):
                b_rx.add([], [HDR_LEN + 1514])
            b_rx.kick()
            frame = b"\xff" * 6 + vm_mac("a") + b"\x88\xb5" + b"hello over the hub".ljust(46, b".")
            a_tx.add([bytes(HDR_LEN) + frame], [])
            a_tx.kick()
            wait_for(lambda: b_rx.used_idx() == 1)
            ((h, n),) = b_rx.get_used()
            assert b_rx.read_in(h)[HDR_LEN:n] == frame
            assert b[3].level  # interrupt raised from the backend thread
            assert a_rx.used_idx() == 0  # the hub does not echo to the sender
        finally:
            a[1].close()
            b[1].close()


def test_nic_gets_dhcp_offer_through_real_passt():
    from wirt.netback.passt import PasstBackend

    # the DHCP frame builder of the passt backend tests
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "passt_frames", pathlib.Path(__file__).parents[2] / "netback" / "test_netback_passt.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)

    nic, t, d, irq = net_device(PasstBackend(), "dhcp-vm")
    try:
        rx, tx = d.init()
        for _ in range(8):
            rx.add([], [HDR_LEN + 1514])
        rx.kick()
        tx.add([bytes(HDR_LEN) + frames.dhcp_discover(nic.mac)], [])
        tx.kick()

        def offer_seen():
            for h, n in rx.get_used():
                if frames.dhcp_message_type(rx.read_in(h)[HDR_LEN:n]) == 2:
                    return True
            return False

        wait_for(offer_seen)
        assert irq.level
    finally:
        t.close()


def _ones_sum(b: bytes) -> int:
    b += b"\0" * (len(b) & 1)
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_net_tx_checksum_offload():
    """VIRTIO_NET_F_CSUM: the device completes the checksum the driver left partial (the UDP
    pseudo-header sum in place), and drops a frame whose checksum field lies outside it."""
    be = Loopback()
    nic, t, d, irq = net_device(be)
    rx, tx = d.init()
    src, dst, payload = bytes([192, 0, 2, 2]), bytes([192, 0, 2, 1]), b"checksum me, please"
    length = 8 + len(payload)
    pseudo = _ones_sum(src + dst + struct.pack(">BBH", 0, 17, length))
    ip = b"\x45\x00" + struct.pack(">H", 20 + length) + b"\0" * 8 + src + dst
    frame = b"\xff" * 12 + b"\x08\x00" + ip + struct.pack(">HHHH", 1234, 5678, length, pseudo) + payload
    hdr = struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 6, 0)  # NEEDS_CSUM, csum_start 34, offset 6
    tx.add([hdr, frame[:40], frame[40:]], [])
    bad = struct.pack("<BBHHHHH", 1, 0, 0, 0, len(frame) - 1, 6, 0)
    tx.add([bad, frame], [])
    tx.kick()
    assert len(be.sent) == 1 and nic.stats["tx_dropped"] == 1
    sent = be.sent[0]
    assert sent[:40] == frame[:40] and sent[42:] == frame[42:]
    # the receiver's check: pseudo-header + UDP segment sums to all ones
    assert _ones_sum(src + dst + struct.pack(">BBH", 0, 17, length) + sent[34:]) == 0xFFFF


def test_net_rx_data_valid_only_for_trusted_backends():
    class Trusted(Loopback):
        checksums_valid = True

    for backend, flag in ((Loopback(), 0), (Trusted(), 2)):
        nic, t, d, irq = net_device(backend)
        assert bool(d.device_features() >> 1 & 1) == bool(flag)  # GUEST_CSUM offered
        rx, tx = d.init()
        h = rx.add([], [2048])
        rx.kick()
        backend.deliver(b"\x05" * 60)
        assert rx.read_in(h)[0] == flag


def _gather_one(pieces: list[bytes], max_frame: int = 65553) -> tuple[bytes | None, int]:
    """txframes.gather on one chain whose readable buffers are `pieces` (laid out with gaps
    in a scratch RAM): the frame it produced (None: dropped) and the bytes it used."""
    import numpy as np

    from wirt.devices.virtio import txframes

    ram = np.zeros(sum(len(p) + 8 for p in pieces) + 8, dtype=np.uint8)
    offs, lens, at = [], [], 8
    for p in pieces:
        ram[at:at + len(p)] = np.frombuffer(p, dtype=np.uint8)
        offs.append(at)
        lens.append(len(p))
        at += len(p) + 8
    total = sum(lens)
    out = np.zeros((total + 7) & ~7 or 8, dtype=np.uint8)
    res = np.zeros(2, dtype=np.int64)
    used = txframes.gather(ram, np.array(offs, dtype=np.int64), np.array(lens, dtype=np.int64),
                           np.array([0, len(pieces)], dtype=np.int64), np.array([len(pieces)], dtype=np.int64),
                           np.array([total, 0], dtype=np.int64), 1, max_frame, out, out.view(np.uint32), res)
    return (None if res[0] < 0 else out[res[0]:res[1]].tobytes()), used


@pytest.mark.parametrize("length", [2, 3, 4, 5, 6, 7, 61, 1500, 65521])
@pytest.mark.parametrize("start", [14, 13, 15, 16])
def test_checksum_matches_rfc1071_on_any_length(length, start):
    """The completed checksum (summed in 32-bit words in compiled code) equals the RFC 1071
    sum of big-endian 16-bit words, whatever the length's remainder and the field's alignment."""
    import random

    rnd = random.Random(length)
    body = bytearray(rnd.randbytes(length))
    body[0:2] = b"\x12\x34"  # the field: stays part of the sum, as the pseudo-header partial sum
    frame = bytes(b"\xaa" * start) + body
    expect = ~_ones_sum(bytes(body)) & 0xFFFF or 0xFFFF
    hdr = struct.pack("<BBHHHHH", 1, 0, 0, 0, start, 0, 0)  # NEEDS_CSUM at the body's start
    sent, _ = _gather_one([hdr + frame[:5], frame[5:]])
    assert sent is not None and struct.unpack(">H", sent[start:start + 2])[0] == expect
    assert sent[:start] == frame[:start] and sent[start + 2:] == frame[start + 2:]


@pytest.mark.parametrize("split", [1, 5, 11, 12, 13])
def test_tx_header_may_span_buffers(split):
    """§5.1.6.2: the header is the first 12 readable bytes however the driver cut its buffers;
    the frame is everything after it, in order."""
    frame = bytes(range(200))
    hdr = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 0)
    data = hdr + frame
    sent, used = _gather_one([data[:split], data[split:split + 50], data[split + 50:]])
    assert sent == frame and used == len(frame)


def test_tx_gather_drops_what_it_cannot_send():
    """A chain with no frame after its header, a frame above the limit, or a checksum field
    past the frame's end is dropped (res -1), and nothing of it is counted as used."""
    hdr = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 0)
    assert _gather_one([hdr]) == (None, 0)
    assert _gather_one([hdr + b"x" * 101], max_frame=100) == (None, 0)
    bad = struct.pack("<BBHHHHH", 1, 0, 0, 0, 98, 1, 0)  # field at 99..100 of a 100-byte frame
    assert _gather_one([bad + b"y" * 100]) == (None, 0)
    ok = struct.pack("<BBHHHHH", 1, 0, 0, 0, 98, 0, 0)  # field at 98..99: inside
    assert _gather_one([ok + b"y" * 100])[0] is not None


class BatchLoopback(Loopback):
    """A passt-like backend: large MTU, trusted checksums, frames delivered and sent in batches."""

    mtu = 65520
    checksums_valid = True

    def __init__(self):
        super().__init__()
        self.batches = []
        self.deliver_many = None

    def start_many(self, deliver_many):
        self.deliver_many = deliver_many

    def send_many(self, frames):
        self.batches.append(list(frames))


def test_counting_backend_runs_the_link_like_the_backend():
    """`wirt start`'s CountingBackend passes the backend's MTU, trusted checksums and batched
    calls through to the NIC, and counts what crosses it."""
    from wirt.vm.runner import CountingBackend

    inner = BatchLoopback()
    counted = CountingBackend(inner)
    nic, t, d, irq = net_device(counted)
    assert d.config(10, 2) == 65520 and d.device_features() >> 1 & 1  # MTU, GUEST_CSUM
    rx, tx = d.init()
    for i in range(3):
        tx.add([bytes(HDR_LEN), bytes([i]) * 100], [], publish=False)
    tx.publish()
    tx.kick()
    assert inner.batches == [[bytes([i]) * 100 for i in range(3)]]
    assert counted.tx_frames == 3 and counted.tx_bytes == 300
    hs = [rx.add([], [4096]) for _ in range(4)]
    rx.kick()
    inner.deliver_many([b"\x07" * 60, b"\x08" * 70])
    assert counted.rx_frames == 2 and counted.rx_bytes == 130
    assert [n for _, n in rx.get_used()] == [HDR_LEN + 60, HDR_LEN + 70]
    assert rx.read_in(hs[1])[HDR_LEN:HDR_LEN + 70] == b"\x08" * 70


def test_net_rx_batch_fills_buffers_in_order_and_leaves_the_rest_posted():
    """Frames read together fill the posted buffers in order, each frame starting a new chain;
    chains popped beyond what they needed go back to the ring unused and take the next frame."""
    be = BatchLoopback()
    nic, t, d, irq = net_device(be)
    rx, tx = d.init()
    hs = [rx.add([], [1024]) for _ in range(12)]
    rx.kick()
    rx.set_used_event(0)
    frames = [bytes([i]) * 1500 for i in range(3)]  # 2 buffers each
    be.deliver_many(frames)
    used = rx.get_used()
    assert [h for h, _ in used] == hs[:6] and [n for _, n in used] == [1024, HDR_LEN + 1500 - 1024] * 3
    assert d.ack() & 1 and not irq.level
    for i in range(3):
        data = rx.read_in(hs[2 * i]) + rx.read_in(hs[2 * i + 1])
        assert struct.unpack("<BBHHHHH", data[:HDR_LEN])[-1] == 2 and data[HDR_LEN:HDR_LEN + 1500] == frames[i]
    rx.set_used_event(rx.used_idx())  # the driver asks for the next one
    be.deliver_many([b"\x09" * 500])  # fits one of the six chains still posted
    assert rx.get_used() == [(hs[6], HDR_LEN + 500)] and irq.level


def test_net_rx_waiting_for_buffers_asks_for_the_next_notification():
    """A frame that does not fit the posted buffers waits, and avail_event asks the driver to
    notify at its very next buffer (§2.7.10), or the frame would wait for unrelated traffic."""
    be = BatchLoopback()
    nic, t, d, irq = net_device(be)
    rx, tx = d.init()
    for _ in range(3):
        rx.add([], [512])
    rx.kick()
    be.deliver_many([b"\x01" * 100])  # fits: one chain used, two popped by the bulk walk and given back
    assert [n for _, n in rx.get_used()] == [HDR_LEN + 100]
    be.deliver_many([b"\x02" * 1400])  # needs three 512-byte chains, two are posted
    assert rx.get_used() == [] and nic.pending_frames() == 1
    assert rx.avail_event() == rx.avail_idx  # the next buffer the driver adds crosses it
    h = rx.add([], [512])
    rx.kick()
    used = rx.get_used()
    assert len(used) == 3 and used[-1] == (h, HDR_LEN + 1400 - 1024)


def test_net_tx_thread_waits_while_the_backend_has_a_backlog(monkeypatch):
    """While frames the thread sent still wait for the peer (a stream backend's queue above its
    high mark), the thread takes no more chains: they stay in the guest's ring, not dropped,
    and go out in order once the peer reads."""
    import socket

    from wirt.netback import stream
    from wirt.netback.stream import FrameDecoder, StreamBackend

    monkeypatch.setattr(stream, "DRAIN_HIGH", 32 << 10)
    monkeypatch.setattr(stream, "DRAIN_LOW", 8 << 10)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    be = StreamBackend(ours)
    nic, t, d, irq = net_device(be, tx_thread=True)
    rx, tx = d.init()
    frames = [bytes([i]) * 40000 for i in range(8)]
    first = [tx.add([bytes(HDR_LEN), f], []) for f in frames[:4]]
    tx.kick()
    wait_for(lambda: nic.stats["tx_frames"] == 4)
    time.sleep(0.1)  # the thread now waits: the socket took a little, the link queues the rest
    second = [tx.add([bytes(HDR_LEN), f], []) for f in frames[4:]]
    tx.kick()
    time.sleep(0.3)
    assert nic.stats["tx_frames"] == 4 and nic.stats["tx_dropped"] == 0
    used = [h for h, _ in tx.get_used()]
    assert not set(used) & set(second)  # the second batch is still the guest's
    got: list[bytes] = []
    dec = FrameDecoder()
    theirs.settimeout(10)
    while len(got) < 8:
        got.extend(dec.feed(theirs.recv(1 << 16)))
    assert got == frames
    wait_for(lambda: nic.stats["tx_frames"] == 8)
    used += [h for h, _ in tx.get_used()]
    assert sorted(used) == sorted(first + second)
    nic.close()
    theirs.close()
    assert not nic._tx_worker.is_alive()
