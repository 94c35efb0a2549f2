"""What a VM may open on the host: its folder, wirt's image cache, the base images of
`$WIRT_HOME/bases` (read-only disks named by their SHA-256, which a cluster node fetches from
another node: wirt.cluster.bases), and the files the user named explicitly (`wirt create
--kernel ...`, `VM.create(firmware=...)`), recorded as *grants*.

Grants live outside the VM folder, in `$WIRT_HOME/grants/UUID.json` (0600): vm.toml and
snapshots are files that can be edited or copied in, so they must not be able to widen the set.
Every path vm.toml, a snapshot or a qcow2 backing-file name gives is checked against
`vm_policy` before it is opened (wirt.confine.paths).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from wirt.confine.paths import PathPolicy
from wirt.fileio import atomic_write
from wirt.paths import cache_dir
from wirt.vm.store import VMPaths

__all__ = ["bases_dir", "grants_file", "grant", "granted", "forget_grants", "vm_policy", "check_hub_socket"]


def bases_dir(home: Path) -> Path:
    """The folder of base images by content hash (`SHA256.qcow2` or `.raw`): read-only disks that
    overlays may be backed by, like the image cache's, but this WIRT_HOME's own."""
    return Path(home) / "bases"


def grants_file(home: Path, uuid: str) -> Path:
    return Path(home) / "grants" / f"{uuid}.json"


def granted(home: Path, uuid: str) -> list[str]:
    """The files the user named explicitly for VM `uuid` (absolute, links resolved)."""
    try:
        data = json.loads(grants_file(home, uuid).read_text())
    except (OSError, ValueError, RecursionError):
        return []
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files if isinstance(f, str) and os.path.isabs(f)] if isinstance(files, list) else []


def grant(home: Path, uuid: str, files: list[str]) -> None:
    """Record `files` as named explicitly by the user for VM `uuid` (kept with the earlier ones)."""
    new = sorted(set(granted(home, uuid)) | {os.path.realpath(f) for f in files})
    path = grants_file(home, uuid)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"files": new}, indent=1))


def forget_grants(home: Path, uuid: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        grants_file(home, uuid).unlink()


def vm_policy(paths: VMPaths, uuid: str) -> PathPolicy:
    """The files VM `paths` (identity `uuid`) may open."""
    home = paths.root.parent.parent
    return PathPolicy(folders=(str(paths.root),),
                      read_only=(str(cache_dir().expanduser()), str(bases_dir(home))),
                      files=tuple(granted(home, uuid)), owner=f"VM {paths.name!r}",
                      fix="move the file into the VM's folder, or name it on the command line, e.g. "
                          "`wirt create --kernel FILE`")


def check_hub_socket(paths: VMPaths, uuid: str, hub: str, what: str) -> str:
    """The socket of network mode `socket:HUB` if the VM may connect there, else a one-line WirtError.

    A hub name (no "/") is a socket in `$WIRT_HOME/hubs/`. A path must lie in the VM's folder or in
    `$WIRT_HOME/hubs/`, or have been named on the command line (`--net socket:PATH` records a
    grant): the VM process streams the guest's frames into it, so vm.toml must not be able to point
    it at any socket of the host (a container runtime's, a database's)."""
    if "/" not in hub:
        return hub
    home = paths.root.parent.parent
    own = vm_policy(paths, uuid)
    policy = PathPolicy(folders=(*own.folders, str(home / "hubs")), files=own.files, owner=own.owner,
                        fix="give the socket on the command line: `wirt create --net socket:PATH`, or use a hub "
                            "name (socket:NAME)")
    policy.check(hub, what)
    return hub
