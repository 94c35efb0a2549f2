"""virtio devices over the virtio-mmio transport (virtio 1.2).

`VirtioMmio(device, memory, irq)` is the bus-facing slot; `device` is one of `VirtioBlk`,
`VirtioNet`, `VirtioConsole`, `VirtioRng`. Wiring into the virt board, slot n:

    slot = VirtioMmio(VirtioBlk(open_image(path, read_only=False), serial="disk0"),
                      machine.memory, machine.plic.line(1 + n))
    machine.virtio[n].device = slot          # or bus.add(0x1000_1000 + n * 0x1000, slot)

Threads: blk, rng and console output run on the thread that performs the MMIO write (the CPU
thread). Network receive runs on the backend's I/O thread, console input on whatever thread
calls `feed()`; both take the device lock and raise the IRQ line from that thread, so the
line's sink must wake a sleeping hart. No poll hook is needed. `slot.close()` stops backends.
See `mmio.py` for the locking rules.
"""

from wirt.devices.virtio.blk import VirtioBlk
from wirt.devices.virtio.console import VirtioConsole
from wirt.devices.virtio.device import VirtioDevice
from wirt.devices.virtio.mmio import VirtioMmio
from wirt.devices.virtio.net import VirtioNet
from wirt.devices.virtio.rng import VirtioRng

__all__ = ["VirtioMmio", "VirtioDevice", "VirtioBlk", "VirtioNet", "VirtioConsole", "VirtioRng"]
