"""The host agent: one per node, as a Ray actor (services.start_agent), doing on its node what
`wirt` does on one host, through that node's wirt.vm API and its own WIRT_HOME.

The agent holds no state of its own beyond its node name: VMs are files under the node's
WIRT_HOME (DESIGN.md "A VM is files"), so an agent restarted on the same node sees them again.
Every method returns plain data (rows, bytes, dicts), and WirtErrors travel back to the caller
as they are (services.call turns them into one-line errors there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from wirt.errors import WirtError
from wirt.vm.store import VMPaths, VMStore, wirt_home

__all__ = ["HostAgent", "vm_row"]


def vm_row(vm: Any) -> dict[str, Any]:
    """One VM as `wirt ls` shows it (plain data)."""
    st = vm.status()
    try:
        cfg = vm.config
        used, size = vm.disk_usage()
    except WirtError as exc:
        return {"name": vm.name, "state": "invalid", "reason": str(exc)}
    return {"name": vm.name, "state": st.state, "cpus": int(st.info.get("cpus", cfg.cpus)),
            "memory": int(st.info.get("memory", cfg.memory)), "disk_used": used, "disk_size": size,
            "ip": st.live.get("ip"), "uptime": st.uptime, "pid": st.pid, "uuid": cfg.uuid,
            "mac": cfg.network.mac, "ports": [str(p) for p in cfg.network.ports],
            "reason": st.reason if st.state == "crashed" else ""}


def _renote(root: Path, rel: str, base: str) -> None:
    """disk0.note (how VM.create made disk 0) names the base disk 0 is on now."""
    note = Path(root) / "disk0.note"
    if rel == "disk0.qcow2" and note.is_file():
        from wirt.fileio import atomic_write

        atomic_write(note, f"qcow2 overlay on {base}\n")


class HostAgent:
    """wirt on one node (see the module docstring)."""

    def __init__(self, node: str) -> None:
        from wirt.cluster.bases import BaseStore

        self.node = node
        self.home = wirt_home()
        self.store = VMStore(self.home)
        self.bases = BaseStore(self.home)
        self.transfers: dict[str, dict[str, Any]] = {}  # key -> what, bytes moved and total, for progress
        self._fetching: dict[str, threading.Lock] = {}  # one fetch of a base at a time
        self._fetching_lock = threading.Lock()

    def _vm(self, name: str) -> Any:
        from wirt.vm.api import VM

        return VM.get(name, self.home)

    # ---- the node ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Who and where this agent is, and the node's admission settings."""
        from wirt.vm.settings import load_settings

        s = load_settings(self.home)
        return {"node": self.node, "home": str(self.home), "host": socket.gethostname(), "pid": os.getpid(),
                "overhead": s.vm_overhead, "cpu_overcommit": s.cpu_overcommit,
                "memory_overcommit": s.memory_overcommit}

    def rows(self) -> list[dict[str, Any]]:
        """Every VM of this node's store."""
        from wirt.vm.api import VM

        return [vm_row(vm) for vm in VM.list(self.home)]

    def row(self, name: str) -> dict[str, Any]:
        return vm_row(self._vm(name))

    # ---- lifecycle -----------------------------------------------------------------------------
    def create(self, spec: dict[str, Any], base: str | None = None) -> dict[str, Any]:
        """VM.create on this node; `spec` holds its keyword arguments (name, cpus, memory, ...),
        `base` the root disk fetched here for its image (ensure_base), if this node had none."""
        from wirt.vm.api import VM

        vm = VM.create(home=self.home, base=base, **spec)
        cfg = vm.config
        return {"path": str(vm.paths.root.resolve()), "uuid": cfg.uuid, "mac": cfg.network.mac}

    def start(self, name: str) -> dict[str, Any]:
        """Start the VM here; this node's own admission control decides (wirt.vm.admission)."""
        vm = self._vm(name)
        vm.start()
        return vm_row(vm)

    def stop(self, name: str, force: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        vm = self._vm(name)
        vm.stop(force=force, timeout=timeout)
        return vm_row(vm)

    def remove(self, name: str, force: bool = False) -> None:
        self._vm(name).remove(force=force)

    def exec(self, name: str, command: str, timeout: float, kill_after: float | None,
             stdin: bytes) -> tuple[bytes, bytes, int]:
        """VM.exec: `timeout` waits for the guest agent, `kill_after` bounds the command."""
        r = self._vm(name).exec(command, timeout=timeout, kill_after=kill_after, stdin=stdin)
        return r.stdout, r.stderr, r.status

    def console_read(self, name: str, offset: int) -> tuple[bytes, int, str]:
        """Console output from byte `offset` of the current log (at most 64 KiB), the next offset
        and the VM's state: a remote console polls this."""
        vm = self._vm(name)
        state = vm.status(query=False).state
        path = vm.log_path()
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(65536)
        except OSError:
            data = b""
        return data, offset + len(data), state

    def console_size(self, name: str) -> int:
        try:
            return os.path.getsize(self._vm(name).log_path())
        except OSError:
            return 0

    def console_input(self, name: str, data: bytes) -> None:
        self._vm(name).console_input(data)

    # ---- base images by content (wirt.cluster.bases) ---------------------------------------------
    def find_base(self, image: str, cloud: bool = False) -> dict[str, Any] | None:
        """The root disk `image` names here (bases.find_image), described with its hash; None
        when this node does not have it."""
        from wirt.cluster.bases import find_image

        path = find_image(image, cloud)
        return None if path is None else self.bases.describe(path)

    def vm_bases(self, name: str) -> list[dict[str, Any]]:
        """The base files VM `name`'s disks and snapshot layers are backed by outside its folder,
        described with their hashes and, under "files", which of its files name each one how."""
        from wirt.cluster.bases import external_backings
        from wirt.cluster.transfer import manifest

        root = self.store.paths(name).root
        by_target: dict[str, list[list[str]]] = {}
        for rel, backing, target in external_backings(root, [f["path"] for f in manifest(root)]):
            by_target.setdefault(target, []).append([rel, backing])
        out = []
        for target, files in sorted(by_target.items()):
            if not os.path.isfile(target):
                raise WirtError(f"VM {name!r} on node {self.node}: {files[0][0]} is backed by {target}, which is "
                                "missing there; restore that file (or rebuild its image) before moving the VM")
            from wirt.cluster.bases import qcow2_header

            below = qcow2_header(Path(target))
            if below is not None and below.backing_file:
                raise WirtError(f"VM {name!r}: its base {target} is itself an overlay (on {below.backing_file}); "
                                f"the cluster moves single-file bases: flatten it with `wirt disk convert {target} "
                                "FLAT.qcow2` and create the VM on that")
            out.append(dict(self.bases.describe(Path(target)), files=files))
        return out

    def read_base(self, sha: str, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` of the base with hash `sha` (one this node knows by hash only)."""
        path = self.bases.source(sha)
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def ensure_base(self, base: dict[str, Any], sources: list[tuple[str, Any]], key: str,
                    label: str) -> dict[str, Any]:
        """Have base `base` (a description from find_base/vm_bases) here: a file of this node's
        own image cache with the same hash (at the same path: hosts that share or copied their
        caches; or one hashed here before: the image was built here too), else the one in this
        node's store, else fetched from the first of `sources` ((node, agent) pairs) that sends
        a copy with the right hash. A file elsewhere (another node's cache or WIRT_HOME, seen on
        a shared file system) is never used in place: it is not this node's to keep. Returns its
        path here and what was fetched."""
        from wirt.cluster.bases import check_hash
        from wirt.paths import cache_dir

        sha = check_hash(base["sha256"])
        cache = os.path.realpath(cache_dir().expanduser())
        p = base.get("path")
        with contextlib.suppress(OSError):
            if (p and Path(os.path.realpath(p)).is_relative_to(cache) and os.path.getsize(p) == base["size"]
                    and self.bases.hash(Path(p)) == sha):
                return {"path": os.path.realpath(p), "bytes": 0, "from": None}
        with self._fetching_lock:
            lock = self._fetching.setdefault(sha, threading.Lock())
        with lock:  # a second VM wanting the same base waits for the first fetch, then finds it
            have = self._have(sha)
            if have is not None:
                return {"path": str(have), "bytes": 0, "from": None}
            failures = []
            for node, source in sources:
                try:
                    return self._fetch_base(base, node, source, key, label)
                except WirtError as exc:
                    failures.append(str(exc))
            raise WirtError("; ".join(failures) or f"base image {label}: no node to fetch it from")

    def _have(self, sha: str) -> Path | None:
        """This node's own file with hash `sha`: in its store, or hashed before in its image cache."""
        from wirt.paths import cache_dir

        have = self.bases.lookup(sha)
        if have is None:
            cache = os.path.realpath(cache_dir().expanduser())
            have = next((p for p in self.bases.hashed(sha) if p.is_relative_to(cache)), None)
        return have

    def _fetch_base(self, base: dict[str, Any], node: str, source: Any, key: str, label: str) -> dict[str, Any]:
        import ray

        sha = base["sha256"]
        return self._receive_base(base, f"base image {label} from {node}", f"the copy on {node}", key,
                                  lambda rel, off, n: source.read_base.remote(sha, off, n), ray.get) | {"from": node}

    def _receive_base(self, base: dict[str, Any], what: str, where: str, key: str,
                      fetch: Any, get: Any) -> dict[str, Any]:
        """Pull base `base` in chunks (transfer.receive with `fetch`/`get`) into a staging file of
        the store, check its SHA-256 and give it its name there; progress under `key`."""
        import shutil

        from wirt.cluster.transfer import receive
        from wirt.images.cache import sha256_file

        sha = base["sha256"]
        staging = self.bases.staging()
        files = [{"path": "base", "size": int(base["size"]), "mode": 0o400, "extents": base["extents"]}]
        self.transfers[key] = {"what": what, "moved": 0, "total": sum(n for _, n in base["extents"])}

        def progress(moved: int, total: int) -> None:
            self.transfers[key] = {"what": what, "moved": moved, "total": total}

        t0 = time.monotonic()
        try:
            try:
                moved = receive(files, staging, fetch, get, progress=progress)
            except WirtError as exc:
                raise WirtError(f"fetching {what} failed: {exc}") from None
            except Exception as exc:  # noqa: BLE001 -- the source died or refused: one line, try the next
                first = (str(getattr(exc, "cause", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
                raise WirtError(f"fetching {what} failed: {first}") from None
            got = sha256_file(staging / "base")
            if got != sha:
                raise WirtError(f"{what} does not match its content hash (sha256 {got[:12]}..., expected "
                                f"{sha[:12]}...): {where} ({base.get('path')}) changed or is damaged; "
                                "rebuild or restore it there and try again")
            path = self.bases.add(staging / "base", sha, base["format"])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.transfers.pop(key, None)
        return {"path": str(path), "bytes": moved, "seconds": time.monotonic() - t0}

    def _own_bases(self, name: str) -> int:
        """Make VM `name` (just adopted from a failed node's folder) use only bases this node
        may keep: one it can open only as another node's file (that node's store or cache, seen
        on a shared file system) is copied into this store by its hash (unless already there)
        and the VM's files are pointed at the copy. Returns the bytes copied; a base that cannot
        be read is "unreachable"."""
        from wirt.cluster.bases import external_backings, set_backing
        from wirt.cluster.transfer import manifest
        from wirt.vm.access import vm_policy

        paths = self.store.paths(name)
        policy = vm_policy(paths, self.store.load(name).uuid)
        copied = 0
        groups: dict[str, list[str]] = {}
        for rel, _, target in external_backings(paths.root, [f["path"] for f in manifest(paths.root)]):
            if not policy.allows(target):
                groups.setdefault(target, []).append(rel)
        for target, rels in sorted(groups.items()):
            if not os.path.isfile(target):
                raise WirtError(f"unreachable: the base {target} of VM {name!r} cannot be read from node {self.node}")
            base = self.bases.describe(Path(target))
            have = self._have(base["sha256"])
            if have is None:

                def read(fut: tuple[int, int], path: str = target) -> bytes:
                    with open(path, "rb") as f:
                        return os.pread(f.fileno(), fut[1], fut[0])

                got = self._receive_base(base, f"base {target}", "the file", name,
                                         lambda rel, off, n: (off, n), read)
                have, copied = Path(got["path"]), copied + got["bytes"]
            for rel in rels:
                set_backing(paths.root / rel, str(have))
                _renote(paths.root, rel, str(have))
        return copied

    def transfer_progress(self, key: str) -> dict[str, Any] | None:
        """What a transfer running here for `key` (a VM's name) has moved so far, or None."""
        return self.transfers.get(key)

    # ---- migration: the source side ------------------------------------------------------------
    def migrate_out(self, name: str, live: bool) -> dict[str, Any]:
        """Stop the VM for a move and describe its files. A running VM (with `live`) is paused,
        snapshotted in full (RAM, CPU, devices, disks) and halted: the guest's pause starts here."""
        from wirt.cluster.transfer import manifest

        vm = self._vm(name)
        st = vm.status(query=False)
        snap = None
        paused = 0.0
        if st.running:
            if not live:
                raise WirtError(f"VM {name!r} is {st.state}; stop it first or migrate it running with --live")
            snap = f"migrate-{uuidlib.uuid4().hex[:8]}"
            t0 = time.monotonic()
            vm.pause()
            try:
                vm.snapshot(snap)
            except BaseException:
                with contextlib.suppress(WirtError):
                    vm.resume()
                raise
            vm.stop(force=True)
            paused = time.monotonic() - t0
        from wirt.vm.access import granted

        return {"manifest": manifest(vm.paths.root), "snapshot": snap, "stop_seconds": paused,
                "grants": granted(self.home, vm.config.uuid)}

    def read(self, name: str, rel: str, offset: int, length: int) -> bytes:
        from wirt.cluster.transfer import read_chunk

        return read_chunk(self.store.paths(name).root, rel, offset, length)

    def migrate_abort(self, name: str, snapshot: str | None) -> None:
        """The move failed after migrate_out: a live VM continues here from its snapshot."""
        if snapshot is None:
            return
        vm = self._vm(name)
        vm.restore(snapshot)
        vm.start()
        with contextlib.suppress(WirtError):
            vm.remove_snapshot(snapshot)

    def discard(self, name: str) -> None:
        """Delete the source copy (files and grants) once the VM runs (or sits) on its new node."""
        self._vm(name).remove()

    # ---- migration: the target side ------------------------------------------------------------
    def migrate_in(self, name: str, source: Any, files: list[dict[str, Any]], snapshot: str | None,
                   start: bool, grants: list[str] = (), rebase: list[tuple[str, str]] = ()) -> dict[str, Any]:
        """Pull the VM's files from agent `source`, put them into this node's store, and (for a
        live move) resume the VM from the migration snapshot. `rebase` lists (file, base path
        here) for the files whose base has another path on this node (ensure_base). Returns bytes
        moved and timings."""
        import ray

        from wirt.cluster.bases import set_backing
        from wirt.cluster.transfer import receive

        t0 = time.monotonic()
        staging = self._staging(name)
        what = f"VM {name}'s files"
        self.transfers[name] = {"what": what, "moved": 0, "total": 0}

        def progress(moved: int, total: int) -> None:
            self.transfers[name] = {"what": what, "moved": moved, "total": total}

        try:
            moved = receive(files, staging, lambda rel, off, n: source.read.remote(name, rel, off, n), ray.get,
                            progress=progress)
        finally:
            self.transfers.pop(name, None)
        t1 = time.monotonic()
        try:
            for rel, path in rebase:
                set_backing(staging / rel, path)
                _renote(staging, rel, path)
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._install(name, staging)
        try:
            self._grant(name, list(grants))
            self._check_backing(name)
            if snapshot is not None:
                self._resume(name, snapshot)
            elif start:
                self._vm(name).start()
        except BaseException:
            self._drop(name)  # the source keeps (and resumes) its copy: no second one may stay here
            raise
        return {"bytes": moved, "transfer_seconds": t1 - t0, "resume_seconds": time.monotonic() - t1,
                "path": str(self.store.paths(name).root.resolve())}

    def _drop(self, name: str) -> None:
        """Delete a copy installed here by a move that failed (stopping it if it started)."""
        with contextlib.suppress(Exception):
            self._vm(name).remove(force=True)

    def _staging(self, name: str) -> Path:
        if self.store.exists(name):
            raise WirtError(f"node {self.node} already has a VM named {name!r}; remove or rename it first")
        self.store.ensure()
        return self.store.vms / f".incoming-{name}-{uuidlib.uuid4().hex[:8]}"

    def _install(self, name: str, staging: Path) -> None:
        from wirt.fileio import fsync_dir

        target = self.store.paths(name).root
        try:
            os.rename(staging, target)  # atomic: the VM appears whole or not at all
        except OSError:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise WirtError(f"node {self.node} already has a VM named {name!r}; remove or rename it first") from None
        fsync_dir(self.store.vms)

    def _grant(self, name: str, files: list[str]) -> None:
        """The files outside the VM folder it was allowed to open (wirt.vm.access) stay allowed."""
        if files:
            from wirt.vm.access import grant

            grant(self.home, self.store.load(name).uuid, files)

    def _check_backing(self, name: str) -> None:
        """Every disk's backing chain opens here, within what the VM may open (its bases were
        put here by ensure_base before the move)."""
        from wirt.vm.access import vm_policy
        from wirt.vm.snapshots import _chain

        paths = self.store.paths(name)
        cfg = self.store.load(name)
        for d in cfg.disks:
            try:
                _chain(paths.disk(d.path), vm_policy(paths, cfg.uuid))
            except (WirtError, OSError) as exc:
                raise WirtError(f"VM {name!r} on node {self.node}: disk {d.path}: {exc}") from None

    def _resume(self, name: str, snapshot: str) -> None:
        vm = self._vm(name)
        vm.restore(snapshot)  # stopped: the next start loads the snapshot's running state
        vm.start()
        with contextlib.suppress(WirtError):
            vm.remove_snapshot(snapshot)  # its memory image stays mapped until the VM ends

    # ---- recovery after a node failure ----------------------------------------------------------
    def adopt(self, name: str, path: str, uuid: str, start: bool) -> dict[str, Any]:
        """Take over VM `name` of a failed node from its folder `path`, if this node can reach it
        (a shared file system, or the same machine): fence a process of it still running here,
        copy the files in, delete the old folder, start it from its disk state (or its pending
        snapshot). WirtError "unreachable" when the files are not there."""
        from wirt.cluster.transfer import copy_tree
        from wirt.vm.schema import VMConfig

        old = VMPaths(Path(path))
        try:
            import tomllib

            cfg = VMConfig.from_dict(tomllib.loads(old.config.read_text()), str(old.config))
        except (OSError, ValueError) as exc:
            raise WirtError(f"unreachable: node {self.node} cannot read {old.config} ({exc})") from None
        if cfg.uuid != uuid:
            raise WirtError(f"unreachable: {old.root} holds another VM (uuid {cfg.uuid}, expected {uuid})")
        fenced = self._fence(old)
        staging = self._staging(name)
        moved = copy_tree(old.root, staging)
        self._install(name, staging)
        from wirt.vm.access import forget_grants, granted

        old_home = old.root.parent.parent
        self._grant(name, granted(old_home, uuid))
        try:
            moved += self._own_bases(name)
        except BaseException:
            self._drop(name)  # the old folder stays as it was: a later attempt starts again
            raise
        forget_grants(old_home, uuid)
        import shutil

        shutil.rmtree(old.root, ignore_errors=True)
        from wirt.vm.status import clean_stale

        clean_stale(self.store.paths(name))  # the old run/ was not copied; a crash record may be
        if start:
            self._vm(name).start()
        return {"bytes": moved, "fenced": fenced, "path": str(self.store.paths(name).root.resolve())}

    @staticmethod
    def _fence(old: VMPaths) -> bool:
        """Kill the VM's old process if it still runs on this host (its node died, it did not):
        two copies of one VM must never write its disks at once."""
        from wirt.vm.status import pid_alive, read_pid

        killed = False
        for f in (old.pid, old.run / "monitor.pid"):
            pid = read_pid(f)
            if pid_alive(pid, old.name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
                    killed = True
        deadline = time.monotonic() + 10
        while any(pid_alive(read_pid(f), old.name) for f in (old.pid, old.run / "monitor.pid")):
            if time.monotonic() > deadline:
                raise WirtError(f"cannot fence VM {old.name!r}: its old process does not die")
            time.sleep(0.05)
        return killed

