"""The passt backend against the real passt binary (Debian package passt): DHCP, ARP, port forwards."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import struct

import pytest

from wirt.errors import WirtError
from wirt.netback.passt import PasstBackend, PortForward, batch_scheduling, parse_port_forward

MAC = bytes.fromhex("525400abcdef")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def dhcp_discover(mac: bytes, xid: int = 0x1234ABCD) -> bytes:
    """An Ethernet broadcast frame carrying a DHCPDISCOVER (RFC 2131)."""
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4),
                        bytes(4), bytes(4), mac + bytes(10), b"", b"")
    bootp += b"\x63\x82\x53\x63" + bytes([53, 1, 1, 55, 3, 1, 3, 6, 255])
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def arp_request(mac: bytes, sender_ip: str, target_ip: str) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(sender_ip),
                      bytes(6), socket.inet_aton(target_ip))
    return b"\xff" * 6 + mac + b"\x08\x06" + arp


def dhcp_message_type(frame: bytes) -> int | None:
    """The DHCP message type of a frame, or None if it is not a DHCP reply."""
    if frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0xF) * 4
    udp = 14 + ihl
    sport, dport = struct.unpack_from("!HH", frame, udp)
    if (sport, dport) != (67, 68):
        return None
    opts = frame[udp + 8 + 240:]
    i = 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 53:
            return opts[i + 2]
        i += 2 + opts[i + 1]
    return None


def receive_until(q: queue.Queue, pred, timeout: float = 10.0):
    while True:
        try:
            frame = q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no matching frame from passt") from None
        if pred(frame):
            return frame


@pytest.fixture
def passt_available():
    if shutil.which("passt") is None:
        pytest.fail("passt is not installed: apt-get install passt")


def test_parse_port_forward():
    assert parse_port_forward("8080:80") == PortForward(8080, 80, "tcp", "127.0.0.1")  # loopback by default
    assert parse_port_forward("5353:53/udp") == PortForward(5353, 53, "udp", "127.0.0.1")
    assert parse_port_forward("2222") == PortForward(2222, 2222, "tcp", "127.0.0.1")
    assert parse_port_forward("0.0.0.0:2222:22") == PortForward(2222, 22, "tcp", "0.0.0.0")
    assert parse_port_forward("127.0.0.1:2222:22/tcp") == PortForward(2222, 22, "tcp", "127.0.0.1")
    assert PortForward(8080, 80).passt_args() == ["-t", "8080:80"]
    assert PortForward(5353, 53, "udp").passt_args() == ["-u", "5353:53"]
    assert PortForward(2222, 22, "tcp", "127.0.0.1").passt_args() == ["-t", "127.0.0.1/2222:22"]
    for bad in ("", "80:", "x:80", "0:80", "70000:80", "80:80/sctp", "300.1.1.1:80:80"):
        with pytest.raises(WirtError):
            parse_port_forward(bad)


def test_missing_passt_binary():
    with pytest.raises(WirtError, match="not found"):
        PasstBackend(passt="/nonexistent/passt")


def test_dhcp_offer_from_real_passt(passt_available):
    q: queue.Queue = queue.Queue()
    with PasstBackend() as be:
        be.start(q.put)
        be.send(dhcp_discover(MAC))
        frame = receive_until(q, lambda f: dhcp_message_type(f) is not None)
        assert dhcp_message_type(frame) == 2  # DHCPOFFER
        assert frame[:6] in (MAC, b"\xff" * 6)
        yiaddr = frame[14 + 20 + 8 + 16: 14 + 20 + 8 + 20]
        assert socket.inet_ntoa(yiaddr).count(".") == 3
    assert be.process.poll() is not None  # passt was stopped


def test_arp_reply_and_port_forward_from_real_passt(passt_available):
    # A free host port for the forward.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    q: queue.Queue = queue.Queue()
    with PasstBackend([f"{port}:80"]) as be:
        be.start(q.put)
        # Learn the addresses passt hands out, then ARP for the gateway.
        be.send(dhcp_discover(MAC))
        offer = receive_until(q, lambda f: dhcp_message_type(f) == 2)
        guest_ip = socket.inet_ntoa(offer[14 + 20 + 8 + 16: 14 + 20 + 8 + 20])
        gateway = socket.inet_ntoa(offer[14 + 12: 14 + 16])  # the server's source address
        be.send(arp_request(MAC, guest_ip, gateway))
        reply = receive_until(q, lambda f: f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02")
        assert reply[:6] == MAC
        assert socket.inet_ntoa(reply[28:32]) == gateway
        # A host connection to the forwarded port arrives at the guest as a TCP SYN to port 80.
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            syn = receive_until(q, lambda f: f[12:14] == b"\x08\x00" and f[23] == 6
                                and struct.unpack_from("!H", f, 14 + (f[14] & 0xF) * 4 + 2)[0] == 80)
            assert socket.inet_ntoa(syn[30:34]) == guest_ip
        finally:
            c.close()


def test_passt_runs_under_sched_batch(passt_available):
    """passt's wake-ups must not preempt the vCPU's thread (sched(7) SCHED_BATCH); a process
    that is gone is left alone without an error."""
    with PasstBackend() as be:
        assert os.sched_getscheduler(be.process.pid) == os.SCHED_BATCH
    assert be.process.poll() is not None
    assert batch_scheduling(be.process.pid) is False  # reaped: no such process
