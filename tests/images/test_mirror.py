"""Finding the Debian mirror: argument, environment, apt's one-line and deb822 sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirt.errors import WirtError
from wirt.images.mirror import find_mirror, parse_deb822_sources, parse_one_line, read_apt_sources

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def _apt(tmp_path: Path, main: str | None = None, parts: dict[str, str] | None = None) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    if main is not None:
        (apt / "sources.list").write_text(main)
    for name, text in (parts or {}).items():
        (apt / "sources.list.d" / name).write_text(text)
    return apt


def test_one_line_format() -> None:
    text = (
        "# comment\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
        "deb http://mirror.example/debian-security bookworm-security main # trailing comment\n"
        "garbage line\n"
    )
    entries = parse_one_line(text)
    assert [(e.type, e.uri, e.suite, e.components) for e in entries] == [
        ("deb", "http://mirror.example/debian", "bookworm", ("main", "contrib")),
        ("deb-src", "http://mirror.example/debian", "bookworm", ("main",)),
        ("deb", "http://mirror.example/debian-security", "bookworm-security", ("main",)),
    ]
    assert [e.is_debian_main_archive() for e in entries] == [True, True, False]


def test_deb822_format() -> None:
    entries = parse_deb822_sources(DEB822)
    assert [(e.uri, e.suite) for e in entries] == [
        ("http://mirror.example/debian", "bookworm"),
        ("http://mirror.example/debian", "bookworm-updates"),
        ("http://mirror.example/debian-security", "bookworm-security"),
    ]
    disabled = parse_deb822_sources("Enabled: no\nTypes: deb\nURIs: http://a.example/debian\nSuites: sid\n")
    assert disabled == []


def test_third_party_and_transports_are_not_debian() -> None:
    entries = parse_one_line(
        "deb https://packages.example.com/apt cloud-sdk-bookworm main\n"
        "deb https://repo.example.org/node_20.x nodistro main\n"
        "deb http://archive.example.com/ubuntu jammy main\n"
        "deb mirror+http://mirror.example/list bookworm main\n"
        "deb cdrom:[Debian 12]/ bookworm main\n"
    )
    assert not any(e.is_debian_main_archive() for e in entries)


def test_find_mirror_order(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        main="deb http://first.example/debian-security bookworm-security main\n",
        parts={
            "a-third-party.list": "deb https://packages.example.com/apt cloud-sdk-bookworm main\n",
            "b-debian.sources": DEB822,
            "c.list.disabled": "deb http://ignored.example/debian bookworm main\n",
        },
    )
    assert find_mirror(environ={}, apt_dir=apt) == "http://mirror.example/debian"
    env = {"WIRT_DEBIAN_MIRROR": "https://env.example/debian/"}
    assert find_mirror(environ=env, apt_dir=apt) == "https://env.example/debian"
    assert find_mirror("http://arg.example/debian", environ=env, apt_dir=apt) == "http://arg.example/debian"
    assert len(read_apt_sources(apt)) == 5  # the .disabled file is not read


def test_no_mirror_configured(tmp_path: Path) -> None:
    apt = _apt(tmp_path, parts={"x.list": "deb https://packages.example.com/apt vendor-stable main\n"})
    with pytest.raises(WirtError, match="WIRT_DEBIAN_MIRROR=http://"):
        find_mirror(environ={}, apt_dir=apt)
    with pytest.raises(WirtError, match="no Debian mirror"):
        find_mirror(environ={}, apt_dir=tmp_path / "nonexistent")


def test_bad_explicit_mirror() -> None:
    with pytest.raises(WirtError, match="not an http"):
        find_mirror("ftp.example/debian", environ={})
    assert find_mirror("file:///srv/debian/", environ={}) == "file:///srv/debian"


def test_prefers_debian_looking_mirror_over_third_party_stable(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        main="deb [arch=amd64] http://dl.example.com/linux/chrome/deb/ stable main\n"
        "deb https://download.example.com/linux/debian-like bookworm stable\n",
        parts={"z.list": "deb http://mirror.example/pub/debian bookworm main\n"},
    )
    assert find_mirror(environ={}, apt_dir=apt) == "http://mirror.example/pub/debian"
    signed = _apt(tmp_path / "2", main="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                  "http://mirror.example/archive trixie main\n")  # fmt: skip
    assert find_mirror(environ={}, apt_dir=signed) == "http://mirror.example/archive"
