"""The whole fetch-verify-build path against a signed fake mirror on disk (file://), offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from wirt import cli
from wirt.errors import WirtError
from wirt.images import cache, guest, mirror
from wirt.images.cpio import read_newc
from wirt.images.guest import default_guest, is_riscv_image


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"network I/O with a warm cache: {args}")


def _build(fake: Any, cache_dir: Path, **kw: Any) -> guest.GuestImage:
    return default_guest(fake.url, cache_dir=cache_dir, keyring=fake.key.keyring, **kw)


def test_build_and_warm_cache(fake_mirror: Any, cache_dir: Path, helpers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    g = _build(fake_mirror, cache_dir)
    assert g.kernel_version == helpers.KVER
    assert g.versions == {f"linux-image-{helpers.KVER}": "1.0-1", "busybox-static": "1:1.0-1", "opensbi": "1.0-1"}
    assert is_riscv_image(g.kernel.read_bytes()[:64])
    assert g.firmware.read_bytes().startswith(b"fake OpenSBI")
    assert list(g.modules) == helpers.DEFAULT_ORDER
    assert "busybox-1_1.0-1" in g.initrd.name and helpers.KVER in g.initrd.name
    entries = {e.name: e for e in read_newc(g.initrd.read_bytes())}
    assert entries["init"].is_file and entries["init"].data.startswith(b"#!/bin/sh")
    assert entries["bin/busybox"].is_file and entries["bin/sh"].data == b"busybox"
    assert entries["bin/devmem"].is_symlink and entries["dev/console"].rdev == (5, 1)
    assert entries["lib/modules/load-order"].data.decode().split() == helpers.DEFAULT_ORDER
    for name in helpers.DEFAULT_ORDER:
        assert entries[f"lib/modules/{name}.ko"].data.startswith(b"\x7fELF")  # decompressed
    assert not list(cache_dir.rglob(".*.tmp"))  # no temporary file of wirt.fileio.atomic_path left

    # Warm: no network at all, same answer; another module set only rebuilds the initramfs.
    monkeypatch.setattr(cache, "urlopen", _no_network)
    assert _build(fake_mirror, cache_dir) == g
    small = _build(fake_mirror, cache_dir, modules={"virtio_blk"})
    assert small.modules == ("virtio_blk", "virtio_mmio") and small.initrd != g.initrd
    none = _build(fake_mirror, cache_dir, modules=())
    assert none.modules == ()
    gz = _build(fake_mirror, cache_dir, modules=(), compress=True)
    assert gz.initrd.name.endswith(".cpio.gz") and gz.initrd.read_bytes()[:2] == b"\x1f\x8b"
    assert "init" in {e.name for e in read_newc(gz.initrd.read_bytes())}


def test_refresh_and_environment(fake_mirror: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRT_DEBIAN_MIRROR", fake_mirror.url)
    monkeypatch.setenv("WIRT_DEBIAN_KEYRING", str(fake_mirror.key.keyring))
    g = default_guest(cache_dir=cache_dir)
    calls: list[str] = []
    real = cache.urlopen
    monkeypatch.setattr(cache, "urlopen", lambda url, **kw: calls.append(url) or real(url, **kw))
    assert default_guest(cache_dir=cache_dir, refresh=True) == g
    assert any(u.endswith("/InRelease") for u in calls)
    assert not any(u.endswith(".deb") for u in calls)  # debs are cached by version


def test_deb_checksum_mismatch(fake_mirror: Any, cache_dir: Path) -> None:
    deb = fake_mirror.root / "pool/main/opensbi_1.0-1_all.deb"
    data = bytearray(deb.read_bytes())
    data[-5] ^= 0xFF  # same size, different content
    deb.write_bytes(bytes(data))
    with pytest.raises(WirtError, match="SHA256 mismatch for .*opensbi_1.0-1_all.deb"):
        _build(fake_mirror, cache_dir)
    assert not (cache_dir / "debs" / "opensbi_1.0-1_all.deb").exists()
    assert not list(cache_dir.rglob(".*.tmp"))  # no temporary file of wirt.fileio.atomic_path left


def test_index_checksum_mismatch(fake_mirror: Any, cache_dir: Path) -> None:
    index = fake_mirror.root / "dists/trixie/main/binary-riscv64/Packages.xz"
    data = bytearray(index.read_bytes())
    data[20] ^= 0x01
    index.write_bytes(bytes(data))
    with pytest.raises(WirtError, match="mismatch for .*Packages.xz"):
        _build(fake_mirror, cache_dir)


def test_bad_and_foreign_signatures(fake_mirror: Any, cache_dir: Path, gpg_keys: Any) -> None:
    inrelease = fake_mirror.root / "dists/trixie/InRelease"
    good = inrelease.read_text()
    inrelease.write_text(good.replace("Codename: trixie", "Codename: trixiE"))
    with pytest.raises(WirtError, match="BAD signature"):
        _build(fake_mirror, cache_dir)
    assert not (cache_dir / "archive/trixie/InRelease").exists()
    fake_mirror.write_index(fake_mirror.packages_text(), sign_with=gpg_keys[1])
    with pytest.raises(WirtError, match="not signed by a key"):
        _build(fake_mirror, cache_dir)


def test_wrong_suite_refused(fake_mirror: Any, cache_dir: Path) -> None:
    """A validly signed Release of another suite (a replay) is refused."""
    index = fake_mirror.root / "dists/trixie/main/binary-riscv64/Packages.xz"
    data = index.read_bytes()
    release = (
        "Suite: oldstable\nCodename: bookworm\n"
        f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-riscv64/Packages.xz\n"
    )
    fake_mirror.key.clearsign(release, fake_mirror.root / "dists/trixie/InRelease")
    with pytest.raises(WirtError, match="is for suite 'bookworm', not 'trixie'"):
        _build(fake_mirror, cache_dir)


def test_package_missing(fake_mirror: Any, cache_dir: Path) -> None:
    stanzas = [s for s in fake_mirror.packages_text().split("\n\n") if not s.startswith("Package: opensbi")]
    fake_mirror.write_index("\n\n".join(stanzas))
    with pytest.raises(WirtError, match="package opensbi is missing from trixie/main for riscv64"):
        _build(fake_mirror, cache_dir)


def test_unreachable_and_unconfigured_mirror(cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WirtError, match="cannot reach the Debian mirror.*WIRT_DEBIAN_MIRROR="):
        default_guest("http://127.0.0.1:9/debian", cache_dir=cache_dir)
    with pytest.raises(WirtError, match="not found on the mirror"):
        default_guest((tmp_path / "empty").as_uri(), cache_dir=cache_dir)
    monkeypatch.setattr(guest, "find_mirror", lambda m: mirror.find_mirror(m, environ={}, apt_dir=tmp_path))
    with pytest.raises(WirtError, match="no Debian mirror found"):
        default_guest(cache_dir=cache_dir)


def test_cli_image_fetch(
    fake_mirror: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WIRT_DEBIAN_KEYRING", str(fake_mirror.key.keyring))
    assert cli.main(["image", "fetch", "--mirror", fake_mirror.url, "--json", "--modules", "virtio_net"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["modules"] == ["virtio_mmio", "failover", "net_failover", "virtio_net"]
    assert Path(out["kernel"]).is_file() and Path(out["initrd"]).is_file() and Path(out["firmware"]).is_file()
    assert cli.main(["image", "fetch", "--mirror", fake_mirror.url, "--modules", ""]) == 0
    text = capsys.readouterr().out
    assert text.startswith("kernel ") and "modules         -" in text
    assert cli.main(["image", "fetch", "--mirror", "http://127.0.0.1:9/debian", "--refresh"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("wirt: error: cannot reach the Debian mirror") and "Traceback" not in "".join(err)


def test_damaged_cached_deb_is_fetched_again(fake_mirror: Any, cache_dir: Path) -> None:
    g = _build(fake_mirror, cache_dir)
    cached = cache_dir / "debs" / "opensbi_1.0-1_all.deb"
    data = bytearray(cached.read_bytes())
    data[-3] ^= 0xFF
    cached.write_bytes(bytes(data))
    g.firmware.unlink()
    assert _build(fake_mirror, cache_dir) == g
    assert g.firmware.read_bytes().startswith(b"fake OpenSBI")
