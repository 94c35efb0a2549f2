"""Make an ext4 filesystem image from a directory tree with e2fsprogs' `mkfs.ext4 -d`.

`mke2fs -d DIR` (e2fsprogs ≥ 1.43, so Debian 12's 1.47.0 has it) copies a tree into the new
filesystem without mounting anything, so no root privileges and no loop device are needed.
It copies modes, owners, times, symlinks and hard links from the host files. Owners come from
the host: run as root, the tree already carries the packages' owners; run as another user,
every file would belong to that user, so the owners are then fixed inside the image afterwards
with `debugfs -w` (`set_inode_field PATH uid|gid N`), which needs no privileges either.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from wirt.errors import WirtError

HINT = "install e2fsprogs (Debian package e2fsprogs)"


def _tool(name: str) -> str:
    exe = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if exe is None:
        raise WirtError(f"{name} not found; {HINT}")
    return exe


def parse_size(text: str) -> int:
    """`2G`, `512M`, `1.5GiB`, `1073741824` -> bytes (binary units, as qemu-img and mkfs use)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.I)
    if not m:
        raise WirtError(f"cannot read the size {text!r}; write e.g. 2G or 512M")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def make_ext4(
    tree: Path,
    image: Path,
    size: int,
    *,
    label: str = "wirt-root",
    uuid: str | None = None,
    owners: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Create the sparse file `image` of `size` bytes holding an ext4 filesystem with `tree`'s contents.

    `owners` maps tree-relative paths to (uid, gid) when they are not root's; it is used only
    when not running as root (see the module docstring).
    """
    if size < 64 << 20:
        raise WirtError(f"a root disk of {size} bytes is too small; give at least 64M")
    mkfs = _tool("mkfs.ext4")
    image.parent.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size)  # sparse: mkfs writes only metadata and file data
    cmd = [mkfs, "-q", "-F", "-t", "ext4", "-L", label, "-d", str(tree), "-E", "root_owner=0:0"]
    if uuid:
        cmd += ["-U", uuid]
    proc = subprocess.run([*cmd, str(image)], capture_output=True, text=True)
    if proc.returncode != 0:
        image.unlink(missing_ok=True)
        detail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        if "invalid option" in proc.stderr and "-d" in proc.stderr:
            raise WirtError(f"this mkfs.ext4 has no -d option (needs e2fsprogs ≥ 1.43); {HINT}")
        raise WirtError(f"mkfs.ext4 failed: {detail}")
    if os.geteuid() != 0:
        fix_owners(image, tree, owners or {})


def fix_owners(image: Path, tree: Path, owners: Mapping[str, tuple[int, int]]) -> None:
    """Set every inode's owner in `image` to root, or to `owners[path]`, with one debugfs run."""
    debugfs = _tool("debugfs")
    lines = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), tree)
            if '"' in rel or "\n" in rel:
                raise WirtError(f"cannot set the owner of a file named {rel!r} with debugfs")
            uid, gid = owners.get(rel, (0, 0))
            lines.append(f'sif "/{rel}" uid {uid}\nsif "/{rel}" gid {gid}\n')
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as script:
        script.write("".join(lines))
    try:
        proc = subprocess.run([debugfs, "-w", "-f", script.name, str(image)], capture_output=True, text=True)
    finally:
        os.unlink(script.name)
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("debugfs ")]
    if proc.returncode != 0 or errors:
        raise WirtError(f"debugfs could not set file owners in {image.name}: {(errors or ['exit status'])[0]}")


def check_ext4(image: Path) -> str:
    """Run `e2fsck -fn` (read-only, forced); return its report or raise WirtError if not clean."""
    proc = subprocess.run([_tool("e2fsck"), "-fn", str(image)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise WirtError(f"e2fsck found problems in {image.name}: {proc.stdout.strip().splitlines()[-1:]}")
    return proc.stdout
