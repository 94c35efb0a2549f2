"""The controller: the cluster's one record of which VM lives on which node, and the code that
places, moves and recovers VMs (a detached Ray actor on the head node; services.start_controller).

Registry: `$WIRT_HOME/cluster/registry.json` of the head node, written atomically after every
change, so a restarted controller knows the fleet again. Each record holds the VM's node, its
folder there, its uuid, its demand (vCPUs, RAM) and its placement wishes (labels, affinity,
anti-affinity, node labels, policy, restart policy). Capacity comes from Ray: each node's
wirt_vcpu and wirt_mem_mib resources; what is used, from the registry; every placed VM also
holds a Ray placement group of its demand on its node, so Ray's accounting agrees.

A watcher thread asks Ray which nodes are alive. The VMs of a node that disappears are marked
"lost"; those with restart_policy "on-node-failure" are started again on another node from
their files, if that node can reach them (HostAgent.adopt), else marked "unrecoverable".
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid as uuidlib
from typing import Any

from wirt.cluster.placement import NodeView, PlacementError, Request, place
from wirt.cluster.resources import MEM_MIB, VCPU, demand_bundle, node_name_of
from wirt.cluster.services import agent, call
from wirt.errors import WirtError
from wirt.fileio import atomic_write
from wirt.vm.store import read_json, wirt_home

__all__ = ["Controller", "RESTART_POLICIES"]

RESTART_POLICIES = ("never", "on-node-failure")
WATCH_INTERVAL = 1.0
RETRY_SECONDS = 30.0  # between attempts to restart a lost VM elsewhere
RESERVE_TIMEOUT = 60.0
_REQUEST_KEYS = ("labels", "node_labels", "affinity", "anti_affinity", "policy")


class Controller:
    """See the module docstring. Methods run in a thread pool (max_concurrency): one lock
    guards the registry, and a VM being moved or recovered is marked busy."""

    def __init__(self) -> None:
        self.path = wirt_home() / "cluster" / "registry.json"
        self.lock = threading.RLock()
        self.vms: dict[str, dict[str, Any]] = (read_json(self.path) or {}).get("vms", {})
        self.busy: set[str] = set()
        self.overheads: dict[str, int] = {}
        self.seen: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # creations placed but not yet recorded
        self.events: list[str] = []
        self.activity: dict[str, str] = {}  # VM name -> the node moving its files or base now (progress)
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="wirt-node-watch", daemon=True).start()

    def hello(self) -> dict[str, Any]:
        return {"registry": str(self.path), "vms": len(self.vms)}

    # ---- registry ----------------------------------------------------------------------------------
    def _save(self) -> None:
        atomic_write(self.path, json.dumps({"vms": self.vms}, indent=1, sort_keys=True), parents=True)

    def _record(self, name: str) -> dict[str, Any]:
        rec = self.vms.get(name)
        if rec is None:
            raise WirtError(f"no VM named {name!r} in the cluster; see `wirt --cluster ADDR ls`")
        return rec

    def _claim(self, name: str) -> dict[str, Any]:
        with self.lock:
            rec = self._record(name)
            if name in self.busy:
                raise WirtError(f"VM {name!r} is being moved or recovered; try again in a moment")
            self.busy.add(name)
            return rec

    def _note(self, text: str) -> None:
        with self.lock:
            self.events.append(f"{time.strftime('%H:%M:%S')} {text}")
            del self.events[:-50]

    # ---- nodes -------------------------------------------------------------------------------------
    def _ray_nodes(self) -> dict[str, dict[str, Any]]:
        """wirt nodes Ray knows, by name (an alive entry wins over a dead one of the same name)."""
        import ray

        out: dict[str, dict[str, Any]] = {}
        for n in ray.nodes():
            name = node_name_of(n.get("Resources") or {})
            if name is None:
                continue
            if name not in out or n.get("Alive"):
                out[name] = n
        # a dead node's entry loses its resources: remember what each node looked like alive
        for name, n in out.items():
            if n.get("Alive"):
                self.seen[name] = n
        for name, n in self.seen.items():
            if name not in out or not out[name].get("Alive"):
                out[name] = dict(n, Alive=False)
        return out

    def _overhead(self, node: str) -> int:
        if node not in self.overheads:
            self.overheads[node] = int(call(agent(node).info.remote(), f"the agent of {node}", timeout=60)["overhead"])
        return self.overheads[node]

    def _views(self) -> list[NodeView]:
        views = []
        for name, n in sorted(self._ray_nodes().items()):
            res = n.get("Resources") or {}
            alive = bool(n.get("Alive"))
            overhead = 256 << 20
            if alive:
                with contextlib.suppress(WirtError):
                    overhead = self._overhead(name)
            labels = {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/")}
            v = NodeView(name, float(res.get(VCPU, 0.0)), float(res.get(MEM_MIB, 0.0)), labels=labels,
                         overhead=overhead, alive=alive)
            for rec in [*self.vms.values(), *self.pending.values()]:
                if rec["node"] == name and rec.get("state", "ok") == "ok":
                    v.used_vcpus += rec["cpus"]
                    v.used_memory_mib += rec["memory_mib"]
                    v.vm_labels.append(rec.get("labels", {}))
            views.append(v)
        return views

    def nodes(self) -> list[dict[str, Any]]:
        """`wirt cluster status`: each node's capacity, allocation, labels, VMs and liveness."""
        with self.lock:
            views = self._views()
            return [{"name": v.name, "alive": v.alive, "vcpus": v.vcpus, "memory_mib": v.memory_mib,
                     "used_vcpus": v.used_vcpus, "used_memory_mib": v.used_memory_mib, "labels": v.labels,
                     "vms": sorted(n for n, r in self.vms.items() if r["node"] == v.name)} for v in views]

    def recent_events(self) -> list[str]:
        return list(self.events)

    def progress(self, name: str) -> dict[str, Any] | None:
        """The transfer under way for VM `name` (its base being fetched, its files being moved):
        what, bytes moved, bytes in all; None when there is none. The CLI polls this."""
        node = self.activity.get(name)
        if node is None:
            return None
        try:
            return call(agent(node).transfer_progress.remote(name), f"the agent of {node}", timeout=10)
        except WirtError:
            return None

    def _alive(self) -> list[str]:
        with self.lock:
            return sorted(n for n, v in self._ray_nodes().items() if v.get("Alive"))

    # ---- base images (wirt.cluster.bases) ----------------------------------------------------------
    def _base_for(self, name: str, spec: dict[str, Any], node: str) -> dict[str, Any] | None:
        """Make sure `node` has the root disk of the new VM's image: None when it has it itself
        (VM.create finds it there) or the image has none; else where the fetched copy is and
        what was fetched. An image no node has is refused, except "debian", which the node
        builds as `wirt create` does on one host."""
        image = str(spec.get("image"))
        if image in ("initramfs", "none") or spec.get("disk") == "none":
            return None  # no root disk (or none asked for: VM.create says that needs one)
        cloud = bool(spec.get("user_data") or spec.get("ssh_key"))
        if call(agent(node).find_base.remote(image, cloud), f"the agent of {node}", timeout=600) is not None:
            return None
        others = [n for n in self._alive() if n != node]
        refs = {}
        for n in others:
            with contextlib.suppress(WirtError):
                refs[n] = agent(n).find_base.remote(image, cloud)
        hits: dict[str, dict[str, Any]] = {}
        for n, ref in refs.items():
            with contextlib.suppress(WirtError):
                found = call(ref, f"the agent of {n}", timeout=600)
                if found is not None:
                    hits[n] = found
        if not hits:
            if image == "debian":
                return None
            asked = ", ".join([node, *others])
            fix = (f"build it on one of them with `wirt image build --name {image}`" if "/" not in image
                   else "put the disk file at that path on one of them, or give the name of a `wirt image build "
                        "--name` disk")
            raise WirtError(f"image {image!r} is on no node of the cluster (asked {asked}); {fix}")
        first = next(iter(hits.values()))  # nodes in name order; those with the same bytes can all serve
        sources = [(n, agent(n)) for n, h in hits.items() if h["sha256"] == first["sha256"]]
        self.activity[name] = node
        try:
            got = call(agent(node).ensure_base.remote(first, sources, name, repr(image)), f"the agent of {node}")
        finally:
            self.activity.pop(name, None)
        return dict(got, image=repr(image), sha256=first["sha256"], node=node)

    def _move_bases(self, name: str, source: str, target: str) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
        """Before a move: have the bases of VM `name` on `target` (fetched from `source` when
        missing), while the guest still runs. Returns the files to point at new base paths there
        and what was fetched."""
        bases = call(agent(source).vm_bases.remote(name), f"the agent of {source}", timeout=600)
        rebase: list[tuple[str, str]] = []
        fetched = []
        self.activity[name] = target
        try:
            for b in bases:
                label = f"of VM {name!r}"
                got = call(agent(target).ensure_base.remote(b, [(source, agent(source))], name, label),
                           f"the agent of {target}")
                rebase += [(rel, got["path"]) for rel, backing in b["files"] if backing != got["path"]]
                if got["bytes"]:
                    fetched.append(dict(got, sha256=b["sha256"], image=label))
        finally:
            self.activity.pop(name, None)
        return rebase, fetched

    # ---- reservation (Ray placement groups) --------------------------------------------------------
    def _reserve(self, name: str, node: str, cpus: int, memory: int, overhead: int) -> str:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        pg_name = f"wirt-vm-{name}-{uuidlib.uuid4().hex[:8]}"
        pg = placement_group([demand_bundle(node, cpus, memory, overhead)], strategy="STRICT_PACK",
                             name=pg_name, lifetime="detached")
        try:
            ray.get(pg.ready(), timeout=RESERVE_TIMEOUT)
        except Exception:
            remove_placement_group(pg)
            raise WirtError(f"Ray could not reserve {cpus} vCPU and {memory >> 20} MiB for {name!r} on node "
                            f"{node} within {RESERVE_TIMEOUT:g} s (taken by something else?); try again") from None
        return pg_name

    @staticmethod
    def _release(pg_name: str | None) -> None:
        if not pg_name:
            return
        from ray.util import get_placement_group
        from ray.util.placement_group import remove_placement_group

        with contextlib.suppress(Exception):
            remove_placement_group(get_placement_group(pg_name))

    # ---- placement ---------------------------------------------------------------------------------
    @staticmethod
    def _request(name: str, cpus: int, memory: int, wishes: dict[str, Any], node: str | None = None) -> Request:
        return Request(name, cpus, memory, dict(wishes.get("labels") or {}), dict(wishes.get("node_labels") or {}),
                       dict(wishes.get("affinity") or {}), dict(wishes.get("anti_affinity") or {}),
                       wishes.get("policy") or "spread", node)

    def plan(self, requests: list[dict[str, Any]]) -> list[str]:
        """Dry run: where each request would go, in order, against the cluster as it is now
        (nothing is created or reserved). A request that fits nowhere gets its refusal text."""
        with self.lock:
            views = self._views()
        out = []
        for r in requests:
            req = self._request(r["name"], int(r["cpus"]), int(r["memory"]), r, r.get("node"))
            try:
                chosen = place(req, views)
                chosen.take(req)
                out.append(chosen.name)
            except PlacementError as exc:
                out.append(f"refused: {exc}")
        return out

    def create(self, spec: dict[str, Any], wishes: dict[str, Any], node: str | None = None,
               restart_policy: str = "never") -> dict[str, Any]:
        """Place a new VM, reserve its resources on the chosen node and create it there."""
        from wirt.units import parse_size
        from wirt.vm.schema import validate_name

        name = validate_name(spec["name"])
        if restart_policy not in RESTART_POLICIES:
            raise WirtError(f"--restart-policy {restart_policy}: unknown; use one of {', '.join(RESTART_POLICIES)}")
        from wirt.vm.settings import load_create_defaults

        defaults = load_create_defaults(wirt_home())  # the head's [create] defaults decide for the fleet
        spec = dict(spec, cpus=spec.get("cpus") or defaults.cpus, memory=spec.get("memory") or defaults.memory,
                    image=spec.get("image") or defaults.image, net=spec.get("net") or defaults.net)
        try:
            memory = spec["memory"] if isinstance(spec["memory"], int) else parse_size(str(spec["memory"]))
        except WirtError:
            raise WirtError(f"--memory {spec['memory']}: not a size; give e.g. 512M") from None
        cpus = spec["cpus"]
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise WirtError(f"--cpus {cpus}: give a whole number of at least 1")
        with self.lock:
            if name in self.vms or name in self.busy:
                raise WirtError(f"a VM named {name!r} already exists in the cluster (on node "
                                f"{self.vms[name]['node'] if name in self.vms else '?'}); pick another name")
            chosen = place(self._request(name, cpus, memory, wishes, node), self._views())
            self.busy.add(name)
            self.pending[name] = {"node": chosen.name, "cpus": cpus, "memory_mib": chosen.demand_mib(memory),
                                  "labels": dict(wishes.get("labels") or {})}
        try:
            pg = self._reserve(name, chosen.name, cpus, memory, chosen.overhead)
            try:
                base = self._base_for(name, spec, chosen.name)
                made = call(agent(chosen.name).create.remote(dict(spec, memory=memory), base and base["path"]),
                            f"the agent of {chosen.name}")
            except BaseException:
                self._release(pg)
                raise
            if base and base["bytes"]:
                self._note(f"fetched base image {base['image']} ({base['bytes'] >> 20} MiB) from {base['from']} "
                           f"to {chosen.name}")
            rec = {"name": name, "node": chosen.name, "path": made["path"], "uuid": made["uuid"], "cpus": cpus,
                   "memory": memory, "memory_mib": chosen.demand_mib(memory), "pg": pg, "state": "ok",
                   "reason": "", "restart_policy": restart_policy,
                   **{k: wishes.get(k) or ({} if k != "policy" else "spread") for k in _REQUEST_KEYS}}
            with self.lock:
                self.vms[name] = rec
                self._save()
            self._note(f"created {name} on {chosen.name}")
            return dict(rec, fetched=[base] if base and base["bytes"] else [])
        finally:
            with self.lock:
                self.busy.discard(name)
                self.pending.pop(name, None)

    def locate(self, name: str) -> dict[str, Any]:
        """A VM's record (node, folder, state); lost VMs raise a WirtError saying so."""
        with self.lock:
            rec = dict(self._record(name))
        if rec.get("state", "ok") != "ok":
            raise WirtError(f"VM {name!r} is {rec['state']}: {rec.get('reason')}")
        return rec

    def remove(self, name: str, force: bool = False) -> None:
        """Delete a VM from its node and the registry, releasing its reservation. A VM lost with
        its node is only forgotten (its files went with the node)."""
        rec = self._claim(name)
        try:
            if rec.get("state", "ok") == "ok":
                call(agent(rec["node"]).remove.remote(name, force), f"the agent of {rec['node']}")
            with self.lock:
                self._release(rec.get("pg"))
                del self.vms[name]
                self._save()
            self._note(f"removed {name}")
        finally:
            with self.lock:
                self.busy.discard(name)

    def ls(self) -> list[dict[str, Any]]:
        """Every VM of the cluster with its node and state ("lost" when its node is down)."""
        import ray

        with self.lock:
            recs = {n: dict(r) for n, r in self.vms.items()}
            alive = {n for n, v in self._ray_nodes().items() if v.get("Alive")}
        refs = {}
        for node in sorted({r["node"] for r in recs.values()} & alive):
            with contextlib.suppress(WirtError):
                refs[node] = agent(node).rows.remote()
        rows_by_node: dict[str, dict[str, Any]] = {}
        for node, ref in refs.items():
            try:
                rows_by_node[node] = {r["name"]: r for r in ray.get(ref, timeout=30)}
            except Exception:  # noqa: BLE001 -- an unreachable agent shows as such, not as an error
                rows_by_node[node] = {}
        out = []
        for name, rec in sorted(recs.items()):
            base = {"name": name, "node": rec["node"], "cpus": rec["cpus"], "memory": rec["memory"],
                    "labels": rec.get("labels", {}), "restart_policy": rec.get("restart_policy", "never")}
            if rec.get("state", "ok") != "ok":
                out.append({**base, "state": rec["state"], "reason": rec.get("reason", "")})
            elif rec["node"] not in alive:
                out.append({**base, "state": "lost", "reason": f"node {rec['node']} is down"})
            elif name in rows_by_node.get(rec["node"], {}):
                out.append({**rows_by_node[rec["node"]][name], **base})
            else:
                out.append({**base, "state": "unknown", "reason": f"the agent of {rec['node']} does not answer"})
        return out

    # ---- migration ---------------------------------------------------------------------------------
    def migrate(self, name: str, target: str, live: bool = True) -> dict[str, Any]:
        """Move VM `name` to node `target`: disks, snapshots and config; a running VM (live) is
        snapshotted, moved and resumed. Returns the timings, with the guest's downtime."""
        rec = self._claim(name)
        new_pg = None
        try:
            source = rec["node"]
            if rec.get("state", "ok") != "ok":
                raise WirtError(f"VM {name!r} is {rec['state']} ({rec.get('reason')}); it cannot be migrated")
            if target == source:
                raise WirtError(f"VM {name!r} is already on node {target}")
            with self.lock:
                views = {v.name: v for v in self._views()}
            if target not in views:
                raise WirtError(f"no node {target!r}; nodes: {', '.join(sorted(views))}")
            req = self._request(name, rec["cpus"], rec["memory"], {**rec, "policy": "spread"}, target)
            # the VM's own labels are on the source node: anti-affinity must not count itself there
            chosen = place(req, [views[target]])
            new_pg = self._reserve(name, target, rec["cpus"], rec["memory"], chosen.overhead)
            src, dst = agent(source), agent(target)
            tb = time.monotonic()
            rebase, fetched = self._move_bases(name, source, target)  # the guest runs on meanwhile
            t0 = time.monotonic()
            out = call(src.migrate_out.remote(name, live), f"the agent of {source}")
            was_running = out["snapshot"] is not None
            self.activity[name] = target
            try:
                got = call(dst.migrate_in.remote(name, src, out["manifest"], out["snapshot"], False, out["grants"],
                                                 rebase), f"the agent of {target}")
            except BaseException:
                with contextlib.suppress(Exception):
                    call(src.migrate_abort.remote(name, out["snapshot"]), f"the agent of {source}")
                raise
            finally:
                self.activity.pop(name, None)
            t1 = time.monotonic()
            with contextlib.suppress(WirtError):
                call(src.discard.remote(name), f"the agent of {source}")
            with self.lock:
                self._release(rec.get("pg"))
                rec.update(node=target, pg=new_pg, memory_mib=chosen.demand_mib(rec["memory"]), path=got["path"])
                self._save()
            new_pg = None
            self._note(f"migrated {name} {source} -> {target}" + (f", downtime {t1 - t0:.2f} s" if was_running else ""))
            return {"name": name, "source": source, "target": target, "running": was_running,
                    "bytes": got["bytes"], "total_seconds": round(time.monotonic() - tb, 3), "fetched": fetched,
                    "bases_seconds": round(t0 - tb, 3),
                    "downtime_seconds": round(t1 - t0, 3) if was_running else None,
                    "snapshot_seconds": round(out["stop_seconds"], 3),
                    "transfer_seconds": round(got["transfer_seconds"], 3),
                    "resume_seconds": round(got["resume_seconds"], 3)}
        finally:
            self._release(new_pg)
            with self.lock:
                self.busy.discard(name)

    # ---- node failure ------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            with contextlib.suppress(Exception):
                self.check_nodes()

    def check_nodes(self) -> list[str]:
        """Mark the VMs of nodes Ray reports dead as lost and recover those whose policy asks
        for it; returns what was done (the watcher calls this every second)."""
        with self.lock:
            alive = {n for n, v in self._ray_nodes().items() if v.get("Alive")}
            lost = []
            for name, rec in self.vms.items():
                if rec.get("state", "ok") == "ok" and rec["node"] not in alive and name not in self.busy:
                    rec.update(state="lost", reason=f"node {rec['node']} went down at {time.strftime('%H:%M:%S')}")
                    lost.append(name)
            back = [n for n, r in self.vms.items() if r.get("state") == "lost" and r["node"] in alive]
            for name in back:  # the node came back (same name): its VMs are its own again
                self.vms[name].update(state="ok", reason=f"node {self.vms[name]['node']} came back")
                self._note(f"{name} back with node {self.vms[name]['node']}")
            if lost or back:
                self._save()
                for name in lost:
                    self._note(f"{name} lost with node {self.vms[name]['node']}")
            todo = [n for n, r in self.vms.items() if r.get("state") == "lost"
                    and r.get("restart_policy") == "on-node-failure" and n not in self.busy
                    and r.get("retry_at", 0) <= time.time()]
            self.busy.update(todo)
        done = []
        for name in todo:
            try:
                self.vms[name]["retry_at"] = time.time() + RETRY_SECONDS  # a failed attempt waits
                done.append(self._recover(name))
            finally:
                with self.lock:
                    self.busy.discard(name)
        return done

    def _recover(self, name: str) -> str:
        rec = self.vms[name]
        old_node = rec["node"]
        with self.lock:
            views = [v for v in self._views() if v.name != old_node]
        try:
            chosen = place(self._request(name, rec["cpus"], rec["memory"], rec), views)
        except PlacementError as exc:
            rec["reason"] = f"node {old_node} is down; no other node can take it: {exc}"
            self._save_locked()
            return f"{name}: {rec['reason']}"
        pg = self._reserve(name, chosen.name, rec["cpus"], rec["memory"], chosen.overhead)
        try:
            got = call(agent(chosen.name).adopt.remote(name, rec["path"], rec["uuid"], True),
                       f"the agent of {chosen.name}")
        except WirtError as exc:
            self._release(pg)
            if str(exc).startswith("unreachable"):
                rec.update(state="unrecoverable", reason=f"node {old_node} is down and its files are "
                           f"unreachable from {chosen.name}: {exc}")
            else:
                rec["reason"] = f"node {old_node} is down; restarting on {chosen.name} failed: {exc}"
            self._save_locked()
            self._note(f"{name}: {rec['reason']}")
            return f"{name}: {rec['reason']}"
        with self.lock:
            self._release(rec.get("pg"))
            rec.update(node=chosen.name, pg=pg, state="ok", path=got["path"],
                       memory_mib=chosen.demand_mib(rec["memory"]),
                       reason=f"restarted on {chosen.name} after node {old_node} went down"
                              + (" (its old process was fenced)" if got.get("fenced") else ""))
            self._save()
        self._note(f"{name} restarted on {chosen.name} (node {old_node} down)")
        return f"{name}: restarted on {chosen.name}"

    def _save_locked(self) -> None:
        with self.lock:
            self._save()
