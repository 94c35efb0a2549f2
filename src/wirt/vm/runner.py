"""The one adapter between the VM process and the emulated computer (`wirt.machine.board.Machine`).

Everything the hypervisor needs from a machine goes through `Runner`, so a change in
Machine's API touches only this file:
    boot files        -> Machine(firmware, kernel, initrd, memory_size, bootargs, on_output)
    run until exit    -> Machine.run() returning MachineExit(reason, code, detail)
    guest reboot      -> Machine.reset() and run again
    pause / resume    -> Machine.stop() makes run() return "stopped"; we wait, then run() again
    halt (host side)  -> Machine.stop()
    console input     -> Machine.feed_input(bytes)
    graceful poweroff -> the board has no power button the guest listens to (QEMU's riscv virt
                         has none either): the guest agent is asked (`poweroff`: sync, root
                         read-only, power off); without an agent "poweroff -f" is typed on the console
    counters          -> Machine.hart.instret
    devices           -> wirt.machine.attach: disks on virtio-blk, the network card on virtio-net
                         (a wirt.netback backend: passt for "user", a tap device, a socket hub), and
                         a virtio-console port as the guest agent channel (wirt.vm.agent)
What is missing from Machine today is listed by `missing_features()` (nothing at the moment).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wirt.errors import WirtError
from wirt.machine.devicetree import BASE_BOOTARGS
from wirt.vm.agent import GuestAgent
from wirt.vm.schema import IMAGES, VMConfig

__all__ = ["BootFiles", "RunResult", "Runner", "resolve_boot", "check_supported", "missing_features",
           "root_cmdline", "hub_socket", "CountingBackend", "BASE_BOOTARGS", "POWEROFF_KEYS"]

# Typed on the console by a graceful stop (Ctrl-C, Ctrl-U clear a half-typed line first).
POWEROFF_KEYS = b"\x03\x15\npoweroff -f\n"


@dataclass(frozen=True)
class BootFiles:
    """Paths of the images a VM boots (resolved in the foreground by `wirt start`)."""

    firmware: str
    kernel: str
    initrd: str  # "" for none (kernel "" too: bare firmware)

    def to_dict(self) -> dict[str, str]:
        return {"firmware": self.firmware, "kernel": self.kernel, "initrd": self.initrd}


@dataclass(frozen=True)
class RunResult:
    """How a run ended: reason is poweroff | halted | fail | fatal; detail explains failures."""

    reason: str
    code: int = 0
    detail: str = ""
    instructions: int = 0

    @property
    def clean(self) -> bool:
        """A clean end is not a crash (a guest test failure code is still a clean shutdown)."""
        return self.reason in ("poweroff", "halted", "fail")


def missing_features() -> list[str]:
    """What the hypervisor would use but the machine layer does not offer yet."""
    out = []
    if importlib.util.find_spec("wirt.devices.virtio") is None:
        out.append("virtio devices (wirt.devices.virtio): disks, network and agent are not attached")
    return out


class CountingBackend:
    """A netback backend proxy counting the bytes of frames received and sent (for `stats`).

    It forwards what the NIC reads from a backend (its MTU and whether its checksums can be
    trusted) and the batched calls, so a counted link runs exactly like the backend itself."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.rx_frames = 0
        self.tx_frames = 0
        self.mtu = int(getattr(backend, "mtu", 1500))
        self.checksums_valid = bool(getattr(backend, "checksums_valid", False))

    def start(self, deliver: Callable[[bytes], None]) -> None:
        self.start_many(lambda frames: [deliver(f) for f in frames])

    def start_many(self, deliver_many: Callable[[list[bytes]], None]) -> None:
        def counted(frames: list[bytes]) -> None:
            self.rx_bytes += sum(len(f) for f in frames)
            self.rx_frames += len(frames)
            deliver_many(frames)

        start_many = getattr(self.backend, "start_many", None)
        if start_many is not None:
            start_many(counted)
        else:
            self.backend.start(lambda frame: counted([frame]))

    def send(self, frame: bytes) -> None:
        self.send_many([frame])

    def send_many(self, frames: list[bytes]) -> None:
        self.tx_bytes += sum(len(f) for f in frames)
        self.tx_frames += len(frames)
        send_many = getattr(self.backend, "send_many", None)
        if send_many is not None:
            send_many(frames)
        else:
            for f in frames:
                self.backend.send(f)

    def wait_drained(self, timeout: float) -> bool:
        wait = getattr(self.backend, "wait_drained", None)
        return wait(timeout) if wait is not None else True

    def close(self) -> None:
        self.backend.close()


