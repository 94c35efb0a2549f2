"""Archive index handling: Release and Packages parsing, version order, signature checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wirt.errors import WirtError
from wirt.images import archive, ui
from wirt.images.archive import PackageIndex, compare_versions, parse_release, strip_clearsign, verify_inrelease

PACKAGES = """\
Package: linux-image-riscv64
Source: linux
Version: 6.12.117-1
Architecture: riscv64
Depends: linux-image-6.12.117+deb13-riscv64 (= 6.12.117-1)
Description: Linux for 64-bit RISC-V platforms (meta-package)
Filename: pool/main/l/linux/linux-image-riscv64_6.12.117-1_riscv64.deb
Size: 1444
SHA256: C1685361464FCE280B85273C0914696C4167AB4D94A335C22401B52A1F7F9959

Package: busybox-static
Version: 1:1.37.0-6+b9
Architecture: riscv64
Tag: admin::recovery, interface::shell,
 use::login, works-with::file
Filename: pool/main/b/busybox/busybox-static_1.37.0-6+b9_riscv64.deb
Size: 941532
SHA256: 4add476d2b185c5b487c285b38d790f0881a7e4a8e2ddde835f917e770eb8633

Package: busybox-static
Version: 1:1.37.0-6
Architecture: riscv64
Filename: pool/main/b/busybox/busybox-static_1.37.0-6_riscv64.deb
Size: 941000
SHA256: 00

Package: broken
Version: 1
"""


def test_packages_index() -> None:
    index = PackageIndex(PACKAGES)
    assert "busybox-static" in index and "nothing" not in index
    meta = index.latest("linux-image-riscv64")
    assert meta is not None
    assert meta.depends_names() == ["linux-image-6.12.117+deb13-riscv64"]
    assert meta.sha256 == "c1685361464fce280b85273c0914696c4167ab4d94a335c22401b52a1f7f9959"
    assert meta.size == 1444 and meta.filename.endswith("_riscv64.deb")
    bb = index.latest("busybox-static")
    assert bb is not None and bb.version == "1:1.37.0-6+b9"  # the higher of two versions
    assert index.latest("broken") is None  # no Filename/SHA256: unusable
    assert index.latest("nothing") is None


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("1.0", "1.0", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0+b1", -1),
        ("6.12.9-1", "6.12.117-1", -1),
        ("1:1.0", "2.0", 1),
        ("1.0-1", "1.0-2", -1),
        ("1.0a", "1.0", 1),
        ("1.0~~", "1.0~", -1),
        ("2:1", "1:9", 1),
    ],
)
def test_compare_versions(a: str, b: str, sign: int) -> None:
    got = compare_versions(a, b)
    assert (got > 0) - (got < 0) == sign
    rev = compare_versions(b, a)
    assert (rev > 0) - (rev < 0) == -sign


def test_parse_release() -> None:
    text = (
        "Origin: Debian\nSuite: stable\nCodename: trixie\nAcquire-By-Hash: yes\nDate: today\n"
        "MD5Sum:\n 0123 10 main/binary-riscv64/Packages.xz\n"
        "SHA256:\n ABCD 9387120 main/binary-riscv64/Packages.xz\n ef01 12 main/binary-riscv64/Release\n"
    )
    rel = parse_release(text)
    assert rel.codename == "trixie" and rel.suite == "stable" and rel.acquire_by_hash
    assert rel.entry("main/binary-riscv64/Packages.xz") == ("abcd", 9387120)
    with pytest.raises(WirtError, match="lists no main/binary-arm64"):
        rel.entry("main/binary-arm64/Packages.xz")


def test_strip_clearsign() -> None:
    signed = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n- -----dash line\n"
        "Codename: trixie\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    )
    assert strip_clearsign(signed) == "Origin: Debian\n-----dash line\nCodename: trixie\n"


def test_signature_good_bad_and_foreign(gpg_keys: Any, tmp_path: Path) -> None:
    ours, stranger = gpg_keys
    text = "Origin: Debian\nCodename: trixie\nSHA256:\n aa 1 main/x\n"
    signed = tmp_path / "InRelease"
    ours.clearsign(text, signed)
    assert verify_inrelease(signed, ours.keyring) == text

    tampered = tmp_path / "tampered"
    tampered.write_text(signed.read_text().replace("aa 1 main/x", "bb 1 main/x"))
    with pytest.raises(WirtError, match="BAD signature"):
        verify_inrelease(tampered, ours.keyring)

    with pytest.raises(WirtError, match="not signed by a key in"):
        verify_inrelease(signed, stranger.keyring)

    unsigned = tmp_path / "unsigned"
    unsigned.write_text(text)
    with pytest.raises(WirtError, match="not signed"):
        verify_inrelease(unsigned, ours.keyring)


def test_no_keyring_warns_once_and_continues(
    tmp_path: Path, gpg_keys: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ui, "_warned", set())
    signed = tmp_path / "InRelease"
    gpg_keys[0].clearsign("Codename: trixie\n", signed)
    missing = tmp_path / "no-such-keyring.gpg"
    assert verify_inrelease(signed, missing) == "Codename: trixie\n"
    assert verify_inrelease(signed, missing) == "Codename: trixie\n"
    err = capsys.readouterr().err
    assert err.count("NOT checked") == 1


@pytest.mark.skipif(not archive.DEFAULT_KEYRING.is_file(), reason="debian-archive-keyring not installed")
def test_real_inrelease_copy_if_cached(tmp_path: Path) -> None:
    """A cached real trixie InRelease verifies with the host keyring, and fails once tampered."""
    from wirt.images.cache import cache_root

    real = cache_root() / "archive" / "trixie" / "InRelease"
    if not real.is_file():
        pytest.skip("no cached trixie InRelease (run the slow test first)")
    text = verify_inrelease(real)
    assert "Codename: trixie" in text
    bad = tmp_path / "InRelease"
    bad.write_text(real.read_text().replace("Codename: trixie", "Codename: trixiE", 1))
    with pytest.raises(WirtError, match="BAD signature"):
        verify_inrelease(bad)
