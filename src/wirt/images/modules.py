"""Kernel modules without depmod: read each module's `.modinfo`, resolve dependencies, order loading.

Debian's kernel package ships `.ko.xz` files but no `modules.dep`. Every module carries an ELF
section `.modinfo` of NUL-terminated `key=value` strings (include/linux/moduleparam.h): `name=`,
`depends=` (comma-separated module names, hard dependencies), `softdep=` ("pre: a b post: c",
modprobe.d(5)), `alias=` (patterns modprobe matches with fnmatch). modprobe loads soft `pre`
dependencies first, then hard dependencies, then the module, then `post` dependencies; so do we.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import lzma
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from wirt.errors import WirtError
from wirt.images import ui

_SUFFIXES = (".ko.xz", ".ko.gz", ".ko.zst", ".ko")


@dataclass(frozen=True)
class ModInfo:
    """What `.modinfo` says about a module's identity and dependencies."""

    name: str
    depends: tuple[str, ...] = ()
    softdep_pre: tuple[str, ...] = ()
    softdep_post: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def normalize_name(name: str) -> str:
    """Module names use `_`; file names and user input may use `-` (kmod treats them alike)."""
    return name.strip().replace("-", "_")


def module_name_from_path(path: str) -> str | None:
    """`kernel/drivers/char/hw_random/virtio-rng.ko.xz` -> `virtio_rng`; None if not a module file."""
    base = PurePosixPath(path).name
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            return normalize_name(base[: -len(suffix)])
    return None


def parse_softdep(value: str) -> tuple[list[str], list[str]]:
    """Split `pre: a b post: c` (modprobe.d(5)) into ([a, b], [c])."""
    pre: list[str] = []
    post: list[str] = []
    target = pre
    for word in value.split():
        if word == "pre:":
            target = pre
        elif word == "post:":
            target = post
        else:
            target.append(word)
    return pre, post


def modinfo_strings(ko: bytes) -> list[str]:
    """The raw `key=value` strings of the `.modinfo` section of an ELF module."""
    from elftools.common.exceptions import ELFError  # only when building: 20 ms to import
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(ko))
        section = elf.get_section_by_name(".modinfo")
    except ELFError as exc:
        raise ValueError(f"not an ELF module: {exc}") from None
    if section is None:
        raise ValueError("no .modinfo section")
    return [s.decode("utf-8", "replace") for s in section.data().split(b"\0") if s]


def parse_modinfo(ko: bytes, fallback_name: str = "") -> ModInfo:
    """Parse a (decompressed) module's `.modinfo` into a ModInfo."""
    name = fallback_name
    depends: list[str] = []
    pre: list[str] = []
    post: list[str] = []
    aliases: list[str] = []
    for entry in modinfo_strings(ko):
        key, _, value = entry.partition("=")
        if key == "name":
            name = value
        elif key == "depends":
            depends += [normalize_name(d) for d in value.split(",") if d.strip()]
        elif key == "softdep":
            p, q = parse_softdep(value)
            pre += p
            post += q
        elif key == "alias":
            aliases.append(value)
    return ModInfo(normalize_name(name), tuple(depends), tuple(pre), tuple(post), tuple(aliases))


def decompress_module(path: str, data: bytes) -> bytes:
    """The plain ELF of a module file (.ko, .ko.xz, .ko.gz, .ko.zst)."""
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        exe = shutil.which("zstd")
        if exe is None:
            raise WirtError(f"{path} is zstd-compressed: install the zstd program (Debian package zstd)")
        return subprocess.run([exe, "-dc"], input=data, capture_output=True, check=True).stdout
    return data


def parse_builtin(modules_builtin: str) -> set[str]:
    """Module names from `modules.builtin` (one `kernel/.../name.ko` per line)."""
    names = set()
    for line in modules_builtin.splitlines():
        name = module_name_from_path(line.strip())
        if name:
            names.add(name)
    return names


def parse_builtin_aliases(builtin_modinfo: bytes) -> list[str]:
    """Alias patterns of built-in modules from `modules.builtin.modinfo` (`module.alias=pattern`)."""
    out = []
    for s in builtin_modinfo.split(b"\0"):
        key, _, value = s.decode("utf-8", "replace").partition("=")
        if key.endswith(".alias"):
            out.append(value)
    return out


