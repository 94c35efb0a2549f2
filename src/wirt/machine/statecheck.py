"""Check a saved machine state (a snapshot's "machine" body) before any of it is loaded.

A snapshot file can be edited and resealed (its checksum is a plain hash), so its state is
checked against the running machine's own `state()` as a template: the same keys, the same
types, lists of the same lengths, integers within 64 bits, strings that decode; then the words
that describe the machine rather than the guest (RAM and ROM placement, hart id) must equal the
machine's, and fields with a small range (privilege level, virtqueue indices) must lie in it.
Only a state that passes is loaded, so a refused restore leaves the VM as it was.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from wirt.cpu import layout as L
from wirt.errors import WirtError

__all__ = ["check_state"]

_MAX_STR = 16 << 20  # a FIFO or pending console input, base64: far below this in practice
# Hart words fixed by the board, not by the guest: a different value would point the core's
# RAM and ROM bounds checks at host memory.
_FIXED_WORDS = {L.RAM_BASE: "RAM base", L.RAM_SIZE: "RAM size", L.ROM_BASE: "ROM base",
                L.ROM_SIZE: "ROM size", L.HARTID: "hart id"}
# Keys a state may lack (older snapshots; their loaders use defaults).
_OPTIONAL = {"finisher", "queues", "device", "input", "link_up", "signalled_valid", "event_idx", "indirect",
             "signalled_used", "clock"}
_BASE64 = {"rx", "host", "input"}
_U16 = {"last_avail", "used_idx", "signalled_used"}


class _Bad(Exception):
    pass


def check_state(template: dict[str, Any], saved: object) -> None:
    """Raise a one-line WirtError unless `saved` has the shape of `template` (a `Machine.state()`)
    and every value is in range."""
    try:
        _match(template, saved, "machine")
        _ranges(template, saved)  # type: ignore[arg-type]
    except _Bad as exc:
        raise WirtError(f"snapshot state {exc}; the snapshot was edited or damaged: delete it") from None


def _match(t: object, v: object, where: str) -> None:
    if isinstance(t, dict):
        if not isinstance(v, dict):
            raise _Bad(f"{where} is {_kind(v)}, not a table")
        for k in v:
            if k not in t:
                raise _Bad(f"{where} has an unknown entry {str(k)[:40]!r}")
        for k, tv in t.items():
            if k not in v:
                if k in _OPTIONAL:
                    continue
                raise _Bad(f"{where}.{k} is missing")
            _match(tv, v[k], f"{where}.{k}")
            if k in _BASE64:
                try:
                    base64.b64decode(v[k], validate=True)
                except (binascii.Error, ValueError):
                    raise _Bad(f"{where}.{k} is not base64 data") from None
    elif isinstance(t, list):
        if not isinstance(v, list):
            raise _Bad(f"{where} is {_kind(v)}, not a list")
        if len(v) != len(t):
            raise _Bad(f"{where} has {len(v)} entries, the machine {len(t)}")
        for i, (tv, vv) in enumerate(zip(t, v)):
            _match(tv, vv, f"{where}[{i}]")
    elif isinstance(t, bool):
        if not isinstance(v, bool):
            raise _Bad(f"{where} is {_kind(v)}, not true or false")
    elif isinstance(t, int):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"{where} is {_kind(v)}, not an integer")
        if not -(1 << 63) <= v < 1 << 64:
            raise _Bad(f"{where} is out of the 64-bit range")
    elif isinstance(t, float):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
            raise _Bad(f"{where} is {_kind(v)}, not a number")
    elif isinstance(t, str):
        if not isinstance(v, str):
            raise _Bad(f"{where} is {_kind(v)}, not a string")
        if len(v) > _MAX_STR:
            raise _Bad(f"{where} is {len(v)} characters long")
        if t.startswith("0x"):
            try:
                n = int(v, 16)
            except ValueError:
                raise _Bad(f"{where} is not a hexadecimal number") from None
            if not 0 <= n < 1 << 1024:
                raise _Bad(f"{where} is out of range")
    elif t is None:
        if v is not None:
            raise _Bad(f"{where} is {_kind(v)}, not empty")


def _ranges(t: dict[str, Any], v: dict[str, Any]) -> None:
    harts = [("machine.hart", v["hart"], t["hart"])]
    harts += [(f"machine.smp[{i}]", vh, th) for i, (vh, th) in enumerate(zip(v.get("smp", []), t.get("smp", [])))]
    for name, vh, th in harts:
        _hart_ranges(name, vh, th)
    for i, dev in enumerate(v.get("virtio", [])):
        for j, q in enumerate(dev.get("queues", []) if dev else []):
            for k in _U16:
                if k in q and not 0 <= q[k] <= 0xFFFF:
                    raise _Bad(f"machine.virtio[{i}].queues[{j}].{k} {q[k]} is not a 16-bit ring index")
            if "num" in q and not 1 <= q["num"] <= 0x8000:
                raise _Bad(f"machine.virtio[{i}].queues[{j}].num {q['num']} is not a queue size")
            for k in ("desc", "driver", "device"):
                if k in q and not 0 <= q[k] < 1 << 64:
                    raise _Bad(f"machine.virtio[{i}].queues[{j}].{k} is not a guest address")


def _hart_ranges(name: str, v: dict[str, Any], t: dict[str, Any]) -> None:
    s, ts = v["s"], t["s"]
    for i, what in _FIXED_WORDS.items():
        if s[i] != ts[i]:
            raise _Bad(f"{name}: the {what} is {s[i]:#x}, the machine's {ts[i]:#x}")
    if not -(1 << 63) <= s[L.TOHOST] < 1 << 63 or not all(-(1 << 63) <= w < 1 << 63 for w in s):
        raise _Bad(f"{name}.s holds a word outside the signed 64-bit range")
    if not all(-(1 << 63) <= w < 1 << 63 for w in v["c"]):
        raise _Bad(f"{name}.c holds a word outside the signed 64-bit range")
    if s[L.PRIV] not in (L.PRV_U, L.PRV_S, L.PRV_M):
        raise _Bad(f"{name}: privilege level {s[L.PRIV]} is not U, S or M")
    if not 0 <= s[L.TIME_SHIFT] < 63:
        raise _Bad(f"{name}: time shift {s[L.TIME_SHIFT]} is out of range")


def _kind(v: object) -> str:
    if v is None:
        return "empty"
    if isinstance(v, bool):
        return "a boolean"
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}.get(
        type(v), type(v).__name__)
