"""Which format a disk image file is, and opening it as a `BlockDevice` of that format.

The one module that knows every format (raw.py, qcow2.py); they import only the interface
(block.py), so this module sits above them.
"""

from __future__ import annotations

import os

from wirt.confine.paths import PathPolicy
from wirt.errors import WirtError
from wirt.fileio import open_regular
from wirt.storage.block import BlockDevice

__all__ = ["FORMATS", "probe_format", "open_image"]

FORMATS = ("raw", "qcow2")


def probe_format(path: str) -> str:
    """'qcow2' when the file starts with the qcow2 magic, else 'raw'."""
    if not os.path.exists(path):
        raise WirtError(f"{path}: no such file; check the path")
    fd = open_regular(path, os.O_RDONLY, "disk image")
    try:
        magic = os.pread(fd, 4, 0)
    except OSError as exc:
        raise WirtError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return "qcow2" if magic == b"QFI\xfb" else "raw"


def open_image(path: str | os.PathLike[str], read_only: bool = True, format: str | None = None,
               *, policy: PathPolicy | None = None) -> BlockDevice:
    """Open a disk image, probing its format unless `format` is given ('raw' or 'qcow2').

    `policy` (wirt.confine.paths) limits the files the image and its backing chain may be: a
    VM's disks are opened with its policy; `wirt disk` commands on files the user names use none.
    """
    path = os.fspath(path)
    if policy is not None:
        policy.check(path, "disk image", write=not read_only)
    fmt = format or probe_format(path)
    if fmt == "raw":
        from wirt.storage.raw import RawImage

        return RawImage(path, read_only=read_only)
    if fmt == "qcow2":
        from wirt.storage.qcow2 import Qcow2Image

        return Qcow2Image(path, read_only=read_only, policy=policy)
    raise WirtError(f"unknown image format {fmt!r}; use one of: {', '.join(FORMATS)}")
