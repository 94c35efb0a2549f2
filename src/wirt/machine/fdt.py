"""Flattened device tree (DTB) writer and reader, pure Python.

Format: Devicetree Specification v0.4, chapter 5 "Flattened Devicetree (DTB) Format":
a 40-byte header (5.2), the memory reservation block (5.3), the structure block of
FDT_BEGIN_NODE / FDT_PROP / FDT_END_NODE tokens (5.4) and the strings block with the
property names (5.5). We write version 17, last compatible version 16.

Property values are big-endian byte strings (spec 2.2.4). `FdtNode` has one setter per
value kind (u32, u64, cells, string, string list, raw bytes, empty) so callers never
hand-encode; `Fdt.phandle(node)` gives a node a phandle for `<&node>` references.
"""

from __future__ import annotations

import re
import struct
from typing import Iterable, Iterator

from wirt.errors import WirtError

__all__ = ["Fdt", "FdtNode", "parse_dtb", "FDT_MAGIC"]

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE = 1
FDT_END_NODE = 2
FDT_PROP = 3
FDT_NOP = 4
FDT_END = 9
VERSION = 17
LAST_COMP_VERSION = 16
HEADER_SIZE = 40

# Spec 2.2.1 (node names) and 2.2.4.1 (property names).
_NODE_NAME = re.compile(r"^[A-Za-z0-9,._+-]{1,31}(@[A-Za-z0-9,._+-]+)?$")
_PROP_NAME = re.compile(r"^[A-Za-z0-9,._+?#-]{1,31}$")


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


class FdtNode:
    """A device tree node: ordered properties (name -> encoded bytes) and child nodes."""

    def __init__(self, name: str) -> None:
        if name and not _NODE_NAME.match(name):
            raise ValueError(f"invalid device tree node name {name!r}")
        self.name = name
        self.props: dict[str, bytes] = {}
        self.children: list[FdtNode] = []

    # ---- tree ---------------------------------------------------------------------

    def add_node(self, name: str) -> "FdtNode":
        """Create and return a child node; sibling names must be unique."""
        if any(c.name == name for c in self.children):
            raise ValueError(f"duplicate device tree node {name!r} under {self.name or '/'!r}")
        child = FdtNode(name)
        self.children.append(child)
        return child

    def child(self, name: str) -> "FdtNode":
        """The child called `name` (KeyError when absent)."""
        for c in self.children:
            if c.name == name:
                return c
        raise KeyError(name)

    def find(self, path: str) -> "FdtNode":
        """The node at an absolute or relative path such as "/soc/serial@10000000"."""
        node = self
        for part in path.strip("/").split("/"):
            if part:
                node = node.child(part)
        return node

    def walk(self, path: str = "/") -> Iterator[tuple[str, "FdtNode"]]:
        """Yield (path, node) for this node (at `path`) and every descendant, depth first."""
        yield path, self
        base = path.rstrip("/")
        for c in self.children:
            yield from c.walk(f"{base}/{c.name}")

    # ---- property setters (spec 2.2.4.2 value types) ----------------------------

    def set_raw(self, name: str, value: bytes) -> "FdtNode":
        """Set a property to raw bytes (stored as given)."""
        if not _PROP_NAME.match(name):
            raise ValueError(f"invalid device tree property name {name!r}")
        self.props[name] = bytes(value)
        return self

    def set_empty(self, name: str) -> "FdtNode":
        """A boolean property with no value (e.g. interrupt-controller, ranges)."""
        return self.set_raw(name, b"")

    def set_u32(self, name: str, value: int) -> "FdtNode":
        return self.set_raw(name, struct.pack(">I", value & 0xFFFF_FFFF))

    def set_u64(self, name: str, value: int) -> "FdtNode":
        return self.set_raw(name, struct.pack(">Q", value & 0xFFFF_FFFF_FFFF_FFFF))

    def set_cells(self, name: str, cells: Iterable[int]) -> "FdtNode":
        """A <prop-encoded-array> of 32-bit cells."""
        vals = [c & 0xFFFF_FFFF for c in cells]
        return self.set_raw(name, struct.pack(f">{len(vals)}I", *vals))

    def set_string(self, name: str, value: str) -> "FdtNode":
        if "\0" in value:
            raise WirtError(f"device tree string {name} must not contain NUL bytes")
        return self.set_raw(name, value.encode() + b"\0")

    def set_strings(self, name: str, values: Iterable[str]) -> "FdtNode":
        """A <stringlist>: NUL-terminated strings back to back."""
        vals = list(values)
        if any("\0" in v for v in vals):
            raise WirtError(f"device tree string list {name} must not contain NUL bytes")
        return self.set_raw(name, b"".join(v.encode() + b"\0" for v in vals))

    def set_reg(self, name: str, pairs: Iterable[tuple[int, int]], address_cells: int = 2, size_cells: int = 2) -> "FdtNode":
        """A reg-style (address, size) list, split into cells."""
        cells: list[int] = []
        for addr, size in pairs:
            for value, n in ((addr, address_cells), (size, size_cells)):
                for i in reversed(range(n)):
                    cells.append((value >> (32 * i)) & 0xFFFF_FFFF)
        return self.set_cells(name, cells)

    # ---- property getters (for readers and tests) -------------------------------

    def get_u32(self, name: str) -> int:
        return struct.unpack(">I", self.props[name])[0]

    def get_u64(self, name: str) -> int:
        return struct.unpack(">Q", self.props[name])[0]

    def get_cells(self, name: str) -> list[int]:
        raw = self.props[name]
        return list(struct.unpack(f">{len(raw) // 4}I", raw))

    def get_strings(self, name: str) -> list[str]:
        raw = self.props[name]
        return [s.decode() for s in raw[:-1].split(b"\0")] if raw else []

    def get_string(self, name: str) -> str:
        return self.get_strings(name)[0]

    def __repr__(self) -> str:
        return f"FdtNode({self.name!r}, {len(self.props)} props, {len(self.children)} children)"


