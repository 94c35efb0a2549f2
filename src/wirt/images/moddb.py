"""A kernel's modules for a root disk, with the index files kmod's modprobe reads (no depmod needed).

Debian's kernel package ships `.ko.xz` modules and no `modules.dep`; depmod normally writes the
indexes in the package's postinst. libkmod (modprobe, lsmod, the kernel's request_module via
modprobe) reads only the binary indexes `modules.dep.bin`, `modules.alias.bin`,
`modules.symbols.bin`, `modules.builtin.bin` (and, optionally, `modules.builtin.alias.bin`),
plus the text `modules.softdep`. This module writes all of them from each module's `.modinfo`
(via wirt.images.modules), in kmod's documented index format (libkmod/libkmod-index.c):

    u32 magic 0xB007F457, u32 version 0x00020001, u32 root offset   (all big-endian)
    node: [prefix NUL] [first u8, last u8, u32 child[last-first+1]] [u32 count, (u32 prio, value NUL)*]

a Patricia trie of the keys; the flags in the top bits of a node's offset say which parts are
present. `modules.symbols.bin` is written empty (symbol lookups are only used for
`modprobe symbol:NAME`); the text files are written too, for people.

Modules the VM's devices need are stored decompressed (they load without the guest inflating
them); the others stay `.ko.xz` as Debian ships them (kmod decompresses those itself).
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wirt.errors import WirtError
from wirt.images import deb
from wirt.images.modules import KernelModules, ModInfo, module_name_from_path, parse_builtin, parse_modinfo

INDEX_MAGIC = 0xB007F457
INDEX_VERSION = 0x00020001
_PREFIX, _VALUES, _CHILDS = 0x80000000, 0x40000000, 0x20000000


# --- the binary index ------------------------------------------------------------------------


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    values: list[tuple[int, str]] = field(default_factory=list)


def write_index(entries: Iterable[tuple[str, str, int]]) -> bytes:
    """A kmod index file for (key, value, priority) entries; keys must be printable ASCII."""
    root = _Node()
    for key, value, priority in entries:
        if not key.isascii() or not key.isprintable():
            continue  # the reader indexes children by 7-bit character
        node = root
        for ch in key:
            node = node.children.setdefault(ch, _Node())
        if (priority, value) not in node.values:
            node.values.append((priority, value))
    out = bytearray(struct.pack(">III", INDEX_MAGIC, INDEX_VERSION, 0))
    root_offset = _write_node(out, root)
    struct.pack_into(">I", out, 8, root_offset)
    return bytes(out)


def _write_node(out: bytearray, node: _Node) -> int:
    """Append `node` (children first) and return its offset with the presence flags."""
    prefix = ""
    while not node.values and len(node.children) == 1:  # path compression (Patricia trie)
        (ch, child), = node.children.items()
        prefix += ch
        node = child
    child_offsets = {ch: _write_node(out, child) for ch, child in sorted(node.children.items())}
    offset = len(out)
    flags = 0
    if prefix:
        flags |= _PREFIX
        out += prefix.encode("ascii") + b"\0"
    if child_offsets:
        flags |= _CHILDS
        first, last = ord(min(child_offsets)), ord(max(child_offsets))
        out += bytes([first, last])
        for code in range(first, last + 1):
            out += struct.pack(">I", child_offsets.get(chr(code), 0))
    if node.values:
        flags |= _VALUES
        out += struct.pack(">I", len(node.values))
        for priority, value in sorted(node.values):
            out += struct.pack(">I", priority) + value.encode("utf-8") + b"\0"
    if offset > 0x0FFFFFFF:
        raise WirtError("kernel module index too large")  # the offset field has 28 bits
    return offset | flags


def read_index(data: bytes) -> dict[str, list[str]]:
    """Every key of a kmod index with its values (for tests and `wirt` debugging)."""
    magic, version, root = struct.unpack_from(">III", data, 0)
    if magic != INDEX_MAGIC or version >> 16 != INDEX_VERSION >> 16:
        raise ValueError("not a kmod index")
    found: dict[str, list[str]] = {}

    def walk(offset: int, key: str) -> None:
        pos = offset & 0x0FFFFFFF
        if pos == 0:
            return
        if offset & _PREFIX:
            end = data.index(b"\0", pos)
            key += data[pos:end].decode("ascii")
            pos = end + 1
        kids: list[tuple[str, int]] = []
        if offset & _CHILDS:
            first, last = data[pos], data[pos + 1]
            pos += 2
            for code in range(first, last + 1):
                kids.append((chr(code), struct.unpack_from(">I", data, pos)[0]))
                pos += 4
        if offset & _VALUES:
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            for _ in range(count):
                pos += 4
                end = data.index(b"\0", pos)
                found.setdefault(key, []).append(data[pos:end].decode("utf-8"))
                pos = end + 1
        for ch, child in kids:
            walk(child, key + ch)

    walk(root, "")
    return found


def alias_normalize(alias: str) -> str | None:
    """An alias as depmod stores it: `-` becomes `_` outside `[...]`; None if a bracket is unmatched."""
    out = []
    depth = 0
    for ch in alias:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                return None
        out.append("_" if ch == "-" and depth == 0 else ch)
    return None if depth else "".join(out)


# --- the module tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleSet:
    """What was installed: module count, how many were stored decompressed, bytes written."""

    count: int
    plain: tuple[str, ...]
    size: int


def install_modules(
    tree: Path,
    kernel_deb: Path,
    kver: str,
    plain_modules: Iterable[str],
    report: Callable[[int, int], None] | None = None,
) -> ModuleSet:
    """Put the modules of `kernel_deb` under TREE/usr/lib/modules/KVER with kmod's indexes.

    `plain_modules` (and their dependencies) are stored decompressed.
    """
    moddir = f"usr/lib/modules/{kver}/"
    got = deb.extract(kernel_deb, lambda name: name.startswith(moddir), report)
    if not any(module_name_from_path(n) for n in got):
        raise WirtError(f"{kernel_deb.name} has no modules under /{moddir}; the package layout changed")
    builtin_text = got.get(moddir + "modules.builtin")
    builtin = parse_builtin(builtin_text.data.decode("utf-8", "replace")) if builtin_text else set()
    builtin_modinfo = got.get(moddir + "modules.builtin.modinfo")
    kmods = KernelModules({n: m.data for n, m in got.items()}, builtin)
    plain = set(kmods.resolve(plain_modules))
    order_member = got.get(moddir + "modules.order")
    order = order_member.data.decode("utf-8", "replace").split() if order_member else []
    rank = {module_name_from_path(p): i for i, p in enumerate(order)}

    dest = tree / moddir
    infos: dict[str, tuple[str, ModInfo]] = {}  # name -> (path relative to moddir, info)
    size = 0
    for name_in_deb, member in sorted(got.items()):
        rel = name_in_deb[len(moddir) :]
        mod = module_name_from_path(rel)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if mod is None:  # modules.builtin, modules.order, ...: copied as shipped
            target.write_bytes(member.data)
            size += len(member.data)
            continue
        try:
            elf = lzma.decompress(member.data) if rel.endswith(".xz") else member.data
        except lzma.LZMAError as exc:
            raise WirtError(f"cannot decompress kernel module {rel}: {exc}") from None
        info = parse_modinfo(elf, mod)
        if mod in plain and rel.endswith(".xz"):
            rel = rel[: -len(".xz")]
            target = dest / rel
            data = elf
        else:
            data = member.data
        target.write_bytes(data)
        size += len(data)
        infos[info.name] = (rel, info)
    for name, text in module_indexes(infos, builtin, builtin_modinfo.data if builtin_modinfo else b"", rank).items():
        (dest / name).write_bytes(text)
    return ModuleSet(len(infos), tuple(sorted(plain)), size)


def module_indexes(
    infos: dict[str, tuple[str, ModInfo]],
    builtin: Iterable[str],
    builtin_modinfo: bytes = b"",
    rank: dict[str | None, int] | None = None,
) -> dict[str, bytes]:
    """The depmod output files (name -> content) for modules {name: (relative path, ModInfo)}."""
    rank = rank or {}
    names = sorted(infos, key=lambda n: (rank.get(n, len(rank)), n))
    prio = {n: i for i, n in enumerate(names)}

    def closure(name: str) -> list[str]:
        seen: list[str] = []
        todo = list(infos[name][1].depends)
        while todo:
            dep = todo.pop(0)
            if dep in infos and dep not in seen and dep != name:
                seen.append(dep)
                todo += infos[dep][1].depends
        return seen

    dep_lines = {n: f"{infos[n][0]}:" + "".join(f" {infos[d][0]}" for d in closure(n)) for n in names}
    aliases: list[tuple[str, str]] = []
    for n in names:
        for alias in infos[n][1].aliases:
            norm = alias_normalize(alias)
            if norm is not None:
                aliases.append((norm, n))
    softdeps = []
    for n in names:
        pre, post = infos[n][1].softdep_pre, infos[n][1].softdep_post
        if pre or post:
            spec = (f" pre: {' '.join(pre)}" if pre else "") + (f" post: {' '.join(post)}" if post else "")
            softdeps.append(f"softdep {n}{spec}\n")
    builtin_aliases = []
    for s in builtin_modinfo.split(b"\0"):
        key, _, value = s.decode("utf-8", "replace").partition("=")
        mod, _, attr = key.partition(".")
        if attr == "alias" and (norm := alias_normalize(value)) is not None:
            builtin_aliases.append((norm, mod))
    return {
        "modules.dep": "".join(dep_lines[n] + "\n" for n in names).encode(),
        "modules.dep.bin": write_index((n, dep_lines[n], prio[n]) for n in names),
        "modules.alias": ("# Aliases extracted from modules themselves.\n"
                          + "".join(f"alias {a} {m}\n" for a, m in aliases)).encode(),  # fmt: skip
        "modules.alias.bin": write_index((a, m, prio[m]) for a, m in aliases),
        "modules.softdep": ("# Soft dependencies extracted from modules themselves.\n" + "".join(softdeps)).encode(),
        "modules.symbols": b"# Aliases for symbols, used by symbol_request().\n",
        "modules.symbols.bin": write_index(()),
        "modules.builtin.bin": write_index((n, "", 0) for n in sorted(set(builtin))),
        "modules.builtin.alias.bin": write_index((a, m, 0) for a, m in builtin_aliases),
    }

