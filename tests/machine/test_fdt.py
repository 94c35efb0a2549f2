"""FDT writer and the virt device tree: dtc decompiles it cleanly, round trips, and has
the nodes/properties Linux and OpenSBI use, matching QEMU's virt board."""

import shutil
import struct
import subprocess

import pytest

from wirt.errors import WirtError
from wirt.machine.devicetree import VirtConfig, build_virt_dtb, build_virt_fdt
from wirt.machine.fdt import FDT_MAGIC, Fdt, FdtNode, parse_dtb


def dtc(*args, input: bytes) -> subprocess.CompletedProcess:
    exe = shutil.which("dtc")
    if exe is None:
        pytest.fail("dtc not found: install the device-tree-compiler package (make system-packages)")
    return subprocess.run([exe, *args], input=input, capture_output=True, timeout=30)


def decompile(blob: bytes) -> str:
    r = dtc("-I", "dtb", "-O", "dts", "-", input=blob)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Warning" not in r.stderr and b"ERROR" not in r.stderr, r.stderr.decode()
    return r.stdout.decode()


CONFIG = VirtConfig(
    ram_size=1 << 30,
    num_harts=2,
    bootargs="console=ttyS0 panic=1 root=/dev/vda rw",
    initrd=(0xBF00_0000, 0xBF80_0000),
)


# ---- the generic writer ---------------------------------------------------------------


def test_header_and_blocks():
    fdt = Fdt()
    fdt.add_reservation(0x8000_0000, 0x8_0000)
    fdt.root.set_u32("#address-cells", 2)
    n = fdt.root.add_node("node@1")
    n.set_u32("#address-cells", 1)  # same name: one strings-block entry
    blob = fdt.to_bytes()
    magic, total, off_struct, off_strings, off_rsv, version, last, _, sz_str, sz_struct = struct.unpack_from(
        ">10I", blob
    )
    assert magic == FDT_MAGIC and total == len(blob)
    assert version == 17 and last == 16
    assert off_rsv % 8 == 0 and off_struct % 4 == 0
    assert blob[off_strings : off_strings + sz_str] == b"#address-cells\0"
    assert off_struct + sz_struct == off_strings
    assert struct.unpack_from(">QQ", blob, off_rsv) == (0x8000_0000, 0x8_0000)


def test_all_value_kinds_through_dtc():
    fdt = Fdt()
    r = fdt.root
    r.set_u32("#address-cells", 2)
    r.set_u32("#size-cells", 2)
    r.set_string("compatible", "wirt,test")
    a = r.add_node("a")
    b = r.add_node("b")
    a.set_u32("u32", 0x12345678)
    a.set_u64("u64", 0x1_2345_6789)
    a.set_cells("cells", [1, 2, 0xFFFF_FFFF])
    a.set_string("str", "hello")
    a.set_strings("strs", ["x", "yy", "zzz"])
    a.set_raw("raw", b"\x01\x02\x03")
    a.set_empty("flag")
    b.set_u32("ref", fdt.phandle(a))
    assert fdt.phandle(a) == 1  # stable
    fdt.add_reservation(0x1000, 0x2000)
    dts = decompile(fdt.to_bytes())
    assert "/memreserve/\t0x0000000000001000 0x0000000000002000;" in dts
    assert "u32 = <0x12345678>;" in dts
    assert "u64 = <0x01 0x23456789>;" in dts
    assert "cells = <0x01 0x02 0xffffffff>;" in dts
    assert 'str = "hello";' in dts
    assert 'strs = "x\\0yy\\0zzz";' in dts
    assert "raw = [01 02 03];" in dts
    assert "flag;" in dts
    assert "ref = <0x01>;" in dts and "phandle = <0x01>;" in dts


def test_parse_round_trip():
    blob = build_virt_dtb(CONFIG)
    fdt = parse_dtb(blob)
    assert fdt.to_bytes() == blob


def test_invalid_names_rejected():
    with pytest.raises(ValueError):
        FdtNode("bad name")
    with pytest.raises(ValueError):
        FdtNode("x").set_u32("bad prop", 1)
    with pytest.raises(ValueError):
        n = FdtNode("x")
        n.add_node("y")
        n.add_node("y")
    with pytest.raises(WirtError):
        FdtNode("x").set_string("s", "a\0b")
    with pytest.raises(WirtError):
        parse_dtb(b"\0" * 64)


