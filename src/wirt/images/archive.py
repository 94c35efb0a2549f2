"""A Debian archive over plain HTTP: signed InRelease, the Packages index, verified .deb downloads.

Layout and trust chain (Debian wiki "DebianRepository/Format"): `dists/SUITE/InRelease` is the
Release file, clear-signed by the archive keys; it lists the SHA256 and size of every index,
e.g. `main/binary-riscv64/Packages.xz`; each Packages stanza gives `Filename` (relative to the
archive root) with its `SHA256` and `Size`. Nothing is trusted that is not reached this way.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from wirt.errors import WirtError
from wirt.images import cache, ui
from wirt.images.deb822 import iter_paragraphs
from wirt.images.mirror import HINT

ENV_KEYRING = "WIRT_DEBIAN_KEYRING"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


# --- signature -------------------------------------------------------------------------------


def default_keyring() -> Path:
    """`$WIRT_DEBIAN_KEYRING`, else the keyring of the Debian package debian-archive-keyring."""
    return Path(os.environ[ENV_KEYRING]) if os.environ.get(ENV_KEYRING) else DEFAULT_KEYRING


def strip_clearsign(text: str) -> str:
    """The message inside an OpenPGP clear-signed text (RFC 4880 §7), without checking anything.

    Used only when no keyring is installed (after a warning); otherwise gpgv's output is used.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "-----BEGIN PGP SIGNED MESSAGE-----":
        return text
    i = 1
    while i < len(lines) and lines[i].strip():  # armor headers ("Hash: SHA256") end at a blank line
        i += 1
    body = []
    for line in lines[i + 1 :]:
        if line.startswith("-----BEGIN PGP SIGNATURE-----"):
            break
        body.append(line[2:] if line.startswith("- ") else line)  # undo dash-escaping (§7.1)
    return "\n".join(body) + "\n"


def verify_inrelease(path: Path, keyring: Path | None = None) -> str:
    """Check the clear-signed `path` with gpgv against `keyring`; return the signed text.

    A signature that does not verify is refused; with no keyring (or no gpgv) installed the
    file is used unverified after a one-time warning.
    """
    keyring = keyring or default_keyring()
    raw = path.read_text(encoding="utf-8", errors="replace")
    gpgv = shutil.which("gpgv")
    if not keyring.is_file() or gpgv is None:
        missing = f"keyring {keyring} (Debian package debian-archive-keyring)" if gpgv else "gpgv (package gpgv)"
        ui.warn_once("no-keyring", f"{missing} is not installed: the Debian archive signature is NOT checked")
        return strip_clearsign(raw)
    with tempfile.TemporaryDirectory(prefix="wirt-gpgv-") as tmp:
        out = Path(tmp) / "signed.txt"
        proc = subprocess.run(
            [gpgv, "--status-fd", "1", "--keyring", str(keyring), "--output", str(out), str(path)],
            capture_output=True,
            text=True,
        )
        status = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("[GNUPG:] ")]
        words = {s[0] for s in status if s}
        if "BADSIG" in words:
            raise WirtError(
                f"BAD signature on {path.name} from the mirror (tampered or corrupt); refusing it — "
                f"try again later or {HINT}"
            )
        if "GOODSIG" not in words or not out.is_file():
            detail = (proc.stderr.strip().splitlines() or ["no signature"])[-1].removeprefix("gpgv: ")
            raise WirtError(
                f"{path.name} from the mirror is not signed by a key in {keyring} ({detail}); "
                f"update debian-archive-keyring or {HINT}"
            )
        return out.read_text(encoding="utf-8", errors="replace")


# --- Release ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """The fields of a Release file that wirt uses."""

    suite: str
    codename: str
    date: str
    acquire_by_hash: bool
    sha256: dict[str, tuple[str, int]] = field(repr=False)  # index path -> (hex digest, size)

    def entry(self, name: str) -> tuple[str, int]:
        """(sha256, size) of an index file such as `main/binary-riscv64/Packages.xz`."""
        try:
            return self.sha256[name]
        except KeyError:
            raise WirtError(
                f"the mirror's Release file lists no {name} (the suite lacks this architecture?); {HINT}"
            ) from None


def parse_release(text: str) -> Release:
    """Parse a (verified) Release text; `SHA256:` lines are ` <hex> <size> <path>`."""
    paras = list(iter_paragraphs(text))
    if not paras:
        raise WirtError(f"the mirror's Release file is empty; {HINT}")
    fields = paras[0]
    sums: dict[str, tuple[str, int]] = {}
    for line in fields.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            sums[parts[2]] = (parts[0].lower(), int(parts[1]))
    return Release(
        suite=fields.get("Suite", ""),
        codename=fields.get("Codename", ""),
        date=fields.get("Date", ""),
        acquire_by_hash=fields.get("Acquire-By-Hash", "no").lower() == "yes",
        sha256=sums,
    )


# --- Packages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One binary package stanza of a Packages index."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    depends: str = ""

    def depends_names(self) -> list[str]:
        """Package names of `Depends`, taking the first of each `a | b` alternative."""
        names = []
        for clause in self.depends.split(","):
            first = clause.split("|")[0].strip()
            if first:
                names.append(re.split(r"[\s(:\[]", first, maxsplit=1)[0])
        return names


