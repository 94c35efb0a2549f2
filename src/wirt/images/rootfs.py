"""Assemble a Debian root filesystem tree from .deb files, without dpkg and without maintainer scripts.

Steps (each explained where it is done):
1. choose the packages: every `Priority: required` package plus a few named ones, closed under
   Depends/Pre-Depends (wirt.images.depsolve);
2. unpack every data.tar into the tree (merged /usr: `/bin`, `/sbin`, `/lib` are symlinks into
   `/usr`, as trixie's base-files ships them), keeping modes and, when run as root, owners;
3. write dpkg's database so dpkg and apt see the packages as installed (wirt.images.dpkgdb);
4. do by hand the few things maintainer scripts would have done that matter for a working
   system: accounts from base-passwd's master files, update-alternatives links, /etc/shells,
   base-files' copies into /etc and /root, the CA bundle of ca-certificates;
5. add what a VM needs: /etc/fstab, hostname, hosts, resolv.conf for passt, apt sources naming
   the mirror the image was built from, the kernel's modules, the init helper, and what systemd
   as PID 1 needs (wirt.images.systemd).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wirt.errors import WirtError
from wirt.images import deb, dpkgdb, systemd, ui
from wirt.images.depsolve import Candidate, Universe, conflicts, resolve
from wirt.images.agent import AGENT, AGENT_PATH
from wirt.images.rootinit import INIT_PATH, ROOT_DEVICE, ROOT_INIT
from wirt.images.scripts import UDHCPC_SCRIPT

# Beyond `Priority: required`: a package manager that works, python3, module tools, networking
# tools, busybox-static for devmem/poweroff in wirt-init, CA certificates for https mirrors, and
# what a cloud-like guest boots with: systemd as init, udev, D-Bus (logind, hostnamectl) and
# e2fsprogs (resize2fs and systemd-growfs fill the disk; fsck) and an SSH server (`wirt ssh`).
DEFAULT_EXTRA = ("apt", "python3", "kmod", "iproute2", "procps", "busybox-static", "ca-certificates",
                 "systemd-sysv", "udev", "dbus", "e2fsprogs", "openssh-server")
HOSTNAME = "wirt"
# passt's gateway address (it leases 192.0.2.2/24 with gateway 192.0.2.1). passt forwards DNS
# sent there to the host's first resolver when started with `--dns-forward 192.0.2.1`
# (passt(1)); a static resolv.conf then works without a DHCP client in the guest.
PASST_DNS = "192.0.2.1"
_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32")  # top-level dirs that live in /usr


def package_set(universe: Universe, extra: Iterable[str] = DEFAULT_EXTRA) -> list[Candidate]:
    """Required packages plus `extra`, closed under Depends and Pre-Depends; conflicts refused."""
    roots = universe.by_priority("required") + [e for e in extra if e]
    if not roots:
        raise WirtError("the archive index lists no Priority: required packages; is it a Debian main archive?")
    chosen = resolve(universe, roots)
    problems = conflicts(chosen)
    if problems:
        raise WirtError("the package set is not installable together: " + "; ".join(problems[:5]))
    return chosen


# --- unpacking -------------------------------------------------------------------------------


@dataclass
class Unpacked:
    """What unpacking recorded: per package its control data and shipped paths; owners to set."""

    controls: list[dpkgdb.ControlData] = field(default_factory=list)
    paths: dict[str, list[str]] = field(default_factory=dict)  # info name -> member paths
    owners: dict[str, tuple[int, int]] = field(default_factory=dict)  # tree path -> (uid, gid) if not 0:0


def place(tree: Path, name: str) -> Path:
    """Where member `name` goes: its parent directories resolved through symlinks inside `tree`.

    dpkg follows directory symlinks on the target system (so `./bin/x` lands in /usr/bin with
    merged /usr); resolution never leaves the tree.
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise WirtError(f"refusing the archive member path {name!r} (empty or with '..')")
    resolved: list[str] = []
    for comp in parts[:-1]:
        resolved.append(comp)
        for _ in range(40):  # the kernel's MAXSYMLINKS
            here = tree.joinpath(*resolved)
            if not here.is_symlink():
                break
            target = os.readlink(here)
            base = [] if target.startswith("/") else resolved[:-1]
            new = posixpath.normpath("/".join([*base, target.lstrip("/")]))
            if new == ".." or new.startswith("../"):
                raise WirtError(f"symlink {'/'.join(resolved)} -> {target} points outside the root tree")
            resolved = [p for p in new.split("/") if p not in ("", ".")]
        else:
            raise WirtError(f"too many levels of symlinks under {name!r}")
    return tree.joinpath(*resolved, parts[-1])


