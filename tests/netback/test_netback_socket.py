"""Socket hub and point-to-point links, framing, MAC derivation, tap error messages."""

from __future__ import annotations

import os
import queue
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirt.errors import WirtError
from wirt.netback.mac import format_mac, parse_mac, vm_mac
from wirt.netback.socket import SocketHub, connect_socket, listen_socket
from wirt.netback.stream import FrameDecoder, FrameError, encode_frame
from wirt.netback.tap import TapBackend


def get(q: queue.Queue, timeout: float = 10.0) -> bytes:
    return q.get(timeout=timeout)


def wait_for(cond, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


# ---- framing -----------------------------------------------------------------------------------

@given(st.lists(st.binary(min_size=1, max_size=2000), max_size=8), st.integers(1, 50))
def test_decoder_reassembles_any_split(frames, chunk):
    stream = b"".join(encode_frame(f) for f in frames)
    dec = FrameDecoder()
    out = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i: i + chunk])
    assert out == frames


def test_decoder_rejects_huge_length():
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack(">I", 1 << 30))


# ---- hub ---------------------------------------------------------------------------------------------

def test_hub_forwards_to_all_others(tmp_path):
    with SocketHub(tmp_path / "hub") as hub:
        qs = [queue.Queue() for _ in range(3)]
        members = [connect_socket(hub.path) for _ in qs]
        try:
            for m, q in zip(members, qs):
                m.start(q.put)
            wait_for(lambda: hub.members == 3)
            members[0].send(b"from-0")
            assert get(qs[1]) == b"from-0" and get(qs[2]) == b"from-0"
            big = os.urandom(9000)
            members[2].send(big)
            assert get(qs[0]) == big and get(qs[1]) == big
            assert qs[0].empty() and qs[2].empty()
            # a member leaving does not disturb the others
            members[1].close()
            wait_for(lambda: hub.members == 2)
            members[0].send(b"again")
            assert get(qs[2]) == b"again"
        finally:
            for m in members:
                m.close()


def test_hub_drops_member_sending_garbage(tmp_path):
    with SocketHub(tmp_path / "hub") as hub:
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(hub.path)
        wait_for(lambda: hub.members == 1)
        raw.sendall(struct.pack(">I", 1 << 31))
        wait_for(lambda: hub.members == 0)
        raw.close()


def test_point_to_point(tmp_path):
    path = tmp_path / "p2p"
    qa, qb = queue.Queue(), queue.Queue()
    a = listen_socket(path)
    a.start(qa.put)
    b = connect_socket(path)
    b.start(qb.put)
    try:
        b.send(b"b->a")
        assert get(qa) == b"b->a"
        wait_for(lambda: a.connected)
        a.send(b"a->b")
        assert get(qb) == b"a->b"
    finally:
        a.close()
        b.close()
    assert not path.exists()


def test_connect_errors(tmp_path):
    with pytest.raises(WirtError, match="no such socket"):
        connect_socket(tmp_path / "missing")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale"))
    stale.close()
    with pytest.raises(WirtError, match="refused"):
        connect_socket(tmp_path / "stale")
    # a stale socket file is replaced by a new listener; a live one is refused
    hub = SocketHub(tmp_path / "stale")
    try:
        with pytest.raises(WirtError, match="already listening"):
            SocketHub(tmp_path / "stale")
    finally:
        hub.close()


# ---- MAC ------------------------------------------------------------------------------------------------

def test_vm_mac_is_stable_local_unicast():
    a = vm_mac("web-1")
    assert a == vm_mac("web-1") and len(a) == 6
    assert a != vm_mac("web-2") and a != vm_mac("web-1", nic=1)
    assert a[0] & 2 and not a[0] & 1
    assert format_mac(a).startswith("52:54:00:")


def test_parse_mac():
    assert parse_mac("52:54:00:12:34:56") == bytes.fromhex("525400123456")
    assert parse_mac("02-00-00-00-00-01") == bytes.fromhex("020000000001")
    assert parse_mac("525400123456") == bytes.fromhex("525400123456")
    for bad in ("01:00:5e:00:00:01", "52:54:00:12:34", "zz:54:00:12:34:56", "52:54-00:12:34:56",
                "00:00:00:00:00:00"):
        with pytest.raises(WirtError):
            parse_mac(bad)


# ---- tap ------------------------------------------------------------------------------------------------

def test_tap_missing_device_is_a_clear_error():
    with pytest.raises(WirtError, match="does not exist.*ip tuntap add"):
        TapBackend("wirtnosuch0")


def test_tap_bad_name():
    with pytest.raises(WirtError, match="bad tap device name"):
        TapBackend("a" * 16)


def test_tap_not_a_tap_device():
    with pytest.raises(WirtError):
        TapBackend("lo")  # exists, but is no tap (or is not ours)


# ---- open_backend ---------------------------------------------------------------------------------------

def test_open_backend_from_config(tmp_path):
    from wirt.netback import open_backend

    assert open_backend("none") is None
    for kwargs, msg in [({"kind": "bogus"}, "unknown network backend"),
                        ({"kind": "tap"}, "needs a tap device name"),
                        ({"kind": "socket"}, "needs a socket path"),
                        ({"kind": "tap", "tap": "x", "port_forwards": ["80"]}, "port forwards need")]:
        with pytest.raises(WirtError, match=msg):
            open_backend(**kwargs)
    be = open_backend("socket", path=str(tmp_path / "s"), listen=True)
    be.close()
