"""MAC addresses: stable per VM, derived from its identity unless the user gives one."""

from __future__ import annotations

import hashlib
import re

from wirt.errors import WirtError

__all__ = ["vm_mac", "parse_mac", "format_mac"]

#: QEMU's prefix: 0x52 has the locally-administered bit set and the multicast bit clear.
PREFIX = bytes.fromhex("525400")

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-]?)[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")


def vm_mac(identity: str, nic: int = 0) -> bytes:
    """A stable locally administered unicast MAC for NIC `nic` of the VM named/identified `identity`."""
    digest = hashlib.sha256(f"wirt-mac\0{identity}\0{nic}".encode()).digest()
    return PREFIX + digest[:3]


def parse_mac(text: str) -> bytes:
    """Parse `52:54:00:12:34:56` (also with '-' or no separators); refuses multicast addresses."""
    t = text.strip()
    if not _MAC.match(t):
        raise WirtError(f"bad MAC address {text!r}; write it like 52:54:00:12:34:56")
    mac = bytes.fromhex(t.replace(":", "").replace("-", ""))
    if mac[0] & 1:
        raise WirtError(f"MAC address {text} is a multicast address; the first byte must be even")
    if mac == bytes(6):
        raise WirtError("MAC address 00:00:00:00:00:00 is not usable")
    return mac


def format_mac(mac: bytes) -> str:
    """`52:54:00:12:34:56`."""
    return ":".join(f"{b:02x}" for b in mac)
