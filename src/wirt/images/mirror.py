"""Find the Debian mirror to fetch from: an explicit URL, `WIRT_DEBIAN_MIRROR`, or the host's apt sources.

wirt never names a mirror itself: it uses the one the host (or the user) already trusts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wirt.errors import WirtError
from wirt.images.deb822 import iter_paragraphs

ENV_MIRROR = "WIRT_DEBIAN_MIRROR"
HINT = f"set {ENV_MIRROR}=http://…/debian"
SCHEMES = ("http", "https", "file")

# Debian suite names and codenames (an Ubuntu or third-party repository uses other names).
_DEBIAN_SUITES = {
    "jessie", "stretch", "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental", "rc-buggy",
}  # fmt: skip


@dataclass(frozen=True)
class SourceEntry:
    """One repository from apt's configuration: `deb URI SUITE COMPONENTS...`."""

    type: str
    uri: str
    suite: str
    components: tuple[str, ...]
    origin: str  # the file it came from
    signed_by: str = ""

    def is_debian_main_archive(self) -> bool:
        """True for the main Debian archive (not security, not a third-party repository)."""
        scheme = urlsplit(self.uri).scheme
        if scheme not in SCHEMES:
            return False  # cdrom:, mirror+http:, tor+http: ... are apt transports, not URLs we fetch
        host = urlsplit(self.uri).hostname or ""
        if "debian-security" in self.uri or host.startswith("security."):
            return False
        if self.suite.endswith("-security") or self.suite.endswith("/updates"):
            return False
        base = re.split(r"[-/]", self.suite, maxsplit=1)[0]
        return base in _DEBIAN_SUITES and "main" in self.components

    def looks_official(self) -> bool:
        """True if the URI is a `/debian` directory or the entry trusts the Debian archive keyring.

        Third-party repositories may reuse suite names ("stable", "bookworm"); Debian mirrors
        almost always serve the archive at `.../debian`.
        """
        path = urlsplit(self.uri).path.rstrip("/")
        return path.endswith("/debian") or "debian-archive-keyring" in self.signed_by


def parse_one_line(text: str, origin: str = "<string>") -> list[SourceEntry]:
    """Parse the one-line style of sources.list(5): `deb [options] uri suite [component...]`."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        # Options in square brackets ("[arch=amd64 signed-by=...]") come right after the type.
        options = re.search(r"\[([^\]]*)\]", line)
        signed_by = re.search(r"signed-by=(\S+)", options.group(1)) if options else None
        line = re.sub(r"\[[^\]]*\]", " ", line)
        words = line.split()
        if len(words) < 3 or words[0] not in ("deb", "deb-src"):
            continue
        entries.append(
            SourceEntry(
                words[0], words[1].rstrip("/"), words[2], tuple(words[3:]), origin,
                signed_by.group(1) if signed_by else "",
            )  # fmt: skip
        )
    return entries


def parse_deb822_sources(text: str, origin: str = "<string>") -> list[SourceEntry]:
    """Parse the deb822 style of sources.list(5) (`Types:`, `URIs:`, `Suites:`, `Components:`)."""
    entries = []
    for para in iter_paragraphs(text, comments=True):
        if para.get("Enabled", "yes").strip().lower() == "no":
            continue
        types = para.get("Types", "").split()
        for t in types:
            if t not in ("deb", "deb-src"):
                continue
            for uri in para.get("URIs", "").split():
                for suite in para.get("Suites", "").split():
                    comps = tuple(para.get("Components", "").split())
                    entries.append(
                        SourceEntry(t, uri.rstrip("/"), suite, comps, origin, para.get("Signed-By", ""))
                    )
    return entries


def read_apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """All entries of apt's configuration in apt's own reading order (main file, then parts by name)."""
    entries: list[SourceEntry] = []
    main = apt_dir / "sources.list"
    if main.is_file():
        entries += parse_one_line(_read(main), str(main))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list" and path.is_file():
                entries += parse_one_line(_read(path), str(path))
            elif path.suffix == ".sources" and path.is_file():
                entries += parse_deb822_sources(_read(path), str(path))
    return entries


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""  # an unreadable file is skipped, as apt would fail on it anyway


def check_mirror_url(url: str) -> str:
    """Normalise a user-given mirror URL (no trailing slash) or raise WirtError if it is not one."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not (parts.netloc or parts.scheme == "file"):
        raise WirtError(f"mirror {url!r} is not an http(s):// or file:// URL; {HINT}")
    return url


def find_mirror(
    explicit: str | None = None,
    *,
    environ: dict[str, str] | None = None,
    apt_dir: Path = Path("/etc/apt"),
) -> str:
    """The mirror base URL (the directory holding `dists/` and `pool/`), without a trailing slash.

    Order: the `explicit` argument, then `$WIRT_DEBIAN_MIRROR`, then the first Debian main-archive
    entry of the host's apt sources.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return check_mirror_url(explicit)
    if env.get(ENV_MIRROR):
        return check_mirror_url(env[ENV_MIRROR])
    entries = read_apt_sources(apt_dir)
    candidates = [e for e in entries if e.is_debian_main_archive()]
    # Prefer binary ("deb") entries that look like an official mirror, in apt's reading order.
    candidates.sort(key=lambda e: (not e.looks_official(), e.type != "deb"))
    if candidates:
        return candidates[0].uri
    raise WirtError(f"no Debian mirror found in {apt_dir}/sources.list or {apt_dir}/sources.list.d; {HINT}")