# ---- the virt tree --------------------------------------------------------------------


def test_virt_dtb_decompiles_cleanly_and_round_trips():
    blob = build_virt_dtb(CONFIG)
    dts = decompile(blob)
    # Decompiled source has phandles as plain numbers, so dtc's interrupts-extended
    # check (which wants &label references) cannot apply to it: switch that one off.
    r = dtc("-W", "no-interrupts_extended_property", "-I", "dts", "-O", "dtb", "-", input=dts.encode())
    assert r.returncode == 0, r.stderr.decode()
    assert b"Warning" not in r.stderr, r.stderr.decode()
    assert decompile(r.stdout) == dts


def test_virt_tree_contents():
    fdt = build_virt_fdt(CONFIG)
    root = fdt.root
    assert root.get_u32("#address-cells") == 2 and root.get_u32("#size-cells") == 2
    assert root.get_string("compatible") == "riscv-virtio"

    chosen = root.find("/chosen")
    assert chosen.get_string("bootargs") == CONFIG.bootargs
    assert chosen.get_string("stdout-path") == "/soc/serial@10000000"
    assert chosen.get_u64("linux,initrd-start") == 0xBF00_0000
    assert chosen.get_u64("linux,initrd-end") == 0xBF80_0000

    mem = root.find("/memory@80000000")
    assert mem.get_string("device_type") == "memory"
    assert mem.get_cells("reg") == [0, 0x8000_0000, 0, 0x4000_0000]

    cpus = root.find("/cpus")
    assert cpus.get_u32("timebase-frequency") == 10_000_000
    assert cpus.get_u32("#address-cells") == 1 and cpus.get_u32("#size-cells") == 0
    intc_ph = []
    cpu_ph = []
    for h in range(2):
        cpu = cpus.find(f"cpu@{h}")
        assert cpu.get_u32("reg") == h
        assert cpu.get_string("device_type") == "cpu"
        assert cpu.get_string("status") == "okay"
        assert cpu.get_string("compatible") == "riscv"
        assert cpu.get_string("riscv,isa") == "rv64imafdc_zicsr_zifencei_zicntr_sstc"
        assert cpu.get_string("riscv,isa-base") == "rv64i"
        assert cpu.get_strings("riscv,isa-extensions") == [
            "i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "zicntr", "sstc",
        ]  # fmt: skip
        assert cpu.get_string("mmu-type") == "riscv,sv48"
        assert not any(p.startswith("riscv,cbom") for p in cpu.props)
        intc = cpu.find("interrupt-controller")
        assert intc.get_string("compatible") == "riscv,cpu-intc"
        assert intc.get_u32("#interrupt-cells") == 1
        assert "interrupt-controller" in intc.props
        intc_ph.append(intc.get_u32("phandle"))
        cpu_ph.append(cpu.get_u32("phandle"))
    assert [cpus.find(f"cpu-map/cluster0/core{h}").get_u32("cpu") for h in range(2)] == cpu_ph

    soc = root.find("/soc")
    assert soc.get_string("compatible") == "simple-bus"
    assert soc.props["ranges"] == b""

    clint = soc.find("clint@2000000")
    assert "riscv,clint0" in clint.get_strings("compatible")
    assert clint.get_cells("reg") == [0, 0x0200_0000, 0, 0x10000]
    assert clint.get_cells("interrupts-extended") == [c for ph in intc_ph for c in (ph, 3, ph, 7)]

    plic = soc.find("plic@c000000")
    plic_ph = plic.get_u32("phandle")
    assert "riscv,plic0" in plic.get_strings("compatible")
    assert plic.get_cells("reg") == [0, 0x0C00_0000, 0, 0x60_0000]
    assert plic.get_cells("interrupts-extended") == [c for ph in intc_ph for c in (ph, 11, ph, 9)]
    assert plic.get_u32("riscv,ndev") == 96
    assert plic.get_u32("#interrupt-cells") == 1 and plic.get_u32("#address-cells") == 0
    assert "interrupt-controller" in plic.props

    uart = soc.find("serial@10000000")
    assert uart.get_string("compatible") == "ns16550a"
    assert uart.get_u32("clock-frequency") == 3_686_400
    assert uart.get_u32("interrupts") == 10 and uart.get_u32("interrupt-parent") == plic_ph
    assert uart.get_cells("reg") == [0, 0x1000_0000, 0, 0x100]

    rtc = soc.find("rtc@101000")
    assert rtc.get_string("compatible") == "google,goldfish-rtc"
    assert rtc.get_u32("interrupts") == 11 and rtc.get_u32("interrupt-parent") == plic_ph

    test = soc.find("test@100000")
    assert test.get_strings("compatible") == ["sifive,test1", "sifive,test0", "syscon"]
    assert test.get_cells("reg") == [0, 0x10_0000, 0, 0x1000]
    for name, compat, value in (("poweroff", "syscon-poweroff", 0x5555), ("reboot", "syscon-reboot", 0x7777)):
        n = root.find(name)
        assert n.get_string("compatible") == compat
        assert n.get_u32("regmap") == test.get_u32("phandle")
        assert n.get_u32("offset") == 0 and n.get_u32("value") == value

    for n in range(8):
        base = 0x1000_1000 + n * 0x1000
        v = soc.find(f"virtio_mmio@{base:x}")
        assert v.get_string("compatible") == "virtio,mmio"
        assert v.get_cells("reg") == [0, base, 0, 0x1000]
        assert v.get_u32("interrupts") == 1 + n and v.get_u32("interrupt-parent") == plic_ph


