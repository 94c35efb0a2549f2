"""Assemble the default guest's initramfs: busybox and its applet links, kernel modules, /init.

The kernel unpacks a newc cpio (plain or compressed) into its rootfs and runs /init
(Documentation/filesystems/ramfs-rootfs-initramfs.rst). Uncompressed is the default here:
the image is small and the guest then spends no instructions inflating it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Sequence
from pathlib import Path

from wirt.images import agent, scripts
from wirt.fileio import atomic_path
from wirt.images.cache import CACHE_MODE
from wirt.images.cpio import CpioWriter

FORMAT_VERSION = 3  # bump when the layout below changes, so cached images are rebuilt

# What /init and the udhcpc script call, used if the applet table cannot be found in the binary.
FALLBACK_APPLETS = (
    "sh", "ash", "mount", "umount", "mkdir", "hostname", "ip", "insmod", "rmmod", "lsmod", "modprobe",
    "printf", "base64", "devmem", "poweroff", "reboot", "setsid", "cttyhack", "cat", "echo", "ls",
    "dmesg", "udhcpc", "sleep", "sync", "ps", "kill", "grep", "sed", "awk", "wget", "ifconfig", "route",
    "stty", "dd", "tr", "mkfifo", "head", "rm", "wc", "true",  # wirt-agent
)  # fmt: skip


def busybox_applets(binary: bytes) -> list[str]:
    """The applet names compiled into a busybox binary.

    busybox keeps them as one sorted run of NUL-terminated strings starting with "[" and "[["
    (applet_names in include/applet_tables.h); if that run is absent, a fixed list is used.
    """
    start = binary.find(b"[\0[[\0")
    while start >= 0:
        names: list[str] = []
        pos = start
        while True:
            end = binary.find(b"\0", pos)
            word = binary[pos:end]
            if end <= pos or not re.fullmatch(rb"[\x21-\x7e]{1,32}", word) or b"/" in word:
                break
            names.append(word.decode())
            pos = end + 1
        if len(names) > 10:
            return names
        start = binary.find(b"[\0[[\0", start + 1)
    return list(FALLBACK_APPLETS)


def content_key(modules: Sequence[tuple[str, bytes]], init_script: str, busybox: bytes) -> str:
    """A short hash of everything that decides the image, for its cache file name."""
    h = hashlib.sha256()
    h.update(f"format={FORMAT_VERSION}\0".encode())
    h.update(init_script.encode() + b"\0" + scripts.UDHCPC_SCRIPT.encode() + b"\0" + agent.AGENT.encode() + b"\0")
    h.update(hashlib.sha256(busybox).digest())
    for name, ko in modules:
        h.update(name.encode() + b"\0" + hashlib.sha256(ko).digest())
    return h.hexdigest()[:12]


def write_initramfs(
    out: io.BufferedIOBase,
    *,
    busybox: bytes,
    modules: Sequence[tuple[str, bytes]] = (),
    init_script: str = scripts.INIT,
    applets: Sequence[str] | None = None,
    mount_modules: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Write the uncompressed newc archive of the initramfs to `out`.

    `modules` are (name, plain ELF) pairs in load order; they become /lib/modules/NAME.ko and
    /lib/modules/load-order lists them. `mount_modules` (9p) go to /lib/modules/9p/ with their own
    load-order: /init loads them only for a VM with a shared host folder.
    """
    cpio = CpioWriter(out)
    for d in ("bin", "dev", "etc", "etc/udhcpc", "lib", "lib/modules", "mnt", "proc", "root", "run", "sys", "tmp",
              "usr", "usr/share", "usr/share/udhcpc", "var"):  # fmt: skip
        cpio.add_dir(d, 0o1777 if d == "tmp" else 0o700 if d == "root" else 0o755)
    # /dev/console must exist before devtmpfs is mounted: the kernel opens it for /init's stdio.
    cpio.add_char_device("dev/console", 5, 1)
    cpio.add_symlink("sbin", "bin")
    cpio.add_symlink("usr/bin", "../bin")
    cpio.add_symlink("usr/sbin", "../bin")
    cpio.add_symlink("var/run", "../run")
    cpio.add_file("bin/busybox", busybox, 0o755)
    for name in sorted(set(applets if applets is not None else busybox_applets(busybox))):
        if name != "busybox":
            cpio.add_symlink(f"bin/{name}", "busybox")
    cpio.add_file("init", init_script.encode(), 0o755)
    cpio.add_file(agent.AGENT_PATH.replace("/usr/sbin/", "bin/"), agent.AGENT.encode(), 0o755)  # /usr/sbin -> /bin
    # Debian builds busybox with CONFIG_UDHCPC_DEFAULT_SCRIPT=/etc/udhcpc/default.script;
    # upstream's default is /usr/share/udhcpc/default.script: provide both.
    cpio.add_file("etc/udhcpc/default.script", scripts.UDHCPC_SCRIPT.encode(), 0o755)
    cpio.add_symlink("usr/share/udhcpc/default.script", "../../../etc/udhcpc/default.script")
    cpio.add_file("etc/hostname", b"wirt\n")
    cpio.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.add_file("etc/group", b"root:x:0:\n")
    cpio.add_file("etc/resolv.conf", b"")
    for name, ko in modules:
        cpio.add_file(f"lib/modules/{name}.ko", ko)
    cpio.add_file("lib/modules/load-order", "".join(f"{name}\n" for name, _ in modules).encode())
    if mount_modules:
        cpio.add_dir("lib/modules/9p", 0o755)
        for name, ko in mount_modules:
            cpio.add_file(f"lib/modules/9p/{name}.ko", ko)
        cpio.add_file("lib/modules/9p/load-order", "".join(f"{name}\n" for name, _ in mount_modules).encode())
    cpio.close()


def build_initramfs(
    dest: Path,
    *,
    busybox: bytes,
    modules: Sequence[tuple[str, bytes]] = (),
    init_script: str = scripts.INIT,
    compress: bool = False,
    mount_modules: Sequence[tuple[str, bytes]] = (),
) -> Path:
    """Write the initramfs to `dest` atomically; gzip it (level 6, mtime 0) if `compress`."""
    buf = io.BytesIO()
    write_initramfs(buf, busybox=busybox, modules=modules, init_script=init_script, mount_modules=mount_modules)
    data = buf.getvalue()
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with atomic_path(dest, CACHE_MODE, parents=True) as tmp:
        tmp.write_bytes(data)
    return dest
