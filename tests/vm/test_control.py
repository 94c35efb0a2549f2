"""The control protocol against a real VM process (the echo firmware): structured errors for
garbage, the server keeps serving, console attach streams both ways; SO_PEERCRED refusal."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from wirt.vm.control import ControlClient, ControlServer, call


def _expect_error(client, request, code):
    reply = client.raw(request)
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    return reply


def test_garbage_gets_structured_errors_and_vm_keeps_running(tiny_vm):
    tiny_vm.start()
    with ControlClient(tiny_vm.paths.control) as c:
        _expect_error(c, b"this is not json\n", "bad-json")
        _expect_error(c, b"\xff\xfe\n", "bad-json")
        _expect_error(c, b"[1, 2]\n", "bad-request")
        _expect_error(c, b'{"id": 7}\n', "bad-request")
        _expect_error(c, b'{"id": [1], "cmd": "status"}\n', "bad-request")
        r = _expect_error(c, b'{"id": 3, "cmd": "reboot-the-planet"}\n', "unknown-command")
        assert r["id"] == 3
        _expect_error(c, b'{"id": 4, "cmd": "console-tail", "lines": "many"}\n', "bad-argument")
        _expect_error(c, b'{"id": 5, "cmd": "console-input", "data": 5}\n', "bad-argument")
        _expect_error(c, b'{"id": 6, "cmd": "console-input", "data": "!!", "encoding": "base64"}\n', "bad-argument")
        _expect_error(c, b'{"id": 8, "cmd": "stop", "force": "yes"}\n', "bad-argument")
        _expect_error(c, b'{"id": 9, "cmd": "resume"}\n', "invalid-state")
        ok = c.raw({"id": "s", "cmd": "status"})
        assert ok["ok"] and ok["id"] == "s" and ok["state"] == "running" and ok["name"] == "tiny"
    # a client that sends half a line and vanishes does not hurt either
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(tiny_vm.paths.control))
    s.sendall(b'{"cmd": "sta')
    s.close()
    st = call(tiny_vm.paths.control, "stats")
    assert st["instructions"] > 0 and st["rss_bytes"] > 0
    assert tiny_vm.status().state == "running"
    assert oct(os.stat(tiny_vm.paths.control).st_mode & 0o777) == "0o600"


def test_console_attach_echo_tail_and_pause(tiny_vm):
    tiny_vm.start()
    with ControlClient(tiny_vm.paths.control) as c:
        c.request("console-attach")
        c.sock.sendall(b"hello wirt\n")
        got = c.leftover()
        deadline = time.monotonic() + 10
        while b"hello wirt" not in got and time.monotonic() < deadline:
            got += c.sock.recv(4096)
        assert b"hello wirt" in got
    assert "hello wirt" in call(tiny_vm.paths.control, "console-tail", lines=5)["text"]
    assert tiny_vm.status().state == "running"  # detaching leaves the VM running
    # pause freezes the guest: no instruction retires until resume
    tiny_vm.pause()
    assert tiny_vm.status().state == "paused"
    a = tiny_vm.stats()["instructions"]
    time.sleep(0.3)
    assert tiny_vm.stats()["instructions"] == a
    tiny_vm.resume()
    time.sleep(0.3)
    assert tiny_vm.stats()["instructions"] > a


def test_peer_uid_is_checked(tmp_path):
    """SO_PEERCRED: a peer whose uid is not allowed gets 'forbidden' (server in a thread: the
    only way to be 'another user' without root tricks is to allow nobody)."""
    path = tmp_path / "c.sock"
    srv = ControlServer(path, {"ping": lambda req: {}}, allowed_uids=(os.getuid() + 12345,))
    srv.start()
    try:
        with ControlClient(path) as c:
            reply = c.raw({"id": 1, "cmd": "ping"})
        assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
    finally:
        srv.close()
    assert not path.exists()


def test_handler_bug_is_an_internal_error_not_a_crash(tmp_path):
    def broken(req):
        raise RuntimeError("oops")

    path = tmp_path / "c.sock"
    srv = ControlServer(path, {"broken": broken, "ping": lambda req: {"pong": True}})
    srv.start()
    try:
        with ControlClient(path) as c:
            r = c.raw({"id": 1, "cmd": "broken"})
            assert r["error"]["code"] == "internal" and "oops" in r["error"]["message"]
            assert c.raw({"id": 2, "cmd": "ping"}) == {"id": 2, "ok": True, "pong": True}
            big = b'{"cmd": "ping", "pad": "' + b"x" * (2 << 20)
            try:
                c.sock.sendall(big)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and hung up before we finished sending
            reply = json.loads(c.sock.recv(65536).split(b"\n")[0])
            assert reply["error"]["code"] == "too-long"
    finally:
        srv.close()
