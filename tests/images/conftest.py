"""Fixtures for the image layer: tiny ELF modules, real .debs built with dpkg-deb, a signed fake mirror.

The fake mirror is a `file://` directory laid out like a Debian archive (dists/, pool/) and
signed with a throw-away gpg key, so the whole fetch-verify-build path runs offline.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

KVER = "6.12.0-test-riscv64"
SUITE = "trixie"


def make_ko(modinfo: list[str], machine: int = 243) -> bytes:
    """A minimal ELF64 relocatable (EM_RISCV) whose only content is a `.modinfo` section."""
    info = b"".join(s.encode() + b"\0" for s in modinfo)
    shstr = b"\0.modinfo\0.shstrtab\0"
    info_off = 64
    shstr_off = info_off + len(info)
    sh_off = (shstr_off + len(shstr) + 7) & ~7
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 1, machine, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 3, 2)
    sh = struct.Struct("<IIQQQQIIQQ")
    sections = (
        sh.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        + sh.pack(1, 1, 2, 0, info_off, len(info), 0, 0, 1, 0)  # .modinfo: PROGBITS, ALLOC
        + sh.pack(10, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)  # .shstrtab: STRTAB
    )
    body = ehdr + info + shstr
    return body + b"\0" * (sh_off - len(body)) + sections


# name -> (file path under kernel/, modinfo strings): a miniature of Debian's real dependency web.
FAKE_MODULES = {
    "virtio_mmio": ("drivers/virtio/virtio_mmio.ko.xz", ["depends=", "name=virtio_mmio", "alias=of:N*T*Cvirtio,mmio"]),
    "virtio_blk": ("drivers/block/virtio_blk.ko.xz", ["alias=virtio:d00000002v*", "depends=", "name=virtio_blk"]),
    "failover": ("net/core/failover.ko.xz", ["depends=", "name=failover"]),
    "net_failover": ("drivers/net/net_failover.ko.xz", ["depends=failover", "name=net_failover"]),
    "virtio_net": ("drivers/net/virtio_net.ko.xz", ["depends=net_failover", "name=virtio_net"]),
    "virtio_rng": ("drivers/char/hw_random/virtio-rng.ko.xz", ["depends=", "name=virtio_rng"]),
    "crc16": ("lib/crc16.ko.xz", ["depends=", "name=crc16"]),
    "mbcache": ("fs/mbcache.ko.xz", ["depends=", "name=mbcache"]),
    "jbd2": ("fs/jbd2/jbd2.ko.xz", ["softdep=pre: crypto-crc32c", "depends=", "name=jbd2"]),
    "ext4": ("fs/ext4/ext4.ko.xz", ["softdep=pre: crypto-crc32c", "alias=fs-ext4", "depends=jbd2,mbcache,crc16", "name=ext4"]),
    "crc32c_generic": ("crypto/crc32c_generic.ko.xz", ["alias=crypto-crc32c", "alias=crc32c", "depends=", "name=crc32c_generic"]),
    "libcrc32c": ("lib/libcrc32c.ko.xz", ["softdep=pre: crc32c", "depends=", "name=libcrc32c"]),
    "loop": ("drivers/block/loop.ko.xz", ["alias=devname:loop-control", "depends=", "name=loop"]),
}  # fmt: skip
FAKE_BUILTIN = "kernel/drivers/char/virtio_console.ko\nkernel/drivers/virtio/virtio.ko\n"
DEFAULT_ORDER = [
    "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4", "virtio_blk", "virtio_mmio",
    "failover", "net_failover", "virtio_net", "virtio_rng",
]  # fmt: skip

FAKE_IMAGE = b"\0" * 0x30 + b"RISCV\0\0\0" + b"RSC\x05" + b"\0" * 100
FAKE_BUSYBOX = b"\x7fELF fake busybox\0 [\0[[\0ash\0base64\0cat\0cttyhack\0devmem\0insmod\0ip\0mount\0poweroff\0setsid\0sh\0\0tail"
FAKE_FIRMWARE = b"fake OpenSBI fw_dynamic " * 8


def build_deb(out: Path, name: str, version: str, arch: str, files: dict[str, bytes], depends: str = "") -> Path:
    """A real .deb built by dpkg-deb from `files` (installed path -> contents)."""
    with tempfile.TemporaryDirectory(prefix="wirt-deb-") as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        control = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@example.invalid>\n"
        control += f"Depends: {depends}\n" if depends else ""
        control += "Description: wirt test package\n"
        (root / "DEBIAN" / "control").write_text(control)
        for path, data in files.items():
            p = root / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "-z0", "--build", str(root), str(out)],
            check=True,
            capture_output=True,
        )
    return out


@dataclass
class GpgKey:
    """A throw-away signing key: its GNUPGHOME and an exported keyring gpgv accepts."""

    home: Path
    keyring: Path

    def clearsign(self, text: str, out: Path) -> None:
        subprocess.run(
            ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", "--clearsign",
             "--output", str(out)],
            input=text.encode(),
            env={**os.environ, "GNUPGHOME": str(self.home)},
            check=True,
            capture_output=True,
        )  # fmt: skip


def _make_key(tag: str) -> GpgKey:
    home = Path(tempfile.mkdtemp(prefix=f"wg{tag}"))  # short: gpg-agent's socket path is limited
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
         f"wirt test {tag} <test@example.invalid>", "ed25519", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    keyring = home / "keyring.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export"], env=env, check=True, capture_output=True).stdout)
    return GpgKey(home, keyring)


@pytest.fixture(scope="session")
def gpg_keys() -> Iterator[tuple[GpgKey, GpgKey]]:
    """Two unrelated signing keys (the archive's and a stranger's)."""
    if not (shutil.which("gpg") and shutil.which("gpgv")):
        pytest.fail("gpg/gpgv not found: install gnupg and gpgv (make test does)")
    keys = (_make_key("a"), _make_key("b"))
    yield keys
    for key in keys:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(key.home)},
                       capture_output=True)  # fmt: skip
        shutil.rmtree(key.home, ignore_errors=True)


@dataclass
class FakeMirror:
    """A signed Debian archive in a directory, served as file://."""

    root: Path
    key: GpgKey

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def packages_text(self) -> str:
        return lzma.decompress((self.root / f"dists/{SUITE}/main/binary-riscv64/Packages.xz").read_bytes()).decode()

    def write_index(self, packages_text: str, *, release_extra: str = "", sign_with: GpgKey | None = None) -> None:
        """(Re)write Packages.xz and a signed InRelease that lists it."""
        index = self.root / f"dists/{SUITE}/main/binary-riscv64/Packages.xz"
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_bytes(lzma.compress(packages_text.encode()))
        data = index.read_bytes()
        release = (
            f"Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: {SUITE}\n"
            f"Date: Sat, 01 Jan 2000 00:00:00 UTC\nArchitectures: riscv64\nComponents: main\n{release_extra}"
            f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-riscv64/Packages.xz\n"
        )
        (sign_with or self.key).clearsign(release, self.root / f"dists/{SUITE}/InRelease")


