"""A bare-metal machine for test programs: one hart, RAM, and HTIF (tohost/fromhost).

This is the machine riscv-tests and `wirt run-elf` use: no devices, the program talks to
the host through the HTIF mailbox in RAM (the Spike convention): tohost = 1 | (code << 1)
ends the run, device 1 / command 1 prints a character, a pointer to a syscall block
performs write/exit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, TextIO

from wirt.cpu import layout as L
from wirt.cpu.hart import Hart
from wirt.errors import WirtError
from wirt.machine.elf import read_elf
from wirt.machine.memory import GuestMemory

RAM_BASE = 0x8000_0000
SYS_WRITE = 64
SYS_EXIT = 93


@dataclass
class RunResult:
    """How a bare-metal run ended."""

    exit_code: int | None  # the program's exit code, None if it did not finish
    instructions: int
    reason: str           # "exit", "max-insns", "fatal"
    detail: str = ""


class BareMetal:
    """Load an ELF into RAM at 0x8000_0000 and run it in M-mode from its entry point."""

    def __init__(self, path: str, ram_size: int = 64 << 20, output: Callable[[bytes], None] | None = None,
                 jit: str | None = None) -> None:
        """`jit`: the translation tier's setting, "off", "on" or "force" (default: WIRT_JIT)."""
        image = read_elf(path)
        self.memory = GuestMemory(ram_size, RAM_BASE)
        for addr, data, memsz in image.segments:
            if not self.memory.contains(addr, max(memsz, 1)):
                raise WirtError(f"{path}: segment at {addr:#x} (+{memsz:#x}) is outside RAM "
                                f"{RAM_BASE:#x}-{RAM_BASE + ram_size:#x}; link it at 0x80000000 or raise --ram")
            self.memory.write(addr, data)
        self.hart = Hart(self.memory.array, RAM_BASE, code_pages=self.memory.code_pages, jit=jit)
        self.hart.reset(image.entry)
        self.tohost = image.symbols.get("tohost", -1)
        self.fromhost = image.symbols.get("fromhost", -1)
        if self.tohost >= 0 and not self.memory.contains(self.tohost, 8):
            raise WirtError(f"{path}: tohost at {self.tohost:#x} is outside RAM")
        self.hart.s[L.TOHOST] = self.tohost
        self.output = output or _stdout_writer
        self.exit_code: int | None = None

    def run(self, max_insns: int | None = None, trace: TextIO | None = None) -> RunResult:
        """Run until the program exits through HTIF, or max_insns instructions have retired."""
        hart = self.hart
        limit = max_insns if max_insns is not None else (1 << 62)
        slice_ = 1 if trace else 1 << 22
        while self.exit_code is None:
            done = hart.instret
            if done >= limit:
                return RunResult(None, done, "max-insns")
            before_pc, before_priv = hart.pc, hart.priv
            reason = hart.run(min(slice_, limit - done))
            if trace and hart.instret > done:
                raw = self._raw_insn(before_pc)
                trace.write(f"{before_pc:016x} {raw} {'USHM'[before_priv]}\n")
            stop = self.handle(reason)
            if stop is not None:
                return stop
        return RunResult(self.exit_code, hart.instret, "exit")

    def handle(self, reason: int) -> RunResult | None:
        """Act on one exit of the core; a result when the run cannot go on."""
        hart = self.hart
        if reason == L.EXIT_HTIF:
            self._htif(int(hart.ex[L.EX_VALUE]))
        elif reason == L.EXIT_MMIO:
            hart.access_fault()  # no devices on this machine
        elif reason == L.EXIT_WFI:
            if (hart.c[L.CSR_MIE] == 0):
                return RunResult(None, hart.instret, "fatal", "wfi with no interrupt enabled: the program would hang")
        elif reason == L.EXIT_FATAL:
            return RunResult(None, hart.instret, "fatal", f"core error at pc {hart.pc:#x}")
        return None

    def _raw_insn(self, pc: int) -> str:
        try:
            lo = int.from_bytes(self.memory.read(pc, 2), "little")
            if lo & 3 != 3:
                return f"{lo:04x}    "
            return f"{int.from_bytes(self.memory.read(pc, 4), 'little'):08x}"
        except ValueError:
            return "????????"

    def _htif(self, value: int) -> None:
        value &= (1 << 64) - 1
        device, cmd, payload = value >> 56, (value >> 48) & 0xFF, value & ((1 << 48) - 1)
        self.memory.write_u64(self.tohost, 0)
        if device == 0 and cmd == 0:
            if payload & 1:
                self.exit_code = payload >> 1
                return
            self._syscall(payload)
            if self.fromhost >= 0:
                self.memory.write_u64(self.fromhost, 1)
        elif device == 1 and cmd == 1:
            self.output(bytes([payload & 0xFF]))
            if self.fromhost >= 0:
                self.memory.write_u64(self.fromhost, (1 << 56) | (1 << 48))

    def _syscall(self, addr: int) -> None:
        """A Spike-style syscall block: eight u64 words, number first, result in word 0."""
        try:
            words = [self.memory.read_u64(addr + 8 * i) for i in range(4)]
        except ValueError:
            self.exit_code = 255
            return
        num, a0, a1, a2 = words
        if num == SYS_WRITE and a0 in (1, 2):
            try:
                self.output(self.memory.read(a1, a2))
                result = a2
            except ValueError:
                result = -14  # EFAULT
        elif num == SYS_EXIT:
            self.exit_code = a0 & 0xFF
            return
        else:
            result = -38  # ENOSYS
        self.memory.write_u64(addr, result)


def _stdout_writer(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
