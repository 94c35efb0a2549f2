"""`wirt run`: boot a Debian riscv64 guest on the virt board, to a shell or to run one command.

    wirt run                         boot the default guest to a shell on the console
    wirt run -- CMD ARGS...          boot, run CMD in the guest, exit with its status

The command reaches the guest's /init as `wirt.run=<base64>` on the kernel command line;
its exit status comes back through the SiFive test finisher (the console's
`wirt: exit status N` line is the fallback). See wirt.images.scripts for that contract.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from wirt.errors import WirtError
from wirt.machine.devicetree import BASE_BOOTARGS
from wirt.machine.placement import read_image
from wirt.units import parse_size

__all__ = ["register", "BASE_BOOTARGS", "StatusLineFilter"]

MIN_MEMORY = 16 << 20
EXIT_WIRT_FAILED = 125  # the guest never reported a status (core error, reboot, ...)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="boot the Debian riscv64 guest (shell, or run a command and exit with its status)",
        description="Boot Debian's riscv64 kernel through OpenSBI on wirt's virt board. Without a "
                    "command: a shell on the console (Ctrl-A x quits, Ctrl-A h helps). With "
                    "`-- CMD ARGS...`: run the command in the guest, stream its output and exit "
                    "with its exit status.")
    p.add_argument("--memory", "-m", default="512M", help="guest RAM (default 512M)")
    p.add_argument("--cpus", type=int, default=1, help="number of harts, 1 to 64 (default 1)")
    p.add_argument("--kernel", metavar="IMAGE", help="RISC-V Linux Image (default: Debian's, cached)")
    p.add_argument("--initrd", metavar="FILE", help="initramfs (default: wirt's busybox initramfs)")
    p.add_argument("--firmware", metavar="FILE", help="OpenSBI fw_dynamic.bin (default: Debian's)")
    p.add_argument("--append", default="", metavar="ARGS", help="extra kernel command-line arguments")
    p.add_argument("--deterministic", action="store_true",
                   help="guest time from the instruction count (repeatable runs) instead of the host clock")
    p.add_argument("--dtb-out", metavar="FILE",
                   help="write the machine's device tree blob to FILE and exit without booting")
    p.add_argument("--mirror", metavar="URL", help="Debian mirror for fetching the default guest")
    p.add_argument("--disk", action="append", default=[], metavar="FILE[,ro]",
                   help="attach a raw or qcow2 disk on virtio-blk (/dev/vda, /dev/vdb, ...); repeatable")
    p.add_argument("--mount", action="append", default=[], metavar="HOSTDIR:GUESTDIR[:ro]",
                   help="share a host folder with the guest at GUESTDIR (virtio-9p, mounted at boot; "
                        ":ro refuses writes; repeatable)")
    p.add_argument("--root", action="store_true",
                   help="boot from the first --disk (a root disk from `wirt image build`)")
    p.add_argument("--net", default="none", metavar="NET",
                   help="network card (virtio-net): none (default), user (user-mode networking through "
                        "passt), socket:PATH (join the hub of `wirt net hub PATH`, or a peer listening "
                        "there), socket-listen:PATH (wait there for one peer), tap:IFNAME (a host tap device)")
    p.add_argument("--mac", metavar="MAC",
                   help="the network card's MAC address (default: fixed for --net user, new each run otherwise)")
    p.add_argument("--port", action="append", default=[], metavar="[ADDR:]HOST:GUEST[/udp]",
                   help="forward a host port to the guest (with --net user; on 127.0.0.1 unless ADDR "
                        "is given); repeatable")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                   help="command to run in the guest")
    p.set_defaults(func=_run)


# ---- inputs ---------------------------------------------------------------------------------
def _images(args: argparse.Namespace) -> tuple[bytes, bytes, bytes | None]:
    """(firmware, kernel, initrd): the files given, the rest from the default guest."""
    kernel = read_image(args.kernel, "kernel") if args.kernel else None
    if kernel is not None:
        from wirt.machine.placement import check_kernel_image

        check_kernel_image(kernel, f"kernel {args.kernel}")
    initrd = read_image(args.initrd, "initrd") if args.initrd else None
    firmware = read_image(args.firmware, "firmware") if args.firmware else None
    # A custom kernel gets no default initrd: its modules would not match.
    need_default = firmware is None or kernel is None
    if need_default:
        from wirt.images.guest import default_guest

        guest = default_guest(mirror=args.mirror)
        if firmware is None:
            firmware = read_image(guest.firmware, "firmware")
        if kernel is None:
            kernel = read_image(guest.kernel, "kernel")
            if initrd is None:
                initrd = read_image(guest.initrd, "initrd")
    assert firmware is not None and kernel is not None
    return firmware, kernel, initrd


def _command(argv: list[str]) -> str | None:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return None
    return argv[0] if len(argv) == 1 else shlex.join(argv)


def _bootargs(command: str | None, append: str, devices: bool = False, root: bool = False) -> str:
    from wirt.images.rootinit import KERNEL_CMDLINE
    from wirt.images.scripts import run_param

    parts = [BASE_BOOTARGS]
    if not devices:
        # No virtio devices: the initramfs need not load its modules (they cost more guest
        # time than booting the kernel).
        parts.append("wirt.modules=none")
    if root:
        parts.append(KERNEL_CMDLINE)
    if command is not None:
        parts += ["quiet", run_param(command)]  # the user wants the command's output
    if append.strip():
        parts.append(append.strip())  # last, so it can override (e.g. loglevel=7)
    return " ".join(parts)


class StatusLineFilter:
    """Drops /init's `wirt: exit status N` line from the streamed output (it becomes the exit code).

    A trailing partial line that could still turn into the marker is held back until the
    next chunk; everything else passes through at once. The last output is kept in `tail`
    for the exit-status fallback.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self._held = b""
        self.tail = b""

    def __call__(self, data: bytes) -> bytes:
        self.tail = (self.tail + data)[-4096:]
        data = self._held + data
        self._held = b""
        out = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            line = data[start:] if nl < 0 else data[start: nl + 1]
            if nl < 0:
                bare = line.lstrip(b"\r")
                if line and self.marker.startswith(bare[: len(self.marker)]) and len(bare) <= len(self.marker) + 8:
                    self._held = line
                else:
                    out.append(line)
                break
            if not line.lstrip(b"\r").startswith(self.marker):
                out.append(line)
            start = nl + 1
        return b"".join(out)


