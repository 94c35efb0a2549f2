"""A small I/O thread: a selector loop over non-blocking file descriptors.

Handlers are objects with `on_read()`, `on_write()`, `wants_write()` and `on_error(exc)`. Other
threads add or remove handlers and `wake()` the loop (a self-pipe) after queueing output, so
the selector itself is only ever touched by the loop thread.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from typing import Protocol

__all__ = ["EventLoop", "Handler"]

log = logging.getLogger(__name__)


class Handler(Protocol):
    def fileno(self) -> int: ...

    def on_read(self) -> None: ...

    def on_write(self) -> None: ...

    def wants_write(self) -> bool: ...

    def on_error(self, exc: BaseException) -> None: ...


class EventLoop:
    """One daemon thread serving a set of handlers until `stop()`."""

    def __init__(self, name: str) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._add: list[Handler] = []
        self._remove: list[Handler] = []
        self._handlers: dict[int, tuple[Handler, int]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, handler: Handler) -> None:
        """Serve `handler` from the next loop iteration on (any thread)."""
        with self._lock:
            self._add.append(handler)
        self.wake()

    def remove(self, handler: Handler) -> None:
        """Stop serving `handler` (any thread); the caller closes it."""
        with self._lock:
            self._remove.append(handler)
        self.wake()

    def wake(self) -> None:
        """Make the loop re-evaluate which handlers want to write."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is already pending) or closed

    def stop(self) -> None:
        """Stop the thread and wait for it (not from the loop thread itself)."""
        with self._lock:
            self._stopping = True
        self.wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        self._sel.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _apply_changes(self) -> bool:
        with self._lock:
            if self._stopping:
                return False
            adds, self._add = self._add, []
            removes, self._remove = self._remove, []
        for h in removes:
            for fd, (known, _) in list(self._handlers.items()):
                if known is h:
                    del self._handlers[fd]
                    self._sel.unregister(fd)
        for h in adds:
            fd = h.fileno()
            if fd >= 0 and fd not in self._handlers:
                try:
                    self._sel.register(fd, selectors.EVENT_READ, h)
                except (OSError, ValueError):
                    continue  # closed by its owner since fileno(): nothing left to serve
                self._handlers[fd] = (h, selectors.EVENT_READ)
        for fd, (h, events) in list(self._handlers.items()):
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if h.wants_write() else 0)
            if want != events:
                try:
                    self._sel.modify(fd, want, h)
                except (OSError, ValueError):  # closed by its owner, whose remove() is on its way
                    del self._handlers[fd]
                    try:
                        self._sel.unregister(fd)
                    except (KeyError, ValueError, OSError):
                        pass
                    continue
                self._handlers[fd] = (h, want)
        return True

    def _run(self) -> None:
        while self._apply_changes():
            for key, events in self._sel.select():
                h = key.data
                if h is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                if key.fd not in self._handlers:
                    continue  # removed while this batch was pending
                try:
                    if events & selectors.EVENT_READ:
                        h.on_read()
                    if events & selectors.EVENT_WRITE:
                        h.on_write()
                except Exception as exc:  # one broken connection must not stop the others
                    log.debug("netback handler error: %r", exc)
                    self._handlers.pop(key.fd, None)
                    try:
                        self._sel.unregister(key.fd)
                    except (KeyError, ValueError):
                        pass
                    h.on_error(exc)
