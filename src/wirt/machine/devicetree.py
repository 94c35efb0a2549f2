"""Device tree of the "virt" platform (QEMU riscv virt compatible), see DESIGN.md.

Node names, unit addresses, interrupt numbers and the properties Linux and OpenSBI read
match what QEMU 7.2 generates for `-M virt` (checked with `dumpdtb`), minus QEMU's
devices wirt does not model (PCI, flash, fw-cfg, platform bus, PMU).
Bindings used: Documentation/devicetree/bindings/riscv/{cpus,extensions}.yaml,
interrupt-controller/sifive,plic-1.0.0.yaml, timer/sifive,clint.yaml, serial/8250.yaml,
rtc/google,goldfish-rtc, power/reset/syscon-{poweroff,reboot}.yaml, virtio/mmio.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wirt.errors import WirtError
from wirt.machine.fdt import Fdt, FdtNode

__all__ = [
    "VirtConfig",
    "build_virt_fdt",
    "build_virt_dtb",
    "TEST_BASE",
    "RTC_BASE",
    "CLINT_BASE",
    "PLIC_BASE",
    "UART_BASE",
    "VIRTIO_BASE",
    "VIRTIO_STRIDE",
    "UART_IRQ",
    "RTC_IRQ",
    "VIRTIO_IRQ_BASE",
    "BASE_BOOTARGS",
]

# Memory map (DESIGN.md "Guest platform"); sizes as in QEMU 7.2's virt_memmap.
TEST_BASE, TEST_SIZE = 0x0010_0000, 0x1000
RTC_BASE, RTC_SIZE = 0x0010_1000, 0x1000
CLINT_BASE, CLINT_SIZE = 0x0200_0000, 0x10000
PLIC_BASE, PLIC_SIZE = 0x0C00_0000, 0x60_0000
UART_BASE, UART_SIZE = 0x1000_0000, 0x100
VIRTIO_BASE, VIRTIO_STRIDE, VIRTIO_MAX = 0x1000_1000, 0x1000, 8
RAM_BASE = 0x8000_0000

# PLIC interrupt sources
VIRTIO_IRQ_BASE = 1  # slot n -> 1 + n
UART_IRQ = 10
RTC_IRQ = 11

UART_CLOCK = 3_686_400
# The start of every Linux command line wirt passes (`wirt run`, the VM process): the console on
# the UART above (ttyS0), and a reboot one second after a kernel panic.
BASE_BOOTARGS = "console=ttyS0 panic=1"
TIMEBASE_FREQUENCY = 10_000_000

# Local interrupt numbers on riscv,cpu-intc (privileged spec, mip bits)
IRQ_M_SOFT, IRQ_M_TIMER, IRQ_S_EXT, IRQ_M_EXT = 3, 7, 9, 11

DEFAULT_ISA_EXTENSIONS = ("i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "zicntr", "sstc")


@dataclass
class VirtConfig:
    """What varies between virt machines: RAM, harts, boot arguments, initrd, slots."""

    ram_size: int = 1 << 30
    ram_base: int = RAM_BASE
    num_harts: int = 1
    bootargs: str = ""
    initrd: tuple[int, int] | None = None  # (start, end) guest physical, end exclusive
    virtio_slots: int = VIRTIO_MAX
    plic_ndev: int = 96
    isa_extensions: tuple[str, ...] = DEFAULT_ISA_EXTENSIONS
    mmu_type: str = "riscv,sv48"
    timebase_frequency: int = TIMEBASE_FREQUENCY
    rng_seed: bytes | None = None  # /chosen/rng-seed, seeds the guest kernel's RNG
    model: str = "riscv-virtio,wirt"
    reservations: list[tuple[int, int]] = field(default_factory=list)

    @property
    def isa(self) -> str:
        """The legacy riscv,isa string, e.g. rv64imafdc_zicsr_zifencei_zicntr_sstc."""
        single = "".join(e for e in self.isa_extensions if len(e) == 1)
        multi = [e for e in self.isa_extensions if len(e) > 1]
        return "_".join(["rv64" + single, *multi])

    def validate(self) -> None:
        """Raise WirtError for a configuration the board cannot have."""
        if not 1 <= self.num_harts <= 512:
            raise WirtError(f"num_harts must be 1..512, not {self.num_harts}")
        if self.ram_size <= 0 or self.ram_size % 4096:
            raise WirtError(f"RAM size must be a positive multiple of 4 KiB, not {self.ram_size}")
        if self.ram_base < VIRTIO_BASE + VIRTIO_MAX * VIRTIO_STRIDE or self.ram_base % 4096:
            raise WirtError(f"RAM base {self.ram_base:#x} overlaps the device region or is unaligned")
        if not 0 <= self.virtio_slots <= VIRTIO_MAX:
            raise WirtError(f"virtio slots must be 0..{VIRTIO_MAX}, not {self.virtio_slots}")
        if not RTC_IRQ <= self.plic_ndev <= 1023:
            raise WirtError(f"plic_ndev must be {RTC_IRQ}..1023, not {self.plic_ndev}")
        if "\0" in self.bootargs:
            raise WirtError("kernel command line must not contain NUL bytes")
        if self.initrd is not None:
            start, end = self.initrd
            ram_end = self.ram_base + self.ram_size
            if not self.ram_base <= start <= end <= ram_end:
                raise WirtError(f"initrd {start:#x}-{end:#x} is not inside RAM {self.ram_base:#x}-{ram_end:#x}")


def _reg(node: FdtNode, base: int, size: int) -> None:
    node.set_reg("reg", [(base, size)])  # /soc has #address-cells = #size-cells = 2


def build_virt_fdt(config: VirtConfig) -> Fdt:
    """Build the virt board's device tree as an `Fdt` (to inspect or extend)."""
    config.validate()
    fdt = Fdt()
    for r in config.reservations:
        fdt.add_reservation(*r)
    root = fdt.root
    root.set_u32("#address-cells", 2)
    root.set_u32("#size-cells", 2)
    root.set_string("compatible", "riscv-virtio")
    root.set_string("model", config.model)

    # /chosen (DT spec v0.4 section 3.6)
    chosen = root.add_node("chosen")
    if config.bootargs:
        chosen.set_string("bootargs", config.bootargs)
    chosen.set_string("stdout-path", f"/soc/serial@{UART_BASE:x}")
    if config.initrd is not None:
        chosen.set_u64("linux,initrd-start", config.initrd[0])
        chosen.set_u64("linux,initrd-end", config.initrd[1])
    if config.rng_seed:
        chosen.set_raw("rng-seed", config.rng_seed)

    # /memory (DT spec 3.4)
    mem = root.add_node(f"memory@{config.ram_base:x}")
    mem.set_string("device_type", "memory")
    _reg(mem, config.ram_base, config.ram_size)

    # /cpus (DT spec 3.7, 3.8; riscv/cpus.yaml)
    cpus = root.add_node("cpus")
    cpus.set_u32("#address-cells", 1)
    cpus.set_u32("#size-cells", 0)
    cpus.set_u32("timebase-frequency", config.timebase_frequency)
    intcs: list[int] = []
    cpu_phandles: list[int] = []
    for h in range(config.num_harts):
        cpu = cpus.add_node(f"cpu@{h:x}")
        cpu_phandles.append(fdt.phandle(cpu))
        cpu.set_string("device_type", "cpu")
        cpu.set_u32("reg", h)
        cpu.set_string("status", "okay")
        cpu.set_string("compatible", "riscv")
        cpu.set_string("riscv,isa", config.isa)
        cpu.set_string("riscv,isa-base", "rv64i")
        cpu.set_strings("riscv,isa-extensions", config.isa_extensions)
        cpu.set_string("mmu-type", config.mmu_type)
        intc = cpu.add_node("interrupt-controller")
        intc.set_u32("#address-cells", 0)  # dtc's interrupt_provider check wants it
        intc.set_u32("#interrupt-cells", 1)
        intc.set_empty("interrupt-controller")
        intc.set_string("compatible", "riscv,cpu-intc")
        intcs.append(fdt.phandle(intc))
    cluster = cpus.add_node("cpu-map").add_node("cluster0")
    for h, ph in enumerate(cpu_phandles):
        cluster.add_node(f"core{h}").set_u32("cpu", ph)

    # /soc (DT spec 3.9 simple-bus)
    soc = root.add_node("soc")
    soc.set_u32("#address-cells", 2)
    soc.set_u32("#size-cells", 2)
    soc.set_string("compatible", "simple-bus")
    soc.set_empty("ranges")

    test = soc.add_node(f"test@{TEST_BASE:x}")
    test_ph = fdt.phandle(test)
    test.set_strings("compatible", ["sifive,test1", "sifive,test0", "syscon"])
    _reg(test, TEST_BASE, TEST_SIZE)

    clint = soc.add_node(f"clint@{CLINT_BASE:x}")
    clint.set_strings("compatible", ["sifive,clint0", "riscv,clint0"])
    _reg(clint, CLINT_BASE, CLINT_SIZE)
    clint.set_cells("interrupts-extended", [c for ph in intcs for c in (ph, IRQ_M_SOFT, ph, IRQ_M_TIMER)])

    plic = soc.add_node(f"plic@{PLIC_BASE:x}")
    plic_ph = fdt.phandle(plic)
    plic.set_u32("#address-cells", 0)
    plic.set_u32("#interrupt-cells", 1)
    plic.set_strings("compatible", ["sifive,plic-1.0.0", "riscv,plic0"])
    plic.set_empty("interrupt-controller")
    # context 2h = hart h M-mode (MEIP, 11), 2h+1 = S-mode (SEIP, 9)
    plic.set_cells("interrupts-extended", [c for ph in intcs for c in (ph, IRQ_M_EXT, ph, IRQ_S_EXT)])
    _reg(plic, PLIC_BASE, PLIC_SIZE)
    plic.set_u32("riscv,ndev", config.plic_ndev)

    rtc = soc.add_node(f"rtc@{RTC_BASE:x}")
    rtc.set_string("compatible", "google,goldfish-rtc")
    _reg(rtc, RTC_BASE, RTC_SIZE)
    rtc.set_u32("interrupt-parent", plic_ph)
    rtc.set_u32("interrupts", RTC_IRQ)

    uart = soc.add_node(f"serial@{UART_BASE:x}")
    uart.set_string("compatible", "ns16550a")
    _reg(uart, UART_BASE, UART_SIZE)
    uart.set_u32("clock-frequency", UART_CLOCK)
    uart.set_u32("interrupt-parent", plic_ph)
    uart.set_u32("interrupts", UART_IRQ)

    for n in range(config.virtio_slots):
        base = VIRTIO_BASE + n * VIRTIO_STRIDE
        vio = soc.add_node(f"virtio_mmio@{base:x}")
        vio.set_string("compatible", "virtio,mmio")
        _reg(vio, base, VIRTIO_STRIDE)
        vio.set_u32("interrupt-parent", plic_ph)
        vio.set_u32("interrupts", VIRTIO_IRQ_BASE + n)

    soc.children.sort(key=lambda n: int(n.name.partition("@")[2], 16))  # address order

    # syscon-poweroff / syscon-reboot sit at the root, as on QEMU, so Linux creates
    # platform devices for them (children of a plain "syscon" node are not probed).
    for name, compat, value in (("poweroff", "syscon-poweroff", 0x5555), ("reboot", "syscon-reboot", 0x7777)):
        node = root.add_node(name)
        node.set_string("compatible", compat)
        node.set_u32("regmap", test_ph)
        node.set_u32("offset", 0)
        node.set_u32("value", value)

    return fdt


def build_virt_dtb(config: VirtConfig) -> bytes:
    """The virt board's device tree blob for `config` (DTB v17)."""
    return build_virt_fdt(config).to_bytes()
