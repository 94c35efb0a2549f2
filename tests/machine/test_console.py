"""The console: Ctrl-A escapes, CR LF handling, raw mode restored on every exit path, and the
`wirt run` command-line checks that need no guest."""

from __future__ import annotations

import io
import os
import pty
import termios
import threading
import time

import pytest

from wirt.machine.console import HELP, CrlfFilter, EscapeParser, RawConsole, StreamConsole
from wirt.cli.run import StatusLineFilter
from wirt.images.scripts import STATUS_MARKER


# ---- escapes ----------------------------------------------------------------------------------
def test_escape_parser_passes_plain_bytes():
    assert EscapeParser().feed(b"ls -l\r\x03") == (b"ls -l\r\x03", [])


def test_escape_commands_and_literal_ctrl_a():
    p = EscapeParser()
    assert p.feed(b"a\x01xb") == (b"ab", ["x"])
    assert p.feed(b"\x01\x01") == (b"\x01", [])
    assert p.feed(b"\x01H") == (b"", ["h"])


def test_escape_split_across_reads():
    p = EscapeParser()
    assert p.feed(b"q\x01") == (b"q", [])
    assert p.feed(b"x") == (b"", ["x"])


# ---- output filters ------------------------------------------------------------------------------
@pytest.mark.parametrize("chunks", [[b"a\r\nb\r\n"], [b"a\r", b"\nb\r", b"\n"], [b"a\r\r\n", b"b\r\n"]])
def test_crlf_filter(chunks):
    f = CrlfFilter()
    assert b"".join(f(c) for c in chunks).replace(b"\r", b"") == b"a\nb\n"
    f2 = CrlfFilter()
    assert b"".join(f2(c) for c in chunks) in (b"a\nb\n", b"a\r\nb\n")


def test_stream_console_to_a_pipe_uses_lf():
    buf = io.BytesIO()
    c = StreamConsole(buf, crlf_to_lf=True)
    c.output(b"42\r\n")
    assert buf.getvalue() == b"42\n"


@pytest.mark.parametrize("chunks", [
    [b"42\r\n", STATUS_MARKER.encode() + b"7\r\n"],
    [b"42\r\nwirt: exit", b" status 7\r\n"],
    [b"42\r\nwi", b"rt: exit status 7", b"\r\n"],
])
def test_status_line_is_dropped_and_kept_for_the_fallback(chunks):
    f = StatusLineFilter(STATUS_MARKER)
    out = b"".join(f(c) for c in chunks)
    assert out == b"42\r\n"
    assert b"exit status 7" in f.tail


def test_status_filter_holds_only_what_could_be_the_marker():
    f = StatusLineFilter(STATUS_MARKER)
    assert f(b"$ ") == b"$ "          # a prompt passes at once
    assert f(b"wirt") == b""          # could become the marker
    assert f(b"y things\n") == b"wirty things\n"


# ---- raw mode ----------------------------------------------------------------------------------
@pytest.fixture
def tty_pair():
    master, slave = pty.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_raw_console_sets_raw_mode_and_restores_it(tty_pair):
    master, slave = tty_pair
    before = termios.tcgetattr(slave)
    fed: list[bytes] = []
    quit_ = threading.Event()
    out = io.BytesIO()
    with RawConsole(fed.append, quit_.set, fd=slave, out=out) as con:
        raw = termios.tcgetattr(slave)
        assert not raw[3] & termios.ICANON and not raw[3] & termios.ISIG and not raw[3] & termios.ECHO
        os.write(master, b"hi\x03\x01h\x01x")
        assert quit_.wait(5)
        assert b"".join(fed) == b"hi\x03"
        assert HELP in out.getvalue()
        assert con.quit_signal is None
    assert termios.tcgetattr(slave) == before


def test_raw_console_restores_on_exception(tty_pair):
    _, slave = tty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError):
        with RawConsole(lambda b: None, lambda: None, fd=slave, out=io.BytesIO()):
            raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before


def test_raw_console_restores_on_sigterm(tty_pair):
    import signal

    _, slave = tty_pair
    before = termios.tcgetattr(slave)
    quit_ = threading.Event()
    with RawConsole(lambda b: None, quit_.set, fd=slave, out=io.BytesIO()) as con:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # the handler runs at the next bytecode boundary
            if quit_.is_set():
                break
            time.sleep(0.01)
        assert quit_.is_set() and con.quit_signal == signal.SIGTERM
        assert termios.tcgetattr(slave) == before  # restored by the handler already
    assert termios.tcgetattr(slave) == before


# ---- `wirt run` argument checks (no guest needed) ---------------------------------------------
@pytest.fixture
def wirt_cli(monkeypatch):
    import wirt.cli as cli

    return cli.main


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("cpus", ["0", "65"])
def test_run_refuses_a_cpu_count_out_of_range(wirt_cli, capsys, cpus):
    assert wirt_cli(["run", "--cpus", cpus, "--", "true"]) == 2
    err = _err(capsys)
    assert err.count("\n") == 0 and "give 1 to 64 virtual CPUs" in err


def test_run_missing_kernel(wirt_cli, capsys, tmp_path):
    assert wirt_cli(["run", "--kernel", str(tmp_path / "nope"), "--firmware", str(tmp_path / "nope")]) == 2
    err = _err(capsys)
    assert "does not exist" in err and err.count("\n") == 0


def test_run_unreadable_kernel(wirt_cli, capsys, tmp_path):
    if os.geteuid() == 0:
        d = tmp_path / "dir"
        d.mkdir()
        assert wirt_cli(["run", "--kernel", str(d)]) == 2
        assert "is a directory" in _err(capsys)
        return
    k = tmp_path / "Image"
    k.write_bytes(b"x")
    k.chmod(0)
    assert wirt_cli(["run", "--kernel", str(k)]) == 2
    assert "not readable" in _err(capsys)


def test_run_wrong_architecture(wirt_cli, capsys, tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(bytes(0x38) + b"ARM\x64" + bytes(100))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x6f\x00\x00\x00")
    assert wirt_cli(["run", "--kernel", str(k), "--firmware", str(fw)]) == 2
    assert "arm64" in _err(capsys)


def test_run_memory_too_small(wirt_cli, capsys, tmp_path):
    import struct

    k = tmp_path / "Image"  # a RISC-V Image header claiming 60 MiB (boot-image-header.rst)
    k.write_bytes(struct.pack("<IIQQQIIQ8s4sI", 0x13, 0, 0x200000, 60 << 20, 0, 2, 0, 0,
                              b"RISCV\0\0\0", b"RSC\x05", 0).ljust(4096, b"\0"))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x6f\x00\x00\x00")
    assert wirt_cli(["run", "--kernel", str(k), "--firmware", str(fw), "--memory", "64M", "--", "true"]) == 2
    err = _err(capsys)
    assert "too small" in err and "--memory" in err and err.count("\n") == 0


def test_run_bad_memory_size(wirt_cli, capsys):
    assert wirt_cli(["run", "--memory", "lots", "--", "true"]) == 2
    assert "invalid size" in _err(capsys)


def test_run_unreachable_mirror(wirt_cli, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WIRT_CACHE", str(tmp_path / "cache"))
    assert wirt_cli(["run", "--mirror", "http://127.0.0.1:9/debian", "--", "true"]) == 2
    err = _err(capsys).splitlines()[-1]
    assert err.startswith("wirt: error:") and "mirror" in err
