"""A VM's snapshots: full (CPU, devices, RAM, disks) or disk-only, as a tree, plus fork.

Layout inside the VM directory:
    snapshots/NAME/snapshot.json   state and metadata, checksummed (wirt.machine.snapshot)
    snapshots/NAME/memory.img      sparse RAM image (full snapshots only)
    snapshots/layers/ID.qcow2      frozen disk layers, read-only (0400)
    snapshots/tree.json            {"current": NAME|null, "resume": NAME|null}

Disks are kept by reference, never copied: taking a snapshot freezes each writable disk's
current file (it becomes read-only) and gives the VM a new, empty qcow2 overlay on it in
layers/, recorded in vm.toml; the snapshot names the frozen file. Restoring gives the VM a new
overlay on the snapshot's frozen file. So the files form a tree of backing chains, which is the
snapshot tree; `rm` deletes a snapshot's state and memory, and a frozen layer once nothing
(the VM's disks, other snapshots) is backed by it. Backing names are relative to each file's
folder, so a fork can hard-link the chain into its own directory at the same relative paths.

"current" is the snapshot the VM's state descends from (the parent of the next one); "resume"
is a full snapshot whose state the next `wirt start` loads instead of booting (set by a restore
of a stopped VM and by fork).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wirt.confine.paths import contained
from wirt.errors import NotFoundError, StateError, WirtError
from wirt.fileio import atomic_write, fsync_dir, read_regular
from wirt.machine.snapshot import (
    MEMORY_FILE, check_signature, read_state_file, restore_machine, save_machine, write_state_file,
)
from wirt.vm.access import forget_grants, grant, vm_policy
from wirt.vm.disks import disk_usage
from wirt.vm.schema import MAX_DISK, DiskConfig, PortForward, VMConfig, validate_name
from wirt.vm.store import VMPaths, VMStore

__all__ = ["SnapshotInfo", "VMSnapshots", "fork_vm", "live_create", "live_restore", "resume_pending"]

LAYERS = "layers"
TREE = "tree.json"
_RESERVED = {LAYERS, TREE}


def snapshot_name(name: object) -> str:
    """Check a snapshot name (a folder name, same rules as VM names)."""
    name = validate_name(name, "snapshot name")
    if name in _RESERVED:
        raise WirtError(f"snapshot name {name!r} is reserved; pick another")
    return name


@dataclass(frozen=True)
class SnapshotInfo:
    """One line of `wirt snapshot ls`."""

    name: str
    parent: str | None
    created: float
    kind: str  # "full" (CPU, devices, RAM, disks) or "disk"
    memory_bytes: int  # bytes of RAM stored (zero pages are not)
    disk_bytes: int  # host bytes of the disk layers it froze
    current: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "parent": self.parent, "created": self.created, "kind": self.kind,
                "memory_bytes": self.memory_bytes, "disk_bytes": self.disk_bytes, "current": self.current}


def free_host_port(address: str, protocol: str = "tcp") -> int:
    """A host port nothing listens on at `address` now (the kernel's choice)."""
    import socket

    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _chain(path: Path, policy: Any = None) -> list[Path]:
    """The files of a disk's backing chain, the disk first (absolute paths); `policy`
    (wirt.confine.paths) limits the files the chain may name."""
    from wirt.storage import open_image

    out = []
    with open_image(path, read_only=True, policy=policy) as img:
        dev: Any = img
        while dev is not None:
            out.append(Path(os.path.abspath(dev.path)))
            dev = getattr(dev, "backing", None)
    return out


class VMSnapshots:
    """The snapshot folder of one VM."""

    def __init__(self, paths: VMPaths) -> None:
        self.paths = paths
        self.root = paths.snapshots
        self.layers = self.root / LAYERS

    # ---- the tree ---------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        return self.root / snapshot_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir()
                      if d.is_dir() and d.name not in _RESERVED and (d / "snapshot.json").is_file())

    def read(self, name: str) -> dict[str, Any]:
        """The checked body of snapshot `name` (one-line errors for missing or damaged ones)."""
        folder = self.folder(name)
        if not (folder / "snapshot.json").exists():
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"VM {self.paths.name!r} has no snapshot {name!r} (snapshots: {known}); "
                            f"see `wirt snapshot ls {self.paths.name}`")
        return self.load(folder)

    def load(self, folder: Path) -> dict[str, Any]:
        """The body of the snapshot in `folder`, its seal and its content checked (`check_body`)."""
        body = read_state_file(folder)
        check_body(self, folder, body)
        return body

    def tree(self) -> dict[str, Any]:
        try:
            d = json.loads(read_regular(self.root / TREE, "snapshot tree", 1 << 20))
            return d if isinstance(d, dict) else {}
        except (WirtError, ValueError, RecursionError):
            return {}

    def _set_tree(self, **changes: Any) -> None:
        d = {"current": None, "resume": None, **self.tree(), **changes}
        self.root.mkdir(mode=0o700, exist_ok=True)
        atomic_write(self.root / TREE, json.dumps(d))

    def current(self) -> str | None:
        return self.tree().get("current")

    def resume(self) -> str | None:
        return self.tree().get("resume")

    def clear_resume(self) -> None:
        if self.resume() is not None:
            self._set_tree(resume=None)

    def list(self) -> list[SnapshotInfo]:
        cur = self.current()
        out = []
        for name in self.names():
            try:
                body = self.load(self.root / name)
            except WirtError:
                out.append(SnapshotInfo(name, None, 0.0, "damaged", 0, 0, False))
                continue
            disk = sum(disk_usage(self.paths.root / d["layer"]) for d in body.get("disks", []) if d.get("layer"))
            out.append(SnapshotInfo(name, body.get("parent"), float(body.get("created", 0)), body.get("kind", "?"),
                                    int((body.get("memory") or {}).get("stored_bytes", 0)), disk, name == cur))
        return out

    # ---- disks --------------------------------------------------------------------------------
    def _new_overlay(self, backing: Path) -> tuple[Path, str]:
        """A fresh qcow2 in layers/ backed by `backing` (named relative to layers/); (path, vm.toml path)."""
        from wirt.storage.qcow2_create import create_qcow2

        self.layers.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.layers / f"{uuidlib.uuid4().hex[:16]}.qcow2"
        rel = os.path.relpath(backing, self.layers)
        create_qcow2(str(path), None, backing=rel, backing_format=_format(backing))
        os.chmod(path, 0o600)
        return path, os.path.relpath(path, self.paths.root)

    def freeze_disks(self, cfg: VMConfig, open_disks: list[Any] | None = None) -> tuple[list[dict[str, Any]], list[DiskConfig]]:
        """Give every writable disk a new overlay on its current file; returns the snapshot's disk
        records and the new disk configs.

        `open_disks` are the running VM's disk proxies (`runner.CountingDisk`, one per disk, the
        VM paused): their files are closed (flushed, dirty flag cleared) first. The caller then
        commits the configs to vm.toml (`commit_disks`: the switch-over point; a process killed
        before it leaves the old files in use and the new overlays as garbage), points the
        proxies at the files vm.toml names (`reopen`) and seals the frozen files (`seal`).
        """
        records, new_disks = [], []
        if open_disks is not None:
            for proxy, d in zip(open_disks, cfg.disks):
                if not d.read_only:
                    proxy._disk.close()
        try:
            for i, d in enumerate(cfg.disks):
                if d.read_only:
                    records.append({"index": i, "read_only": True, "path": d.path, "format": d.format})
                    new_disks.append(d)
                    continue
                path = self.paths.disk(d.path)
                _, rel = self._new_overlay(path)
                records.append({"index": i, "read_only": False, "layer": os.path.relpath(path, self.paths.root),
                                "format": d.format, "size": d.size})
                new_disks.append(DiskConfig(rel, "qcow2", d.size, False))
        except BaseException:
            if open_disks is not None:
                self.reopen(open_disks, cfg.disks, cfg.uuid)  # the VM keeps its disks as they were
            raise
        return records, new_disks

    def reopen(self, open_disks: list[Any], disks: list[DiskConfig], uuid: str) -> None:
        """Point a running VM's writable disk proxies at the files `disks` names (closing old ones)."""
        policy = vm_policy(self.paths, uuid)
        for proxy, d in zip(open_disks, disks):
            if not d.read_only:
                old, proxy._disk = proxy._disk, _open(self.paths.disk(d.path), d.format, policy)
                with contextlib.suppress(Exception):
                    old.close()  # already closed by freeze_disks: closing twice is harmless

    def seal(self, records: list[dict[str, Any]]) -> None:
        """Make the snapshot's frozen disk files read-only: they are never written again."""
        for r in records:
            if r.get("layer"):
                os.chmod(self.paths.root / r["layer"], 0o400)

    def revert_disks(self, cfg: VMConfig, body: dict[str, Any]) -> list[DiskConfig]:
        """New overlays on the snapshot's frozen layers; returns the new disk configs (the caller
        commits them, then points a running VM's disks at them with `reopen`)."""
        records = body.get("disks", [])
        if len(records) != len(cfg.disks) or any(r.get("read_only") != d.read_only for r, d in zip(records, cfg.disks)):
            raise WirtError(f"snapshot {body.get('name')!r} has {len(records)} disks "
                            f"({_describe_disks(records)}), the VM {len(cfg.disks)}: the disk set changed; "
                            "restore into a VM with the same disks")
        policy = vm_policy(self.paths, cfg.uuid)
        for r in records:
            if r.get("layer") and not (self.paths.root / r["layer"]).is_file():
                raise WirtError(f"{self.paths.root / r['layer']} is missing: snapshot {body.get('name')!r} "
                                "lost its disk layer; delete the snapshot")
            if r.get("layer"):
                _chain(self.paths.root / r["layer"], policy)  # its backing files must be the VM's too
        new_disks = []
        for r, d in zip(records, cfg.disks):
            if r.get("read_only"):
                new_disks.append(d)
                continue
            _, rel = self._new_overlay(self.paths.root / r["layer"])
            new_disks.append(DiskConfig(rel, "qcow2", max(d.size, int(r.get("size", 0))), False))
        return new_disks

    def commit_disks(self, store: VMStore, cfg: VMConfig, disks: list[DiskConfig]) -> None:
        """Point vm.toml (re-read, so pending `wirt set` changes stay) and `cfg` at the new disk files."""
        latest = store.load(cfg.name)
        latest.disks = [DiskConfig(n.path, n.format, max(n.size, o.size), n.read_only)
                        for n, o in zip(disks, latest.disks)] + latest.disks[len(disks):]
        store.save(latest)
        cfg.disks = list(disks)

    def collect_garbage(self, cfg: VMConfig) -> int:
        """Delete layer files nothing is backed by any more; returns how many."""
        if not self.layers.is_dir():
            return 0
        live: set[Path] = set()
        roots = [self.paths.disk(d.path) for d in cfg.disks]
        for name in self.names():
            try:
                body = self.load(self.root / name)
            except WirtError:
                continue  # a damaged snapshot keeps its layers until it is removed
            roots += [self.paths.root / d["layer"] for d in body.get("disks", []) if d.get("layer")]
        policy = vm_policy(self.paths, cfg.uuid)
        for r in roots:
            if r.exists():
                try:
                    live.update(_chain(r, policy))
                except WirtError:
                    live.add(Path(os.path.abspath(r)))
        removed = 0
        for f in self.layers.iterdir():
            if f.suffix == ".qcow2" and Path(os.path.abspath(f)) not in live:
                f.unlink()
                removed += 1
        if removed:
            fsync_dir(self.layers)
        return removed

    # ---- operations on a stopped VM -------------------------------------------------------------
    def create_disk_only(self, store: VMStore, cfg: VMConfig, name: str) -> dict[str, Any]:
        """A disk-only snapshot of a stopped VM."""
        folder = self._new_folder(name)
        try:
            records, disks = self.freeze_disks(cfg)
            body = self._body(cfg, name, "disk", records)
            self.commit_disks(store, cfg, disks)
            self.seal(records)
            write_state_file(folder, body)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._set_tree(current=name)
        return body

    def restore_stopped(self, store: VMStore, cfg: VMConfig, name: str) -> dict[str, Any]:
        """Revert a stopped VM's disks to snapshot `name`; a full snapshot's state loads at the next start."""
        body = self.read(name)
        self.check_owner(cfg, body)
        if body.get("kind") == "full":
            diffs = config_differences(body, cfg)
            if diffs:
                raise WirtError(f"snapshot {name!r} does not fit VM {cfg.name!r} as configured now: "
                                + "; ".join(diffs) + "; change it back with `wirt set` first")
        disks = self.revert_disks(cfg, body)
        self.commit_disks(store, cfg, disks)
        self._set_tree(current=name, resume=name if body.get("kind") == "full" else None)
        self.collect_garbage(cfg)
        return body

    def remove(self, cfg: VMConfig, name: str) -> None:
        """Delete snapshot `name` (its state, memory image, and layers nothing else needs)."""
        folder = self.folder(name)
        if not folder.is_dir():
            self.read(name)  # raises the "no snapshot" error
        parent = None
        try:
            parent = self.load(folder).get("parent")
        except WirtError:
            pass
        trash = self.root / f".deleted-{name}-{os.getpid()}"
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        tree = self.tree()
        changes: dict[str, Any] = {}
        if tree.get("current") == name:
            changes["current"] = parent if parent in self.names() else None
        if tree.get("resume") == name:
            changes["resume"] = None
        if changes:
            self._set_tree(**changes)
        self.collect_garbage(cfg)

    # ---- helpers ---------------------------------------------------------------------------------
    def _new_folder(self, name: str) -> Path:
        folder = self.folder(name)
        if folder.exists():
            raise StateError(f"VM {self.paths.name!r} already has a snapshot {name!r}; pick another name "
                            f"or delete it with `wirt snapshot rm {self.paths.name} {name}`")
        self.root.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700)
        return folder

    def _body(self, cfg: VMConfig, name: str, kind: str, disks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "kind": kind, "created": time.time(), "parent": self.current(),
                "vm": {"name": cfg.name, "uuid": cfg.uuid}, "config": cfg.to_dict(), "disks": disks}

    def check_owner(self, cfg: VMConfig, body: dict[str, Any]) -> None:
        """Refuse a snapshot that belongs to another VM (copied in by hand)."""
        owner = body.get("vm") or {}
        if owner.get("uuid") != cfg.uuid:
            raise WirtError(f"snapshot {body.get('name')!r} belongs to VM {owner.get('name')!r} "
                            f"(uuid {owner.get('uuid')}), not to {cfg.name!r}; fork it instead")


