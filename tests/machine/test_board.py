"""The virt board: boot ROM, fw_dynamic_info, memory layout, device tree output, and the run
loop's dispatch of MMIO, interrupts and WFI, driven by tiny bare-metal programs."""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading

import pytest

from wirt.cpu import layout as L
from wirt.errors import WirtError
from wirt.machine import rvenc as rv
from wirt.machine.board import Machine, plan_boot
from wirt.machine.bootrom import (
    DTB_PTR_OFFSET, ENTRY_OFFSET, FW_DYNAMIC_MAGIC, FW_INFO_OFFSET, ROM_BASE, build_boot_rom,
    fw_dynamic_info,
)
from wirt.machine.devicetree import CLINT_BASE, PLIC_BASE, RAM_BASE, TEST_BASE, UART_BASE
from wirt.machine.fdt import parse_dtb
from wirt.machine.placement import KERNEL_OFFSET, check_kernel_image, plan_layout

MIB = 1 << 20
CSR_MTVEC, CSR_MCAUSE, CSR_MIE, CSR_MSTATUS, CSR_MEPC = 0x305, 0x342, 0x304, 0x300, 0x341


def fake_kernel(image_size: int = 4 * MIB, file_size: int = 4096) -> bytes:
    """A RISC-V Image header (boot-image-header.rst) padded to file_size."""
    hdr = struct.pack("<IIQQQIIQ8s4sI", 0x13, 0, KERNEL_OFFSET, image_size, 0, 2, 0, 0,
                      b"RISCV\0\0\0", b"RSC\x05", 0)
    return hdr.ljust(file_size, b"\0")


def program(*parts: int | list[int]) -> bytes:
    words: list[int] = []
    for p in parts:
        words.extend(p if isinstance(p, list) else [p])
    return rv.assemble(words)


def finisher_exit_with_t1() -> list[int]:
    """sw t1 -> finisher, then spin."""
    return [*rv.li32("t0", TEST_BASE), rv.sw("t1", "t0", 0), rv.jal("zero", 0)]


# ---- boot ROM and fw_dynamic_info ---------------------------------------------------------------
def test_fw_dynamic_info_layout():
    info = fw_dynamic_info(0x8020_0000)
    assert len(info) == 48  # six unsigned longs (include/sbi/fw_dynamic.h, version 2)
    magic, version, next_addr, next_mode, options, boot_hart = struct.unpack("<6Q", info)
    assert magic == FW_DYNAMIC_MAGIC == 0x4942534F
    assert version == 2 and next_addr == 0x8020_0000 and next_mode == 1 and options == 0
    assert boot_hart == 0


def test_boot_rom_contents():
    rom = build_boot_rom(0x8000_0000, 0x9FE0_0000, 0x8020_0000, options=1)
    assert len(rom) == 0x1000
    assert struct.unpack_from("<Q", rom, ENTRY_OFFSET)[0] == 0x8000_0000
    assert struct.unpack_from("<Q", rom, DTB_PTR_OFFSET)[0] == 0x9FE0_0000
    assert rom[FW_INFO_OFFSET: FW_INFO_OFFSET + 48] == fw_dynamic_info(0x8020_0000, options=1)


def test_boot_rom_matches_gnu_as():
    """The hand-encoded reset code disassembles to what it claims to be."""
    objdump = shutil.which("riscv64-unknown-elf-objdump")
    if objdump is None:
        pytest.fail("riscv64-unknown-elf-objdump not found: install binutils-riscv64-unknown-elf (make test does)")
    rom = build_boot_rom(0x8000_0000, 0x9FE0_0000, 0x8020_0000)
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(rom[:ENTRY_OFFSET])
        f.flush()
        out = subprocess.run([objdump, "-D", "-b", "binary", "-m", "riscv:rv64", "-M", "no-aliases",
                              f.name], capture_output=True, text=True, check=True).stdout
    lines = [ln.split("\t", 2)[-1].split()[0] for ln in out.splitlines() if ln[:1] == " " and ":\t" in ln]
    assert lines == ["auipc", "addi", "csrrs", "ld", "ld", "jalr"]


