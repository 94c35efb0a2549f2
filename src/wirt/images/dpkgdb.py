"""dpkg's database for packages unpacked without dpkg: status, info/*.list, triggers, alternatives.

What dpkg itself keeps under /var/lib/dpkg (dpkg(1) FILES, deb-control(5), deb-triggers(5)):
- `status`: one deb822 paragraph per package, the package's control file plus
  `Status: install ok installed` and, when it has conffiles, `Conffiles:` lines ` PATH MD5`;
- `info/PKG.list` (every path the package ships, `/.` first), `info/PKG.md5sums`, and the
  other control members (maintainer scripts, conffiles, triggers, shlibs, symbols, templates);
  a `Multi-Arch: same` package is named `PKG:ARCH` there; `info/format` says "1" (the
  multiarch layout) so dpkg does not try to upgrade the database;
- `triggers/File` (file triggers: `PATH PKG[/noawait]`) and `triggers/NAME` (explicit
  trigger interests: `PKG[/noawait]`), from each package's `interest*` directives;
- `alternatives/NAME`: update-alternatives' administrative file.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import re
import shlex
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from wirt.errors import WirtError
from wirt.images import deb

STATUS_INSTALLED = "install ok installed"
# Control members dpkg keeps in info/ (everything but `control` itself).
INFO_MEMBERS = ("preinst", "postinst", "prerm", "postrm", "config", "templates", "conffiles",
                "md5sums", "triggers", "shlibs", "symbols")  # fmt: skip


@dataclass
class ControlData:
    """The control archive of one .deb: the raw control text and the other members."""

    control: str
    members: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # name -> (data, mode)

    def field(self, name: str) -> str:
        """The value of a control field (first line plus continuation lines, stripped)."""
        for key, value in split_fields(self.control):
            if key.lower() == name.lower():
                return value.strip()
        return ""

    @property
    def package(self) -> str:
        return self.field("Package")

    def info_name(self) -> str:
        """The base name of the package's info/ files: `PKG` or `PKG:ARCH` (Multi-Arch: same)."""
        if self.field("Multi-Arch") == "same":
            return f"{self.package}:{self.field('Architecture')}"
        return self.package

    def conffiles(self) -> list[str]:
        """Paths listed in `conffiles` (deb-conffiles(5)); `remove-on-upgrade` entries are not installed."""
        text = self.members.get("conffiles", (b"", 0))[0].decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            words = line.split()
            if words and words[0].startswith("/"):
                out.append(words[0])
        return out


@contextmanager
def _open_control_tar(path: Path) -> Iterator[tarfile.TarFile]:
    with open(path, "rb") as f:
        try:
            members = deb.ar_members(f)
        except ValueError as exc:
            raise WirtError(f"{path} is not a valid .deb ({exc}); delete it and retry") from None
        member = next((m for m in members if m.name.startswith("control.tar")), None)
        if member is None:
            raise WirtError(f"{path} has no control.tar member; delete it and retry")
        f.seek(member.offset)
        raw = f.read(member.size)  # small (a few kB): read it whole
    suffix = member.name.removeprefix("control.tar")
    if suffix == ".zst":
        with deb._zstd_stream(io.BytesIO(raw), path) as plain:  # noqa: SLF001 — the one zstd reader
            raw, suffix = plain.read(), ""
    modes = {"": "r:", ".gz": "r:gz", ".xz": "r:xz"}
    if suffix not in modes:
        raise WirtError(f"{path}: unsupported control member {member.name}")
    with tarfile.open(fileobj=io.BytesIO(raw), mode=modes[suffix]) as tar:  # type: ignore[call-overload]
        yield tar


def read_control(path: Path) -> ControlData:
    """The control file and other control members of the .deb at `path` (deb(5))."""
    data = ControlData("")
    try:
        with _open_control_tar(path) as tar:
            for info in tar:
                name = deb.normalize(info.name)
                if not info.isfile() or "/" in name:
                    continue
                fobj = tar.extractfile(info)
                assert fobj is not None
                content = fobj.read()
                if name == "control":
                    data.control = content.decode("utf-8", "replace")
                else:
                    data.members[name] = (content, info.mode & 0o7777)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise WirtError(f"cannot read the control data of {path}: {exc}; delete it and retry") from None
    if not data.package:
        raise WirtError(f"{path} has no Package field in its control file; delete it and retry")
    return data


def split_fields(control: str) -> list[tuple[str, str]]:
    """(name, raw value) pairs of one control paragraph; continuation lines stay verbatim.

    Kept raw (not via deb822.iter_paragraphs) so that the ` .` blank-line markers of a
    Description survive into the status file unchanged (Policy §5.6.13).
    """
    pairs: list[tuple[str, str]] = []
    for line in control.splitlines():
        if not line.strip():
            if pairs:
                break  # only the first paragraph is the control file
            continue
        if line[0] in " \t" and pairs:
            name, value = pairs[-1]
            pairs[-1] = (name, value + "\n" + line)
            continue
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
    return pairs