class PackageIndex:
    """A Packages index, split by package name; stanzas are parsed only when asked for."""

    def __init__(self, text: str) -> None:
        self._raw: dict[str, list[str]] = {}
        for stanza in re.split(r"\n\s*\n", text):
            m = re.match(r"Package:\s*(\S+)", stanza.lstrip("\n"))
            if m:
                self._raw.setdefault(m.group(1), []).append(stanza)

    def __contains__(self, name: str) -> bool:
        return name in self._raw

    def __len__(self) -> int:
        return len(self._raw)

    def versions(self, name: str) -> list[Package]:
        """Every stanza for `name` (an index may carry several versions)."""
        out = []
        for stanza in self._raw.get(name, []):
            for f in iter_paragraphs(stanza):
                try:
                    out.append(
                        Package(
                            name=f["Package"],
                            version=f["Version"],
                            architecture=f.get("Architecture", ""),
                            filename=f["Filename"],
                            size=int(f["Size"]),
                            sha256=f["SHA256"].lower(),
                            depends=f.get("Depends", ""),
                        )
                    )
                except (KeyError, ValueError):
                    continue  # a stanza without a verifiable file is useless to us
        return out

    def latest(self, name: str) -> Package | None:
        """The highest version of `name`, or None if the index lacks it."""
        best: Package | None = None
        for pkg in self.versions(name):
            if best is None or compare_versions(pkg.version, best.version) > 0:
                best = pkg
        return best


def compare_versions(a: str, b: str) -> int:
    """Compare Debian versions `[epoch:]upstream[-revision]` as dpkg does (deb-version(7)); <0, 0, >0."""

    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def _order(c: str) -> int:
    # deb-version(7): '~' sorts before everything, even the end; letters before non-letters.
    if c == "~":
        return -1
    if not c or c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


# --- the archive -----------------------------------------------------------------------------


class Archive:
    """One suite of one mirror, with downloads verified and kept under `cache_dir`."""

    def __init__(
        self,
        mirror: str,
        suite: str,
        arch: str,
        cache_dir: Path,
        *,
        component: str = "main",
        keyring: Path | None = None,
    ) -> None:
        self.mirror = mirror.rstrip("/")
        self.suite = suite
        self.arch = arch
        self.component = component
        self.cache_dir = cache_dir
        self.keyring = keyring
        self._release: Release | None = None

    @property
    def dists(self) -> str:
        return f"{self.mirror}/dists/{self.suite}"

    def release(self) -> Release:
        """Download `dists/SUITE/InRelease`, check its signature and suite name, parse it."""
        if self._release is None:
            dest = self.cache_dir / "archive" / self.suite / "InRelease"
            new = dest.with_name("InRelease.new")
            cache.download(f"{self.dists}/InRelease", new, label=f"{self.suite}/InRelease")
            try:
                release = parse_release(verify_inrelease(new, self.keyring))
                if self.suite not in (release.suite, release.codename):
                    raise WirtError(
                        f"the mirror's dists/{self.suite}/InRelease is for suite "
                        f"{release.codename or release.suite!r}, not {self.suite!r}; {HINT}"
                    )
            except BaseException:
                with contextlib.suppress(OSError):
                    new.unlink()
                raise
            os.replace(new, dest)
            self._release = release
        return self._release

    def packages(self) -> PackageIndex:
        """The Packages index of COMPONENT/binary-ARCH, checked against the signed Release."""
        name = f"{self.component}/binary-{self.arch}/Packages.xz"
        sha, size = self.release().entry(name)
        dest = self.cache_dir / "archive" / self.suite / f"Packages-{self.component}-{self.arch}-{sha[:16]}.xz"
        if not dest.is_file() or dest.stat().st_size != size:
            urls = [f"{self.dists}/{name}"]
            if self.release().acquire_by_hash:
                # by-hash paths never change content, so they cannot race a mirror update.
                urls.insert(0, f"{self.dists}/{self.component}/binary-{self.arch}/by-hash/SHA256/{sha}")
            for url in urls:
                try:
                    cache.download(url, dest, sha256=sha, size=size, label=f"{self.suite} {name}")
                    break
                except cache.NotFound:
                    if url == urls[-1]:
                        raise
            for old in dest.parent.glob(f"Packages-{self.component}-{self.arch}-*.xz"):
                if old != dest:
                    old.unlink(missing_ok=True)
        try:
            text = lzma.decompress(dest.read_bytes()).decode("utf-8", errors="replace")
        except lzma.LZMAError as exc:
            dest.unlink(missing_ok=True)
            raise WirtError(f"cannot decompress {name} from the mirror: {exc}; try again") from None
        return PackageIndex(text)

    def require(self, index: PackageIndex, name: str) -> Package:
        """The latest `name` in the index, or a WirtError that says which index lacks it."""
        pkg = index.latest(name)
        if pkg is None:
            raise WirtError(
                f"package {name} is missing from {self.suite}/{self.component} for {self.arch} "
                f"on {self.mirror}; use a complete Debian mirror ({HINT})"
            )
        return pkg

    def fetch(self, pkg: Package) -> Path:
        """The .deb of `pkg` in the cache, downloaded and SHA256-checked if not there yet."""
        dest = deb_path(self.cache_dir, pkg)
        if dest.is_file() and dest.stat().st_size == pkg.size:
            return dest
        cache.download(f"{self.mirror}/{pkg.filename}", dest, sha256=pkg.sha256, size=pkg.size, label=pkg.name)
        return dest


def deb_path(cache_dir: Path, pkg: Package) -> Path:
    """Where the .deb of `pkg` lives in the cache (its pool file name, which holds the version)."""
    base = PurePosixPath(pkg.filename).name
    if not base.endswith(".deb") or base in (".", ".."):
        raise WirtError(f"package {pkg.name} has an odd Filename {pkg.filename!r} in the index; {HINT}")
    return cache_dir / "debs" / base
