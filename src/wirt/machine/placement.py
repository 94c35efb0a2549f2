"""Where firmware, kernel, initrd and device tree go in guest RAM, and checks on the images.

Layout (DESIGN.md "Guest platform"; the same places QEMU's virt board uses):
- firmware (OpenSBI fw_dynamic.bin) at the RAM base; it must end below the kernel;
- the kernel Image at RAM base + 2 MiB, occupying max(file size, header image_size);
- the device tree in the last 2 MiB-aligned block below the top of RAM: OpenSBI edits the
  tree in place and grows it, so the rest of that block stays free for it;
- the initrd just below the device tree, page aligned.
Anything that does not fit is refused with a WirtError naming the memory it would need.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from wirt.errors import WirtError
from wirt.fileio import read_regular
from wirt.units import human_size

__all__ = ["KERNEL_OFFSET", "Layout", "plan_layout", "check_kernel_image", "kernel_footprint", "read_image",
           "MAX_IMAGE"]

KERNEL_OFFSET = 0x20_0000  # RV64 Image text_offset (Documentation/arch/riscv/boot.rst)
DTB_ALIGN = 2 << 20
PAGE = 4096
# Room the kernel needs above its image before it can allocate anything (page tables,
# memblock, the initrd's unpacked copy lives elsewhere): a rough floor, not a guarantee.
KERNEL_HEADROOM = 16 << 20
MAX_IMAGE = 1 << 30  # a boot file (firmware, kernel, initrd) larger than this is the wrong file

# RISC-V Image header (Documentation/arch/riscv/boot-image-header.rst):
#   u32 code0, code1; u64 text_offset; u64 image_size; u64 flags; u32 version; u32 res1;
#   u64 res2; u64 magic = "RISCV\0\0\0" (deprecated); u32 magic2 = "RSC\x05"; u32 res3
_HEADER = struct.Struct("<IIQQQIIQ8s4sI")
MAGIC, MAGIC2 = b"RISCV\0\0\0", b"RSC\x05"


def _align_down(v: int, a: int) -> int:
    return v - v % a


def _align_up(v: int, a: int) -> int:
    return -(-v // a) * a


def read_image(path: str | os.PathLike[str], what: str) -> bytes:
    """Read a boot file or raise a one-line WirtError saying what is wrong with it."""
    p = Path(path)
    data = read_regular(p, what, MAX_IMAGE)
    if not data:
        raise WirtError(f"{what} {p} is empty")
    return data


def check_kernel_image(data: bytes, name: str = "kernel") -> None:
    """Refuse anything that is not a RISC-V Linux Image, saying what it looks like instead."""
    if len(data) >= _HEADER.size:
        fields = _HEADER.unpack_from(data)
        if fields[8] == MAGIC or fields[9] == MAGIC2:
            return
    hint = "give the flat riscv64 Image (Debian's /boot/vmlinux-* of linux-image-*-riscv64)"
    if data[:4] == b"\x7fELF":
        machine = struct.unpack_from("<H", data, 18)[0] if len(data) >= 20 else -1
        what = "a RISC-V ELF (vmlinux); wirt boots the flat Image" if machine == 243 else \
            f"an ELF file for another architecture (e_machine {machine})"
        raise WirtError(f"{name} is {what}, not a RISC-V Image; {hint}")
    if len(data) >= 0x3C and data[0x38:0x3C] == b"ARM\x64":
        raise WirtError(f"{name} is an arm64 Image, not a RISC-V one; {hint}")
    if data[:2] == b"MZ" and len(data) >= 0x40 and data[0x38:0x3C] != MAGIC2:
        raise WirtError(f"{name} is a PE/EFI file of another architecture, not a RISC-V Image; {hint}")
    if data[:2] == b"\x1f\x8b":
        raise WirtError(f"{name} is gzip-compressed; decompress it (zcat) to get the Image")
    raise WirtError(f"{name} is not a RISC-V Image (no 'RISCV' magic at 0x30); {hint}")


def kernel_footprint(data: bytes) -> int:
    """Bytes the kernel occupies once loaded: its file, or the header's image_size if larger."""
    size = len(data)
    if len(data) >= _HEADER.size:
        image_size = _HEADER.unpack_from(data)[3]
        if image_size < 1 << 32:  # ignore nonsense rather than refusing the boot
            size = max(size, image_size)
    return size


@dataclass(frozen=True)
class Layout:
    """Guest physical addresses of everything loaded into RAM (ends are exclusive)."""

    ram_base: int
    ram_size: int
    firmware: int
    kernel: int
    kernel_end: int
    initrd: int
    initrd_end: int
    dtb: int
    dtb_end: int

    @property
    def has_initrd(self) -> bool:
        return self.initrd_end > self.initrd


def plan_layout(ram_base: int, ram_size: int, firmware_size: int, kernel_size: int,
                initrd_size: int, dtb_size: int) -> Layout:
    """Place the images in RAM or raise WirtError saying how much memory they need."""
    kernel = ram_base + KERNEL_OFFSET
    if firmware_size > KERNEL_OFFSET:
        raise WirtError(f"firmware is {human_size(firmware_size)}, more than the {human_size(KERNEL_OFFSET)} "
                        f"before the kernel; use OpenSBI's fw_dynamic.bin")
    kernel_end = kernel + _align_up(kernel_size, PAGE)
    top = ram_base + ram_size
    dtb = _align_down(top - dtb_size, DTB_ALIGN)
    initrd = _align_down(dtb - initrd_size, PAGE)  # page aligned, ends at or below the DTB
    initrd_end = initrd + initrd_size
    need = (KERNEL_OFFSET + _align_up(kernel_size, PAGE) + KERNEL_HEADROOM
            + _align_up(initrd_size, PAGE) + _align_up(dtb_size, DTB_ALIGN))
    need = _align_up(need, 1 << 20)
    if ram_size < need or initrd < kernel_end + KERNEL_HEADROOM:
        parts = f"kernel {human_size(kernel_size)}"
        if initrd_size:
            parts += f" + initrd {human_size(initrd_size)}"
        raise WirtError(f"{human_size(ram_size)} of memory is too small for {parts}; "
                        f"give the VM at least {need >> 20}M (e.g. --memory {max(need >> 20, 256)}M)")
    return Layout(ram_base, ram_size, ram_base, kernel, kernel_end, initrd, initrd_end, dtb,
                  dtb + dtb_size)
