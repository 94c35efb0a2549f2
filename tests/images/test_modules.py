"""Module dependency resolution from .modinfo: hard depends, softdeps through aliases, built-ins."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wirt.errors import WirtError
from wirt.images import ui
from wirt.images.modules import (
    KernelModules,
    module_name_from_path,
    parse_builtin,
    parse_builtin_aliases,
    parse_modinfo,
    parse_softdep,
)


@pytest.fixture
def kmods(helpers: Any) -> KernelModules:
    files = {
        f"usr/lib/modules/{helpers.KVER}/kernel/{path}": lzma.compress(helpers.make_ko(info))
        for path, info in helpers.FAKE_MODULES.values()
    }
    return KernelModules(files, parse_builtin(helpers.FAKE_BUILTIN), ["virtio:d00000003v*"])


def test_parse_modinfo(helpers: Any) -> None:
    info = parse_modinfo(helpers.make_ko(helpers.FAKE_MODULES["ext4"][1]))
    assert info.name == "ext4"
    assert info.depends == ("jbd2", "mbcache", "crc16")
    assert info.softdep_pre == ("crypto-crc32c",) and info.softdep_post == ()
    assert info.aliases == ("fs-ext4",)
    with pytest.raises(ValueError):
        parse_modinfo(b"not an elf at all" * 10)


def test_helpers() -> None:
    assert parse_softdep("pre: a b post: c") == (["a", "b"], ["c"])
    assert module_name_from_path("kernel/drivers/char/hw_random/virtio-rng.ko.xz") == "virtio_rng"
    assert module_name_from_path("modules.order") is None
    assert parse_builtin("kernel/drivers/char/virtio_console.ko\n") == {"virtio_console"}
    assert parse_builtin_aliases(b"a.alias=x\0a.license=GPL\0b.alias=y*\0") == ["x", "y*"]


def test_default_set_order(kmods: KernelModules, helpers: Any) -> None:
    order = kmods.resolve(["virtio_mmio", "virtio_blk", "virtio_net", "virtio-rng", "virtio_console", "ext4"])
    assert order == helpers.DEFAULT_ORDER
    # every module comes after what it depends on
    for i, name in enumerate(order):
        info = kmods.info(name)
        for dep in info.depends:
            assert order.index(dep) < i


def test_softdep_by_alias_and_builtin(kmods: KernelModules) -> None:
    assert kmods.lookup("crypto-crc32c") == ["crc32c_generic"]
    assert kmods.lookup("crc32c") == ["crc32c_generic"]
    assert kmods.lookup("virtio:d00000003v00001AF4") == []  # built-in alias
    assert kmods.resolve(["libcrc32c"]) == ["crc32c_generic", "libcrc32c"]
    assert kmods.resolve(["virtio_console"]) == []  # built in: nothing to load
    assert kmods.resolve([]) == []


def test_unknown_alias_warns_and_is_skipped(helpers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui, "_warned", set())
    files = {
        "kernel/a.ko": helpers.make_ko(["name=a", "depends=", "softdep=pre: nothing-provides-this post: b"]),
        "kernel/b.ko": helpers.make_ko(["name=b", "depends=", "softdep=pre: a"]),  # a soft cycle
    }
    assert KernelModules(files).resolve(["a"]) == ["a", "b"]


def test_unknown_module_and_missing_dependency(kmods: KernelModules, helpers: Any) -> None:
    with pytest.raises(WirtError, match="no module 'virtio_nothing'"):
        kmods.resolve(["virtio_nothing"])
    broken = KernelModules({"kernel/x.ko": helpers.make_ko(["name=x", "depends=gone"])})
    with pytest.raises(WirtError, match="depends on gone"):
        broken.resolve(["x"])


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="no RISC-V cross compiler")
def test_modinfo_from_a_compiled_object(tmp_path: Path) -> None:
    """The .modinfo of an object file made by a real RISC-V compiler, as the kernel's modpost lays it out."""
    src = tmp_path / "m.c"
    src.write_text(
        'static const char a[] __attribute__((used, section(".modinfo"), aligned(1))) = "depends=y,z";\n'
        'static const char b[] __attribute__((used, section(".modinfo"), aligned(1))) = "name=m";\n'
        'static const char c[] __attribute__((used, section(".modinfo"), aligned(1))) = "softdep=pre: q";\n'
        "int f(void) { return 1; }\n"
    )
    obj = tmp_path / "m.o"
    subprocess.run(["riscv64-unknown-elf-gcc", "-c", "-O2", str(src), "-o", str(obj)], check=True)
    info = parse_modinfo(obj.read_bytes())
    assert info.name == "m" and info.depends == ("y", "z") and info.softdep_pre == ("q",)
