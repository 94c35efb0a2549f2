"""The VM configuration (`vm.toml`) as validated, versioned dataclasses.

The same dataclasses serve the CLI, the Python API and the VM process: `VMConfig.from_dict`
checks every value and raises a one-line `WirtError` naming the file, the key and the fix;
`VMConfig.to_dict` gives plain TOML-ready data. DESIGN.md "A VM is files" lays out the store.

    schema_version = 1
    name = "web"
    uuid = "…"
    created = "2026-01-01T00:00:00Z"
    cpus = 1
    memory = "512M"
    image = "debian"             # debian (root disk) | initramfs | none (see IMAGES)
    cpu_affinity = []            # host CPUs the VM process may run on ([] = any)
    [network]
    mode = "user"                # user | tap:IF | socket:HUB | none
    mac = "52:54:00:12:34:56"    # default: derived from the uuid (wirt.netback.mac.vm_mac)
    ports = ["8080:80", "5353:53/udp"]   # on 127.0.0.1; "0.0.0.0:8080:80" on every interface
    ssh_port = 40022             # 127.0.0.1:40022 -> guest port 22, for `wirt ssh` (0 or absent: none)
    [boot]
    append = ""                  # extra kernel command-line arguments
    root = true                  # boot disk 0 as the root filesystem (image "debian")
    init = "systemd"             # PID 1 of the root disk: systemd | minimal (wirt's own init)
    hostname = "web"             # the guest's host name (default: the VM's name)
    [[disks]]
    path = "disk0.qcow2"         # relative to the VM directory, or absolute
    format = "qcow2"
    size = "8G"
    read_only = false
    [[mounts]]                   # a host folder in the guest (virtio-9p, mounted at boot)
    host = "/home/me/src"        # absolute; must be named on the command line (its grant)
    guest = "/mnt/src"
    read_only = false
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from wirt.errors import WirtError
from wirt.images.rootinit import INITS  # PID 1 of a root-disk VM: systemd | minimal
from wirt.units import parse_size

__all__ = [
    "SCHEMA_VERSION", "IMAGES", "VMConfig", "DiskConfig", "MountConfig", "parse_mount", "NetworkConfig", "PortForward", "BootConfig",
    "validate_name", "validate_hostname", "default_hostname", "INITS", "parse_port", "parse_net_mode", "random_mac", "format_size",
    "MIN_MEMORY", "MAX_MEMORY", "MIN_DISK", "MAX_DISK", "MAX_CPUS", "MAX_NAME",
    "Option", "CREATE_OPTIONS", "SET_OPTIONS", "check_options", "options_json_schema", "create_arguments",
    "set_arguments",
]

SCHEMA_VERSION = 1
MAX_NAME = 64                 # fits a hostname label (RFC 1123: 63) and a cgroup name comfortably
MIN_MEMORY = 16 << 20         # Debian's kernel and the busybox initramfs need about this much
MAX_MEMORY = 1 << 40          # far beyond any host we run on; anything larger is a typo
MIN_DISK = 1 << 20
MAX_DISK = 64 << 40           # qcow2 with 64 KiB clusters addresses 64 TiB comfortably
MAX_CPUS = 64
NET_MODES = ("user", "tap:IF", "socket:HUB", "none")
#: Guest images a VM can be created from.
IMAGES = {
    "debian": "Debian trixie root disk (`wirt image build`) as a qcow2 overlay on disk 0, booted from it",
    "initramfs": "Debian's kernel with wirt's busybox initramfs only (fast to boot; disks start blank)",
    "disk": "a root disk of your own (`wirt create --image PATH`, qcow2 or raw) as a qcow2 overlay on disk 0, "
            "booted with wirt's kernel and initramfs",
    "none": "no default guest: boot.firmware (and kernel/initrd) must be given",
}
DISK_FORMATS = ("qcow2", "raw")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 1123 host name label
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")  # Linux IFNAMSIZ is 16 with the NUL
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class _Where:
    """Names the file for error messages ('vm.toml' or a full path)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def at(self, key: str) -> str:
        """'FILE: key', or just 'key' for values that came from arguments (source "")."""
        return f"{self.source}: {key}" if self.source else key

    def error(self, key: str, problem: str, fix: str) -> WirtError:
        return WirtError(f"{self.at(key)}: {problem}; {fix}")