def _clear(dest: Path) -> None:
    """Remove a non-directory at `dest` (dpkg replaces files and symlinks a package ships)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()


def unpack_deb(tree: Path, path: Path, out: Unpacked, dir_modes: dict[Path, int]) -> None:
    """Unpack one .deb into `tree` and record its control data and paths in `out`."""
    ctl = dpkgdb.read_control(path)
    names: list[str] = []
    as_root = os.geteuid() == 0
    try:
        with deb.open_data_tar(path) as tar:
            for info in tar:
                name = deb.normalize(info.name).rstrip("/")
                name = "" if name == "." else name
                names.append(name)
                if not name:
                    continue  # the package's root directory
                first = name.split("/", 1)[0]
                if first in _MERGED and not (tree / first).exists() and not (tree / first).is_symlink():
                    (tree / "usr" / first).mkdir(parents=True, exist_ok=True)
                    (tree / first).symlink_to(f"usr/{first}")
                dest = place(tree, name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if info.isdir():
                    if not dest.is_dir():
                        _clear(dest)
                        dest.mkdir()
                    dir_modes[dest] = info.mode & 0o7777
                elif info.issym():
                    if dest.is_dir() and not dest.is_symlink():
                        continue  # a real directory stays (e.g. merged-/usr dirs already set up)
                    _clear(dest)
                    os.symlink(info.linkname, dest)
                elif info.islnk():
                    _clear(dest)
                    os.link(place(tree, deb.normalize(info.linkname)), dest)
                elif info.isfile():
                    _clear(dest)
                    src = tar.extractfile(info)
                    assert src is not None
                    with open(dest, "wb") as f:
                        shutil.copyfileobj(src, f, 1 << 20)
                else:
                    ui.warn_once(f"special:{name}", f"{path.name}: skipping special file /{name}")
                    continue
                rel = str(dest.relative_to(tree))
                if (info.uid, info.gid) != (0, 0):
                    out.owners[rel] = (info.uid, info.gid)
                if as_root and not info.islnk():  # a hard link shares the already-owned inode
                    os.lchown(dest, info.uid, info.gid)
                if info.isfile():
                    os.chmod(dest, info.mode & 0o7777)  # after chown, which clears set-id bits
                if not info.isdir():
                    os.utime(dest, (info.mtime, info.mtime), follow_symlinks=False)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise WirtError(f"cannot unpack {path}: {exc}") from None
    out.controls.append(ctl)
    out.paths[ctl.info_name()] = names


def unpack_all(tree: Path, debs: list[Path], report: Callable[[int, str], None] | None = None) -> Unpacked:
    """Unpack `debs` in order (base-files first: it ships the merged-/usr symlinks)."""
    out = Unpacked()
    dir_modes: dict[Path, int] = {}
    tree.mkdir(parents=True, exist_ok=True)
    ordered = sorted(debs, key=lambda p: not p.name.startswith("base-files_"))
    for i, path in enumerate(ordered):
        if report:
            report(i, path.name)
        unpack_deb(tree, path, out, dir_modes)
    for d, mode in sorted(dir_modes.items(), key=lambda kv: -len(kv[0].parts)):
        os.chmod(d, mode)  # last: a read-only directory must not block the files inside it
    return out


# --- the dpkg database -----------------------------------------------------------------------


def write_dpkg_database(tree: Path, unpacked: Unpacked) -> None:
    """/var/lib/dpkg: status, info/*, triggers/*, and empty bookkeeping files dpkg expects."""
    admin = tree / "var/lib/dpkg"
    info = admin / "info"
    info.mkdir(parents=True, exist_ok=True)
    for sub in ("updates", "alternatives", "triggers", "parts"):
        (admin / sub).mkdir(exist_ok=True)
    paragraphs = []
    for ctl in sorted(unpacked.controls, key=lambda c: c.package):
        md5 = {}
        for conf in ctl.conffiles():
            target = place(tree, conf)
            if target.is_file():
                md5[conf] = dpkgdb.md5_file(target)
        paragraphs.append(dpkgdb.status_paragraph(ctl, md5))
        base = ctl.info_name()
        (info / f"{base}.list").write_text(dpkgdb.list_file(unpacked.paths.get(base, [])))
        if "md5sums" not in ctl.members:
            # dpkg computes the sums itself for a package that ships none (deb-md5sums(5)).
            ctl.members["md5sums"] = (_md5sums(tree, unpacked.paths.get(base, []), ctl.conffiles()), 0o644)
        for member in dpkgdb.INFO_MEMBERS:
            if member in ctl.members:
                data, mode = ctl.members[member]
                (info / f"{base}.{member}").write_bytes(data)
                os.chmod(info / f"{base}.{member}", mode or 0o644)
    (admin / "status").write_text("\n".join(paragraphs))
    (info / "format").write_text("1\n")  # the multiarch database layout (dpkg ≥ 1.16.2)
    for name in ("available", "diversions", "statoverride"):
        (admin / name).touch()
    for name, text in dpkgdb.trigger_files(unpacked.controls).items():
        (admin / "triggers" / name).write_text(text)


def _md5sums(tree: Path, paths: list[str], conffiles: list[str]) -> bytes:
    lines = []
    for p in paths:
        if not p or f"/{p}" in conffiles:
            continue
        target = place(tree, p)
        if target.is_file() and not target.is_symlink():
            lines.append(f"{dpkgdb.md5_file(target)}  {p}\n")
    return "".join(lines).encode()


# --- what maintainer scripts would have done ------------------------------------------------


def seed_accounts(tree: Path, owners: dict[str, tuple[int, int]] | None = None) -> None:
    """/etc/passwd, group, shadow, gshadow from base-passwd's master files (update-passwd(8)).

    Passwords move to the shadow files as `shadowconfig on` would leave them: `x` in passwd, the
    master's `*` (no password login, root included) in shadow.
    """
    masters = tree / "usr/share/base-passwd"
    try:
        passwd = (masters / "passwd.master").read_text().splitlines()
        group = (masters / "group.master").read_text().splitlines()
    except OSError:
        raise WirtError("base-passwd's master files are missing from the tree; is base-passwd in the set?") from None
    etc = tree / "etc"
    users = [line.split(":") for line in passwd if line.count(":") == 6]
    groups = [line.split(":") for line in group if line.count(":") == 3]
    _write(etc / "passwd", "".join(":".join([u[0], "x", *u[2:]]) + "\n" for u in users))
    shadow_gid = _gid(groups, "shadow")
    _write(etc / "shadow", "".join(f"{u[0]}:{u[1]}::0:99999:7:::\n" for u in users), 0o640, gid=shadow_gid)
    _write(etc / "group", "".join(":".join([g[0], "x", *g[2:]]) + "\n" for g in groups))
    _write(etc / "gshadow", "".join(f"{g[0]}:{g[1]}::{g[3]}\n" for g in groups), 0o640, gid=shadow_gid)
    if owners is not None and shadow_gid:
        owners["etc/shadow"] = owners["etc/gshadow"] = (0, shadow_gid)  # for a non-root build (ext4.fix_owners)


def _gid(groups: list[list[str]], name: str) -> int:
    return next((int(g[2]) for g in groups if g[0] == name), 0)


def _write(path: Path, text: str, mode: int = 0o644, *, gid: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, 0, gid)


def install_alternatives(tree: Path, unpacked: Unpacked) -> list[str]:
    """The update-alternatives links postinst scripts create (highest priority wins); their names."""
    best: dict[str, dpkgdb.Alternative] = {}
    for ctl in unpacked.controls:
        script = ctl.members.get("postinst", (b"", 0))[0].decode("utf-8", "replace")
        for alt in dpkgdb.parse_alternatives(script):
            if place(tree, alt.path).exists() and (alt.name not in best or alt.priority > best[alt.name].priority):
                best[alt.name] = alt
    etc_alt = tree / "etc/alternatives"
    admin = tree / "var/lib/dpkg/alternatives"
    etc_alt.mkdir(parents=True, exist_ok=True)
    admin.mkdir(parents=True, exist_ok=True)
    for name, alt in sorted(best.items()):
        present = set()
        for link, sname, path in ((alt.link, alt.name, alt.path), *alt.slaves):
            if not place(tree, path).exists():
                continue  # update-alternatives skips slaves whose target is not installed
            present.add(path)
            _symlink(etc_alt / sname, path)
            if not place(tree, link).exists() or place(tree, link).is_symlink():
                _symlink(place(tree, link), f"/etc/alternatives/{sname}")
        (admin / name).write_text(dpkgdb.alternatives_admin(alt, present))
    return sorted(best)


def _symlink(at: Path, target: str) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    if at.is_symlink() or at.exists():
        at.unlink()
    at.symlink_to(target)


def seed_shells(tree: Path) -> None:
    """/etc/shells as debianutils' update-shells builds it (with both merged-/usr spellings)."""
    base = tree / "usr/share/debianutils/shells"
    if not base.is_file():
        return
    lines = [ln.strip() for ln in base.read_text().splitlines()]
    shells_d = tree / "usr/share/debianutils/shells.d"
    for part in sorted(shells_d.iterdir()) if shells_d.is_dir() else []:
        lines += [ln.strip() for ln in part.read_text().splitlines()]
    out: list[str] = []
    for ln in lines:
        if not ln or ln.startswith("#"):
            continue
        variants = [ln]
        if ln.startswith(("/bin/", "/sbin/")):
            variants.append("/usr" + ln)
        elif ln.startswith(("/usr/bin/", "/usr/sbin/")):
            variants.append(ln[4:])
        out += [v for v in variants if v not in out]
    _write(tree / "etc/shells", "# /etc/shells: valid login shells\n" + "".join(f"{s}\n" for s in out))


def seed_base_files(tree: Path, owners: dict[str, tuple[int, int]] | None = None) -> None:
    """What base-files' postinst installs: /etc/profile, /etc/motd, root's dot files, standard dirs."""
    share = tree / "usr/share/base-files"
    for src, dst in (("profile", "etc/profile"), ("motd", "etc/motd"),
                     ("dot.profile", "root/.profile"), ("dot.bashrc", "root/.bashrc")):  # fmt: skip
        if (share / src).is_file() and not (tree / dst).exists():
            shutil.copy2(share / src, tree / dst)
    for d in ("mnt", "srv", "opt", "etc/opt", "var/opt", "media", "usr/local/bin", "usr/local/sbin",
              "usr/local/lib", "usr/local/share/man", "usr/local/include", "usr/local/src", "usr/local/games"):  # fmt: skip
        (tree / d).mkdir(parents=True, exist_ok=True)
    mail = tree / "var/mail"
    mail.mkdir(parents=True, exist_ok=True)
    os.chmod(mail, 0o2775)
    if os.geteuid() == 0:
        os.chown(mail, 0, 8)  # group mail (base-passwd's fixed gid 8)
    if owners is not None:
        owners["var/mail"] = (0, 8)
    _symlink(tree / "var/spool/mail", "../mail")
    if (tree / "etc/dpkg/origins/debian").exists():
        _symlink(tree / "etc/dpkg/origins/default", "debian")
    # /var/run and /var/lock point into /run, a tmpfs at boot (FHS 3.0 §5.13, Debian Policy §9.3.2).
    for old, target in (("var/run", "/run"), ("var/lock", "/run/lock")):
        path = tree / old
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
        if not path.exists():
            _symlink(path, target)
    _symlink(tree / "etc/mtab", "../proc/self/mounts")


def seed_ca_certificates(tree: Path) -> int:
    """/etc/ca-certificates.conf and the bundle /etc/ssl/certs/ca-certificates.crt.

    update-ca-certificates(8) would build the bundle from every certificate listed (all enabled
    by default); OpenSSL's default CA file /usr/lib/ssl/cert.pem points at the bundle.
    """
    root = tree / "usr/share/ca-certificates"
    if not root.is_dir():
        return 0
    certs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.crt"))
    _write(tree / "etc/ca-certificates.conf",
           "# Generated by wirt (as update-ca-certificates would on install).\n"
           + "".join(f"{c}\n" for c in certs))  # fmt: skip
    bundle = "".join((root / c).read_text().rstrip("\n") + "\n" for c in certs)
    _write(tree / "etc/ssl/certs/ca-certificates.crt", bundle)
    for c in certs:
        _symlink(tree / "etc/ssl/certs" / (Path(c).stem + ".pem"), f"/usr/share/ca-certificates/{c}")
    return len(certs)


# --- what a VM needs -------------------------------------------------------------------------


def seed_system(tree: Path, *, mirror: str, suite: str, components: str = "main") -> None:
    """fstab, hostname, hosts, resolv.conf, timezone, apt sources, the init helper and the guest agent."""
    etc = tree / "etc"
    # x-systemd.growfs: systemd-growfs grows the root file system to its disk at boot (systemd.mount(5));
    # the minimal init runs resize2fs for the same.
    _write(etc / "fstab", f"# <file system> <mount point> <type> <options> <dump> <pass>\n"
                          f"{ROOT_DEVICE} / ext4 rw,errors=remount-ro,x-systemd.growfs 0 1\n")  # fmt: skip
    _write(etc / "hostname", f"{HOSTNAME}\n")
    _write(etc / "hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n\n"
                          "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")  # fmt: skip
    _write(etc / "resolv.conf", f"# replaced at boot by the DHCP lease's DNS servers (udhcpc; under systemd wirt-resolv)\n"
                                f"nameserver {PASST_DNS}\n")  # fmt: skip
    # tzdata's postinst default: UTC.
    if (tree / "usr/share/zoneinfo/Etc/UTC").exists():
        _symlink(etc / "localtime", "/usr/share/zoneinfo/Etc/UTC")
        _write(etc / "timezone", "Etc/UTC\n")
    # apt sources in trixie's default deb822 format (sources.list(5)); the mirror the image came from.
    _write(etc / "apt/sources.list.d/debian.sources",
           f"Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: {components}\n"
           "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")  # fmt: skip
    for d in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    init = tree / INIT_PATH.lstrip("/")
    init.parent.mkdir(parents=True, exist_ok=True)
    _write(init, ROOT_INIT, 0o755)
    # The guest agent (wirt exec) and the DHCP script it runs busybox udhcpc with.
    _write(tree / AGENT_PATH.lstrip("/"), AGENT, 0o755)
    (etc / "udhcpc").mkdir(parents=True, exist_ok=True)
    _write(etc / "udhcpc/default.script", UDHCPC_SCRIPT, 0o755)
    for d, mode in (("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755), ("tmp", 0o1777), ("root", 0o700)):
        (tree / d).mkdir(exist_ok=True)
        os.chmod(tree / d, mode)


def finish_tree(tree: Path, unpacked: Unpacked, *, mirror: str, suite: str,
                services_of: Iterable[str] = ()) -> dict[str, object]:
    """Steps 3–5 except the kernel modules; returns a summary for the build log. The units the
    postinst scripts of the packages `services_of` enable are enabled too (systemd.enable_packaged)."""
    write_dpkg_database(tree, unpacked)
    seed_accounts(tree, unpacked.owners)
    alternatives = install_alternatives(tree, unpacked)
    seed_shells(tree)
    seed_base_files(tree, unpacked.owners)
    certs = seed_ca_certificates(tree)
    seed_system(tree, mirror=mirror, suite=suite)
    units = systemd.seed_systemd(tree)
    wanted = set(services_of)
    if wanted and systemd.has_systemd(tree):
        units += systemd.enable_packaged(tree, {
            ctl.field("Package"): ctl.members.get("postinst", (b"", 0))[0].decode("utf-8", "replace")
            for ctl in unpacked.controls if ctl.field("Package") in wanted})
    return {"packages": len(unpacked.controls), "alternatives": alternatives, "ca_certificates": certs,
            "enabled_units": units}