class Fdt:
    """A whole device tree: root node, phandle allocator, memory reservations."""

    def __init__(self) -> None:
        self.root = FdtNode("")
        self.reservations: list[tuple[int, int]] = []
        self.boot_cpuid_phys = 0
        self._next_phandle = 1

    def phandle(self, node: FdtNode) -> int:
        """The node's phandle, allocating one (and its "phandle" property) if needed."""
        if "phandle" in node.props:
            return node.get_u32("phandle")
        ph = self._next_phandle
        self._next_phandle += 1
        node.set_u32("phandle", ph)
        return ph

    def add_reservation(self, address: int, size: int) -> None:
        """Add a /memreserve/ entry (spec 5.3)."""
        self.reservations.append((address, size))

    def to_bytes(self) -> bytes:
        """Serialize to a DTB blob (spec chapter 5)."""
        strings = bytearray()
        offsets: dict[str, int] = {}
        struct_blk = bytearray()

        def name_off(name: str) -> int:
            off = offsets.get(name)
            if off is None:
                off = offsets[name] = len(strings)
                strings.extend(name.encode() + b"\0")
            return off

        def emit(node: FdtNode) -> None:
            struct_blk.extend(struct.pack(">I", FDT_BEGIN_NODE))
            struct_blk.extend(_pad4(node.name.encode() + b"\0"))
            for pname, value in node.props.items():  # properties precede children (5.4.1)
                struct_blk.extend(struct.pack(">III", FDT_PROP, len(value), name_off(pname)))
                struct_blk.extend(_pad4(value))
            for c in node.children:
                emit(c)
            struct_blk.extend(struct.pack(">I", FDT_END_NODE))

        emit(self.root)
        struct_blk.extend(struct.pack(">I", FDT_END))

        rsv = bytearray()
        for addr, size in self.reservations:
            rsv.extend(struct.pack(">QQ", addr, size))
        rsv.extend(struct.pack(">QQ", 0, 0))

        off_rsv = HEADER_SIZE  # 8-byte aligned (5.3)
        off_struct = off_rsv + len(rsv)
        off_strings = off_struct + len(struct_blk)
        total = off_strings + len(strings)
        header = struct.pack(
            ">10I",
            FDT_MAGIC,
            total,
            off_struct,
            off_strings,
            off_rsv,
            VERSION,
            LAST_COMP_VERSION,
            self.boot_cpuid_phys,
            len(strings),
            len(struct_blk),
        )
        return header + bytes(rsv) + bytes(struct_blk) + bytes(strings)


def parse_dtb(blob: bytes) -> Fdt:
    """Parse a DTB blob back into an `Fdt` (for tests and DTB inspection)."""
    if len(blob) < HEADER_SIZE:
        raise WirtError("not a device tree blob: too short")
    (magic, total, off_struct, off_strings, off_rsv, version, _last, boot_cpu, size_strings, size_struct) = (
        struct.unpack_from(">10I", blob, 0)
    )
    if magic != FDT_MAGIC:
        raise WirtError(f"not a device tree blob: magic {magic:#x}")
    if total > len(blob) or version < 16:
        raise WirtError("device tree blob is truncated or too old")
    fdt = Fdt()
    fdt.boot_cpuid_phys = boot_cpu
    pos = off_rsv
    while True:
        addr, size = struct.unpack_from(">QQ", blob, pos)
        pos += 16
        if addr == 0 and size == 0:
            break
        fdt.reservations.append((addr, size))
    strings = blob[off_strings : off_strings + size_strings]
    pos = off_struct
    end = off_struct + size_struct
    stack: list[FdtNode] = []
    root: FdtNode | None = None
    while pos < end:
        (tok,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if tok == FDT_BEGIN_NODE:
            nul = blob.index(b"\0", pos)
            name = blob[pos:nul].decode()
            pos = (nul + 4) & ~3
            node = FdtNode.__new__(FdtNode)
            node.name, node.props, node.children = name, {}, []
            if stack:
                stack[-1].children.append(node)
            else:
                root = node
            stack.append(node)
        elif tok == FDT_PROP:
            length, nameoff = struct.unpack_from(">II", blob, pos)
            pos += 8
            pname = strings[nameoff : strings.index(b"\0", nameoff)].decode()
            stack[-1].props[pname] = blob[pos : pos + length]
            pos = (pos + length + 3) & ~3
        elif tok == FDT_END_NODE:
            stack.pop()
        elif tok == FDT_NOP:
            continue
        elif tok == FDT_END:
            break
        else:
            raise WirtError(f"device tree blob has a bad token {tok:#x} at offset {pos - 4:#x}")
    if root is None:
        raise WirtError("device tree blob has no root node")
    fdt.root = root
    phs = [n.get_u32("phandle") for _, n in root.walk() if "phandle" in n.props]
    fdt._next_phandle = max(phs, default=0) + 1
    return fdt