def _alias_match(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(normalize_name(name), normalize_name(pattern))


_GENERIC_TOKENS = {"crypto", "fs", "net", "pf", "char", "block", "major", "devname", "platform", "generic"}


class KernelModules:
    """The modules of one kernel: file contents by module name, plus what is built in."""

    def __init__(
        self,
        files: Mapping[str, bytes],
        builtin: Iterable[str] = (),
        builtin_aliases: Iterable[str] = (),
    ) -> None:
        """`files` maps module file paths (any of `.ko[.xz|.gz|.zst]`) to their bytes."""
        self._files: dict[str, tuple[str, bytes]] = {}
        for path, data in files.items():
            name = module_name_from_path(path)
            if name:
                self._files[name] = (path, data)
        self.builtin = {normalize_name(n) for n in builtin}
        self.builtin_aliases = list(builtin_aliases)
        self._plain: dict[str, bytes] = {}
        self._info: dict[str, ModInfo] = {}

    def __contains__(self, name: str) -> bool:
        return normalize_name(name) in self._files

    def names(self) -> list[str]:
        """Every loadable module name."""
        return sorted(self._files)

    def path(self, name: str) -> str:
        """The file path the module came from (relative to the package root)."""
        return self._files[normalize_name(name)][0]

    def ko(self, name: str) -> bytes:
        """The decompressed ELF of module `name`."""
        name = normalize_name(name)
        if name not in self._plain:
            path, data = self._files[name]
            try:
                self._plain[name] = decompress_module(path, data)
            except (lzma.LZMAError, OSError, EOFError, subprocess.CalledProcessError) as exc:
                raise WirtError(f"cannot decompress kernel module {path}: {exc}") from None
        return self._plain[name]

    def info(self, name: str) -> ModInfo:
        """The parsed `.modinfo` of module `name`."""
        name = normalize_name(name)
        if name not in self._info:
            try:
                self._info[name] = parse_modinfo(self.ko(name), name)
            except ValueError as exc:
                raise WirtError(f"kernel module {self.path(name)} is unreadable: {exc}") from None
        return self._info[name]

    def is_builtin(self, name: str) -> bool:
        """True if `name` is compiled into the kernel (nothing to load)."""
        return normalize_name(name) in self.builtin

    def lookup(self, wanted: str) -> list[str]:
        """Resolve a module name or alias (as in a softdep) to module names, as modprobe does.

        Returns [] when the kernel provides it built in or nothing provides it.
        """
        name = normalize_name(wanted)
        if name in self._files:
            return [name]
        if name in self.builtin or any(_alias_match(wanted, p) for p in self.builtin_aliases):
            return []
        # Aliases live inside each module; decompressing all ~3000 would cost seconds, so look
        # first at modules whose name shares a word with the alias, then fall back to all.
        tokens = {t for t in re.split(r"[^a-z0-9]+", wanted.lower()) if len(t) >= 3} - _GENERIC_TOKENS
        likely = [n for n in self._files if any(t in n for t in tokens)]
        for pool in (likely, [n for n in self._files if n not in likely]):
            found = [n for n in sorted(pool) if any(_alias_match(wanted, p) for p in self.info(n).aliases)]
            if found:
                return found
        ui.warn_once(f"alias:{wanted}", f"no kernel module provides {wanted!r}; continuing without it")
        return []

    def resolve(self, requested: Iterable[str]) -> list[str]:
        """The modules to load for `requested`, dependencies first, in insmod order.

        Built-in modules are skipped; an unknown module name is a WirtError.
        """
        order: list[str] = []
        done: set[str] = set()
        active: set[str] = set()

        def visit(name: str) -> None:
            if name in done or name in active:
                return  # loaded already, or a soft-dependency cycle (modprobe ignores those too)
            active.add(name)
            info = self.info(name)
            for soft in info.softdep_pre:
                for dep in self.lookup(soft):
                    visit(dep)
            for dep in info.depends:
                if dep in self._files:
                    visit(dep)
                elif not self.is_builtin(dep):
                    raise WirtError(f"kernel module {name} depends on {dep}, which the kernel package lacks")
            active.discard(name)
            done.add(name)
            order.append(name)
            for soft in info.softdep_post:
                for dep in self.lookup(soft):
                    visit(dep)

        for req in sorted({normalize_name(r) for r in requested}):
            if req in self._files:
                visit(req)
            elif not self.is_builtin(req):
                raise WirtError(
                    f"the kernel has no module {req!r} (neither built in nor shipped); "
                    "check the module name (e.g. virtio_blk, ext4)"
                )
        return order
