"""SiFive test finisher (compatible "sifive,test1", "sifive,test0", "syscon").

A single 32-bit command register at offset 0. Linux reaches it through syscon-poweroff
(value 0x5555) and syscon-reboot (value 0x7777); bare-metal tests write
0x3333 | (code << 16) to report a failure with an exit code.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["TestFinisher", "FINISHER_FAIL", "FINISHER_PASS", "FINISHER_RESET"]

FINISHER_FAIL = 0x3333
FINISHER_PASS = 0x5555
FINISHER_RESET = 0x7777

_KINDS = {FINISHER_PASS: "poweroff", FINISHER_FAIL: "fail", FINISHER_RESET: "reset"}


class TestFinisher:
    """The finisher: calls `on_event(kind, code)` with kind "poweroff", "fail" or "reset".

    Writes of any other command are ignored; reads return 0. The device is stateless.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, on_event: Callable[[str, int], None] | None = None, size: int = 0x1000) -> None:
        self.size = size
        self.on_event = on_event

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0 or size < 2:
            return
        kind = _KINDS.get(value & 0xFFFF)
        if kind is None or self.on_event is None:
            return
        code = (value >> 16) & 0xFFFF if kind == "fail" and size >= 4 else 0
        self.on_event(kind, code)

    def reset(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, d: dict[str, Any]) -> None:
        pass