def check_body(snaps: VMSnapshots, folder: Path, body: dict[str, Any]) -> None:
    """Refuse a snapshot whose content is not what wirt writes, whatever its seal says.

    The seal (snapshot.json's checksum) is a plain hash anyone can recompute after editing the
    file, so nothing security-relevant rests on it: every disk layer must be a file in this VM's
    folder (its backing chain is checked when opened, wirt.vm.access), the memory image must be the file beside snapshot.json, and every field
    used later has the type it should. (The machine state is checked by wirt.machine.snapshot.)
    """
    where = f"{folder / 'snapshot.json'}"

    def bad(what: str) -> WirtError:
        return WirtError(f"{where}: {what}; the snapshot was edited or damaged: delete it")

    if body.get("kind") not in ("full", "disk"):
        raise bad(f"kind {str(body.get('kind'))[:40]!r} is neither \"full\" nor \"disk\"")
    if not isinstance(body.get("vm"), dict) or not isinstance(body.get("config"), dict):
        raise bad("its VM identity or configuration is missing")
    if not (body.get("parent") is None or isinstance(body.get("parent"), str)):
        raise bad("its parent is not a snapshot name")
    records = body.get("disks")
    if not isinstance(records, list) or len(records) > 64:
        raise bad("its disk list is not a list of disks")
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("read_only"), bool):
            raise bad(f"disk {i} is not a disk record")
        if r["read_only"]:
            continue
        layer, size = r.get("layer"), r.get("size", 0)
        if (not isinstance(layer, str) or not layer or os.path.isabs(layer) or "\0" in layer
                or ".." in Path(layer).parts or not contained(snaps.paths.root / layer, snaps.paths.root)):
            raise bad(f"disk {i}'s layer {str(layer)[:200]!r} is not a file in the VM's folder {snaps.paths.root}")
        if r.get("format") not in ("qcow2", "raw") or isinstance(size, bool) or not isinstance(size, int) \
                or not 0 <= size <= MAX_DISK:
            raise bad(f"disk {i}'s format or size is invalid")
    created = body.get("created", 0)
    if isinstance(created, bool) or not isinstance(created, (int, float)) or not 0 <= created < 1e11:
        raise bad("its creation time is not a time")
    try:
        VMConfig.from_dict(body["config"], f"{where}: config")
    except WirtError as exc:
        raise bad(f"its saved configuration is invalid ({exc})") from None
    forked = body.get("forked_from")
    if forked is not None and (not isinstance(forked, dict) or not (
            forked.get("mac") is None or (isinstance(forked.get("mac"), str) and _MAC_RE.fullmatch(forked["mac"])))):
        raise bad("its fork origin is not a MAC address")  # the MAC goes into a guest command line
    if body["kind"] == "full":
        memory = body.get("memory")
        if not isinstance(memory, dict) or memory.get("file", MEMORY_FILE) != MEMORY_FILE:
            raise bad(f"its memory image must be {MEMORY_FILE} beside snapshot.json")
        stored = memory.get("stored_bytes", 0)
        if type(stored) is not int or not 0 <= stored < 1 << 62:
            raise bad("its memory image size is not a number of bytes")
        check_signature(body.get("signature"), where)
        if not _agent_state_ok(body.get("agent")):
            raise bad("its guest agent state is malformed")