HUB_START_TIMEOUT = 5.0


def hub_socket(hub: str) -> str:
    """The socket of `socket:HUB`: HUB itself when it is a path, else $WIRT_HOME/hubs/HUB.sock,
    whose hub process (`python -m wirt.netback.socket`) is started here if none listens there."""
    import socket as so

    from wirt.vm.store import wirt_home

    if "/" in hub:
        return hub
    hubs = wirt_home() / "hubs"
    hubs.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = str(hubs / f"{hub}.sock")

    def listening() -> bool:
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    if listening():
        return path
    proc = subprocess.Popen([sys.executable, "-m", "wirt.netback.socket", path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)
    deadline = time.monotonic() + HUB_START_TIMEOUT
    while time.monotonic() < deadline:
        if listening():
            return path
        if proc.poll() is not None and not listening():
            time.sleep(0.05)  # another VM may have won the race to start it
            if listening():
                return path
            raise WirtError(f"the socket hub {hub!r} at {path} could not be started")
        time.sleep(0.05)
    raise WirtError(f"the socket hub {hub!r} at {path} did not come up within {HUB_START_TIMEOUT:g} s")


class CountingDisk:
    """A BlockDevice proxy counting bytes read and written (for `stats` and `wirt top`)."""

    def __init__(self, disk: Any) -> None:
        self._disk = disk
        self.bytes_read = 0
        self.bytes_written = 0
        self.reads = 0
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._disk, name)

    def readinto(self, offset: int, buf: Any) -> None:
        self._disk.readinto(offset, buf)
        self.bytes_read += len(buf)
        self.reads += 1

    def read(self, offset: int, length: int) -> bytes:
        self.bytes_read += length
        self.reads += 1
        return self._disk.read(offset, length)

    def write(self, offset: int, data: Any) -> None:
        self._disk.write(offset, data)
        self.bytes_written += len(data)
        self.writes += 1

    # virtio-blk moves each request with one readv/writev straight between guest RAM and the image.
    def readv(self, offset: int, views: list[memoryview]) -> None:
        self._disk.readv(offset, views)
        self.bytes_read += sum(v.nbytes for v in views)
        self.reads += 1

    def writev(self, offset: int, views: list[memoryview]) -> None:
        self._disk.writev(offset, views)
        self.bytes_written += sum(v.nbytes for v in views)
        self.writes += 1

    def readv_iov(self, offset: int, iov: Any) -> None:
        self._disk.readv_iov(offset, iov)
        self.bytes_read += iov.total
        self.reads += 1

    def writev_iov(self, offset: int, iov: Any) -> None:
        self._disk.writev_iov(offset, iov)
        self.bytes_written += iov.total
        self.writes += 1


def free_slots(machine: Any) -> int:
    """Empty virtio-mmio slots of the machine."""
    return sum(1 for slot in machine.virtio if slot.device is None)


def root_cmdline(cfg: VMConfig) -> str:
    """The kernel arguments of wirt's guests: the host name (unless the image is "none") and, when
    the VM boots from disk 0, the root disk with its init (systemd or minimal)."""
    from wirt.images.rootinit import hostname_param, root_cmdline as disk_cmdline
    from wirt.vm.schema import default_hostname

    parts = []
    if cfg.boot.root:
        parts.append(disk_cmdline(cfg.boot.init))
    if cfg.image != "none":
        parts.append(hostname_param(cfg.boot.hostname or default_hostname(cfg.name)))
    return " ".join(parts)


def check_supported(cfg: VMConfig) -> None:
    """Refuse, before spawning anything, a configuration the machine cannot run."""
    if cfg.boot.root and not cfg.disks:
        raise WirtError(f"VM {cfg.name!r} boots from disk 0 (boot.root) but has no disk; "
                        "add one or set root = false in its [boot] section")


