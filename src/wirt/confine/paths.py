"""Which host files a VM may open: its own folder, wirt's image cache, and the files the user
named explicitly (on the command line or through the Python API), recorded as such.

Every path read from a file that might not be the user's own words (vm.toml, a snapshot's
metadata, a qcow2 image's backing-file name) is checked against a `PathPolicy` before it is
opened: such a file can name any host path, and wirt often runs as root. Paths are compared
after resolving symbolic links and `..`, so a link inside the VM folder that points out of it
is outside too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wirt.errors import WirtError

__all__ = ["PathPolicy", "contained"]


def contained(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when `path`, links and `..` resolved, is `folder` or lies below it."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class PathPolicy:
    """The folders (with everything below them) and single files a VM may open.

    `owner` names the VM in messages; `fix` says how to allow a path legitimately.
    """

    folders: tuple[str, ...]
    files: tuple[str, ...] = ()
    owner: str = "the VM"
    fix: str = "name it explicitly on the command line"
    #: folders the VM may read but never open for writing: what every VM shares (the image
    #: cache's base disks, kernels and initramfs images), which one VM must not change
    read_only: tuple[str, ...] = ()

    def allows(self, path: str | os.PathLike[str], write: bool = False) -> bool:
        real = os.path.realpath(path)
        if real in {os.path.realpath(f) for f in self.files} or any(contained(real, d) for d in self.folders):
            return True
        return not write and any(contained(real, d) for d in self.read_only)

    def check(self, path: str | os.PathLike[str], what: str, write: bool = False) -> Path:
        """`path` if allowed (for writing too, with `write`), else a one-line WirtError naming
        `what` it was (e.g. "disk 0")."""
        if not self.allows(path, write):
            real = os.path.realpath(path)
            shown = os.fspath(path) + (f" (-> {real})" if real != os.path.abspath(path) else "")
            if self.allows(path):
                raise WirtError(f"{what}: {shown} is shared by every VM (wirt's image cache or base images) and "
                                f"{self.owner} may only read it; refused (mark it read_only = true, or give the "
                                f"VM its own overlay on it, as `wirt create --image` does)")
            raise WirtError(f"{what}: {shown} is outside {self.owner}'s folder and wirt's image cache and was "
                            f"not named on the command line; refused ({self.fix})")
        return Path(path)