# ---- the command ------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from wirt.machine.board import MAX_HARTS

    if not 1 <= args.cpus <= MAX_HARTS:
        raise WirtError(f"--cpus {args.cpus}: give 1 to {MAX_HARTS} virtual CPUs")
    memory = parse_size(args.memory)
    if memory < MIN_MEMORY or memory % 4096:
        raise WirtError(f"--memory {args.memory}: give a multiple of 4 KiB of at least 16M (e.g. 512M)")
    command = _command(args.command)
    if args.root and not args.disk:
        raise WirtError("--root boots from a disk: give one with --disk FILE (see `wirt image build`)")
    from wirt.netback import parse_net_spec

    args.net_spec = parse_net_spec(args.net)
    if args.port and args.net_spec.kind != "user":
        raise WirtError("--port forwards to the guest's network card through passt: add --net user")
    if args.mac is not None:
        from wirt.netback.mac import parse_mac

        if args.net_spec.kind == "none":
            raise WirtError("--mac sets the network card's address: add --net")
        args.mac_bytes = parse_mac(args.mac)
    firmware, kernel, initrd = _images(args)
    bootargs = _bootargs(command, args.append, devices=bool(args.disk or args.mount) or args.net_spec.kind != "none",
                         root=args.root)

    if args.dtb_out:
        from wirt.machine.board import plan_boot

        plan = plan_boot(memory, len(firmware), kernel, len(initrd or b""), bootargs, os.urandom(32))
        try:
            Path(args.dtb_out).write_bytes(plan.dtb)
        except OSError as exc:
            raise WirtError(f"cannot write --dtb-out {args.dtb_out}: {exc.strerror or exc}") from None
        print(f"wirt: wrote the device tree to {args.dtb_out} ({len(plan.dtb)} bytes)", file=sys.stderr)
        return 0

    if command is not None:
        return _run_command(args, firmware, kernel, initrd, bootargs, memory)
    return _run_interactive(args, firmware, kernel, initrd, bootargs, memory)


def _machine(args: argparse.Namespace, firmware: bytes, kernel: bytes, initrd: bytes | None,
             bootargs: str, memory: int, on_output, quiet: bool):
    from wirt.machine.board import FW_OPTION_NO_BOOT_PRINTS, Machine

    machine = Machine(firmware, kernel, initrd, memory_size=memory, bootargs=bootargs,
                      deterministic=args.deterministic, on_output=on_output, num_harts=args.cpus,
                      firmware_options=FW_OPTION_NO_BOOT_PRINTS if quiet else 0)
    _attach_devices(machine, args)
    return machine


