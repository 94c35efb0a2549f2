"""The host side of the guest's serial console: terminal in raw mode, or plain streams.

Interactive (`RawConsole`): the host terminal is put in raw mode so every key, Ctrl-C
included, goes to the guest. The escape key is Ctrl-A, as in QEMU's `-nographic`:
    Ctrl-A x          quit wirt
    Ctrl-A h          show this help
    Ctrl-A Ctrl-A     send a literal Ctrl-A to the guest
The terminal settings are restored on every exit path: the context manager's finally,
an atexit hook, and SIGTERM/SIGHUP/SIGQUIT handlers.

Non-interactive (`StreamConsole`): guest output is streamed to a binary stream; when
that stream is not a terminal, the guest tty's CR LF line ends become LF so the output
can be piped and compared. Host input, if any, is forwarded without escape handling.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO, Callable

__all__ = ["EscapeParser", "RawConsole", "StreamConsole", "CrlfFilter", "HELP", "CTRL_A", "raw_terminal"]

CTRL_A = 0x01
HELP = (
    b"\r\nC-a h    print this help\r\n"
    b"C-a x    exit wirt\r\n"
    b"C-a C-a  send C-a to the guest\r\n"
)


class EscapeParser:
    """Splits terminal input into bytes for the guest and escape commands for wirt.

    `feed(data)` returns (bytes for the guest, list of command letters such as "x", "h").
    An escape split across two reads is remembered.
    """

    def __init__(self, escape: int = CTRL_A) -> None:
        self.escape = escape
        self._pending = False

    def feed(self, data: bytes) -> tuple[bytes, list[str]]:
        out = bytearray()
        cmds: list[str] = []
        for b in data:
            if self._pending:
                self._pending = False
                if b == self.escape:
                    out.append(b)
                else:
                    cmds.append(chr(b).lower() if 0x20 <= b < 0x7F else f"\\x{b:02x}")
            elif b == self.escape:
                self._pending = True
            else:
                out.append(b)
        return bytes(out), cmds


class CrlfFilter:
    """Turns CR LF into LF in a byte stream that arrives in arbitrary chunks."""

    def __init__(self) -> None:
        self._cr = False

    def __call__(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            self._cr = True
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")


class StreamConsole:
    """Guest output to `out` (stdout by default); optional host input forwarded as is."""

    def __init__(self, out: BinaryIO | None = None, crlf_to_lf: bool | None = None) -> None:
        self.out = out if out is not None else sys.stdout.buffer
        if crlf_to_lf is None:
            try:
                crlf_to_lf = not os.isatty(self.out.fileno())
            except (AttributeError, OSError, ValueError):
                crlf_to_lf = True
        self._filter = CrlfFilter() if crlf_to_lf else None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def output(self, data: bytes) -> None:
        """Write guest output (called on the machine's thread)."""
        if self._filter is not None:
            data = self._filter(data)
        if data:
            try:
                self.out.write(data)
                self.out.flush()
            except BrokenPipeError:
                pass  # the reader went away; keep the guest running to its end

    def forward_input(self, fd: int, feed: Callable[[bytes], None]) -> None:
        """Forward bytes read from `fd` to `feed` on a daemon thread until EOF or close()."""
        self._thread = threading.Thread(target=_pump, args=(fd, feed, self._closing, None),
                                        name="wirt-console-input", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()

    def __enter__(self) -> StreamConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(fd: int, feed: Callable[[bytes], None], closing: threading.Event,
          parser_cb: Callable[[bytes], None] | None) -> None:
    """Read `fd` until EOF or `closing`; hand each chunk to parser_cb or feed."""
    while not closing.is_set():
        try:
            ready, _, _ = select.select([fd], [], [], 0.2)
        except (OSError, ValueError):
            return
        if not ready:
            continue
        try:
            data = os.read(fd, 1024)
        except OSError:
            return
        if not data:
            return
        (parser_cb or feed)(data)


@contextlib.contextmanager
def raw_terminal(fd: int = 0) -> Iterator[bool]:
    """Terminal `fd` in raw mode for the block, restored after it, so every key goes to the guest;
    yields whether `fd` is a terminal at all (when not, it is left alone)."""
    if not os.isatty(fd):
        yield False
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class RawConsole:
    """The host terminal on `fd` in raw mode, wired to the guest console.

    feed: sends bytes to the guest (UART input); on_quit: called on Ctrl-A x or a
    terminating signal (from the input thread or a signal handler).
    """

    def __init__(self, feed: Callable[[bytes], None], on_quit: Callable[[], None], fd: int = 0,
                 out: BinaryIO | None = None) -> None:
        self.fd = fd
        self.feed = feed
        self.on_quit = on_quit
        self.out = out if out is not None else sys.stdout.buffer
        self.parser = EscapeParser()
        self.quit_signal: int | None = None
        self._saved: list | None = None
        self._old_handlers: dict[int, object] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---- terminal state ------------------------------------------------------------------
    def __enter__(self) -> RawConsole:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        atexit.register(self.restore)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):
                pass  # not the main thread: rely on finally/atexit
        tty.setraw(self.fd, termios.TCSANOW)
        self._thread = threading.Thread(target=_pump, args=(self.fd, self.feed, self._closing, self._input),
                                        name="wirt-console-input", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.restore()
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)  # type: ignore[arg-type]
            except (ValueError, OSError, TypeError):
                pass
        self._old_handlers.clear()
        atexit.unregister(self.restore)

    def restore(self) -> None:
        """Put the terminal back as it was (idempotent, safe from handlers)."""
        with self._lock:
            saved, self._saved = self._saved, None
        if saved is None:
            return
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
        except (termios.error, OSError):
            pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self.quit_signal = signum
        self.restore()
        self.on_quit()

    # ---- data ----------------------------------------------------------------------------
    def _input(self, data: bytes) -> None:
        to_guest, cmds = self.parser.feed(data)
        if to_guest:
            self.feed(to_guest)
        for cmd in cmds:
            if cmd == "x":
                self.output(b"\r\nwirt: terminated by C-a x\r\n")
                self.on_quit()
            elif cmd == "h":
                self.output(HELP)

    def output(self, data: bytes) -> None:
        """Guest output to the terminal (raw mode: bytes pass through untouched)."""
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, OSError):
            pass
