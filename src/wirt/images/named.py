"""Named root disks: `wirt image build --name NAME` records the built disk so `wirt create --image NAME`
finds it, and `wirt image ls` shows the names beside the cached disks.

A name is a small JSON record in the cache, `images/NAME.json`, pointing at the content-addressed
disk of wirt.images.rootdisk (the disk itself is not copied). Rebuilding under the same name
repoints it; VMs made earlier keep their own base (their overlays name the file they were made on).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from wirt.errors import WirtError
from wirt.fileio import atomic_write
from wirt.images.cache import CACHE_MODE, cache_root

__all__ = ["RESERVED", "save", "lookup", "packages", "names_by_path", "validate"]

RESERVED = ("debian", "initramfs", "none", "disk")  # image names wirt itself gives a meaning
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate(name: str) -> str:
    """Check an image name (refusing the built-in ones)."""
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise WirtError(f"image name {name!r} is not allowed; use letters, digits, '.', '_' and '-' (e.g. web-base)")
    if name in RESERVED:
        raise WirtError(f"image name {name!r} is built in; pick another name")
    return name


def _dir(cache: Path | None) -> Path:
    return (cache or cache_root()) / "images"


def save(name: str, path: Path, packages: list[str], *, cache: Path | None = None) -> None:
    """Record `path` (a built root disk) under `name`."""
    validate(name)
    record = {"path": str(Path(path).resolve()), "packages": list(packages), "created": time.time()}
    atomic_write(_dir(cache) / f"{name}.json", (json.dumps(record, indent=1) + "\n").encode(), CACHE_MODE,
                 parents=True)


def lookup(name: str, *, cache: Path | None = None) -> Path | None:
    """The disk recorded under `name`, or None when there is no such name. A record whose disk was
    removed from the cache is an error that says how to rebuild it."""
    if not _NAME.fullmatch(name) or name in RESERVED:
        return None
    rec = _dir(cache) / f"{name}.json"
    try:
        data = json.loads(rec.read_text())
        path = Path(data["path"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise WirtError(f"the image record {rec} is unreadable; rebuild it with `wirt image build --name {name}`") from None
    if not path.is_file():
        pkgs = ",".join(data.get("packages") or [])
        raise WirtError(f"image {name!r}: its disk {path} is gone from the cache; rebuild it with "
                        f"`wirt image build --name {name}" + (f" --packages {pkgs}`" if pkgs else "`"))
    return path


def packages(name: str, *, cache: Path | None = None) -> list[str] | None:
    """The packages `name` was built with (`--packages`), or None when there is no readable record:
    so `wirt create` can tell whether a named disk carries cloud-init before the VM waits for it."""
    if not _NAME.fullmatch(name or "") or name in RESERVED:
        return None
    try:
        pkgs = json.loads((_dir(cache) / f"{name}.json").read_text())["packages"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(p) for p in pkgs] if isinstance(pkgs, list) else None


def names_by_path(*, cache: Path | None = None) -> dict[str, list[str]]:
    """For `wirt image ls`: each recorded disk's resolved path -> the names that point at it."""
    out: dict[str, list[str]] = {}
    d = _dir(cache)
    for rec in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            path = Path(json.loads(rec.read_text())["path"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.setdefault(str(path.resolve()), []).append(rec.stem)
    return out