def validate_name(name: object, what: str = "VM name") -> str:
    """Check a VM name (it becomes a directory name, a cgroup name and a hostname), or with
    `what` another name that becomes a directory name (a snapshot's).

    Refused: non-strings, empty, longer than MAX_NAME, '/' or '..', a leading dot or dash,
    control characters, and anything outside letters, digits, '.', '_' and '-'.
    """
    if not isinstance(name, str):
        raise WirtError(f"{what} must be text, not {type(name).__name__}")
    hint = "use letters, digits, '.', '_' and '-', starting with a letter or digit (e.g. web-1)"
    if not name:
        raise WirtError(f"{what} is empty; {hint}")
    if len(name) > MAX_NAME:
        raise WirtError(f"{what} {name[:20]!r}... is {len(name)} characters long; use at most {MAX_NAME}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise WirtError(f"{what} {name!r} contains control characters; {hint}")
    if "/" in name or "\\" in name:
        raise WirtError(f"{what} {name!r} contains a path separator; {hint}")
    if ".." in name:
        raise WirtError(f"{what} {name!r} contains '..'; {hint}")
    if name.startswith("."):
        raise WirtError(f"{what} {name!r} starts with a dot; {hint}")
    if not _NAME_RE.fullmatch(name):
        raise WirtError(f"{what} {name!r} is not allowed; {hint}")
    return name


def validate_hostname(name: object) -> str:
    """Check a guest host name: dot-separated RFC 1123 labels (letters, digits, inner '-'), at most
    253 characters."""
    if not isinstance(name, str) or not name:
        raise WirtError(f"hostname {name!r} is empty or not text; give e.g. web-1")
    if len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise WirtError(f"hostname {name!r} is not a host name; use letters, digits and inner '-' "
                        "(dot-separated labels of at most 63), e.g. web-1")
    return name


def default_hostname(vm_name: str) -> str:
    """The guest's host name for a VM that names none: the VM's name made a valid label."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", vm_name)[:63].strip("-")
    return label or "wirt"


def format_size(n: int) -> str:
    """Bytes as the shortest exact size string: 536870912 -> '512M' (parse_size reads it back)."""
    for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def random_mac() -> str:
    """A random unicast MAC in QEMU's locally used 52:54:00 range."""
    r = random.SystemRandom()
    return "52:54:00:" + ":".join(f"{r.randrange(256):02x}" for _ in range(3))


def _size(where: _Where, key: str, value: object, lo: int, hi: int, example: str) -> int:
    """A size given as an integer (bytes) or a string such as '512M', within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise where.error(key, f"{value!r} is not a size", f"write a size such as {example!r}")
    if isinstance(value, str):
        try:
            n = parse_size(value)
        except WirtError:
            raise where.error(key, f"{value!r} is not a size", f"write a size such as {example!r}") from None
    else:
        n = value
    if n < lo:
        raise where.error(key, f"{value!r} is too small", f"use at least {format_size(lo)}")
    if n > hi:
        raise where.error(key, f"{value!r} is too large", f"use at most {format_size(hi)}")
    return n


LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PortForward:
    """Host port → guest port forwarding of the user-mode network ('8080:80', '53:53/udp',
    '0.0.0.0:8080:80'). The host side listens on `address`: the loopback unless one is given."""

    host: int
    guest: int
    protocol: str = "tcp"
    address: str = LOOPBACK

    def __str__(self) -> str:
        addr = "" if self.address == LOOPBACK else f"{self.address}:"
        return f"{addr}{self.host}:{self.guest}" + ("/udp" if self.protocol == "udp" else "")

    def backend_spec(self) -> str:
        """The explicit form wirt.netback.passt.parse_port_forward reads: ADDR:HOST:GUEST/PROTO."""
        return f"{self.address}:{self.host}:{self.guest}/{self.protocol}"


def parse_port(text: object, where: str = "--port") -> PortForward:
    """'[ADDR:]H:G' or with '/udp' (or '/tcp') -> PortForward; ports 1..65535; ADDR an IPv4 address
    (default 127.0.0.1: reachable from this host only; 0.0.0.0 listens on every interface)."""
    fix = "write [ADDR:]HOST:GUEST[/udp], e.g. 8080:80 or 0.0.0.0:8080:80 to expose it"
    if not isinstance(text, str):
        raise WirtError(f"{where}: {text!r} is not a port forwarding; {fix}")
    m = re.fullmatch(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?", text.strip())
    if not m:
        raise WirtError(f"{where}: {text!r} is not a port forwarding; {fix}")
    addr = m.group(1) or LOOPBACK
    if any(int(part) > 255 for part in addr.split(".")):
        raise WirtError(f"{where}: {addr} in {text!r} is not an IPv4 address; {fix}")
    host, guest = int(m.group(2)), int(m.group(3))
    for p in (host, guest):
        if not 1 <= p <= 65535:
            raise WirtError(f"{where}: port {p} in {text!r} is out of range; use 1 to 65535")
    return PortForward(host, guest, m.group(4) or "tcp", addr)


def parse_net_mode(text: object, where: str = "--net") -> str:
    """'user', 'none', 'tap:IFNAME' or 'socket:HUB' (HUB: a hub name or a socket path)."""
    fix = "use user, none, tap:IFNAME or socket:HUB"
    if not isinstance(text, str):
        raise WirtError(f"{where}: {text!r} is not a network mode; {fix}")
    if text in ("user", "none"):
        return text
    kind, _, arg = text.partition(":")
    if kind == "tap":
        if not _IFNAME_RE.fullmatch(arg):
            raise WirtError(f"{where}: {text!r}: bad interface name; give 1-15 letters, digits or ._:- (e.g. tap:tap0)")
        return text
    if kind == "socket":
        if not arg or "\0" in arg or any(ord(c) < 0x20 for c in arg):
            raise WirtError(f"{where}: {text!r}: the hub name is empty or has control characters; e.g. socket:lab")
        return text
    raise WirtError(f"{where}: {text!r} is not a network mode; {fix}")


@dataclass
class DiskConfig:
    """One virtual disk. `path` is relative to the VM directory unless absolute."""

    path: str
    format: str = "qcow2"
    size: int = 8 << 30
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "size": format_size(self.size),
                "read_only": self.read_only}

    @classmethod
    def from_dict(cls, d: object, where: _Where, key: str) -> DiskConfig:
        if not isinstance(d, dict):
            raise where.error(key, "is not a table", "write it as [[disks]] with path, format, size")
        _unknown(where, key, d, {"path", "format", "size", "read_only"})
        path = d.get("path")
        if not isinstance(path, str) or not path or "\0" in path:
            raise where.error(f"{key}.path", f"{path!r} is not a file path", "give the disk file, e.g. \"disk0.qcow2\"")
        fmt = d.get("format", "qcow2")
        if fmt not in DISK_FORMATS:
            raise where.error(f"{key}.format", f"{fmt!r} is not a disk format", "use \"qcow2\" or \"raw\"")
        size = _size(where, f"{key}.size", d.get("size", "8G"), MIN_DISK, MAX_DISK, "8G")
        ro = d.get("read_only", False)
        if not isinstance(ro, bool):
            raise where.error(f"{key}.read_only", f"{ro!r} is not a boolean", "write true or false")
        return cls(path, fmt, size, ro)


_GUEST_DIR_RE = re.compile(r"(/[A-Za-z0-9._+@-]+)+")
MAX_GUEST_DIR = 200  # the 9p mount tag (GUESTDIR or GUESTDIR:ro) must stay under 255 bytes


def check_guest_dir(text: object, where: str) -> str:
    """An absolute guest path made of plain names (no spaces, ':', '..' or '/' alone): it becomes
    the 9p mount tag the guest's /init reads (wirt.images.scripts.MOUNTS)."""
    fix = "give an absolute path of letters, digits and ._+@-, e.g. /mnt/src"
    if not isinstance(text, str) or not _GUEST_DIR_RE.fullmatch(text) or len(text) > MAX_GUEST_DIR:
        raise WirtError(f"{where}: {text!r} is not a guest folder; {fix}")
    if any(part in (".", "..") for part in text.split("/")):
        raise WirtError(f"{where}: {text!r} has a . or .. component; {fix}")
    return text


@dataclass
class MountConfig:
    """A host folder shared with the guest at `guest` (virtio-9p; docs/cli.md "Host folders")."""

    host: str
    guest: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.host}:{self.guest}" + (":ro" if self.read_only else "")

    @property
    def tag(self) -> str:
        """The 9p mount tag: the guest folder, with ":ro" for a read-only share."""
        return self.guest + (":ro" if self.read_only else "")

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "guest": self.guest, "read_only": self.read_only}

    @classmethod
    def from_dict(cls, d: object, where: _Where, key: str) -> MountConfig:
        if not isinstance(d, dict):
            raise where.error(key, "is not a table", "write it as [[mounts]] with host, guest, read_only")
        _unknown(where, key, d, {"host", "guest", "read_only"})
        host = d.get("host")
        if not isinstance(host, str) or not os.path.isabs(host) or "\0" in host:
            raise where.error(f"{key}.host", f"{host!r} is not an absolute host folder", "write e.g. \"/home/me/src\"")
        try:
            guest = check_guest_dir(d.get("guest"), where.at(f"{key}.guest"))
        except WirtError as exc:
            raise WirtError(str(exc)) from None
        ro = d.get("read_only", False)
        if not isinstance(ro, bool):
            raise where.error(f"{key}.read_only", f"{ro!r} is not a boolean", "write true or false")
        return cls(os.path.normpath(host), guest, ro)


