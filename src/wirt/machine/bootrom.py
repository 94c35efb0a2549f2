"""The boot ROM at 0x1000: the reset vector that hands over to OpenSBI's fw_dynamic.

At reset the hart starts at the ROM in M-mode. The ROM follows OpenSBI's fw_dynamic boot
protocol (OpenSBI docs/firmware/fw_dynamic.md): a0 = hart id, a1 = address of the device
tree, a2 = address of a `struct fw_dynamic_info` (include/sbi/fw_dynamic.h) that tells
the firmware where the next stage (Linux) is and in which privilege mode to start it.

Layout of the ROM (offsets from its base):
    0x00  auipc t0, 0            t0 = ROM base
    0x04  addi  a2, t0, 0x28     a2 = &fw_dynamic_info
    0x08  csrr  a0, mhartid
    0x0c  ld    a1, 0x20(t0)     a1 = DTB address
    0x10  ld    t0, 0x18(t0)     t0 = firmware entry
    0x14  jr    t0
    0x18  .dword firmware entry
    0x20  .dword DTB address
    0x28  struct fw_dynamic_info (6 x u64, version 2)
The rest of the ROM page reads as zero. Loads from the ROM leave the core as MMIO exits,
so the ROM is also mapped on the bus (`BootRom`).
"""

from __future__ import annotations

import struct
from typing import Any

from wirt.cpu.layout import CSR_MHARTID
from wirt.machine import rvenc as rv

__all__ = [
    "ROM_BASE", "ROM_SIZE", "FW_DYNAMIC_MAGIC", "FW_OPTION_NO_BOOT_PRINTS", "FW_DYNAMIC_VERSION", "NEXT_MODE_S",
    "ENTRY_OFFSET", "DTB_PTR_OFFSET", "FW_INFO_OFFSET", "fw_dynamic_info", "build_boot_rom",
    "BootRom",
]

ROM_BASE = 0x1000
ROM_SIZE = 0x1000

# include/sbi/fw_dynamic.h
FW_DYNAMIC_MAGIC = 0x4942534F  # "OSBI" little-endian
FW_DYNAMIC_VERSION = 2         # version 2 added boot_hart
NEXT_MODE_U, NEXT_MODE_S, NEXT_MODE_M = 0, 1, 3
# fw_dynamic_info.options becomes the scratch options (include/sbi/sbi_scratch.h):
FW_OPTION_NO_BOOT_PRINTS = 1 << 0  # SBI_SCRATCH_NO_BOOT_PRINTS: skip the banner

ENTRY_OFFSET = 0x18
DTB_PTR_OFFSET = 0x20
FW_INFO_OFFSET = 0x28


def fw_dynamic_info(next_addr: int, next_mode: int = NEXT_MODE_S, options: int = 0,
                    boot_hart: int = 0) -> bytes:
    """`struct fw_dynamic_info` as RV64 little-endian bytes (each field an unsigned long).

    Fields in order: magic, version, next_addr, next_mode, options, boot_hart.
    boot_hart -1 lets OpenSBI pick the boot hart by lottery; wirt names hart 0.
    """
    return struct.pack("<6Q", FW_DYNAMIC_MAGIC, FW_DYNAMIC_VERSION, next_addr, next_mode,
                       options & 0xFFFF_FFFF_FFFF_FFFF, boot_hart & 0xFFFF_FFFF_FFFF_FFFF)


def build_boot_rom(firmware_entry: int, dtb_addr: int, kernel_addr: int, options: int = 0,
                   size: int = ROM_SIZE) -> bytes:
    """The ROM image: the reset code above, its two pointers and fw_dynamic_info.

    The code is position independent (auipc), so the ROM works at any base.
    """
    code = rv.assemble([
        rv.auipc("t0", 0),
        rv.addi("a2", "t0", FW_INFO_OFFSET),
        rv.csrr("a0", CSR_MHARTID),
        rv.ld("a1", "t0", DTB_PTR_OFFSET),
        rv.ld("t0", "t0", ENTRY_OFFSET),
        rv.jalr("zero", "t0", 0),
    ])
    assert len(code) == ENTRY_OFFSET
    image = code + struct.pack("<QQ", firmware_entry, dtb_addr) + fw_dynamic_info(kernel_addr, options=options)
    if len(image) > size:
        raise ValueError("boot ROM contents exceed the ROM size")
    return image.ljust(size, b"\0")


class BootRom:
    """The ROM as an MMIO device: reads return its bytes, writes are ignored."""

    def __init__(self, image: bytes) -> None:
        self.image = bytes(image)
        self.size = len(self.image)

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.image[offset: offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        pass  # read-only memory

    def reset(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, d: dict[str, Any]) -> None:
        pass
