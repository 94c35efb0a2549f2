"""The Python API of the hypervisor: `wirt.VM`, mirroring the CLI one to one.

    from wirt import VM
    vm = VM.create("web", cpus=1, memory="512M", disk="8G", net="user", ports=["8080:80"])
    vm.start()
    print(vm.status().state)       # "running"
    r = vm.exec("uname -r")        # through the guest agent: r.stdout, r.stderr (bytes), r.status
    vm.wait_agent(timeout=120)     # a timeout is always how long to wait; kill_after= limits a command
    vm.stop()                      # asks the guest to power off; force=True halts / kills
    vm.remove()

Every state-changing call holds the VM's file lock (wirt.vm.locks), so concurrent commands
on one VM — from several shells, or the CLI and a program — are serialized.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wirt.errors import StateError, WirtError
from wirt.images.cloudinit import CLOUD_PACKAGES
from wirt.units import parse_size
from wirt.vm import access
from wirt.vm import disks as diskmod
from wirt.vm import events
from wirt.vm.admission import Demand, admit
from wirt.vm.agent import ExecEvent, ExecResult
from wirt.vm.control import ControlClient, call
from wirt.vm.inventory import HostInventory, host_inventory
from wirt.vm.locks import vm_lock
from wirt.vm import snapshots as snapmod
from wirt.vm import zygote
from wirt.vm.snapshots import SnapshotInfo
from wirt.vm.schema import MAX_DISK, MIN_DISK, VMConfig, format_size
from wirt.vm.settings import Settings, load_settings
from wirt.vm.status import VMStatus, clean_stale, pid_alive, read_pid, vm_status
from wirt.vm.store import DIR_MODE, VMPaths, VMStore, atomic_write, read_json

__all__ = ["VM", "VMStatus", "ExecResult", "ExecEvent"]

START_TIMEOUT = 300.0   # a cold start compiles the CPU core (minutes); a warm one takes about 1 s
STOP_TIMEOUT = 30.0
POWEROFF_RETRY = 5.0    # seconds between repeated power-off requests (a booting guest drops input)
HALT_GRACE = 5.0        # --force: host-side halt first, SIGKILL after this long
AGENT_WAIT = 120.0      # how long exec waits for the guest agent of a booting VM


def _size_arg(value: int | str, what: str) -> int:
    """A size from the API (bytes) or the CLI ('8G'); negative numbers are refused."""
    if isinstance(value, bool):
        raise WirtError(f"{what}: {value!r} is not a size; give e.g. 8G")
    if isinstance(value, int):
        if value < 0:
            raise WirtError(f"{what}: {value} is negative; give e.g. 8G")
        return value
    try:
        return parse_size(str(value))
    except WirtError:
        raise WirtError(f"{what}: {value!r} is not a size; give e.g. 8G") from None


def _seed_inputs(user_data: str | None, ssh_key: str | None) -> tuple[bytes, list[str]] | None:
    """(user-data, public keys) for a cloud-init seed, or None when neither was asked for."""
    from wirt.images.cloudinit import default_public_key, read_public_key, read_user_data

    if user_data is None and ssh_key is None:
        return None
    data = read_user_data(user_data) if user_data is not None else b"#cloud-config\n"
    key = ssh_key if ssh_key is not None else default_public_key()
    return data, [read_public_key(key)] if key is not None else []


def _check_cloud_image(name: str) -> None:
    """Refuse user-data for a `wirt image build --name` disk built without cloud-init: nothing in
    the guest would read the seed, and the VM would boot unprovisioned without a word."""
    from wirt.images import named

    pkgs = named.packages(name)
    if pkgs is not None and not set(CLOUD_PACKAGES) <= set(pkgs):
        want = ",".join(dict.fromkeys([*pkgs, *CLOUD_PACKAGES]))
        raise WirtError(f"--image {name}: this disk has no cloud-init to read --user-data/--ssh-key; rebuild it "
                        f"with `wirt image build --name {name} --packages {want}`")


class VM:
    """One virtual machine in the store. Cheap to construct; every property reads the files."""

    def __init__(self, name: str, home: Path | str | None = None) -> None:
        self.store = VMStore(home)
        self.paths: VMPaths = self.store.require(name)
        self.name = name

    def __repr__(self) -> str:
        return f"VM({self.name!r})"

    # ---- finding and creating ------------------------------------------------------------------
    @classmethod
    def get(cls, name: str, home: Path | str | None = None) -> VM:
        """The VM called `name` (WirtError if there is none)."""
        return cls(name, home)

    @classmethod
    def list(cls, home: Path | str | None = None) -> list[VM]:
        """All VMs, sorted by name."""
        store = VMStore(home)
        return [cls(n, home) for n in store.names()]

    @classmethod
    def create(cls, name: str, cpus: int | None = None, memory: int | str | None = None,
               disk: int | str | None = "default", *, image: str | None = None, init: str = "systemd",
               hostname: str = "", user_data: str | None = None, ssh_key: str | None = None,
               net: str | None = None, ports: Iterable[str] = (), mac: str | None = None,
               cpu_affinity: Iterable[int] = (), append: str = "", firmware: str = "", kernel: str = "",
               initrd: str = "", mounts: Iterable[str] = (), base: Path | str | None = None,
               home: Path | str | None = None) -> VM:
        """Create a VM: its directory, vm.toml and (unless disk is None or "none") disk0.qcow2.

        image "debian": disk0 is a qcow2 overlay (at least `disk` bytes) on the Debian root disk
        of `wirt image build` (built now if the cache has none) and the VM boots from it with
        `init` (systemd, or wirt's minimal init); a path to a qcow2 or raw root disk of your own:
        the same, on that disk (image "disk", booted with wirt's kernel and initramfs); the name
        of a `wirt image build --name` disk: the same on that one;
        "initramfs": the kernel and busybox initramfs only, disk0 blank; "none": bare firmware
        (give `firmware`). `firmware`/`kernel`/`initrd` override the image's boot files.
        `hostname` names the guest (default: the VM's name). `user_data` (a cloud-config file) or
        `ssh_key` (a public key; with user_data the default is ~/.ssh/id_*.pub) provision the VM
        with cloud-init: the root disk then carries Debian's cloud-init and the VM gets a NoCloud
        seed disk (wirt.images.cloudinit) as disk 1.
        cpus, memory, disk ("default"), image and net not given come from config.toml's [create]
        section (wirt.vm.settings.CreateDefaults).
        `base`: the root disk file to lay disk 0 over, already found by the caller instead of
        resolving `image` here (a wirt cluster node that fetched the image's disk from another
        node by its content hash: wirt.cluster.bases); `image` then only names it.
        """
        from wirt.vm.schema import IMAGES, INITS, validate_hostname
        from wirt.vm.settings import load_create_defaults

        defaults = load_create_defaults(VMStore(home).home)
        cpus = defaults.cpus if cpus is None else cpus
        memory = defaults.memory if memory is None else memory
        image = defaults.image if image is None else image
        net = defaults.net if net is None else net
        if disk == "default":
            disk = defaults.disk
        if disk == "none":
            disk = None

        if base is not None and image in ("initramfs", "none"):
            raise WirtError(f"image {image} has no root disk; a base disk cannot be given for it")
        base_path = Path(base).resolve() if base is not None else diskmod.user_disk(image)
        if base_path is not None:
            image = image if "/" not in image and not Path(image).exists() else "disk"  # a name, or a file
        elif image not in IMAGES or image == "disk":
            raise WirtError(f"--image {image}: unknown image; give a disk file's path, a `wirt image build --name` "
                            "name, or one of: "
                            + "; ".join(f"{k} ({v})" for k, v in IMAGES.items() if k != "disk"))
        if init not in INITS:
            raise WirtError(f"--init {init}: unknown init; use systemd or minimal")
        if hostname:
            validate_hostname(hostname)
        seed = _seed_inputs(user_data, ssh_key)  # checked before anything is built or written
        shares = mount_configs(mounts)
        if seed is not None and init != "systemd":
            raise WirtError("cloud-init (--user-data, --ssh-key) runs under systemd; drop --init minimal")
        if seed is not None and image in ("initramfs", "none"):
            raise WirtError(f"cloud-init (--user-data, --ssh-key) runs on a root disk, not image {image}")
        if seed is not None and base_path is not None and image != "disk":
            _check_cloud_image(image)
        if (image == "debian" or base_path is not None) and disk is None:
            raise WirtError(f"image {image} boots from its disk; give a disk size (e.g. --disk 8G) "
                            "or use --image initramfs")
        if isinstance(net, str) and net.startswith("socket:") and "/" in net[7:]:
            net = "socket:" + os.path.abspath(os.path.expanduser(net[7:]))  # relative to the caller's folder
        cfg = VMConfig.new(name, cpus=cpus, memory=memory, image=image, net=net, ports=list(ports),
                           mac=mac, cpu_affinity=list(cpu_affinity), append=append)
        cfg.boot.root = image == "debian" or base_path is not None
        cfg.mounts = shares
        cfg.boot.init = init
        cfg.boot.hostname = hostname
        if cfg.boot.root and cfg.network.mode == "user" and not any(p.guest == 22 for p in cfg.network.ports):
            from wirt.vm.ssh import free_loopback_port

            cfg.network.ssh_port = free_loopback_port()  # `wirt ssh` (wirt.vm.ssh)
        for key, val in (("firmware", firmware), ("kernel", kernel), ("initrd", initrd)):
            if val:
                setattr(cfg.boot, key, str(Path(val).resolve()))
        size = None
        if disk is not None:
            size = _size_arg(disk, "--disk")
            if not MIN_DISK <= size <= MAX_DISK:
                raise WirtError(f"--disk {disk}: use a size from {format_size(MIN_DISK)} to {format_size(MAX_DISK)}")
        store = VMStore(home)
        extra = CLOUD_PACKAGES if seed is not None and image == "debian" else ()
        base = base_path or (diskmod.base_image(image, extra) if size is not None else None)  # may build: first
        paths = store.create(cfg)
        try:
            named = [getattr(cfg.boot, k) for k in ("firmware", "kernel", "initrd") if getattr(cfg.boot, k)]
            named += [m.host for m in shares]  # shared folders, named by the caller
            if image == "disk" and base_path is not None:
                named.append(str(base_path))  # --image PATH: the user's own disk under the overlay
            kind, _, hub = cfg.network.mode.partition(":")
            if kind == "socket" and "/" in hub:
                named.append(hub)  # --net socket:PATH: a hub or peer socket the user named
            if named:  # named by the caller: the VM may open them though they lie outside its folder
                access.grant(store.home, cfg.uuid, named)
            with vm_lock(paths.root):
                if size is not None:
                    dk, note = diskmod.create_disk(paths.root, 0, size, base)
                    cfg.disks.append(dk)
                    if seed is not None:
                        cfg.disks.append(diskmod.create_seed(paths.root, cfg, *seed))
                        note += "; cloud-init seed on disk 1"
                    store.save(cfg)
                    atomic_write(paths.root / "disk0.note", note + "\n")
        except BaseException:
            store.destroy(name)
            access.forget_grants(store.home, cfg.uuid)
            raise
        events.emit(store.home, name, "created")
        return cls(name, home)

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def config(self) -> VMConfig:
        """vm.toml, validated."""
        return self.store.load(self.name)

    def status(self, query: bool = True) -> VMStatus:
        """The VM's state (stopped, starting, running, paused, stopping, crashed) and run details."""
        return vm_status(self.paths, query=query)

    def stats(self) -> dict[str, Any]:
        """Live counters from the VM process (instructions, MIPS, CPU seconds, RSS, I/O)."""
        return call(self.paths.control, "stats")

    def control(self, timeout: float = 5.0) -> ControlClient:
        """A connected client of the VM's control socket (use as a context manager)."""
        return ControlClient(self.paths.control, timeout).connect()

    def log_path(self) -> Path:
        """The console log: of the current run while running, else of the last run."""
        return self.paths.console_log if self.paths.console_log.exists() else self.paths.last_console

    def summary(self) -> dict[str, Any]:
        """One row of `wirt ls --json` and of the REST VM list: state, resources, disk, IP, uptime."""
        st = self.status()
        try:
            cfg = self.config
            cpus, memory = int(st.info.get("cpus", cfg.cpus)), int(st.info.get("memory", cfg.memory))
            used, size = self.disk_usage(cfg)
        except WirtError as exc:
            return {"name": self.name, "state": "invalid", "reason": str(exc)}
        return {"name": self.name, "state": st.state, "cpus": cpus, "memory": memory, "disk_used": used,
                "disk_size": size, "ip": st.live.get("ip"), "uptime": st.uptime, "pid": st.pid,
                "reason": st.reason if st.state == "crashed" else ""}

    def disk_usage(self, cfg: VMConfig | None = None) -> tuple[int, int]:
        """(bytes used on the host, virtual size) summed over the VM's disks."""
        cfg = cfg or self.config
        return (sum(diskmod.disk_usage(self.paths.disk(d.path)) for d in cfg.disks),
                sum(d.size for d in cfg.disks))

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = START_TIMEOUT, *,
              inventory: HostInventory | None = None, settings: Settings | None = None) -> VMStatus:
        """Start the VM process (one detached OS process per VM) after admission control.

        Stale files of a killed process are cleaned first. With `wait`, returns once the
        control socket answers (the Machine is built), or raises with the console's last lines.
        """
        from wirt.vm import runner

        with vm_lock(self.paths.root):
            st = self.status()
            if st.running:
                raise StateError(f"VM {self.name!r} is already {st.state} (pid {st.pid})")
            clean_stale(self.paths)
            cfg = self.config
            runner.check_supported(cfg)
            settings = settings or load_settings(self.store.home)
            self._sync_disks(cfg)
            host = inventory or host_inventory(self.store.home)
            try:
                admit(self._demand(cfg), self._running_demands(), host, settings)
            except WirtError as exc:
                events.emit(self.store.home, self.name, "admission-refused", reason=str(exc))
                raise
            boot = runner.resolve_boot(cfg, self.paths.root)
            run = self.paths.run
            run.mkdir(mode=DIR_MODE)
            os.chmod(run, DIR_MODE)
            atomic_write(self.paths.info, json.dumps({
                "name": cfg.name, "uuid": cfg.uuid, "memory": cfg.memory, "cpus": cfg.cpus,
                "started": time.time(), "boot": boot.to_dict(), "overhead": settings.vm_overhead,
                "rlimit_headroom": settings.rlimit_headroom, "io_weight": settings.io_weight,
            }, indent=1))
            with contextlib.suppress(FileNotFoundError):
                self.paths.last_exit.unlink()
            log = os.open(self.paths.console_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            env = dict(os.environ, WIRT_HOME=str(self.store.home.resolve()))
            try:
                # A fork of the warm zygote when one runs (milliseconds), else a new interpreter.
                proc: Any = zygote.spawn(self.store.home, self.name, log, env, self.paths.root)
                if proc is None:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "wirt.vm.process", self.name], stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.paths.root,
                        env=env, close_fds=True)
            finally:
                os.close(log)
            if not wait:
                return self.status(query=False)
            return self._wait_ready(proc, timeout)

    def _wait_ready(self, proc: Any, timeout: float) -> VMStatus:
        deadline = time.monotonic() + timeout
        delay = 0.005  # a zygote fork is ready in tens of milliseconds, a fresh process in ~1 s
        while time.monotonic() < deadline:
            if self.paths.control.exists():
                with contextlib.suppress(WirtError):
                    call(self.paths.control, "ping", timeout=2.0)
                    return self.status()
            if proc.poll() is not None:  # the monitor ended: the VM never came up
                st = self.status(query=False)
                tail = "\n".join((st.last_exit or {}).get("console_tail", [])[-5:])
                raise WirtError(f"VM {self.name!r} failed to start: {st.reason or 'the process exited'}"
                                + (f"\n{tail}" if tail else "") + f"\n(full log: {self.paths.last_console})")
            time.sleep(delay)
            delay = min(delay * 1.3, 0.1)
        raise WirtError(f"VM {self.name!r} did not come up within {timeout:g} s; see `wirt logs {self.name}`")

    def _sync_disks(self, cfg: VMConfig) -> None:
        """Disks must exist and lie where the VM may open them (wirt.vm.access); a size raised with
        `wirt set --disk-size` is applied now."""
        from wirt.storage import open_image

        policy = access.vm_policy(self.paths, cfg.uuid)
        for i, d in enumerate(cfg.disks):
            p = self.paths.disk(d.path)
            if not p.exists():
                raise WirtError(f"{self.paths.config}: disks: {p} does not exist; restore it or remove the [[disks]] entry")
            policy.check(p, f"{self.paths.config}: disks[{i}]", write=not d.read_only)
            with open_image(p, read_only=True, format=d.format, policy=policy) as img:
                current = img.size
            if d.read_only:
                continue
            if d.size > current:
                diskmod.grow_disk(p, d.format, d.size)
        kind, _, hub = cfg.network.mode.partition(":")
        if kind == "socket":  # a socket path in vm.toml: granted or the VM's own (the VM process checks again)
            access.check_hub_socket(self.paths, cfg.uuid, hub, f"{self.paths.config}: network.mode socket")
        for i, mt in enumerate(cfg.mounts):  # shared folders: granted and present (the VM process checks again)
            policy.check(mt.host, f"{self.paths.config}: mounts[{i}]", write=not mt.read_only)
            if not os.path.isdir(mt.host):
                raise WirtError(f"{self.paths.config}: mounts[{i}]: {mt.host} is not a folder on this host; "
                                f"create it or change the mount with `wirt set {self.name} --mount`")

    def _demand(self, cfg: VMConfig) -> Demand:
        growth = sum(diskmod.disk_growth(self.paths.disk(d.path), d.size, d.read_only) for d in cfg.disks)
        return Demand(cfg.name, cfg.memory, cfg.cpus, growth)

    def _running_demands(self) -> list[Demand]:
        return running_demands(self.store, exclude=self.name)

    def stop(self, force: bool = False, timeout: float = STOP_TIMEOUT) -> VMStatus:
        """Ask the guest to power off and wait up to `timeout` s.

        force: halt the machine from the host side at once (disks are closed cleanly), and
        SIGKILL the VM process if it has not exited within a few seconds.
        """
        with vm_lock(self.paths.root):
            st = self.status(query=False)
            if not st.running:
                clean_stale(self.paths)
                raise StateError(f"VM {self.name!r} is not running ({self.status(query=False).state})")
            if force:
                return self._force_off()
            deadline = time.monotonic() + timeout
            next_ask = 0.0
            while time.monotonic() < deadline:
                if not self.status(query=False).running:
                    return self.status(query=False)
                if time.monotonic() >= next_ask:
                    with contextlib.suppress(WirtError):
                        call(self.paths.control, "stop", timeout=2.0)
                    next_ask = time.monotonic() + POWEROFF_RETRY
                time.sleep(0.05)
            raise WirtError(f"VM {self.name!r} did not power off within {timeout:g} s; "
                            f"`wirt stop --force {self.name}` halts it")

    def _force_off(self) -> VMStatus:
        with contextlib.suppress(OSError):
            atomic_write(self.paths.force_marker, "")
        with contextlib.suppress(WirtError):
            call(self.paths.control, "stop", timeout=2.0, force=True)
        if not self._wait_gone(HALT_GRACE):
            pid = read_pid(self.paths.pid)
            if pid_alive(pid, self.name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
            if not self._wait_gone(HALT_GRACE):
                clean_stale(self.paths)
        return self.status(query=False)

    def _wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.status(query=False).running:
                return True
            time.sleep(0.05)
        return False

    def restart(self, force: bool = False, timeout: float = STOP_TIMEOUT) -> VMStatus:
        """Stop (if running) and start again; a `wirt set` change takes effect now."""
        if self.status(query=False).running:
            self.stop(force=force, timeout=timeout)
        return self.start()

    def pause(self) -> None:
        """Freeze the guest (the process stays; guest RAM stays allocated)."""
        with vm_lock(self.paths.root):
            self._require_running()
            call(self.paths.control, "pause")
        events.emit(self.store.home, self.name, "paused")

    def resume(self) -> None:
        with vm_lock(self.paths.root):
            self._require_running()
            call(self.paths.control, "resume")
        events.emit(self.store.home, self.name, "resumed")

    # ---- snapshots (vm/snapshots.py) -----------------------------------------------------------------
    def snapshot(self, name: str) -> SnapshotInfo:
        """Take snapshot `name`: full (CPU, devices, RAM, disks) if the VM runs, else disk-only."""
        info = snapmod.vm_snapshot(self, name)
        events.emit(self.store.home, self.name, "snapshot-created", snapshot=name, kind=info.kind)
        return info

    def restore(self, name: str) -> str:
        """Go back to snapshot `name`. A running VM continues from it at once ("running"); a stopped
        one gets its disks back and, for a full snapshot, resumes its saved state at the next start."""
        state = snapmod.vm_restore(self, name)
        events.emit(self.store.home, self.name, "snapshot-restored", snapshot=name)
        return state

    def snapshots(self) -> list[SnapshotInfo]:
        """This VM's snapshots (each names its parent: they form a tree)."""
        return snapmod.VMSnapshots(self.paths).list()

    def pending_resume(self) -> str | None:
        """The full snapshot the next start resumes instead of booting, if any."""
        return snapmod.VMSnapshots(self.paths).resume()

    def remove_snapshot(self, name: str) -> None:
        """Delete snapshot `name` (disk layers stay while anything is backed by them)."""
        snapmod.vm_remove_snapshot(self, name)
        events.emit(self.store.home, self.name, "snapshot-removed", snapshot=name)

    def fork(self, snap: str, new_name: str, start: bool = False) -> VM:
        """A new VM from snapshot `snap`: memory mapped copy-on-write, disks as overlays, new MAC.
        With `start`, it is started (from the snapshot's running state for a full snapshot)."""
        new, _ = snapmod.vm_fork(self, snap, new_name)
        events.emit(self.store.home, self.name, "forked", snapshot=snap, new=new_name)
        if start:
            new.start()
        return new

    def _require_running(self) -> VMStatus:
        st = self.status(query=False)
        if not st.running:
            raise StateError(f"VM {self.name!r} is not running ({st.state}); start it with `wirt start {self.name}`")
        return st

    def _exec_text(self, command: str | list[str]) -> str:
        """The command line for the guest agent, refused unless the VM runs (not paused: the agent
        would not answer) and the command is not empty."""
        import shlex

        st = self._require_running()
        if st.state == "paused":
            raise StateError(f"VM {self.name!r} is paused; `wirt resume {self.name}` first")
        text = command if isinstance(command, str) else shlex.join(command)
        if not text.strip():
            raise WirtError("exec: the command is empty")
        return text

    def exec(self, command: str | list[str], *, timeout: float = AGENT_WAIT, kill_after: float | None = None,
             stdin: bytes = b"", on_event: Any = None) -> ExecResult:
        """Run `command` in the guest through its agent and return stdout, stderr and exit status.

        A string runs with `sh -c`; a list is quoted into one (shlex.join). `timeout`: seconds to
        wait for the agent of a guest that is still booting (as everywhere in wirt, a timeout is
        how long to wait); `kill_after`: seconds the command may run (then it is killed and
        WirtError raised); `stdin`: bytes for its standard input; `on_event(ExecEvent)` sees
        output as it arrives.
        """
        import base64

        text = self._exec_text(command)
        req: dict[str, Any] = {"command": text, "wait": float(timeout)}
        if kill_after is not None:
            req["timeout"] = float(kill_after)
        if stdin:
            req["stdin"] = base64.b64encode(stdin).decode()
        out, err = bytearray(), bytearray()
        limit = None if kill_after is None else timeout + kill_after + 10.0
        with ControlClient(self.paths.control, timeout=limit if limit is not None else 3600.0 * 24) as c:
            for reply in c.stream("exec", **req):
                if "exit" in reply:
                    ev = ExecEvent("exit", status=int(reply["exit"]))
                else:
                    data = base64.b64decode(reply.get("data", ""))
                    ev = ExecEvent(reply.get("stream", "stdout"), data)
                    (err if ev.kind == "stderr" else out).extend(data)
                if on_event is not None:
                    on_event(ev)
                if ev.kind == "exit":
                    return ExecResult(bytes(out), bytes(err), ev.status)
        raise WirtError(f"VM {self.name!r} closed the exec stream before the command's exit status")

    def exec_attached(self, command: str | list[str], *, tty: tuple[int, int] | None = None,
                      timeout: float = AGENT_WAIT, kill_after: float | None = None) -> Any:
        """Start `command` in the guest with its stdin streamed from here: an AttachedExec
        (wirt.vm.attached) to `write`, `eof`, `resize` and read `events()` from. With `tty`
        (rows, columns) it runs on a pseudo-terminal in the guest (`wirt shell`, `wirt exec -t`)."""
        from wirt.vm.attached import AttachedExec

        return AttachedExec(self.paths.control, self._exec_text(command), tty=tty, wait=timeout, kill_after=kill_after)

    def copy_in(self, src: str | Path, dest: str, *, recursive: bool = False, timeout: float = AGENT_WAIT,
                progress: Any = None) -> int:
        """Copy host file (or with `recursive` tree) `src` to `dest` in the guest, modes, times and
        symlinks kept; into `dest` when it is a directory. Returns the bytes streamed.
        `progress(bytes_so_far)` is called as they go (wirt.vm.filecopy)."""
        from wirt.vm.filecopy import copy_to_guest

        return copy_to_guest(self, src, dest, recursive=recursive, timeout=timeout, progress=progress)

    def copy_out(self, src: str, dest: str | Path, *, recursive: bool = False, timeout: float = AGENT_WAIT,
                 progress: Any = None) -> int:
        """Copy guest file (or tree) `src` to host `dest` (into it when it is a directory)."""
        from wirt.vm.filecopy import copy_from_guest

        return copy_from_guest(self, src, dest, recursive=recursive, timeout=timeout, progress=progress)

    def wait_agent(self, timeout: float = AGENT_WAIT) -> VMStatus:
        """Wait up to `timeout` s for the guest agent to answer (the guest has booted); the status then.

        WirtError when the VM is not running, stops while waiting, or the agent is not up in time."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if not st.running:
                raise WirtError(f"VM {self.name!r} is {st.state}" + (f" ({st.reason})" if st.reason else "")
                                + f"; see `wirt logs {self.name}`")
            if st.live.get("agent"):
                return st
            if time.monotonic() >= deadline:
                raise WirtError(f"the guest agent of VM {self.name!r} did not answer within {timeout:g} s; "
                                f"see `wirt logs {self.name}` (a longer --timeout helps a slow boot)")
            time.sleep(0.2)

    def ssh_command(self, command: list[str] | None = None, key: str | None = None) -> list[str]:
        """The `ssh` command line that logs in to this running VM as root with no prompt: the agent
        installs the key and the host key is pinned first (wirt.vm.ssh)."""
        from wirt.vm.ssh import ssh_command

        self._require_running()
        return ssh_command(self, key, command)

    def console_resize(self, cols: int, rows: int, timeout: float = AGENT_WAIT) -> None:
        """Give the guest's console terminal (ttyS0, the kernel's console=) `cols` x `rows`.

        A 16550 UART carries bytes only, no window size, so the guest agent sets it on the tty
        (stty: TIOCSWINSZ, and the kernel sends SIGWINCH to the console's foreground programs).
        `timeout`: seconds to wait for the agent of a guest that is still booting."""
        if not all(isinstance(x, int) and 0 < x < 10000 for x in (cols, rows)):
            raise WirtError(f"a console size is two whole numbers from 1 to 9999, not {cols!r} x {rows!r}")
        r = self.exec(f"stty rows {rows} cols {cols} < /dev/ttyS0", timeout=timeout, kill_after=30.0)
        if not r.ok:
            why = r.stderr.decode(errors="replace").strip().splitlines()
            raise WirtError(f"the guest could not resize its console: {why[-1] if why else f'status {r.status}'}")

    def console_input(self, text: str | bytes) -> None:
        """Type on the guest's console."""
        import base64

        data = text.encode() if isinstance(text, str) else text
        call(self.paths.control, "console-input", data=base64.b64encode(data).decode(), encoding="base64")

    def remove(self, force: bool = False) -> None:
        """Delete the VM and its disks. A running VM is refused unless `force` (then it is killed)."""
        with vm_lock(self.paths.root):
            st = self.status(query=False)
            if st.running:
                if not force:
                    raise StateError(f"VM {self.name!r} is {st.state}; stop it first or use `wirt rm --force {self.name}`")
                self._force_off()
            uuid = None
            with contextlib.suppress(WirtError):
                uuid = self.config.uuid
            self.store.destroy(self.name)
            if uuid:
                access.forget_grants(self.store.home, uuid)
        events.emit(self.store.home, self.name, "removed")

    def set(self, *, memory: int | str | None = None, cpus: int | None = None,
            disk_size: int | str | None = None, cpu_affinity: Iterable[int] | None = None,
            ports: Iterable[str] | None = None, add_ports: Iterable[str] = (),
            mounts: Iterable[str] | None = None, add_mounts: Iterable[str] = ()) -> list[str]:
        """Change resources; they apply at the next start. Disks only grow. `ports` replaces the
        port forwards ([] removes all), `add_ports` adds to them (replacing one of the same host
        port and protocol); `mounts` and `add_mounts` do the same for host folders
        ("HOSTDIR:GUESTDIR[:ro]", one per guest folder). Returns what changed."""
        from wirt.vm.schema import parse_port

        with vm_lock(self.paths.root):
            cfg = self.config
            d = cfg.to_dict()
            changes = []
            if mounts is not None or add_mounts:
                now = [] if mounts is not None else list(cfg.mounts)
                new = mount_configs([*(mounts or []), *add_mounts])
                for m in new:
                    now = [c for c in now if c.guest != m.guest] + [m]
                d["mounts"] = [m.to_dict() for m in now]
                if new:
                    access.grant(self.store.home, cfg.uuid, [m.host for m in new])
                before = " ".join(str(m) for m in cfg.mounts) or "none"
                changes.append(f"mounts {before} -> {' '.join(str(m) for m in now) or 'none'}")
            if ports is not None or add_ports:
                current = [] if ports is not None else list(cfg.network.ports)
                for text in [*(ports or []), *add_ports]:
                    p = parse_port(text)
                    current = [c for c in current if (c.host, c.protocol) != (p.host, p.protocol)] + [p]
                if current and cfg.network.mode != "user":
                    raise WirtError(f"port forwards need the user network; VM {self.name!r} has "
                                    f"{cfg.network.mode!r}")
                d["network"]["ports"] = [str(p) for p in current]
                before = " ".join(str(p) for p in cfg.network.ports) or "none"
                changes.append(f"ports {before} -> {' '.join(d['network']['ports']) or 'none'}")
            if memory is not None:
                d["memory"] = memory
                changes.append(f"memory {format_size(cfg.memory)} -> {memory}")
            if cpus is not None:
                d["cpus"] = cpus
                changes.append(f"cpus {cfg.cpus} -> {cpus}")
            if cpu_affinity is not None:
                d["cpu_affinity"] = list(cpu_affinity)
                changes.append(f"cpu affinity -> {list(cpu_affinity) or 'any'}")
            if disk_size is not None:
                if not cfg.disks:
                    raise WirtError(f"VM {self.name!r} has no disk to resize")
                new = _size_arg(disk_size, "disk size")
                if new < cfg.disks[0].size:
                    raise WirtError(f"--disk-size {disk_size}: disks only grow; disk0 is already "
                                    f"{format_size(cfg.disks[0].size)}")
                d["disks"][0]["size"] = new
                changes.append(f"disk0 {format_size(cfg.disks[0].size)} -> {format_size(new)}")
            new_cfg = VMConfig.from_dict(d, "")
            from wirt.vm import runner

            runner.check_supported(new_cfg)
            self.store.save(new_cfg)
            return changes


def mount_configs(texts: Iterable[str]) -> list[MountConfig]:
    """Parse "HOSTDIR:GUESTDIR[:ro]" words; each HOSTDIR must be an existing folder."""
    from wirt.vm.schema import check_mounts, parse_mount

    out = [parse_mount(t) for t in texts]
    for m in out:
        if not os.path.isdir(m.host):
            raise WirtError(f"--mount {m}: {m.host} is not a folder on this host; create it or fix the path")
    check_mounts(out, "--mount")
    return out


def running_demands(store: VMStore, exclude: str | None = None) -> list[Demand]:
    """What the running VMs of a store (but `exclude`) take from the host, for admission control."""
    out = []
    for name in store.names():
        if name == exclude:
            continue
        p = store.paths(name)
        st = vm_status(p, query=False)
        if not st.running:
            continue
        try:
            cfg = store.load(name)
        except WirtError:
            continue
        growth = sum(diskmod.disk_growth(p.disk(d.path), d.size, d.read_only) for d in cfg.disks)
        out.append(Demand(name, int(st.info.get("memory", cfg.memory)), int(st.info.get("cpus", cfg.cpus)),
                          growth))
    return out


def check_admission(memory: int | str, cpus: int = 1, disk: int | str = 0,
                    home: Path | str | None = None) -> str | None:
    """Would a VM of this size be admitted now? None if so, else the refusal's one-line reason."""
    from wirt.vm.admission import AdmissionError

    store = VMStore(home)
    demand = Demand("new VM", _size_arg(memory, "memory"), cpus, _size_arg(disk, "disk"))
    try:
        admit(demand, running_demands(store), host_inventory(store.home), load_settings(store.home))
    except AdmissionError as exc:
        return str(exc)
    return None