def parse_mount(text: object, where: str = "--mount") -> MountConfig:
    """'HOSTDIR:GUESTDIR[:ro]' (or ':rw') -> MountConfig; HOSTDIR made absolute (not checked to exist)."""
    fix = "write HOSTDIR:GUESTDIR[:ro], e.g. ./src:/mnt/src or /data:/data:ro"
    if not isinstance(text, str) or "\0" in text:
        raise WirtError(f"{where}: {text!r} is not a mount; {fix}")
    body, ro = text, False
    if text.endswith((":ro", ":rw")):
        body, ro = text[:-3], text.endswith(":ro")
    host, sep, guest = body.rpartition(":")
    if not sep or not host:
        raise WirtError(f"{where}: {text!r} is not a mount; {fix}")
    return MountConfig(os.path.abspath(os.path.expanduser(host)), check_guest_dir(guest, where), ro)


@dataclass
class NetworkConfig:
    """The VM's network card: backend mode, MAC address and port forwardings (user mode)."""

    mode: str = "user"
    mac: str = field(default_factory=random_mac)
    ports: list[PortForward] = field(default_factory=list)
    ssh_port: int = 0  # host port on 127.0.0.1 forwarded to the guest's 22 (`wirt ssh`); 0: none

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "mac": self.mac, "ports": [str(p) for p in self.ports]}
        if self.ssh_port:
            d["ssh_port"] = self.ssh_port
        return d

    @classmethod
    def from_dict(cls, d: object, where: _Where) -> NetworkConfig:
        if not isinstance(d, dict):
            raise where.error("network", "is not a table", "write it as a [network] section")
        _unknown(where, "network", d, {"mode", "mac", "ports", "ssh_port"})
        try:
            mode = parse_net_mode(d.get("mode", "user"), where.at("network.mode"))
        except WirtError as exc:
            raise WirtError(str(exc)) from None
        mac = d.get("mac")
        if mac is None:
            mac = random_mac()
        if not isinstance(mac, str) or not _MAC_RE.fullmatch(mac.lower()):
            raise where.error("network.mac", f"{mac!r} is not a MAC address", "write six hex pairs, e.g. \"52:54:00:12:34:56\"")
        mac = mac.lower()
        if int(mac[:2], 16) & 1:
            raise where.error("network.mac", f"{mac} is a multicast address", "use a unicast one (even first byte), e.g. 52:54:00:…")
        raw_ports = d.get("ports", [])
        if not isinstance(raw_ports, list):
            raise where.error("network.ports", f"{raw_ports!r} is not a list", "write [\"8080:80\"]")
        ports = [parse_port(p, where.at(f"network.ports[{i}]")) for i, p in enumerate(raw_ports)]
        check_ports(ports, where.at("network.ports"))
        if ports and mode != "user":
            raise where.error("network.ports", f"port forwarding needs mode \"user\", not {mode!r}",
                              "remove the ports or set mode = \"user\"")
        ssh_port = d.get("ssh_port", 0)
        if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 0 <= ssh_port <= 65535:
            raise where.error("network.ssh_port", f"{ssh_port!r} is not a port", "write a number from 1 to 65535, or 0 for none")
        if ssh_port and mode != "user":
            raise where.error("network.ssh_port", f"the SSH forward needs mode \"user\", not {mode!r}", "remove ssh_port")
        if ssh_port and any(p.host == ssh_port and p.protocol == "tcp" for p in ports):
            raise where.error("network.ssh_port", f"host port {ssh_port} is also in ports", "keep one of them")
        return cls(mode, mac, ports, ssh_port)


