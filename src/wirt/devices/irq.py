"""Interrupt lines: the wire between a device and its interrupt controller.

A device drives an `IrqLine`; the line forwards level changes to a sink (a PLIC input,
or a hart's MEIP/SEIP bit). Devices therefore never know what they are wired to.
"""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ["IrqLine", "IrqSink"]

IrqSink = Callable[[bool], None]


class IrqLine:
    """A level-sensitive interrupt wire.

    `set(level)` forwards the new level to the sink only when it changes, so devices can
    re-drive their line after every register access at almost no cost. A lock makes the
    check-and-forward atomic, so a device thread (console input, network backend) may
    drive a line while the CPU thread drives another path into the same sink.
    """

    __slots__ = ("_sink", "_level", "_lock", "name")

    def __init__(self, sink: IrqSink | None = None, name: str = "") -> None:
        self._sink = sink
        self._level = False
        self._lock = threading.Lock()
        self.name = name

    @property
    def level(self) -> bool:
        """The level last driven onto the line."""
        return self._level

    def set(self, level: bool) -> None:
        """Drive the line to `level`; the sink hears only real changes."""
        level = bool(level)
        if level is self._level:  # fast path: no change, no lock
            return
        with self._lock:
            if level is self._level:
                return
            self._level = level
            sink = self._sink
            if sink is not None:
                sink(level)

    def raise_(self) -> None:
        """Drive the line high."""
        self.set(True)

    def lower(self) -> None:
        """Drive the line low."""
        self.set(False)

    def connect(self, sink: IrqSink | None) -> None:
        """Attach (or detach, with None) the sink; the current level is replayed to it."""
        with self._lock:
            self._sink = sink
            if sink is not None and self._level:
                sink(True)

    def __repr__(self) -> str:
        return f"IrqLine({self.name or '?'}, level={int(self._level)})"