def _stanza(deb: Path, root: Path, name: str, version: str, arch: str, depends: str = "") -> str:
    data = deb.read_bytes()
    lines = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}"]
    if depends:
        lines.append(f"Depends: {depends}")
    lines += [
        "Description: wirt test package",
        " continued description line",
        f"Filename: {deb.relative_to(root).as_posix()}",
        f"Size: {len(data)}",
        f"SHA256: {hashlib.sha256(data).hexdigest()}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def fake_mirror_template(gpg_keys: tuple[GpgKey, GpgKey], tmp_path_factory: pytest.TempPathFactory) -> FakeMirror:
    """Build the fake archive once per session (copy it before changing it)."""
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb not found: install dpkg (make test does)")
    root = tmp_path_factory.mktemp("mirror")
    pool = root / "pool/main"
    pool.mkdir(parents=True)
    moddir = f"usr/lib/modules/{KVER}"
    kfiles = {f"boot/vmlinux-{KVER}": FAKE_IMAGE, f"boot/config-{KVER}": b"CONFIG_X=y\n"}
    for path, info in FAKE_MODULES.values():
        kfiles[f"{moddir}/kernel/{path}"] = lzma.compress(make_ko(info), format=lzma.FORMAT_XZ)
    kfiles[f"{moddir}/modules.builtin"] = FAKE_BUILTIN.encode()
    kfiles[f"{moddir}/modules.builtin.modinfo"] = b"virtio_console.alias=virtio:d00000003v*\0"
    kpkg = f"linux-image-{KVER}"
    stanzas = [
        _stanza(build_deb(pool / f"{kpkg}_1.0-1_riscv64.deb", kpkg, "1.0-1", "riscv64", kfiles), root, kpkg,
                "1.0-1", "riscv64", "kmod, initramfs-tools | linux-initramfs-tool"),
        _stanza(build_deb(pool / "linux-image-riscv64_1.0-1_riscv64.deb", "linux-image-riscv64", "1.0-1", "riscv64",
                          {"usr/share/doc/linux-image-riscv64/README": b"meta\n"}, f"{kpkg} (= 1.0-1)"),
                root, "linux-image-riscv64", "1.0-1", "riscv64", f"{kpkg} (= 1.0-1)"),
        _stanza(build_deb(pool / "busybox-static_1.0-1_riscv64.deb", "busybox-static", "1:1.0-1", "riscv64",
                          {"usr/bin/busybox": FAKE_BUSYBOX}), root, "busybox-static", "1:1.0-1", "riscv64"),
        _stanza(build_deb(pool / "opensbi_1.0-1_all.deb", "opensbi", "1.0-1", "all",
                          {"usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin": FAKE_FIRMWARE}),
                root, "opensbi", "1.0-1", "all"),
        "Package: unrelated\nVersion: 1\nArchitecture: riscv64\nFilename: pool/x.deb\nSize: 1\nSHA256: 00\n",
    ]  # fmt: skip
    mirror = FakeMirror(root, gpg_keys[0])
    mirror.write_index("\n".join(stanzas))
    return mirror


@pytest.fixture
def fake_mirror(fake_mirror_template: FakeMirror, tmp_path: Path) -> FakeMirror:
    """A private copy of the fake archive that a test may tamper with."""
    root = tmp_path / "mirror"
    shutil.copytree(fake_mirror_template.root, root)
    return FakeMirror(root, fake_mirror_template.key)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty wirt cache; no environment mirror or keyring leaks in."""
    monkeypatch.delenv("WIRT_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("WIRT_DEBIAN_KEYRING", raising=False)
    path = tmp_path / "cache"
    monkeypatch.setenv("WIRT_CACHE", str(path))
    return path


class Helpers:
    """Plain helper functions for tests (test modules cannot import conftest by name)."""

    build_deb = staticmethod(build_deb)
    make_ko = staticmethod(make_ko)
    FAKE_MODULES = FAKE_MODULES
    FAKE_BUILTIN = FAKE_BUILTIN
    DEFAULT_ORDER = DEFAULT_ORDER
    KVER = KVER


@pytest.fixture(scope="session")
def helpers() -> type[Helpers]:
    """Access to the helpers above."""
    return Helpers