def test_boot_rom_runs_on_the_hart():
    spin = program(rv.jal("zero", 0))
    m = Machine(spin, memory_size=64 * MIB)
    r = m.run(max_insns=6)  # the six ROM instructions, two of them loads from the ROM (MMIO)
    assert r.reason == "limit"
    h = m.hart
    assert h.pc == RAM_BASE
    assert h.priv == L.PRV_M
    assert h.x(10) == 0                              # a0 = mhartid
    assert h.x(11) == m.layout.dtb                   # a1 = device tree
    assert h.x(12) == ROM_BASE + FW_INFO_OFFSET      # a2 = &fw_dynamic_info
    assert m.memory.read(m.layout.dtb, 4) == b"\xd0\x0d\xfe\xed"
    info = struct.unpack("<6Q", m.bus.read(h.x(12), 8).to_bytes(8, "little")
                         + bytes(m.rom[FW_INFO_OFFSET + 8: FW_INFO_OFFSET + 48]))
    assert info[:4] == (FW_DYNAMIC_MAGIC, 2, RAM_BASE + KERNEL_OFFSET, 1)


# ---- memory layout ------------------------------------------------------------------------------
def test_layout_places_everything_without_overlap():
    lay = plan_layout(RAM_BASE, 512 * MIB, 300_000, 31 * MIB, 11 * MIB + 123, 5000)
    assert lay.firmware == RAM_BASE and lay.kernel == RAM_BASE + 0x20_0000
    assert lay.kernel_end <= lay.initrd < lay.initrd_end <= lay.dtb < lay.dtb_end <= RAM_BASE + 512 * MIB
    assert lay.initrd % 4096 == 0 and lay.dtb % (2 * MIB) == 0


@pytest.mark.parametrize("memory", [16 * MIB, 40 * MIB])
def test_layout_refuses_too_little_memory(memory):
    with pytest.raises(WirtError, match="too small.*--memory"):
        plan_boot(memory, 300_000, fake_kernel(image_size=31 * MIB), 11 * MIB)


def test_machine_refuses_too_little_memory():
    with pytest.raises(WirtError, match="too small"):
        Machine(b"\x6f\x00\x00\x00", fake_kernel(image_size=60 * MIB), memory_size=64 * MIB)


def test_firmware_too_big_for_the_gap():
    with pytest.raises(WirtError, match="firmware"):
        plan_boot(512 * MIB, 3 * MIB, fake_kernel(), 0)