def check_ports(ports: list[PortForward], where: str) -> None:
    """Refuse two forwardings of one host port and protocol."""
    seen: set[tuple[int, str]] = set()
    for p in ports:
        if (p.host, p.protocol) in seen:
            raise WirtError(f"{where}: host port {p.host}/{p.protocol} is forwarded twice; keep one")
        seen.add((p.host, p.protocol))


def check_mounts(mounts: list[MountConfig], where: str) -> None:
    """Refuse two shares at one guest folder."""
    seen: set[str] = set()
    for m in mounts:
        if m.guest in seen:
            raise WirtError(f"{where}: guest folder {m.guest} is mounted twice; keep one")
        seen.add(m.guest)


@dataclass
class BootConfig:
    """How the VM boots: the image's kernel/initrd/firmware unless given, plus extra arguments;
    `root`: disk 0 is the root filesystem, booted with `init` (systemd, or wirt's minimal init:
    wirt.images.rootinit.root_cmdline); `hostname`: the guest's name ("" = the VM's name)."""

    append: str = ""
    kernel: str = ""
    initrd: str = ""
    firmware: str = ""
    root: bool = False
    init: str = "minimal"  # what VMs made before systemd images boot with; `VM.create` says systemd
    hostname: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v or k == "append"}

    @classmethod
    def from_dict(cls, d: object, where: _Where) -> BootConfig:
        if not isinstance(d, dict):
            raise where.error("boot", "is not a table", "write it as a [boot] section")
        _unknown(where, "boot", d, {"append", "kernel", "initrd", "firmware", "root", "init", "hostname"})
        vals: dict[str, Any] = {}
        for k in ("append", "kernel", "initrd", "firmware"):
            v = d.get(k, "")
            if not isinstance(v, str) or "\0" in v or "\n" in v:
                raise where.error(f"boot.{k}", f"{v!r} is not a one-line string", f"write boot.{k} as a quoted string")
            vals[k] = v
        root = d.get("root", False)
        if not isinstance(root, bool):
            raise where.error("boot.root", f"{root!r} is not a boolean", "write true or false")
        init = d.get("init", "minimal")
        if init not in INITS:
            raise where.error("boot.init", f"{init!r} is not an init", "write \"systemd\" or \"minimal\"")
        hostname = d.get("hostname", "")
        if hostname:
            try:
                validate_hostname(hostname)
            except WirtError as exc:
                raise where.error("boot.hostname", str(exc).removeprefix("hostname "), "write e.g. \"web-1\"") from None
        return cls(**vals, root=root, init=init, hostname=hostname)