def status_paragraph(ctl: ControlData, conffile_md5: dict[str, str]) -> str:
    """The package's paragraph of /var/lib/dpkg/status.

    dpkg writes `Package` first and `Status` second, and `Conffiles` before `Description`
    (lib/dpkg/dump.c); the control file's other fields keep their order.
    """
    fields = [(n, v) for n, v in split_fields(ctl.control) if n.lower() not in ("status", "conffiles")]
    out: list[str] = []
    conf = "".join(f"\n {p} {conffile_md5.get(p, 'newconffile')}" for p in ctl.conffiles())
    for name, value in fields:
        if name.lower() == "description" and conf:
            out.append(f"Conffiles:{conf}")
            conf = ""
        out.append(f"{name}: {value}" if value and not value.startswith("\n") else f"{name}:{value}")
        if name.lower() == "package":
            out.append(f"Status: {STATUS_INSTALLED}")
    if conf:
        out.append(f"Conffiles:{conf}")
    return "\n".join(out) + "\n"


def list_file(paths: Iterable[str]) -> str:
    """info/PKG.list: each shipped path as `/path` without a trailing slash; `/.` for the root."""
    out = []
    seen = set()
    for p in paths:
        p = "/" + deb.normalize(p).rstrip("/")
        p = "/." if p == "/" else p
        if p not in seen:
            seen.add(p)
            out.append(p)
    return "".join(line + "\n" for line in out)


def md5_file(path: Path) -> str:
    """Hex MD5 of a file (dpkg records conffile checksums as MD5)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- triggers --------------------------------------------------------------------------------


def trigger_interests(ctl: ControlData) -> list[tuple[str, bool]]:
    """(trigger name or path, await?) for each `interest*` directive of deb-triggers(5)."""
    text = ctl.members.get("triggers", (b"", 0))[0].decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in ("interest", "interest-await", "interest-noawait"):
            out.append((words[1], words[0] != "interest-noawait"))
    return out


def trigger_files(controls: Iterable[ControlData]) -> dict[str, str]:
    """The files of /var/lib/dpkg/triggers/ (name -> content): `File` and one per explicit trigger."""
    file_lines: list[str] = []
    explicit: dict[str, list[str]] = {}
    for ctl in controls:
        for name, wait in trigger_interests(ctl):
            who = ctl.info_name() + ("" if wait else "/noawait")
            if name.startswith("/"):
                file_lines.append(f"{name} {who}\n")
            else:
                explicit.setdefault(name, []).append(f"{who}\n")
    files = {"File": "".join(sorted(file_lines)), "Unincorp": ""}
    files.update({name: "".join(lines) for name, lines in explicit.items()})
    return files


# --- alternatives ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Alternative:
    """One `update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...`."""

    link: str
    name: str
    path: str
    priority: int
    slaves: tuple[tuple[str, str, str], ...] = ()  # (link, name, path)


def parse_alternatives(script: str) -> list[Alternative]:
    """The literal `update-alternatives --install` calls of a maintainer script.

    Calls with shell variables or substitutions are skipped: they cannot be known without
    running the script.
    """
    joined = re.sub(r"\\\n", " ", script)
    found = []
    for line in joined.splitlines():
        if "update-alternatives" not in line or "--install" not in line:
            continue
        try:
            words = shlex.split(line.split("#", 1)[0])
        except ValueError:
            continue
        if any(ch in w for w in words for ch in "$`"):
            continue
        try:
            i = words.index("--install")
            link, name, path, prio = words[i + 1 : i + 5]
            slaves = []
            j = i + 5
            while j + 3 < len(words) and words[j] == "--slave":
                slaves.append((words[j + 1], words[j + 2], words[j + 3]))
                j += 4
            found.append(Alternative(link, name, path, int(prio), tuple(slaves)))
        except (ValueError, IndexError):
            continue
    return found


def alternatives_admin(alt: Alternative, present: set[str]) -> str:
    """update-alternatives' administrative file for one installed choice (auto mode).

    Layout (update-alternatives(1), "FILES"): mode, master link, then `slave name` and
    `slave link` pairs, a blank line; then per choice its path, priority and one line per slave
    (the slave's path, empty when that slave is not provided); a final blank line.
    """
    lines = ["auto", alt.link]
    for link, name, _ in alt.slaves:
        lines += [name, link]
    lines += ["", alt.path, str(alt.priority)]
    lines += [path if path in present else "" for _, _, path in alt.slaves]
    lines.append("")
    return "\n".join(lines) + "\n"