def resolve_boot(cfg: VMConfig, vm_dir: Path) -> BootFiles:
    """The firmware/kernel/initrd files of `cfg`: its [boot] overrides, else the cached default guest
    (fetched and built now if needed, so the VM process itself never touches the network)."""
    from wirt.vm.access import vm_policy
    from wirt.vm.store import VMPaths

    b = cfg.boot
    files = {}
    policy = vm_policy(VMPaths(vm_dir), cfg.uuid)
    for key in ("firmware", "kernel", "initrd"):
        v = getattr(b, key)
        if v:
            p = Path(v) if Path(v).is_absolute() else vm_dir / v
            if not p.exists():
                raise WirtError(f"{vm_dir / 'vm.toml'}: boot.{key}: {p} does not exist; fix the path")
            policy.check(p, f"{vm_dir / 'vm.toml'}: boot.{key}")
            files[key] = str(p)
    if cfg.image == "none":  # bare firmware (tests, bare-metal programs): no default guest
        if "firmware" not in files:
            raise WirtError(f"{vm_dir / 'vm.toml'}: image \"none\" needs boot.firmware; set it or use image = \"debian\"")
        return BootFiles(files["firmware"], files.get("kernel", ""), files.get("initrd", ""))
    if len(files) < 3 and not (b.kernel and b.firmware):
        if cfg.image not in IMAGES and not b.root:  # a named image boots from disk 0 like "disk"
            raise WirtError(f"{vm_dir / 'vm.toml'}: image: unknown image {cfg.image!r}; use one of "
                            + ", ".join(f'"{i}"' for i in IMAGES))
        from wirt.images.guest import default_guest

        g = default_guest()
        files.setdefault("firmware", str(g.firmware))
        if "kernel" not in files:
            files["kernel"] = str(g.kernel)
            files.setdefault("initrd", str(g.initrd))  # the default initrd matches only its kernel
    return BootFiles(files["firmware"], files["kernel"], files.get("initrd", ""))