@dataclass
class VMConfig:
    """Everything `vm.toml` holds. Construct with `VMConfig.new(...)` for defaults and checks."""

    name: str
    uuid: str
    created: str
    cpus: int = 1
    memory: int = 512 << 20
    image: str = "debian"
    disks: list[DiskConfig] = field(default_factory=list)
    mounts: list[MountConfig] = field(default_factory=list)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    boot: BootConfig = field(default_factory=BootConfig)
    cpu_affinity: list[int] = field(default_factory=list)
    jit: str = "on"   # the CPU's translation tier: "on", "off" or "force" (docs/cpu.md)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def new(cls, name: str, *, cpus: int = 1, memory: int | str = "512M", image: str = "debian",
            net: str = "user", ports: list[str] | None = None, mac: str | None = None,
            cpu_affinity: list[int] | None = None, append: str = "") -> VMConfig:
        """A fresh configuration (new uuid, creation time now), validated like a loaded file.
        Without `mac`, the MAC address is derived from the new uuid (stable, see wirt.netback.mac)."""
        from wirt.netback.mac import format_mac, vm_mac

        uid = str(uuidlib.uuid4())
        mac = mac or format_mac(vm_mac(uid))
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "name": name, "uuid": uid,
            "created": now_iso(), "cpus": cpus, "memory": memory, "image": image,
            "network": {"mode": net, "ports": list(ports or [])} | ({"mac": mac} if mac else {}),
            "boot": {"append": append}, "cpu_affinity": list(cpu_affinity or []), "disks": [],
        }
        validate_name(name)
        return cls.from_dict(d, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for tomli_w, in the documented key order."""
        return {
            "schema_version": self.schema_version, "name": self.name, "uuid": self.uuid,
            "created": self.created, "cpus": self.cpus, "memory": format_size(self.memory),
            "image": self.image, "cpu_affinity": list(self.cpu_affinity), "jit": self.jit,
            "network": self.network.to_dict(), "boot": self.boot.to_dict(),
            "disks": [dk.to_dict() for dk in self.disks],
            "mounts": [mt.to_dict() for mt in self.mounts],
        }

    @classmethod
    def from_dict(cls, d: object, source: str = "vm.toml") -> VMConfig:
        """Validate plain data (parsed TOML) into a VMConfig; one-line WirtError on the first problem.

        `source` names the file in messages ("" when the values came from arguments)."""
        where = _Where(source)
        if not isinstance(d, dict):
            raise WirtError(f"{source}: is not a table of settings; recreate the VM")
        _unknown(where, "", d, {"schema_version", "name", "uuid", "created", "cpus", "memory", "image",
                                "disks", "mounts", "network", "boot", "cpu_affinity", "jit"})
        ver = d.get("schema_version")
        if ver is None:
            raise where.error("schema_version", "is missing", f"add schema_version = {SCHEMA_VERSION}")
        if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
            raise where.error("schema_version", f"{ver!r} is not a version number", f"write schema_version = {SCHEMA_VERSION}")
        if ver > SCHEMA_VERSION:
            raise where.error("schema_version", f"version {ver} is newer than this wirt understands ({SCHEMA_VERSION})",
                              "upgrade wirt")
        try:
            name = validate_name(d.get("name"))
        except WirtError as exc:
            raise where.error("name", str(exc).removeprefix("VM name "), "rename the VM directory and the name to match") from None
        uid = d.get("uuid")
        try:
            uid = str(uuidlib.UUID(uid)) if isinstance(uid, str) else None
        except ValueError:
            uid = None
        if uid is None:
            raise where.error("uuid", f"{d.get('uuid')!r} is not a UUID", f"write e.g. uuid = \"{uuidlib.uuid4()}\"")
        created = d.get("created", "")
        if isinstance(created, datetime.datetime):
            created = created.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not isinstance(created, str):
            raise where.error("created", f"{created!r} is not a time", "write an ISO 8601 time such as \"2026-01-01T00:00:00Z\"")
        cpus = d.get("cpus", 1)
        if isinstance(cpus, bool) or not isinstance(cpus, int):
            raise where.error("cpus", f"{cpus!r} is not a whole number", "write e.g. cpus = 1")
        if not 1 <= cpus <= MAX_CPUS:
            raise where.error("cpus", f"{cpus} is out of range", f"use 1 to {MAX_CPUS}")
        memory = _size(where, "memory", d.get("memory", "512M"), MIN_MEMORY, MAX_MEMORY, "512M")
        if memory % 4096:
            raise where.error("memory", f"{d.get('memory')!r} is not a multiple of 4 KiB", "round it, e.g. 512M")
        image = d.get("image", "debian")
        if not isinstance(image, str) or not image or not _NAME_RE.fullmatch(image):
            raise where.error("image", f"{image!r} is not an image name", "write image = \"debian\"")
        aff = d.get("cpu_affinity", [])
        if not isinstance(aff, list) or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 4096 for c in aff):
            raise where.error("cpu_affinity", f"{aff!r} is not a list of host CPU numbers", "write e.g. cpu_affinity = [0, 1]")
        if len(set(aff)) != len(aff):
            raise where.error("cpu_affinity", f"{aff!r} names a CPU twice", "list each host CPU once")
        jit = d.get("jit", "on")
        if jit not in ("on", "off", "force"):
            raise where.error("jit", f"{jit!r} is not a translation tier setting",
                              'write jit = "on" (or "off" for the interpreter only)')
        disks_raw = d.get("disks", [])
        if not isinstance(disks_raw, list):
            raise where.error("disks", "is not a list of tables", "write each disk as a [[disks]] section")
        disks = [DiskConfig.from_dict(x, where, f"disks[{i}]") for i, x in enumerate(disks_raw)]
        paths = [os.path.normpath(x.path) for x in disks]
        if len(set(paths)) != len(paths):
            raise where.error("disks", "the same file is attached twice", "remove the duplicate [[disks]] entry")
        mounts_raw = d.get("mounts", [])
        if not isinstance(mounts_raw, list):
            raise where.error("mounts", "is not a list of tables", "write each mount as a [[mounts]] section")
        mounts = [MountConfig.from_dict(x, where, f"mounts[{i}]") for i, x in enumerate(mounts_raw)]
        check_mounts(mounts, where.at("mounts"))
        network = NetworkConfig.from_dict(d.get("network", {}), where)
        boot = BootConfig.from_dict(d.get("boot", {}), where)
        return cls(name=name, uuid=uid, created=created, cpus=cpus, memory=memory, image=image,
                   disks=disks, mounts=mounts, network=network, boot=boot, cpu_affinity=sorted(aff), jit=jit,
                   schema_version=SCHEMA_VERSION)


def _unknown(where: _Where, prefix: str, d: dict[str, Any], known: set[str]) -> None:
    """Refuse unknown keys: a typo ('memroy') must not be silently ignored."""
    for k in d:
        if k not in known:
            key = f"{prefix}.{k}" if prefix else k
            raise where.error(key, "is not a known setting", f"remove it or use one of: {', '.join(sorted(known))}")


def now_iso() -> str:
    """The current UTC time as 2026-01-01T00:00:00Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the options of `wirt create` / `wirt set`: one table for the CLI, the Python API and REST ----
@dataclass(frozen=True)
class Option:
    """One user-facing option. `name` is the argparse dest and the REST body key; `kind` is
    "string", "integer", "boolean" (a flag) or "list" (of strings, a repeatable flag); `flags` are
    the CLI spellings.
    Values are checked here for type only: VMConfig.from_dict checks their meaning."""

    name: str
    kind: str
    default: Any
    help: str
    flags: tuple[str, ...] = ()

    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)


