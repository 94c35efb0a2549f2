"""Byte sizes as people type them (512M, 2G) and as people read them (1.5 KiB)."""

from __future__ import annotations

import re

from wirt.errors import WirtError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(text: str) -> int:
    """'512', '64K', '10M', '2G', '1T' (binary units, optional trailing B/iB) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTpP]?)(?:i?[bB])?\s*", text)
    if not m:
        raise WirtError(f"invalid size {text!r}; use a number with an optional suffix K, M, G or T (e.g. 10G)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value != int(value):
        raise WirtError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB', in the style of qemu-img."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