@pytest.mark.parametrize("data, what", [
    (b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", 62) + bytes(100), "another architecture"),
    (b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", 243) + bytes(100), "RISC-V ELF"),
    (bytes(0x38) + b"ARM\x64" + bytes(64), "arm64"),
    (b"\x1f\x8b" + bytes(100), "gzip"),
    (b"hello", "not a RISC-V Image"),
])
def test_kernel_image_check(data, what):
    with pytest.raises(WirtError, match=what):
        check_kernel_image(data)


def test_kernel_image_check_accepts_header():
    check_kernel_image(fake_kernel())


def test_dtb_chosen_has_bootargs_initrd_and_stdout():
    plan = plan_boot(256 * MIB, 1000, fake_kernel(), 3 * MIB, "console=ttyS0 quiet", bytes(32))
    chosen = parse_dtb(plan.dtb).root.find("/chosen")
    assert chosen.get_string("bootargs") == "console=ttyS0 quiet"
    assert chosen.get_string("stdout-path") == "/soc/serial@10000000"
    assert (chosen.get_u64("linux,initrd-start"), chosen.get_u64("linux,initrd-end")) == (
        plan.layout.initrd, plan.layout.initrd_end)


# ---- MMIO dispatch, interrupts, WFI --------------------------------------------------------------
def test_uart_output_and_finisher_exit_code():
    out = bytearray()
    code = [*rv.li32("t0", UART_BASE)]
    for ch in b"hi\n":
        code += [rv.addi("t1", "zero", ch), rv.sb("t1", "t0", 0)]
    code += [rv.lbu("t2", "t0", 5)]  # LSR (MMIO load): THRE|TEMT = 0x60
    # t1 = 0x3333 | (LSR << 16): the exit code is the LSR value
    code += [*rv.li32("t1", 0x3333), rv.slli("t2", "t2", 16), rv.or_("t1", "t2", "t1")]
    code += finisher_exit_with_t1()
    m = Machine(program(code), memory_size=64 * MIB, on_output=out.extend)
    r = m.run(max_insns=10_000)
    assert bytes(out) == b"hi\n"
    assert (r.reason, r.code) == ("fail", 0x60)


def trap_to_finisher() -> list[int]:
    """A trap handler that reports mcause through the finisher: 0x3333 | mcause << 16."""
    return [rv.csrr("t2", CSR_MCAUSE), rv.slli("t2", "t2", 16),
            *rv.li32("t1", 0x3333), rv.or_("t1", "t2", "t1"), *finisher_exit_with_t1()]


def with_handler(body: list[int]) -> bytes:
    """mtvec = the handler placed after `body` (which must not fall through)."""
    prologue_len = 3
    handler_off = 4 * (prologue_len + len(body))
    prologue = [rv.auipc("t0", 0), rv.addi("t0", "t0", handler_off), rv.csrw(CSR_MTVEC, "t0")]
    assert len(prologue) == prologue_len
    return program(prologue, body, trap_to_finisher())


def test_unmapped_load_is_an_access_fault():
    body = [*rv.li32("t0", 0x3000_0000), rv.lw("t1", "t0", 0), rv.jal("zero", 0)]
    m = Machine(with_handler(body), memory_size=64 * MIB)
    r = m.run(max_insns=10_000)
    assert (r.reason, r.code) == ("fail", L.EXC_LOAD_ACCESS)


def test_empty_virtio_slot_reads_as_no_device():
    body = [*rv.li32("t0", 0x1000_1000), rv.lw("t1", "t0", 8),  # DeviceID
            *rv.li32("t2", 0x3333), rv.slli("t1", "t1", 16), rv.or_("t1", "t1", "t2"),
            *finisher_exit_with_t1()]
    m = Machine(program(body), memory_size=64 * MIB)
    r = m.run(max_insns=10_000)
    assert (r.reason, r.code) == ("fail", 0)  # DeviceID 0: no device
    assert m.bus.read(0x1000_1000, 4) == 0x74726976


class Pattern:
    """A device whose bytes are PATTERN repeated (little-endian), recording stores."""

    PATTERN = 0xF1E2_D3C4_B5A6_9788
    size = 0x100

    def __init__(self) -> None:
        self.stores: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.PATTERN.to_bytes(8, "little")[offset % 8:][:size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.stores.append((offset, size, value))


def load(f3: int, rd: str | int, rs1: str, imm: int, opcode: int = 0x03) -> int:
    """An I-type load (unprivileged spec 2.6: lb 0, lh 1, lw 2, ld 3, lbu 4, lhu 5, lwu 6;
    opcode 0x07 with 2/3: flw/fld, chapter 11.5)."""
    return (imm & 0xFFF) << 20 | rv.REG[rs1] << 15 | f3 << 12 | (rv.REG[rd] if isinstance(rd, str) else rd) << 7 | opcode


def test_mmio_loads_extend_and_stores_mask_like_ram():
    """Loads from a device: lb/lh/lw/ld sign-extend, lbu/lhu/lwu zero-extend (spec 2.6, 5.3), a
    load to x0 is dropped, flw NaN-boxes and fld loads 64 bits (11.5, 12.3); stores reach the
    device with the access's width of the register (negative values masked)."""
    dev = Pattern()
    fmv_x_d = lambda rd, fs: 0xE200_0053 | fs << 15 | rv.REG[rd] << 7  # noqa: E731
    body = [
        *rv.li32("t0", 0x3000_0000),
        load(0, "a0", "t0", 0), load(4, "a1", "t0", 0), load(1, "a2", "t0", 6), load(5, "a3", "t0", 6),
        load(2, "a4", "t0", 4), load(6, "a5", "t0", 4), load(3, "a6", "t0", 0), load(2, "a7", "t0", 0),
        load(0, "s2", "t0", 1), load(2, "zero", "t0", 4),
        *rv.li32("t1", 0x2000), rv.csrs(CSR_MSTATUS, "t1"),  # mstatus.FS = initial
        load(2, 1, "t0", 4, 0x07), load(3, 2, "t0", 0, 0x07), fmv_x_d("s3", 1), fmv_x_d("s4", 2),
        rv.addi("t1", "zero", -2), rv.sb("t1", "t0", 1), rv.sw("t1", "t0", 4), rv.sd("t1", "t0", 8),
        *rv.li32("t1", 0x5555), *finisher_exit_with_t1(),
    ]
    m = Machine(program(body), memory_size=64 * MIB)
    m.bus.add(0x3000_0000, dev, "pattern")
    r = m.run(max_insns=10_000)
    assert (r.reason, r.code) == ("poweroff", 0)
    x = {name: m.hart.x(rv.REG[name]) for name in ("a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4")}
    mask = (1 << 64) - 1
    assert x == {
        "a0": 0x88 - 0x100 & mask, "a1": 0x88,                           # lb / lbu of 0x88
        "a2": 0xF1E2 - 0x10000 & mask, "a3": 0xF1E2,                     # lh / lhu at +6
        "a4": 0xF1E2D3C4 - (1 << 32) & mask, "a5": 0xF1E2D3C4,           # lw / lwu at +4
        "a6": Pattern.PATTERN, "a7": 0xB5A69788 - (1 << 32) & mask,      # ld; lw at 0
        "s2": 0x97 - 0x100 & mask,                                       # lb at +1
        "s3": 0xFFFF_FFFF_F1E2_D3C4, "s4": Pattern.PATTERN,              # flw (NaN-boxed), fld
    }
    assert m.hart.x(0) == 0
    assert dev.stores == [(1, 1, 0xFE), (4, 4, 0xFFFF_FFFE), (8, 8, mask - 1)]


def timer_program() -> bytes:
    """mtimecmp = mtime + 50000 (5 ms); enable MTIE and MIE; WFI until the timer trap."""
    body = [
        *rv.li32("t0", CLINT_BASE + 0xBFF8), rv.ld("t1", "t0", 0),  # mtime
        *rv.li32("t2", 50_000), rv.add("t1", "t1", "t2"),
        *rv.li32("t0", CLINT_BASE + 0x4000), rv.sd("t1", "t0", 0),  # mtimecmp
        rv.addi("t0", "zero", 0x80), rv.csrs(CSR_MIE, "t0"),          # MTIE
        rv.addi("t0", "zero", 0x8), rv.csrs(CSR_MSTATUS, "t0"),       # MIE
        rv.wfi(), rv.jal("zero", -4),
    ]
    return with_handler(body)


@pytest.mark.parametrize("deterministic", [True, False])
def test_wfi_sleeps_until_the_timer(deterministic):
    m = Machine(timer_program(), memory_size=64 * MIB, deterministic=deterministic)
    r = m.run(max_insns=100_000)
    assert (r.reason, r.code) == ("fail", L.IRQ_MTI)  # mcause: machine timer interrupt
    assert m.clock.now() >= 50_000
    if deterministic:
        assert m.hart.s[L.WFI_SKIPPED] > 0 and r.instructions < 1000


def test_deterministic_runs_repeat_exactly():
    runs = []
    for _ in range(2):
        m = Machine(timer_program(), memory_size=64 * MIB, deterministic=True)
        r = m.run(max_insns=100_000)
        runs.append((r, m.clock.now(), m.hart.s.tolist()))
    assert runs[0] == runs[1]


def test_uart_rx_interrupt_through_the_plic():
    """A byte fed from another thread wakes WFI through UART IRQ 10 -> PLIC context 0 -> MEIP."""
    plic_enable0 = PLIC_BASE + 0x2000
    plic_claim0 = PLIC_BASE + 0x20_0004
    body = [
        *rv.li32("t0", PLIC_BASE + 4 * 10), rv.addi("t1", "zero", 1), rv.sw("t1", "t0", 0),  # prio 1
        *rv.li32("t0", plic_enable0), rv.addi("t1", "zero", 1 << 10), rv.sw("t1", "t0", 0),  # enable
        *rv.li32("t0", UART_BASE), rv.addi("t1", "zero", 1), rv.sb("t1", "t0", 1),          # IER.ERBFI
        *rv.li32("t0", 0x800), rv.csrs(CSR_MIE, "t0"),                                       # MEIE
        rv.addi("t0", "zero", 0x8), rv.csrs(CSR_MSTATUS, "t0"),
        rv.wfi(), rv.jal("zero", -4),
    ]
    handler = [
        *rv.li32("t0", plic_claim0), rv.lw("t3", "t0", 0),          # claim: source 10
        *rv.li32("t0", UART_BASE), rv.lbu("t2", "t0", 0),           # RBR: the byte
        *rv.li32("t0", plic_claim0), rv.sw("t3", "t0", 0),          # complete
        rv.slli("t2", "t2", 16), *rv.li32("t1", 0x3333), rv.or_("t1", "t2", "t1"),
        *finisher_exit_with_t1(),
    ]
    prologue = [rv.auipc("t0", 0), rv.addi("t0", "t0", 4 * (3 + len(body))), rv.csrw(CSR_MTVEC, "t0")]
    m = Machine(program(prologue, body, handler), memory_size=64 * MIB)
    timer = threading.Timer(0.05, m.feed_input, args=(b"Z",))
    timer.start()
    try:
        r = m.run(max_insns=10_000_000)
    finally:
        timer.cancel()
    assert (r.reason, r.code) == ("fail", ord("Z"))


def test_stop_from_another_thread():
    m = Machine(program(rv.jal("zero", 0)), memory_size=64 * MIB)
    threading.Timer(0.05, m.stop).start()
    r = m.run()
    assert r.reason == "stopped"


def test_cpu_count_out_of_range_is_refused():
    with pytest.raises(WirtError, match="1 to 64 CPUs"):
        Machine(program(rv.jal("zero", 0)), memory_size=64 * MIB, num_harts=0)


def test_trap_loop_is_reported_not_spun_forever():
    """mtvec = 0 (no memory there): the first fault loops on instruction access faults."""
    body = [*rv.li32("t0", 0x3000_0000), rv.lw("t1", "t0", 0), rv.jal("zero", 0)]
    m = Machine(program(body), memory_size=64 * MIB)
    r = m.run(max_insns=10_000_000)
    assert r.reason == "fatal" and "trap loop" in r.detail and "mcause 0x1" in r.detail


# ---- `wirt run --dtb-out` ------------------------------------------------------------------------
@pytest.fixture
def wirt_cli(monkeypatch):
    """wirt.cli.main with the `run` command registered (until the lead adds it for good)."""
    import wirt.cli as cli

    return cli.main


@pytest.fixture
def boot_files(tmp_path):
    fw = tmp_path / "fw_dynamic.bin"
    fw.write_bytes(program(rv.jal("zero", 0)))
    kernel = tmp_path / "Image"
    kernel.write_bytes(fake_kernel(image_size=8 * MIB))
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(b"070701" + bytes(2 * MIB))
    return fw, kernel, initrd


def test_dtb_out_round_trips_through_dtc(wirt_cli, boot_files, tmp_path, capsys):
    dtc = shutil.which("dtc")
    if dtc is None:
        pytest.fail("dtc not found: install the device-tree-compiler package")
    fw, kernel, initrd = boot_files
    out = tmp_path / "virt.dtb"
    rc = wirt_cli(["run", "--firmware", str(fw), "--kernel", str(kernel), "--initrd", str(initrd),
                   "--memory", "256M", "--append", "loglevel=7", "--dtb-out", str(out)])
    assert rc == 0
    blob = out.read_bytes()
    dts = subprocess.run([dtc, "-I", "dtb", "-O", "dts", "-o", "-", str(out)], capture_output=True,
                         text=True, check=True)
    assert "Warning" not in dts.stderr and "ERROR" not in dts.stderr, dts.stderr
    text = dts.stdout
    assert "bootargs = \"console=ttyS0 panic=1 wirt.modules=none loglevel=7\"" in text
    assert 'stdout-path = "/soc/serial@10000000"' in text
    assert "reg = <0x00 0x80000000 0x00 0x10000000>" in text  # 256 MiB at 0x80000000
    # back through dtc into a blob: same tree
    again = subprocess.run([dtc, "-I", "dts", "-O", "dtb", "-o", "-", "-"], input=dts.stdout.encode(),
                           capture_output=True, check=True).stdout
    a, b = parse_dtb(blob).root, parse_dtb(again).root
    assert a.find("/chosen").get_u64("linux,initrd-start") == b.find("/chosen").get_u64("linux,initrd-start")
    start = a.find("/chosen").get_u64("linux,initrd-start")
    end = a.find("/chosen").get_u64("linux,initrd-end")
    assert end - start == initrd.stat().st_size and start % 4096 == 0
    assert RAM_BASE + 0x20_0000 + 8 * MIB <= start and end <= RAM_BASE + 256 * MIB


def test_dtb_feeds_qemu(wirt_cli, boot_files, tmp_path):
    """QEMU's virt accepts our tree (-dtb) and OpenSBI boots on it to its banner."""
    qemu = shutil.which("qemu-system-riscv64")
    fw_path = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin"
    import os
    if qemu is None or not os.path.exists(fw_path):
        pytest.fail("qemu-system-riscv64 or its OpenSBI not found: install qemu-system-misc and opensbi (make test does)")
    _, kernel, initrd = boot_files
    out = tmp_path / "virt.dtb"
    assert wirt_cli(["run", "--firmware", fw_path, "--kernel", str(kernel), "--memory", "256M",
                     "--dtb-out", str(out)]) == 0
    proc = subprocess.Popen([qemu, "-M", "virt", "-m", "256M", "-smp", "1", "-nographic", "-bios", fw_path,
                             "-kernel", str(kernel), "-dtb", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    text = b""
    try:
        while b"Domain0 Next Address" not in text:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            text += chunk
    finally:
        proc.kill()
        proc.wait()
    assert b"OpenSBI" in text and b"Domain0 Next Address" in text


def test_reset_reloads_the_images():
    """A finisher reset (0x7777) ends the run; `reset()` brings back power-on RAM and state.

    The program starts at RAM_BASE, so auipc t0, 0x100 points t0 at RAM_BASE + 1 MiB."""
    body = [rv.auipc("t0", 0x100), *rv.li32("t1", 0x1234), rv.sw("t1", "t0", 0),
            *rv.li32("t1", 0x7777), *finisher_exit_with_t1()]
    m = Machine(program(body), memory_size=64 * MIB)
    assert m.run(max_insns=10_000).reason == "reset"
    assert m.memory.read(0x8010_0000, 4) == (0x1234).to_bytes(4, "little")
    m.reset()
    assert m.memory.read(0x8010_0000, 4) == bytes(4)
    assert m.memory.read(RAM_BASE, 8) == program(body)[:8]
    assert m.memory.read(m.layout.dtb, 4) == b"\xd0\x0d\xfe\xed"
    assert m.hart.pc == ROM_BASE and m.clock.now() == 0
    assert m.run(max_insns=10_000).reason == "reset"  # and it runs again


def test_stop_between_runs_then_run_again():
    """stop() while nothing runs: the next run() returns "stopped" once, the one after runs on."""
    m = Machine(program(rv.jal("zero", 0)), memory_size=64 * MIB)
    m.stop()
    assert m.run(max_insns=1000).reason == "stopped"
    r = m.run(max_insns=1000)
    assert r.reason == "limit" and r.instructions == 1000


def test_plic_lines_set_ext_ip_and_wake_a_sleeper_only_when_rising():
    """A PLIC context's line drives its hart's external-interrupt bit (s[EXT_IP]) both ways;
    only a rising one wakes a hart asleep in WFI (a falling one cannot end a sleep, and an
    event already set needs no second set: both cost a lock and a notify at every I/O
    request)."""
    m = Machine(program([rv.wfi()]), memory_size=64 * MIB)
    s = m.hart.s
    m.plic.write(4 * 20, 4, 1)                # source 20 at priority 1 ...
    m.plic.write(0x2000 + 0x80, 4, 1 << 20)   # ... enabled for context 1: hart 0 in S-mode
    m.wake.clear()
    m.plic.line(20).raise_()
    assert m.wake.is_set() and s[L.EXT_IP] == L.MIP_SEIP and s[L.ATTENTION] & 1
    m.wake.clear()
    m.plic.line(20).lower()
    assert not m.wake.is_set() and s[L.EXT_IP] == 0
    m.plic.line(20).raise_()
    assert m.wake.is_set()