CREATE_OPTIONS: tuple[Option, ...] = (
    Option("cpus", "integer", None, "virtual CPUs (default 1, or config.toml [create] cpus)"),
    Option("memory", "string", None, "guest RAM (default 512M, or config.toml [create] memory)", ("--memory", "-m")),
    Option("disk", "string", None, "disk size (default 8G); 'none' for no disk"),
    Option("image", "string", None, "debian (root disk, default), initramfs, none, a `wirt image build --name` "
           "name, or the path of a qcow2/raw root disk of your own (booted with wirt's kernel; a partitioned "
           "disk needs --append root=/dev/vdaN)"),
    Option("init", "string", None, "PID 1 of a root disk: systemd (default) or minimal (wirt's own init: the "
           "fastest boot)"),
    Option("hostname", "string", "", "the guest's host name (default: the VM's name)"),
    Option("user_data", "string", None, "cloud-init user-data file (#cloud-config YAML: users, packages, "
           "write_files, runcmd, ...); the disk then carries cloud-init and the VM gets a NoCloud seed disk"),
    Option("ssh_key", "string", None, "public key cloud-init installs (default with --user-data: "
           "~/.ssh/id_*.pub, if any)"),
    Option("net", "string", None, "user (passt) | tap:IF | socket:HUB (a socket path, or a name: a hub at "
           "$WIRT_HOME/hubs/HUB.sock, started when needed) | none (default user; "
           "config.toml [create] sets the defaults of these five)"),
    Option("port", "list", [], "forward host port H to guest port G, [ADDR:]H:G[/udp] (user network; "
           "repeatable); H listens on 127.0.0.1 unless ADDR is given (0.0.0.0:8080:80 exposes it)"),
    Option("mount", "list", [], "share host folder HOSTDIR at GUESTDIR in the guest, HOSTDIR:GUESTDIR[:ro] "
           "(virtio-9p, mounted at boot; :ro refuses writes; repeatable)"),
    Option("mac", "string", None, "MAC address (default: derived from the VM's uuid, 52:54:00:xx:xx:xx)"),
    Option("cpu_affinity", "string", None, "pin the VM process to host CPUs, e.g. 0,1 or 0-3"),
    Option("append", "string", "", "extra kernel command-line arguments"),
    Option("firmware", "string", "", "firmware file instead of the image's"),
    Option("kernel", "string", "", "kernel Image instead of the image's"),
    Option("initrd", "string", "", "initramfs instead of the image's"),
)
SET_OPTIONS: tuple[Option, ...] = (
    Option("memory", "string", None, "guest RAM, e.g. 1G", ("--memory", "-m")),
    Option("cpus", "integer", None, "virtual CPUs"),
    Option("disk_size", "string", None, "grow disk 0 to this size (disks only grow)"),
    Option("cpu_affinity", "string", None, "host CPUs, e.g. 0,1; 'none' removes pinning"),
    Option("port", "list", [], "add a port forward [ADDR:]H:G[/udp] (replaces one on the same host port); "
           "repeatable"),
    Option("no_port", "boolean", False, "remove every port forward first (then --port adds)"),
    Option("mount", "list", [], "add a host folder HOSTDIR:GUESTDIR[:ro] (replaces one at the same GUESTDIR); "
           "repeatable"),
    Option("no_mount", "boolean", False, "remove every host folder first (then --mount adds)"),
)
_JSON_TYPES = {"string": {"type": "string"}, "integer": {"type": "integer"}, "boolean": {"type": "boolean"},
               "list": {"type": "array", "items": {"type": "string"}}}


