"""Plugging virtio devices into the board's virtio-mmio slots (slot n: IRQ 1 + n, DESIGN.md)."""

from __future__ import annotations

from typing import Any, Callable

from wirt.devices.virtio import VirtioBlk, VirtioConsole, VirtioMmio, VirtioNet, VirtioRng
from wirt.devices.virtio.mmio import INTERRUPT_STATUS
from wirt.errors import WirtError
from wirt.machine import devicetree as dt


def free_slot(machine: Any) -> int:
    """The first empty virtio-mmio slot, or a one-line error when all are used."""
    for i, slot in enumerate(machine.virtio):
        if slot.device is None:
            return i
    raise WirtError(f"all {len(machine.virtio)} virtio slots are used; attach fewer devices")


def plug(machine: Any, device: Any) -> VirtioMmio:
    """Put a virtio device model on a virtio-mmio transport in the next free slot (IRQ 1 + slot)."""
    n = free_slot(machine)
    # InterruptStatus (and InterruptACK above it) in the PLIC's state: the cores serve them.
    status = machine.plic.status_line(dt.VIRTIO_IRQ_BASE + n, dt.VIRTIO_BASE + n * dt.VIRTIO_STRIDE + INTERRUPT_STATUS)
    dev = VirtioMmio(device, machine.memory, status)
    machine.virtio[n].device = dev
    return dev


def attach_disk(machine: Any, disk: Any, serial: str) -> VirtioMmio:
    """Put a storage.BlockDevice on virtio-blk in the next free slot."""
    return plug(machine, VirtioBlk(disk, serial=serial))


def attach_net(machine: Any, backend: Any, mac: bytes) -> VirtioMmio:
    """Put a netback backend on virtio-net in the next free slot; it transmits on a thread of
    its own unless the machine is deterministic."""
    return plug(machine, VirtioNet(backend, mac, tx_thread=not machine.deterministic))


def attach_console(machine: Any, on_output: Callable[[bytes], None]) -> VirtioMmio:
    """Put a single-port virtio-console (the guest's /dev/hvc0) in the next free slot;
    `device.feed(bytes)` sends to the guest, `on_output` gets what the guest writes."""
    return plug(machine, VirtioConsole(on_output))


def attach_data_port(machine: Any) -> VirtioMmio:
    """Put a MULTIPORT virtio-console with one generic port named "wirt.data" (the guest's
    /dev/vportNp0, for `wirt cp`) in the next free slot; see wirt.devices.virtio.serial."""
    from wirt.devices.virtio.serial import VirtioSerialPort

    return plug(machine, VirtioSerialPort())


def attach_rng(machine: Any) -> VirtioMmio:
    """Put a virtio entropy device (host os.urandom; the guest's /dev/hwrng) in the next free slot.
    Not for deterministic runs: its bytes differ every time."""
    return plug(machine, VirtioRng())


def attach_mount(machine: Any, host_dir: str, tag: str, read_only: bool) -> VirtioMmio:
    """Share host folder `host_dir` with the guest on virtio-9p under mount tag `tag` (the guest
    mounts `-t 9p -o trans=virtio TAG`); nothing outside the folder is reachable
    (wirt.devices.virtio.p9.safefs). Raises OSError when the folder cannot be opened."""
    from wirt.devices.virtio.p9 import VirtioP9

    return plug(machine, VirtioP9(host_dir, tag, read_only))