def _attach_devices(machine, args: argparse.Namespace) -> None:
    """--disk and --net: virtio-blk and virtio-net in the board's virtio-mmio slots."""
    from wirt.machine.attach import attach_disk, attach_net
    from wirt.storage import open_image

    for i, spec in enumerate(args.disk):
        path, _, flags = spec.partition(",")
        if flags not in ("", "ro"):
            raise WirtError(f"--disk {spec}: the only option after the file name is ',ro'")
        if not Path(path).is_file():
            raise WirtError(f"--disk {path}: no such file; create one with `wirt disk create` or `wirt image build`")
        attach_disk(machine, open_image(path, read_only=flags == "ro"), serial=f"wirt-disk{i}")
    spec = getattr(args, "net_spec", None)
    if spec is not None and spec.kind != "none":
        attach_net(machine, spec.open(port_forwards=args.port), _mac(args))
    if getattr(args, "mount", None):
        from wirt.machine.attach import attach_mount
        from wirt.vm.api import mount_configs

        for mt in mount_configs(args.mount):
            try:
                attach_mount(machine, mt.host, mt.tag, mt.read_only)
            except OSError as exc:
                raise WirtError(f"--mount {mt}: cannot open {mt.host} ({exc.strerror or exc})") from None


def _mac(args: argparse.Namespace) -> bytes:
    """--mac, else a fixed address behind passt (the only host on its link) and a fresh one per
    run on shared links (socket, tap), so that two `wirt run`s on one hub differ."""
    from wirt.netback.mac import vm_mac

    given = getattr(args, "mac_bytes", None)
    if given is not None:
        return given
    if args.net_spec.kind == "user":
        return vm_mac("wirt-run")
    return vm_mac(f"wirt-run {os.getpid()} {os.urandom(8).hex()}")


def _run_command(args, firmware, kernel, initrd, bootargs, memory) -> int:
    from wirt.images.scripts import STATUS_MARKER, parse_exit_status
    from wirt.machine.console import StreamConsole

    status_filter = StatusLineFilter(STATUS_MARKER)
    console = StreamConsole()

    def output(data: bytes) -> None:
        console.output(status_filter(data))

    machine = _machine(args, firmware, kernel, initrd, bootargs, memory, output, quiet=True)
    result = machine.run()
    console.output(status_filter._held)  # an unfinished last line
    if result.reason == "fail":
        return result.code & 0xFF if result.code & 0xFF else 1
    if result.reason == "poweroff":
        status = parse_exit_status(status_filter.tail.decode("utf-8", "replace"))
        return status if status is not None else 0
    if result.reason == "reset":
        print("wirt: the guest rebooted before the command finished (kernel panic? run again "
              "with --append loglevel=7 to see the kernel log)", file=sys.stderr)
        return EXIT_WIRT_FAILED
    if result.reason == "fatal":
        print(f"wirt: {result.detail}", file=sys.stderr)
        return EXIT_WIRT_FAILED
    print(f"wirt: stopped ({result.reason}) before the command finished", file=sys.stderr)
    return EXIT_WIRT_FAILED


def _run_interactive(args, firmware, kernel, initrd, bootargs, memory) -> int:
    from wirt.machine.console import RawConsole, StreamConsole

    interactive = os.isatty(0)
    holder: dict = {}

    def output(data: bytes) -> None:
        holder["console"].output(data)

    machine = _machine(args, firmware, kernel, initrd, bootargs, memory, output, quiet=False)
    if interactive:
        console = RawConsole(machine.feed_input, machine.stop)
        print("wirt: console on ttyS0 -- C-a x exits, C-a h for help", file=sys.stderr)
    else:
        console = StreamConsole()
        console.forward_input(0, machine.feed_input)
    holder["console"] = console
    with console:
        while True:
            result = machine.run()
            if result.reason == "reset":
                machine.reset()  # the guest asked for a reboot: start over
                continue
            break
    signum = getattr(console, "quit_signal", None)
    if signum is not None:
        return 128 + signum
    if result.reason == "fatal":
        print(f"wirt: {result.detail}", file=sys.stderr)
        return EXIT_WIRT_FAILED
    if result.reason == "fail":
        return result.code & 0xFF or 1
    return 0