def check_options(body: object, options: tuple[Option, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Type-check request data against an option table; returns every option (defaults filled in).
    Unknown keys and wrong types are one-line WirtErrors naming the option and the fix; null means
    the default."""
    if not isinstance(body, dict):
        raise WirtError("the request body is not a JSON object; send e.g. {\"name\": \"web\", \"memory\": \"512M\"}")
    known = {o.name for o in options} | set(required)
    for k in body:
        if k not in known:
            raise WirtError(f"{k!r} is not a known option; use one of: {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    for k in required:
        if k not in body:
            raise WirtError(f"{k!r} is missing; give it in the request body")
        out[k] = body[k]
    for o in options:
        v = body.get(o.name)
        if v is None:  # absent or null: the default
            v = o.default
        else:
            ok = {"string": lambda x: isinstance(x, str),
                  "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
                  "boolean": lambda x: isinstance(x, bool),
                  "list": lambda x: isinstance(x, list) and all(isinstance(i, str) for i in x)}[o.kind](v)
            if not ok:
                want = {"string": "a string", "integer": "a whole number", "boolean": "true or false",
                        "list": "a list of strings"}[o.kind]
                raise WirtError(f"{o.name}: {v!r} is not {want}; {o.help}")
        out[o.name] = v
    return out


def options_json_schema(options: tuple[Option, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema (OpenAPI 3) of a request body made of these options."""
    props: dict[str, Any] = {k: {"type": "string", "description": "the VM's name"} for k in required}
    for o in options:
        props[o.name] = dict(_JSON_TYPES[o.kind], description=o.help)
        if o.default is not None:
            props[o.name]["default"] = o.default
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def _affinity(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if text == "none":
        return []
    from wirt.vm.limits import parse_affinity

    return parse_affinity(text)


def create_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """CREATE_OPTIONS values (from argparse or a REST body) -> keyword arguments of VM.create."""
    v = dict(values)
    return {"cpus": v["cpus"], "memory": v["memory"], "disk": "default" if v["disk"] is None else v["disk"],
            "image": v["image"], "init": v.get("init") or "systemd", "hostname": v.get("hostname") or "",
            "user_data": v.get("user_data"), "ssh_key": v.get("ssh_key"),
            "net": v["net"], "ports": list(v["port"]), "mounts": list(v.get("mount") or []), "mac": v["mac"],
            "cpu_affinity": _affinity(v["cpu_affinity"]) or [], "append": v["append"],
            "firmware": v["firmware"], "kernel": v["kernel"], "initrd": v["initrd"]}


def set_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """SET_OPTIONS values -> keyword arguments of VM.set."""
    ports = list(values.get("port") or [])
    no_port = bool(values.get("no_port"))
    mounts = list(values.get("mount") or [])
    no_mount = bool(values.get("no_mount"))
    return {"memory": values["memory"], "cpus": values["cpus"], "disk_size": values["disk_size"],
            "cpu_affinity": _affinity(values["cpu_affinity"]),
            "ports": ports if no_port else None, "add_ports": [] if no_port else ports,
            "mounts": mounts if no_mount else None, "add_mounts": [] if no_mount else mounts}