class Runner:
    """Runs one VM's Machine on the calling thread; other threads pause, resume, halt, type, read stats."""

    def __init__(self, cfg: VMConfig, boot: BootFiles, on_output: Callable[[bytes], None],
                 vm_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.vm_dir = Path(vm_dir) if vm_dir is not None else Path.cwd()
        self.disks: list[CountingDisk] = []
        self.nets: list[CountingBackend] = []
        self.agent = GuestAgent()
        self.data_port: Any = None  # the wirt.data port's device (VirtioSerialPort), once attached
        self.boot = boot
        self.on_output = on_output
        self.warnings: list[str] = []
        self.machine: Any = None
        self._halt = False
        self.fatal = ""  # why the run must end as a failure (see fail)
        self.memory_limit = "no limit set"  # how the process's memory is limited, for messages
        self._pause = False
        self._resumed = threading.Event()
        self._paused_now = threading.Event()
        self.started = time.time()
        self.boots = 0
        self.resumed_from: str | None = None  # the snapshot this run continued from
        self._rate = (time.monotonic(), 0, 0.0)  # (when, instret, mips) of the last sample
        self._calls: list[tuple[Callable[[], Any], threading.Event, list[Any]]] = []

    @property
    def policy(self) -> Any:
        """The host files this VM may open (wirt.vm.access)."""
        from wirt.vm.access import vm_policy
        from wirt.vm.store import VMPaths

        return vm_policy(VMPaths(self.vm_dir), self.cfg.uuid)

    # ---- building -----------------------------------------------------------------------------
    def build(self) -> None:
        """Read the images and construct the Machine (compiles or loads the CPU core)."""
        from wirt.machine.board import Machine
        from wirt.machine.placement import read_image

        check_supported(self.cfg)
        for what, path in self.boot.to_dict().items():  # run/info.json is a file too: check again
            if path:
                self.policy.check(path, f"boot {what}")
        fw = read_image(self.boot.firmware, "firmware")
        kernel = read_image(self.boot.kernel, "kernel") if self.boot.kernel else None
        initrd = read_image(self.boot.initrd, "initrd") if self.boot.initrd else None
        bootargs = " ".join(x for x in (BASE_BOOTARGS, root_cmdline(self.cfg), self.cfg.boot.append.strip()) if x)
        self.machine = Machine(fw, kernel, initrd, memory_size=self.cfg.memory, bootargs=bootargs,
                               on_output=self.on_output, num_harts=self.cfg.cpus,
                               jit=os.environ.get("WIRT_JIT") or self.cfg.jit)
        self._attach_devices()
        # The virtqueue walk is numba code too: load (or compile) it now (the virtqueues just
        # made did, unless there are none yet), while the process may still write numba's
        # cache; after set-up, Landlock keeps it out of the user's cache folder (a first
        # notification would fail there: the device would need a reset).
        from wirt.devices.virtio.ringwalk import warm

        warm()
        self._resume_snapshot()

    def _resume_snapshot(self) -> None:
        """Continue from the full snapshot a restore of the stopped VM, or a fork, left to resume."""
        from wirt.vm.snapshots import resume_pending
        from wirt.vm.store import VMPaths

        try:
            body = resume_pending(VMPaths(self.vm_dir), self.cfg, self.machine)
        except WirtError as exc:  # checked before anything changed: the guest boots afresh instead
            self.warnings.append(f"the saved state was not resumed ({exc}); the guest boots afresh")
            return
        if body is not None:
            from wirt.vm.snapshots import after_restore

            self.resumed_from = body.get("name")
            after_restore(self, body)

    def _attach_devices(self) -> None:
        """Disks on virtio-blk, then the network card on virtio-net, the agent's virtio-console and
        a virtio-rng, in virtio-mmio slots 0.. (IRQ 1 + slot, DESIGN.md memory map), via
        wirt.machine.attach."""
        try:
            import wirt.devices.virtio  # noqa: F401
        except ImportError:
            for i, d in enumerate(self.cfg.disks):
                self.warnings.append(f"disk {i} ({d.path}) not attached: the board has no virtio-blk yet")
            return
        from wirt.machine.attach import attach_disk
        from wirt.storage import open_image

        m = self.machine
        policy = self.policy
        for i, d in enumerate(self.cfg.disks):
            if i >= len(m.virtio):
                self.warnings.append(f"disk {i} ({d.path}) not attached: only {len(m.virtio)} virtio slots")
                continue
            path = Path(d.path) if Path(d.path).is_absolute() else self.vm_dir / d.path
            policy.check(path, f"disks[{i}]", write=not d.read_only)
            img = CountingDisk(open_image(path, read_only=d.read_only, format=d.format, policy=policy))
            self.disks.append(img)
            attach_disk(m, img, serial=f"wirt-disk{i}")
        self._attach_network()
        from wirt.machine.attach import attach_console, attach_rng

        console = attach_console(m, self.agent.on_output)
        self.agent.send = console.device.feed
        attach_rng(m)  # host entropy for the guest's kernel (virtio 1.2 section 5.4)
        self._attach_mounts()
        if free_slots(m):
            from wirt.machine.attach import attach_data_port

            self.data_port = attach_data_port(m).device  # `wirt cp` (wirt.vm.datachan)
        else:
            self.warnings.append("no virtio slot left for the data port: `wirt cp` is unavailable")

    def _attach_mounts(self) -> None:
        """The [[mounts]] of vm.toml on virtio-9p (tag GUESTDIR[:ro]; the guest's /init mounts them).
        Each host folder must be granted (named on the command line): vm.toml alone cannot share one."""
        from wirt.machine.attach import attach_mount

        for i, mt in enumerate(self.cfg.mounts):
            self.policy.check(mt.host, f"mounts[{i}]", write=not mt.read_only)
            if not free_slots(self.machine):
                raise WirtError(f"no virtio slot left for mount {mt}; remove a disk or a mount (`wirt set --no-mount`)")
            try:
                attach_mount(self.machine, mt.host, mt.tag, mt.read_only)
            except OSError as exc:
                raise WirtError(f"mount {mt}: cannot open {mt.host} ({exc.strerror or exc}); "
                                "create the folder or fix the path with `wirt set --mount`") from None

    def _attach_network(self) -> None:
        """The [network] of vm.toml on virtio-net: user (passt with the port forwards), tap:IF, socket:HUB."""
        from wirt.machine.attach import attach_net
        from wirt.netback import open_backend
        from wirt.netback.mac import parse_mac

        net = self.cfg.network
        if net.mode == "none":
            return
        kind, _, arg = net.mode.partition(":")
        if kind == "user":
            ssh = [f"127.0.0.1:{net.ssh_port}:22"] if net.ssh_port else []  # `wirt ssh` (wirt.vm.ssh)
            backend = open_backend("user", port_forwards=[p.backend_spec() for p in net.ports] + ssh)
        elif kind == "tap":
            backend = open_backend("tap", tap=arg)
        else:
            from wirt.vm.access import check_hub_socket
            from wirt.vm.store import VMPaths

            hub = check_hub_socket(VMPaths(self.vm_dir), self.cfg.uuid, arg, "network.mode socket")
            backend = open_backend("socket", path=hub_socket(hub))
        counted = CountingBackend(backend)
        try:
            attach_net(self.machine, counted, parse_mac(net.mac))
        except BaseException:
            counted.close()
            raise
        self.nets.append(counted)

    def close(self) -> None:
        """Close the network backends (passt ends) and flush and close the disks (after run() returned)."""
        for net in self.nets:
            try:
                net.close()
            except Exception as exc:  # noqa: BLE001 -- report, keep closing the others
                self.warnings.append(f"closing the network backend: {exc}")
        self.nets.clear()
        for img in self.disks:
            try:
                img.close()
            except Exception as exc:  # noqa: BLE001 -- report, keep closing the others
                self.warnings.append(f"closing {img.path}: {exc}")
        self.disks.clear()

    # ---- the run loop ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run until the guest powers off or fails, or `halt()`; a guest reboot starts it over."""
        m = self.machine
        assert m is not None, "build() first"
        self.boots = 1
        while True:
            while self._calls:
                fn, done, box = self._calls.pop(0)
                try:
                    box.append(fn())
                except Exception as exc:  # noqa: BLE001 -- handed to the caller
                    box.append(exc)
                    if isinstance(exc, MemoryError):
                        self.out_of_memory("on the CPU thread")
                done.set()
            if self._halt:
                return RunResult("halted", 0, "", self.instructions())
            if self._pause:
                self._paused_now.set()
                while not self._resumed.wait(0.05) and not self._calls:
                    pass  # paused; calls for the CPU thread (on_cpu_thread) still run
                self._paused_now.clear()
                continue
            ex = m.run()
            if ex.reason == "stopped":
                continue  # pause or halt asked for it; the top of the loop decides
            if ex.reason == "reset":
                m.reset()  # the guest rebooted
                self.agent.reset()
                self.boots += 1
                continue
            if ex.reason == "limit":
                continue
            return RunResult(ex.reason, ex.code, ex.detail, ex.instructions)

    def on_cpu_thread(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `fn` on the thread that runs the CPU (between time slices) and return its result."""
        done, box = threading.Event(), []
        self._calls.append((fn, done, box))
        if self.machine is not None:
            self.machine.stop()
        if not done.wait(timeout):
            raise WirtError("the VM's CPU thread did not answer; try again")
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]

    def pause(self) -> None:
        self._resumed.clear()
        self._pause = True
        if self.machine is not None:
            self.machine.stop()
        self._paused_now.wait(5.0)

    def resume(self) -> None:
        self._pause = False
        self._resumed.set()

    @property
    def paused(self) -> bool:
        return self._pause

    def out_of_memory(self, where: str) -> None:
        """A MemoryError `where` (a thread, a request): the process is at its limit, so the run ends as
        a failure saying so, rather than go on failing at random places."""
        self.fail(f"out of memory {where}: the VM process hit its memory limit ({self.memory_limit})")

    def fail(self, detail: str) -> None:
        """End the run as a failure (`fatal` says why): the process cannot go on, e.g. it is out of
        memory. The CPU thread stops the machine; the disks are flushed and closed as on a halt."""
        if not self.fatal:
            self.fatal = detail
        self.halt()

    def halt(self) -> None:
        """Stop the machine now (host side; the guest gets no say)."""
        self._halt = True
        self._resumed.set()
        if self.machine is not None:
            self.machine.stop()

    def request_poweroff(self) -> None:
        """Ask the guest to power off: through its agent, else typed on its console (module docstring)."""
        if self._pause:
            self.resume()
        if self.agent.ready and self.agent.send is not None:
            self.agent.poweroff()
            return
        self.feed_input(POWEROFF_KEYS)

    def feed_input(self, data: bytes) -> None:
        if self.machine is not None:
            self.machine.feed_input(data)

    # ---- counters --------------------------------------------------------------------------------
    def instructions(self) -> int:
        """Instructions retired by all vCPUs."""
        return self.machine.instructions if self.machine is not None else 0

    def stats(self) -> dict[str, Any]:
        """Guest-side counters. mips is measured since the previous call (at least 0.2 s apart)."""
        now, insns = time.monotonic(), self.instructions()
        t0, i0, mips = self._rate
        if now - t0 >= 0.2:
            mips = (insns - i0) / (now - t0) / 1e6
            self._rate = (now, insns, mips)
        return {
            "instructions": insns, "mips": round(mips, 3), "boots": self.boots,
            "vcpu_instructions": [h.instret for h in self.machine.harts] if self.machine is not None else [],
            "disk_read_bytes": sum(d.bytes_read for d in self.disks),
            "disk_write_bytes": sum(d.bytes_written for d in self.disks),
            "net_rx_bytes": sum(n.rx_bytes for n in self.nets),
            "net_tx_bytes": sum(n.tx_bytes for n in self.nets),
            "disk_read_ops": sum(d.reads for d in self.disks),
            "disk_write_ops": sum(d.writes for d in self.disks),
            "net_rx_packets": sum(n.rx_frames for n in self.nets),
            "net_tx_packets": sum(n.tx_frames for n in self.nets),
            "jit": self.machine.hart.jit_stats() if self.machine is not None else {},
        }