def test_optional_parts():
    fdt = build_virt_fdt(VirtConfig(ram_size=256 << 20, virtio_slots=2, rng_seed=b"\x11" * 32))
    chosen = fdt.root.find("chosen")
    assert "bootargs" not in chosen.props and "linux,initrd-start" not in chosen.props
    assert chosen.props["rng-seed"] == b"\x11" * 32
    names = [c.name for c in fdt.root.find("soc").children if c.name.startswith("virtio")]
    assert names == ["virtio_mmio@10001000", "virtio_mmio@10002000"]
    decompile(fdt.to_bytes())


@pytest.mark.parametrize(
    "kw",
    [
        {"num_harts": 0},
        {"ram_size": 1000},
        {"virtio_slots": 9},
        {"bootargs": "a\0b"},
        {"initrd": (0x7000_0000, 0x8000_0000)},
        {"initrd": (0x8000_0000, 0xC000_1000)},
    ],
)
def test_bad_config_is_a_wirt_error(kw):
    with pytest.raises(WirtError):
        build_virt_dtb(VirtConfig(**kw))


def _node_map(fdt: Fdt) -> dict[str, set[str]]:
    return {path: set(node.props) for path, node in fdt.root.walk()}


def test_matches_qemu_virt_structure(tmp_path):
    """Every node we emit exists in QEMU 7.2's virt DTB with the properties Linux uses."""
    qemu = shutil.which("qemu-system-riscv64")
    if qemu is None:
        pytest.skip("qemu-system-riscv64 not installed: cannot compare with QEMU's virt DTB")
    out = tmp_path / "q.dtb"
    subprocess.run(
        [qemu, "-M", f"virt,dumpdtb={out}", "-m", "1G", "-smp", "2", "-nographic"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    theirs = _node_map(parse_dtb(out.read_bytes()))
    ours = _node_map(build_virt_fdt(VirtConfig(num_harts=2, bootargs="x", initrd=(0x8800_0000, 0x8810_0000))))
    # properties we add on purpose beyond QEMU 7.2's
    extra = {"riscv,isa-base", "riscv,isa-extensions", "#address-cells", "bootargs"}
    extra |= {"linux,initrd-start", "linux,initrd-end"}
    for path, props in ours.items():
        assert path in theirs, f"{path} not in QEMU's virt tree"
        missing = theirs[path] - props - {"rng-seed"}
        assert not missing, f"{path}: QEMU has {missing} that we lack"
        assert props - theirs[path] <= extra, f"{path}: unexpected {props - theirs[path] - extra}"
    # QEMU's nodes that we do not have are all devices wirt does not model
    skipped = {p.split("/")[1 if p.count("/") == 1 else 2].split("@")[0] for p in set(theirs) - set(ours)}
    assert skipped <= {"pmu", "fw-cfg", "flash", "platform-bus", "pci"}, skipped
