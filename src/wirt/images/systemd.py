"""What the root disk needs to boot with systemd as PID 1, done on the host without maintainer scripts.

The tree is unpacked without running postinst scripts (wirt.images.rootfs), so the things they
and `systemctl enable` would have done are done here:
- units are enabled by the symlinks `systemctl enable` makes from their [Install] section
  (systemd.unit(5) "[Install] Section Options": WantedBy=, RequiredBy=, Alias=, Also=);
- PAM's /etc/pam.d/common-* files, as `pam-auth-update` writes them with only the pam_unix
  profile (libpam-runtime's postinst), so login and sshd authenticate;
- wirt's parts: the guest agent as an early unit, eth0 by DHCP with systemd-networkd (the lease's
  DNS servers written to resolv.conf by wirt-resolv.service), and a root
  shell on the serial console (the console is reachable only by the VM's owner, like `wirt exec`).
/etc/machine-id is left empty: systemd then treats the first boot as first boot (machine-id(5))
and writes a new id, so every VM made from the image gets its own.
Users and groups of system services come from sysusers.d, written here as the packages'
postinsts would (`systemd-sysusers`); at boot systemd-sysusers.service is skipped with the other
ConditionNeedsUpdate= units (`mark_updated`).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from wirt.images.agent import AGENT_PATH

UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system")  # search order (systemd.unit(5) "Unit File Load Path")
# Units wirt enables beyond what is enabled statically in the packages (those not in the tree are skipped).
ENABLED = ("systemd-networkd.service", "wirt-agent.service", "wirt-resolv.service", "wirt-ssh-keygen.service",
           "ssh.service",
           # cloud-init's stages (its postinst enables them; cloud-init.target is pulled in at boot by
           # its generator only when ds-identify finds a datasource: a NoCloud seed disk)
           "cloud-init-main.service", "cloud-init-local.service", "cloud-init-network.service",
           "cloud-config.service", "cloud-final.service")
# cloud.cfg.d(5): look only for wirt's seed disk; make only an ed25519 host key (RSA is slow to make
# on the emulated hart) and keep one wirt-ssh-keygen.service already made.
CLOUD_CFG = """# wirt: the NoCloud seed disk (label cidata) is the only datasource
datasource_list: [NoCloud]
ssh_genkeytypes: [ed25519]
ssh_deletekeys: false
"""
# `Also=` units left alone: waiting for the network at boot only delays the agent.
NOT_ALSO = ("systemd-networkd-wait-online.service",)

AGENT_UNIT = f"""[Unit]
Description=wirt guest agent (wirt exec, the guest's address, clean power-off)
# As early as PID 1 can start it, so that `wirt exec` works while the rest of the system boots: it
# needs only /run and /dev/hvc0 (the initramfs mounted the root read-write).
DefaultDependencies=no
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart={AGENT_PATH}
Environment=HOME=/root LANG=C.UTF-8
WorkingDirectory=/
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
"""

# openssh-server's postinst makes the host keys; here each VM makes its own at its first boot (an
# image with keys would give every VM the same). ed25519 only: RSA key generation is slow on the
# emulated hart, and every current client speaks ed25519.
SSH_KEYGEN_UNIT = """[Unit]
Description=wirt: SSH host key of this VM (first boot)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service ssh.socket

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
"""
# sshd_config(5): the host key made above; no password logins (keys only, root included).
SSHD_DROPIN = """HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
"""

# systemd-system.conf(5): the emulated hart is slow, and slower on a busy host; the default 90 s
# for a device to appear or a service to start made udev-late devices (ttyS0) and networkd fail.
MANAGER_CONF = """[Manager]
DefaultDeviceTimeoutSec=900s
DefaultTimeoutStartSec=900s
"""
# Units never to start: /dev/hvc0 is the guest agent's channel, not a terminal, but
# systemd-getty-generator puts a getty on it as on any virtual console.
MASKED = ("serial-getty@hvc0.service",)

# systemd.network(5): DHCPv4 on the virtio NIC; no IPv6 autoconfiguration (passt's link is v4 here).
NETWORK = """[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
"""

# systemd-networkd leases eth0's address but writes no resolv.conf (systemd-resolved's job; the image
# has none), so the lease's DNS servers are copied by wirt-resolv. Ordered before network-online.target
# and waiting for the lease, so what runs after it (cloud-init's config and final stages: apt for
# `packages:`; services such as nginx) finds the network up and names resolving.
RESOLV_PATH = "/usr/libexec/wirt-resolv"
RESOLV_UNIT = f"""[Unit]
Description=wirt: DNS servers of the DHCP lease into /etc/resolv.conf
# No NIC (--net none): nothing to wait for (the initramfs loaded virtio_net, so eth0 is there if any).
ConditionPathExists=/sys/class/net/eth0
Wants=systemd-networkd.service
After=systemd-networkd.service
Before=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={RESOLV_PATH}

[Install]
WantedBy=multi-user.target network-online.target
"""
RESOLV_SCRIPT = r"""#!/bin/sh
# wirt-resolv: generated by wirt.images.systemd (wirt-resolv.service).
# usage: wirt-resolv [LEASE-DIR [RESOLV-CONF [SECONDS]]]   (default /run/systemd/netif/leases, /etc/resolv.conf, 180)
# Waits for a DHCP lease of systemd-networkd, then writes its DNS servers to RESOLV-CONF. Without a
# lease in time (no DHCP server on the link) or without DNS in it, the file is left as it is.
leases=${1:-/run/systemd/netif/leases}
conf=${2:-/etc/resolv.conf}
wait=${3:-180}
i=0
until ls "$leases"/* >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -gt "$wait" ] && exit 0
    sleep 1
done
dns=$(sed -n 's/^DNS=//p' "$leases"/* | tr ' ' '\n' | grep -v '^$' | sort -u)
[ -n "$dns" ] || exit 0
{
    echo "# DNS servers of the DHCP lease (wirt-resolv.service)"
    for d in $dns; do echo "nameserver $d"; done
} > "$conf.wirt-resolv" && mv -f "$conf.wirt-resolv" "$conf"
"""

# agetty(8): --autologin with a login program that is a shell needs --login-options, else it gets
# `-f root`. bash -l on the console, as wirt's minimal init gives.
GETTY_DROPIN = """[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --login-program /bin/bash --login-options -l --keep-baud 115200,57600,38400,9600 - $TERM
"""

# What `pam-auth-update` writes with only the "Unix authentication" profile (libpam-runtime).
PAM_COMMON = {
    "common-auth": "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n"
                   "auth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n",
    "common-account": "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\n"
                      "account\trequisite\t\t\tpam_deny.so\naccount\trequired\t\t\tpam_permit.so\n",
    "common-password": "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n"
                       "password\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n",
    "common-session": "session\t[default=1]\t\t\tpam_permit.so\nsession\trequisite\t\t\tpam_deny.so\n"
                      "session\trequired\t\t\tpam_permit.so\nsession\trequired\tpam_unix.so\n",
    "common-session-noninteractive": "session\t[default=1]\t\t\tpam_permit.so\nsession\trequisite\t\t\tpam_deny.so\n"
                                     "session\trequired\t\t\tpam_permit.so\nsession\trequired\tpam_unix.so\n",
}  # fmt: skip


def has_systemd(tree: Path) -> bool:
    """Whether the tree carries systemd as its init (systemd-sysv's /sbin/init link)."""
    return (tree / "usr/lib/systemd/systemd").is_file() and (tree / "usr/sbin/init").is_symlink()


def _unit_file(tree: Path, name: str) -> Path | None:
    """The unit file of `name` (a template's file for `foo@bar.service`)."""
    candidates = [name]
    if "@" in name:
        prefix, _, rest = name.partition("@")
        candidates.append(f"{prefix}@{rest[rest.index('.'):]}" if "." in rest else name)
    for d in UNIT_DIRS:
        for c in candidates:
            p = tree / d / c
            if p.is_file() or p.is_symlink():
                return p
    return None


def _install_section(path: Path) -> dict[str, list[str]]:
    """The [Install] settings of a unit file (space-separated lists, repeated keys joined)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Install" and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).extend(value.split())
    return out


def enable(tree: Path, name: str, _seen: set[str] | None = None) -> list[str]:
    """`systemctl --root=TREE enable NAME`: the [Install] symlinks in /etc/systemd/system; the
    links made (relative to the tree). A unit that is not in the tree is an error."""
    seen = _seen if _seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    path = _unit_file(tree, name)
    if path is None:
        raise FileNotFoundError(f"unit {name} is not in the tree")
    target = "/" + str(path.relative_to(tree))
    etc = tree / "etc/systemd/system"
    made = []
    install = _install_section(path)
    for key, suffix in (("WantedBy", ".wants"), ("RequiredBy", ".requires"), ("UpheldBy", ".upholds")):
        for by in install.get(key, []):
            made.append(_link(etc / f"{by}{suffix}" / name, target, tree))
    for alias in install.get("Alias", []):
        made.append(_link(etc / alias, target, tree))
    for also in install.get("Also", []):
        if also not in NOT_ALSO and _unit_file(tree, also) is not None:
            made += enable(tree, also, seen)
    return made


# dh_installsystemd's postinst snippet: `deb-systemd-helper enable 'UNIT'` (on a fresh install).
_POSTINST_ENABLE = re.compile(r"deb-systemd-helper enable '([^']+)'")


def postinst_units(postinst: str) -> list[str]:
    """The units a package's postinst enables on a fresh install (dh_installsystemd's snippet)."""
    return list(dict.fromkeys(_POSTINST_ENABLE.findall(postinst)))


def enable_packaged(tree: Path, postinsts: dict[str, str]) -> list[str]:
    """Enable what the postinst scripts of the packages a disk was asked to carry beyond the base
    image (`wirt image build --packages`) would: their services start at boot, as after `apt
    install` in the guest. (The base image's own postinst units, apt's and e2fsprogs' timers among
    them, stay as ENABLED chooses.) The links made."""
    made: list[str] = []
    for _pkg, script in sorted(postinsts.items()):
        for unit in postinst_units(script):
            if unit not in NOT_ALSO and _unit_file(tree, unit) is not None:
                made += enable(tree, unit)
    return made


def _link(at: Path, target: str, tree: Path) -> str:
    at.parent.mkdir(parents=True, exist_ok=True)
    if at.is_symlink() or at.exists():
        at.unlink()
    at.symlink_to(target)
    return str(at.relative_to(tree))


def seed_pam(tree: Path) -> None:
    """/etc/pam.d/common-* when libpam-runtime is in the tree and they are missing."""
    pamd = tree / "etc/pam.d"
    if not (tree / "usr/share/pam-configs").is_dir():
        return
    pamd.mkdir(parents=True, exist_ok=True)
    for name, text in PAM_COMMON.items():
        if not (pamd / name).exists():
            (pamd / name).write_text(text)
            os.chmod(pamd / name, 0o644)


def mark_updated(tree: Path) -> None:
    """/etc/.updated and /var/.updated as systemd-update-done writes them, for the tree's /usr: the
    first boot then skips the ConditionNeedsUpdate= units (hwdb rebuild, ldconfig, journal catalog),
    work the image build has nothing to gain from in every new VM (systemd-update-done.service(8))."""
    usr = tree / "usr"
    stamp = int(usr.stat().st_mtime) * 1_000_000_000  # whole seconds: exact in every file system
    os.utime(usr, ns=(stamp, stamp))
    text = ("# This file was created by wirt's image builder (as systemd-update-done would). The timestamp\n"
            "# below is the modification time of /usr for which /etc and /var are up to date.\n"
            f"TIMESTAMP_NSEC={stamp}\n")
    for d in ("etc", "var"):
        (tree / d / ".updated").write_text(text)


SYS_ID_MAX = 999  # login.defs SYS_UID_MAX: dynamic system ids are taken from here downwards


def _table(path: Path) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line] if path.is_file() else []


def apply_sysusers(tree: Path) -> list[str]:
    """Create the users and groups /usr/lib/sysusers.d declares (types u, u!, g, m of sysusers.d(5));
    ids "-" are allocated downwards from SYS_ID_MAX as systemd-sysusers does. Returns the names added."""
    etc = tree / "etc"
    passwd, group = _table(etc / "passwd"), _table(etc / "group")
    users = {u[0]: u for u in passwd}
    groups = {g[0]: g for g in group}
    used_uids = {int(u[2]) for u in passwd if u[2].isdigit()}
    used_gids = {int(g[2]) for g in group if g[2].isdigit()}
    added: list[str] = []
    new_passwd, new_group, members = [], [], []

    def free(used: set[int], want: int | None = None) -> int:
        if want is not None and want not in used:
            return want
        n = SYS_ID_MAX
        while n in used:
            n -= 1
        return n

    confd = tree / "usr/lib/sysusers.d"
    for conf in sorted(confd.glob("*.conf")) if confd.is_dir() else []:
        for raw in conf.read_text().splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            f = shlex.split(raw) + ["-"] * 6
            kind, name, ident, gecos, home, shell = f[:6]
            if kind == "m":
                members.append((name, ident))  # add user NAME to group IDENT
                continue
            if kind not in ("u", "u!", "g") or not name:
                continue
            uid_s, _, gid_s = ident.partition(":")
            if name not in groups and not (kind.startswith("u") and gid_s.isdigit()):  # u NAME UID:GID: no own group
                want = int(gid_s or uid_s) if (gid_s or uid_s).isdigit() else None
                gid = free(used_gids | (used_uids if kind.startswith("u") else set()), want)
                used_gids.add(gid)
                groups[name] = [name, "x", str(gid), ""]
                new_group.append(groups[name])
                added.append(f"group {name}")
            if kind.startswith("u") and name not in users:
                gid = int(groups[name][2]) if not gid_s or not gid_s.isdigit() else int(gid_s)
                uid = free(used_uids, int(uid_s) if uid_s.isdigit() else gid)
                used_uids.add(uid)
                users[name] = [name, "x", str(uid), str(gid), "" if gecos == "-" else gecos,
                               "/" if home == "-" else home, "/usr/sbin/nologin" if shell == "-" else shell]
                new_passwd.append(users[name])
                added.append(f"user {name}")
    for user, grp in members:
        if user in users and grp in groups:
            have = [m for m in groups[grp][3].split(",") if m]
            if user not in have:
                groups[grp][3] = ",".join([*have, user])
    _append(etc / "passwd", [":".join(u) for u in new_passwd])
    _append(etc / "shadow", [f"{u[0]}:!*:::::::" for u in new_passwd])
    (etc / "group").write_text("".join(":".join(g) + "\n" for g in groups.values()))
    gshadow = {g[0]: g for g in _table(etc / "gshadow")}
    for g in groups.values():
        gshadow.setdefault(g[0], [g[0], "!*", "", ""])[3] = g[3]
    if (etc / "gshadow").exists():
        (etc / "gshadow").write_text("".join(":".join(g) + "\n" for g in gshadow.values()))
    return added


def _append(path: Path, lines: list[str]) -> None:
    if lines and path.exists():
        with open(path, "a") as f:
            f.write("".join(line + "\n" for line in lines))


def seed_systemd(tree: Path) -> list[str]:
    """wirt's units and systemd's first-boot state; the enabled links (nothing without systemd)."""
    seed_pam(tree)
    if not has_systemd(tree):
        return []
    etc = tree / "etc"
    system = etc / "systemd/system"
    system.mkdir(parents=True, exist_ok=True)
    (system / "wirt-agent.service").write_text(AGENT_UNIT)
    (system / "wirt-resolv.service").write_text(RESOLV_UNIT)
    resolv = tree / RESOLV_PATH.lstrip("/")
    resolv.parent.mkdir(parents=True, exist_ok=True)
    resolv.write_text(RESOLV_SCRIPT)
    os.chmod(resolv, 0o755)
    (etc / "systemd/network").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network/20-wirt-eth0.network").write_text(NETWORK)
    (etc / "systemd/system.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/system.conf.d/wirt.conf").write_text(MANAGER_CONF)
    for unit in MASKED:
        _link(system / unit, "/dev/null", tree)  # `systemctl mask`
    dropin = system / "serial-getty@ttyS0.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "wirt-autologin.conf").write_text(GETTY_DROPIN)
    seed_ssh(tree)
    if (tree / "usr/bin/cloud-init").exists():
        (etc / "cloud/cloud.cfg.d").mkdir(parents=True, exist_ok=True)
        (etc / "cloud/cloud.cfg.d/90_wirt.cfg").write_text(CLOUD_CFG)
    apply_sysusers(tree)
    machine_id = etc / "machine-id"
    if machine_id.is_symlink():
        machine_id.unlink()
    machine_id.write_text("")  # first boot: systemd writes a fresh id (machine-id(5))
    os.chmod(machine_id, 0o444)
    # The boot target: no display, so multi-user (systemd.special(7)) rather than graphical.
    _link(system / "default.target", "/usr/lib/systemd/system/multi-user.target", tree)
    mark_updated(tree)
    made: list[str] = []
    for unit in ENABLED:
        if _unit_file(tree, unit) is not None:
            made += enable(tree, unit)
    return made


def seed_ssh(tree: Path) -> None:
    """openssh-server's postinst work: /etc/ssh/sshd_config from the package's template (ucf
    installs it), wirt's settings, and the first-boot host key unit. Nothing without sshd."""
    if not (tree / "usr/sbin/sshd").exists():
        return
    ssh = tree / "etc/ssh"
    template = tree / "usr/share/openssh/sshd_config"
    if not (ssh / "sshd_config").exists() and template.is_file():
        (ssh / "sshd_config").write_text(template.read_text())
    (ssh / "sshd_config.d").mkdir(parents=True, exist_ok=True)
    (ssh / "sshd_config.d/wirt.conf").write_text(SSHD_DROPIN)
    (tree / "etc/systemd/system/wirt-ssh-keygen.service").write_text(SSH_KEYGEN_UNIT)