_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", re.IGNORECASE)


def _agent_state_ok(d: Any) -> bool:
    """The guest agent channel's saved state (wirt.vm.agent.GuestAgent.state): None, or a table of
    a version (a whole number or none), an IP address (text or none), a partial line (base64) and a
    ready flag."""
    import binascii

    if d is None:
        return True
    if not isinstance(d, dict) or not set(d) <= {"version", "ip", "partial", "ready"}:
        return False
    version, ip = d.get("version"), d.get("ip")
    if not (version is None or (type(version) is int and 0 <= version < 1 << 31)):
        return False
    if not (ip is None or (isinstance(ip, str) and len(ip) <= 256)):
        return False
    if not isinstance(d.get("ready", False), bool) or not isinstance(d.get("partial", ""), str) \
            or len(d.get("partial", "")) > 1 << 20:
        return False
    try:
        base64.b64decode(d.get("partial", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def config_differences(body: dict[str, Any], cfg: VMConfig) -> list[str]:
    """What a full snapshot's machine needs that `cfg` no longer gives (memory size, disks, network)."""
    from wirt.units import human_size

    saved = body.get("config") or {}
    out = []
    sig = body.get("signature") or {}
    if sig.get("memory_size") not in (None, cfg.memory):
        out.append(f"memory: snapshot {human_size(sig['memory_size'])}, VM {human_size(cfg.memory)}")
    if len(saved.get("disks", [])) != len(cfg.disks):
        out.append(f"disks: snapshot {len(saved.get('disks', []))}, VM {len(cfg.disks)}")
    had_net = (saved.get("network") or {}).get("mode", "none") != "none"
    if had_net != (cfg.network.mode != "none"):
        out.append(f"network card: snapshot {'yes' if had_net else 'no'}, VM {'yes' if cfg.network.mode != 'none' else 'no'}")
    return out


def _format(path: Path) -> str:
    from wirt.storage import probe_format

    return probe_format(str(path))


def _describe_disks(records: list[dict[str, Any]]) -> str:
    return ", ".join("read-only" if r.get("read_only") else "writable" for r in records) or "none"


def _open(path: Path, fmt: str, policy: Any) -> Any:
    from wirt.storage import open_image

    return open_image(path, read_only=False, format=fmt, policy=policy)


# ---- operations in the VM process (the machine paused by the caller) ------------------------------
def live_create(store: VMStore, paths: VMPaths, cfg: VMConfig, machine: Any, disks: list[Any],
                name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A full snapshot of a paused running VM: RAM, CPU and devices, and its disks frozen.
    `extra` goes into the body (the runner adds its guest agent's state)."""
    snaps = VMSnapshots(paths)
    folder = snaps._new_folder(name)
    try:
        old_disks = list(cfg.disks)
        records, new_disks = snaps.freeze_disks(cfg, disks)
        try:
            snaps.commit_disks(store, cfg, new_disks)
        except BaseException:
            snaps.reopen(disks, old_disks, cfg.uuid)
            raise
        snaps.reopen(disks, new_disks, cfg.uuid)
        snaps.seal(records)
        body = save_machine(machine, folder, {**snaps._body(cfg, name, "full", records), **(extra or {})})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    snaps._set_tree(current=name)
    return body


def live_restore(store: VMStore, paths: VMPaths, cfg: VMConfig, machine: Any, disks: list[Any],
                 name: str) -> dict[str, Any]:
    """Put a paused running VM back into full snapshot `name` (checked before anything changes:
    the snapshot's content, its machine state and memory image, its disk layers' chains)."""
    from wirt.machine.snapshot import check_restorable, signature_differences

    snaps = VMSnapshots(paths)
    body = snaps.read(name)
    snaps.check_owner(cfg, body)
    if body.get("kind") != "full":
        raise WirtError(f"snapshot {name!r} is disk-only: stop the VM to restore it "
                        f"(`wirt stop {cfg.name}`, then `wirt snapshot restore {cfg.name} {name}`)")
    diffs = signature_differences(body["signature"], machine.signature()) \
        if isinstance(body.get("signature"), dict) else []
    if diffs:
        raise WirtError(f"snapshot {name!r} does not fit the running VM: " + "; ".join(diffs))
    check_restorable(machine, paths.snapshots / name, body)
    new_disks = snaps.revert_disks(cfg, body)
    old_disks = list(cfg.disks)
    snaps.commit_disks(store, cfg, new_disks)
    try:
        snaps.reopen(disks, new_disks, cfg.uuid)
        restore_machine(machine, paths.snapshots / name, body, checked=True)
    except BaseException:
        snaps.commit_disks(store, cfg, old_disks)  # the VM keeps its disks as they were
        snaps.reopen(disks, old_disks, cfg.uuid)
        raise
    snaps._set_tree(current=name, resume=None)
    snaps.collect_garbage(cfg)
    return body


def resume_pending(paths: VMPaths, cfg: VMConfig, machine: Any) -> dict[str, Any] | None:
    """At VM start: load the snapshot a restore or fork left to resume; returns its body, or None.

    The disks were reverted when the resume was set up, so only the machine state loads here.
    The pointer is cleared either way: a later reboot or crash starts the guest afresh.
    """
    snaps = VMSnapshots(paths)
    name = snaps.resume()
    if name is None:
        return None
    snaps.clear_resume()
    body = snaps.read(name)
    snaps.check_owner(cfg, body)  # tree.json is a file in the VM folder: it may name a copied-in snapshot
    restore_machine(machine, paths.snapshots / name, body)
    return body


# ---- fork ------------------------------------------------------------------------------------------
def fork_vm(store: VMStore, source: str, snap: str, new_name: str) -> tuple[VMConfig, list[str]]:
    """A new VM from snapshot `snap` of `source`; returns its config and notes for the user.

    Files are hard-linked, never copied: the frozen disk layers (read-only, so safely shared) and
    the memory image (mapped copy-on-write when the fork starts). The fork gets its own overlay
    on each disk, a new uuid and a MAC address derived from it. Host port forwards are kept, each
    moved to a host port free now (a host port belongs to one VM); the notes say which.
    """
    src = store.require(source)
    src_snaps = VMSnapshots(src)
    body = src_snaps.read(snap)
    src_cfg = store.load(source)
    src_snaps.check_owner(src_cfg, body)
    base = VMConfig.from_dict(body["config"], f"snapshot {snap}")
    notes = []
    ports = [PortForward(free_host_port(p.address, p.protocol), p.guest, p.protocol, p.address)
             for p in base.network.ports]
    if ports:
        notes.append("port forwards moved to free host ports (the source keeps its own): " + ", ".join(
            f"{old} -> {new}" for old, new in zip(base.network.ports, ports))
            + f"; change them with `wirt set {new_name} --no-port --port ...`")
    cfg = VMConfig.new(new_name, cpus=base.cpus, memory=base.memory, image=base.image, net=base.network.mode,
                       append=base.boot.append, cpu_affinity=list(base.cpu_affinity), ports=[str(p) for p in ports])
    cfg.boot = base.boot
    policy = vm_policy(src, src_cfg.uuid)  # the fork may open what its source may, nothing more
    paths = store.create(cfg)
    root = Path(os.path.abspath(src.root))  # files under it are linked; others (the base image) shared
    try:
        if policy.files:
            grant(store.home, cfg.uuid, list(policy.files))
        snaps = VMSnapshots(paths)
        disks = []
        for i, (r, d) in enumerate(zip(body.get("disks", []), base.disks)):
            if r.get("read_only"):
                p = Path(os.path.abspath(policy.check(src.disk(d.path), f"snapshot {snap!r}: disk {i}")))
                disks.append(DiskConfig(_link_in(src, paths, p) if p.is_relative_to(root) else str(p),
                                        d.format, d.size, True))
                continue
            for f in _chain(src.root / r["layer"], policy):
                if f.is_relative_to(root):
                    _link_in(src, paths, f)
            _, rel = snaps._new_overlay(paths.root / r["layer"])
            disks.append(DiskConfig(rel, "qcow2", d.size, False))
        cfg.disks = disks
        store.save(cfg)
        if body.get("kind") == "full":
            folder = snaps._new_folder(snap)
            os.link(src.snapshots / snap / MEMORY_FILE, folder / MEMORY_FILE)
            fork_body = dict(body, vm={"name": cfg.name, "uuid": cfg.uuid}, parent=None,
                             config=cfg.to_dict(), forked_from={"vm": source, "snapshot": snap,
                                                                "uuid": src_cfg.uuid, "mac": base.network.mac})
            write_state_file(folder, fork_body)
            snaps._set_tree(current=snap, resume=snap)
    except BaseException:
        store.destroy(cfg.name)
        forget_grants(store.home, cfg.uuid)
        raise
    return cfg, notes


def _link_in(src: VMPaths, dst: VMPaths, f: Path) -> str:
    """Hard-link file `f` of VM `src` at the same relative path in VM `dst`; returns that path."""
    f = Path(os.path.abspath(f))
    root = Path(os.path.abspath(src.root))
    rel = os.path.relpath(f, root)
    target = dst.root / rel
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not target.exists():
        try:
            os.link(f, target)
        except OSError as exc:
            raise WirtError(f"cannot hard-link {f} into {dst.root}: {exc.strerror}; "
                            "forks need the VMs on one file system") from None
    return rel


# ---- the running VM's side (control-socket commands) ---------------------------------------------
def _paused(runner: Any) -> bool:
    """Pause the runner's machine; False if it was paused already. Raises if it does not stop."""
    if runner.paused:
        return False
    runner.pause()
    if not runner._paused_now.is_set():
        runner.resume()
        raise WirtError("the VM did not pause within 5 s; try again")
    return True


def _store_of(runner: Any) -> tuple[VMStore, VMPaths]:
    root = Path(runner.vm_dir)
    return VMStore(root.parent.parent), VMPaths(root)


def runner_snapshot(runner: Any, name: str) -> dict[str, Any]:
    """Take full snapshot `name` of the runner's VM (paused meanwhile); returns a summary."""
    store, paths = _store_of(runner)
    t0 = time.monotonic()
    paused = _paused(runner)
    try:
        body = live_create(store, paths, runner.cfg, runner.machine, runner.disks, snapshot_name(name),
                           {"agent": runner.agent.state()})
    finally:
        if paused:
            runner.resume()
    return {"name": name, "kind": "full", "memory_bytes": body["memory"]["stored_bytes"],
            "paused_seconds": round(time.monotonic() - t0, 4)}


def runner_restore(runner: Any, name: str) -> dict[str, Any]:
    """Put the runner's VM back into full snapshot `name`; it runs on from there (or stays paused)."""
    store, paths = _store_of(runner)
    t0 = time.monotonic()
    paused = _paused(runner)
    try:
        body = live_restore(store, paths, runner.cfg, runner.machine, runner.disks, snapshot_name(name))
        after_restore(runner, body)
    finally:
        if paused:
            runner.resume()
    return {"name": name, "seconds": round(time.monotonic() - t0, 4)}


def after_restore(runner: Any, body: dict[str, Any]) -> None:
    """Host-side follow-up of a restored guest: the agent channel as it was at the snapshot, and
    (real-time mode) the guest's system clock set to the host's, in the background once it runs;
    in a fork, the guest's network interface gets the fork's own MAC address.

    The guest's timer continues from the saved value (jumping it would make Linux report RCU
    stalls), so its wall clock would lag by the time since the snapshot; the agent fixes that
    with `date -s`. Guests without an agent keep the lag (the RTC is brought forward anyway).
    """
    import threading

    runner.agent.load_state(body.get("agent"))
    if runner.machine.deterministic or not runner.agent.ready:
        return

    commands = [f"date -s @{int(time.time())} >/dev/null"]
    old_mac, new_mac = (body.get("forked_from") or {}).get("mac"), runner.cfg.network.mac
    if old_mac and old_mac != new_mac and runner.cfg.network.mode != "none":
        # a fork's card has a new MAC address; the guest's driver still uses the source's
        commands.append(f"for i in /sys/class/net/*; do [ \"$(cat $i/address)\" = {old_mac} ] && "
                        f"ip link set dev ${{i##*/}} address {new_mac}; done; true")

    def follow_up() -> None:
        for command in commands:
            with contextlib.suppress(Exception):  # best effort: a busy or rebooting guest may not answer
                session = runner.agent.start(command)
                for _ in runner.agent.events(session, timeout=30.0):
                    pass

    threading.Thread(target=follow_up, name="after-restore", daemon=True).start()


# ---- the Python API's operations (wirt.VM methods delegate here) ------------------------------------
def vm_snapshot(vm: Any, name: str) -> SnapshotInfo:
    """Snapshot `vm`: full (CPU, devices, RAM, disks) while it runs or is paused, disk-only when stopped."""
    from wirt.vm.control import call
    from wirt.vm.locks import vm_lock

    snapshot_name(name)
    with vm_lock(vm.paths.root):
        if vm.status(query=False).running:
            call(vm.paths.control, "snapshot-create", name=name, timeout=600.0)
        else:
            VMSnapshots(vm.paths).create_disk_only(vm.store, vm.config, name)
    return next(s for s in VMSnapshots(vm.paths).list() if s.name == name)


def vm_restore(vm: Any, name: str) -> str:
    """Restore snapshot `name`; returns what happened ("running" from it now, or "on next start")."""
    from wirt.vm.control import call
    from wirt.vm.locks import vm_lock

    with vm_lock(vm.paths.root):
        if vm.status(query=False).running:
            call(vm.paths.control, "snapshot-restore", name=snapshot_name(name), timeout=600.0)
            return "running"
        body = VMSnapshots(vm.paths).restore_stopped(vm.store, vm.config, name)
        return "on next start" if body.get("kind") == "full" else "disks reverted"


def vm_remove_snapshot(vm: Any, name: str) -> None:
    """Delete snapshot `name` of `vm` (its disk layers stay while anything is backed by them)."""
    from wirt.vm.locks import vm_lock

    with vm_lock(vm.paths.root):
        VMSnapshots(vm.paths).remove(vm.config, name)


def vm_fork(vm: Any, snap: str, new_name: str) -> tuple[Any, list[str]]:
    """A new VM (same home) from snapshot `snap` of `vm`; returns (the new VM, notes). Not started."""
    from wirt.vm.locks import vm_lock

    with vm_lock(vm.paths.root):
        cfg, notes = fork_vm(vm.store, vm.name, snap, new_name)
    return type(vm)(cfg.name, vm.store.home), notes
