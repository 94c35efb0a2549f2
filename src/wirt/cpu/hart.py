"""The hart as a Python object: owns the state arrays and enters the compiled core.

The machine layer uses this class; it never touches the arrays' layout directly except
through the named slots in `wirt.cpu.layout`.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from wirt.cpu import layout as L
from wirt.cpu.mmu import new_tlb, reset_tlb
from wirt.numbacall import compiled_entry

_rvc_table: np.ndarray | None = None
_ICOUNT, _EXIT_BUDGET, _JQ_FORCE, _JQ_COUNT, _JQ_STEP = L.ICOUNT, L.EXIT_BUDGET, L.JQ_FORCE, L.JQ_COUNT, L.JQ_STEP
_EX_SIZE_B, _EX_KIND, _EX_RD = L.EX_SIZE_B, L.EX_KIND, L.EX_RD
#: the dtype of each array core.run takes (layout.RUN_ARRAYS; cpu/core.py makes views of these)
_RUN_DTYPES = {"s": np.int64, "c": np.int64, "tlb": np.int64, "ram8": np.uint8, "ram16": np.uint16,
               "ram32": np.int32, "ram64": np.int64, "rom8": np.uint8, "rvc": np.int32, "ex": np.int64,
               "jt": np.int64, "jq": np.int64, "jpg": np.int64, "xc": np.uint8, "pl": np.int64}


def _core():
    """Import (and so load or compile) the numba core, with a progress message if it is slow."""
    done = threading.Event()

    def notice() -> None:
        if not done.wait(1.0):
            print("wirt: compiling the CPU core (first run only, about two minutes)...",
                  file=sys.stderr, flush=True)

    t = threading.Thread(target=notice, daemon=True)
    t.start()
    start = time.monotonic()
    try:
        from wirt.cpu import core, irqchip, rvc
        from wirt.cpu.jit import csrcall, fpcall  # noqa: F401  (helpers translated code calls)
        global _rvc_table
        if _rvc_table is None:
            _rvc_table = rvc.build_rvc_table()
        _warm_up(core)
        _warm_up_irqchip(irqchip)
    finally:
        done.set()
    elapsed = time.monotonic() - start
    if elapsed > 1.0:
        print(f"wirt: CPU core ready in {elapsed:.1f} s (cached for next time)", file=sys.stderr)
    return core


_core_module = None


def core_module():
    """The compiled core module (compiled or loaded from cache once per process)."""
    global _core_module
    if _core_module is None:
        _core_module = _core()
    return _core_module


def _warm_up(core) -> None:
    """Run the core once on a tiny hart so numba compiles (or loads) every entry point."""
    h = Hart.__new__(Hart)
    Hart._init_arrays(h, np.zeros(4096, dtype=np.uint8), 0x80000000, 0, np.zeros(8, dtype=np.uint8), 0x1000)
    h._pack()
    h.s[L.PC] = 0x80000000
    core.run(h._table, 1)


def _warm_up_irqchip(irqchip) -> None:
    """Compile (or load) the PLIC functions devices/plic.py calls, with the core."""
    pl = np.zeros(L.PL_SIZE, dtype=np.int64)
    pl[L.PL_NDEV], pl[L.PL_NCTX] = 1, 1
    irqchip.lock(pl)
    irqchip.update(pl)
    irqchip.unlock(pl)
    irqchip.set_source(pl, 1, 0)
    irqchip.read32(pl, 0)
    irqchip.write32(pl, 0, 0, False)


class Hart:
    """One RV64 hart bound to a RAM buffer (and an optional boot ROM)."""

    def __init__(self, ram: np.ndarray, ram_base: int = 0x8000_0000, hartid: int = 0,
                 rom: np.ndarray | None = None, rom_base: int = 0x1000,
                 code_pages: np.ndarray | None = None, jit=None) -> None:
        """`code_pages`: the machine's per-page translation words (GuestMemory.code_pages);
        `jit`: its TranslationCache, shared by its harts, or a setting ("off", "on", "force";
        default: WIRT_JIT) for a cache of our own."""
        self._init_arrays(ram, ram_base, hartid, rom if rom is not None else np.zeros(8, np.uint8),
                          rom_base, code_pages)
        self.core = core_module()
        if jit is None or isinstance(jit, str):
            from wirt.cpu.jit.cache import TranslationCache, jit_setting
            jit = TranslationCache(ram, ram_base, self.jpg, _rvc_table, jit_setting(jit))
        self.jit = jit
        self.jt, self.jq, self.xc = jit.new_tables()
        self._pack()
        # Two integers whose types never change: the compiled function is called without the
        # dispatcher's matching of them (core_module's warm-up compiled it for these types).
        self._run = compiled_entry(self.core.run, (self._table, 0))
        #: the translation tier's service of this hart, called at every return from the core
        self._service = jit.servicer(self.jt, self.jq) if jit.enabled else None

    def _init_arrays(self, ram: np.ndarray, ram_base: int, hartid: int, rom: np.ndarray,
                     rom_base: int, code_pages: np.ndarray | None = None) -> None:
        if ram.dtype != np.uint8 or ram.ndim != 1 or len(ram) % 4096 != 0:
            raise ValueError("RAM must be a 1-D uint8 array whose size is a multiple of 4 KiB")
        self.ram8 = ram
        self.ram16 = ram.view(np.uint16)
        self.ram32 = ram.view(np.int32)
        self.ram64 = ram.view(np.int64)
        self.rom8 = rom
        self.s = np.zeros(L.S_SIZE, dtype=np.int64)
        self.c = np.zeros(4096, dtype=np.int64)
        self.tlb = new_tlb()
        self.ex = np.zeros(L.EX_SIZE, dtype=np.int64)
        if code_pages is None:
            code_pages = np.zeros(len(ram) // 4096, np.int64)
        if code_pages.dtype != np.int64 or len(code_pages) != len(ram) // 4096:
            raise ValueError("code_pages must hold one int64 per 4 KiB page of RAM")
        self.jpg = code_pages
        self._run = None      # core.run's compiled entry (set by __init__)
        self._service = None  # the translation tier's service (none while the tier is off)
        self.jit = None
        self.jt = np.full(L.JT_W, -1, dtype=np.int64)   # tier off until a cache is attached
        self.jq = np.zeros(L.JQ_SIZE, dtype=np.int64)
        self.xc = np.zeros(8, dtype=np.uint8)           # no template-tier code buffer
        self.pl = np.zeros(L.PL_SIZE, dtype=np.int64)   # no PLIC in the core until attached
        self.s[L.RAM_BASE] = ram_base
        self.s[L.RAM_SIZE] = len(ram)
        self.s[L.ROM_BASE] = rom_base
        self.s[L.ROM_SIZE] = len(rom)
        self.s[L.HARTID] = hartid
        self.reset(ram_base)

    def reset(self, pc: int) -> None:
        """Architectural reset (priv spec 3.4): M-mode, pc at the reset vector, mstatus clean."""
        s, c = self.s, self.c
        s[: L.F0 + 32] = 0
        s[L.PC] = pc
        s[L.PRIV] = L.PRV_M
        s[L.RESERVATION] = -1
        s[L.TOHOST] = -1
        s[L.MTIMECMP] = -1  # all ones: never fires until written
        s[L.TIME_SHIFT] = 4
        s[L.INSTRET_OFF] = -s[L.ICOUNT]
        s[L.CYCLE_OFF] = -s[L.ICOUNT]
        c[:] = 0
        c[L.CSR_STIMECMP] = -1
        reset_tlb(self.tlb)

    def _pack(self) -> None:
        """Build the table of this hart's arrays that core.run reads (cpu/borrow.py: their
        addresses and lengths, in layout.RUN_ARRAYS order), after any of them is replaced.
        The hart keeps the table and the arrays, so the addresses stay valid; each array is
        checked to be what the core will take it for."""
        table = np.empty(L.RUN_WORDS, dtype=np.int64)
        held = []
        for i, name in enumerate(L.RUN_ARRAYS):
            a = _rvc_table if name == "rvc" else getattr(self, name)
            want = _RUN_DTYPES[name]
            if a is None or a.dtype != want or a.ndim != 1 or not a.flags.c_contiguous:
                raise ValueError(f"hart array {name!r} must be a 1-D contiguous {np.dtype(want)} array")
            table[2 * i] = a.ctypes.data
            table[2 * i + 1] = len(a)
            held.append(a)
        self._arrays = (table, held)
        self._table = int(table.ctypes.data)
        # Words read at every return from the core (tens of thousands a second under I/O) go
        # through memoryviews: a Python int each, where numpy makes a scalar object.
        #: the state array as a memoryview
        self.state_view = memoryview(self.s)
        self._jq_view = memoryview(self.jq)
        self._ex_view = memoryview(self.ex)

    def attach_irqchip(self, pl: np.ndarray) -> None:
        """Serve the guest's PLIC claims and completions in the core, on the machine's shared
        PLIC state `pl` (devices/plic.Plic.pl; cpu/irqchip.py)."""
        self.pl = pl
        self._pack()

    # ---- running ---------------------------------------------------------------------
    def run(self, budget: int) -> int:
        """Execute up to budget instructions; returns the exit reason (layout.EXIT_*)."""
        # Called at every MMIO exit: everything it needs is bound once (Hart._pack, __init__).
        sv, jqv = self.state_view, self._jq_view
        table, entry, service = self._table, self._run, self._service
        end = sv[_ICOUNT] + budget
        while True:
            reason = entry(table, end - sv[_ICOUNT])
            if service is None:
                return reason
            forced = reason == _EXIT_BUDGET and jqv[_JQ_FORCE] and jqv[_JQ_COUNT]
            service()
            if not forced or sv[_ICOUNT] >= end or jqv[_JQ_STEP]:
                return reason

    def jit_stats(self) -> dict:
        """The translation tier's counters for this hart and its machine's cache."""
        if self.jit is None:
            return {"setting": "off"}
        return self.jit.counters([self.jq])

    def complete_load(self, value: int) -> None:
        """Finish an MMIO load: extend the device's value and write the destination register
        (an x register, or an f register for flw/fld, NaN-boxing a single). Called at every
        MMIO load exit: the exit record and the register are read and written through
        memoryviews (numpy scalars cost 1-1.5 us an exit)."""
        ex = self._ex_view
        size, kind, rd = ex[_EX_SIZE_B], ex[_EX_KIND], ex[_EX_RD]
        value &= (1 << (8 * size)) - 1
        if kind == L.KIND_FP_S or kind == L.KIND_FP_D:
            if kind == L.KIND_FP_S:
                value |= 0xFFFFFFFF_00000000
            self.c[L.CSR_MSTATUS] |= L.MS_FS
        elif rd == 0:
            return
        elif kind == L.KIND_SIGNED and value >> (8 * size - 1):
            # Unprivileged spec 2.6 and 5.3: LB/LH/LW (and LD) sign-extend, LBU/LHU/LWU
            # zero-extend; the register holds the 64-bit pattern as an int64.
            value -= 1 << (8 * size)
        self.state_view[rd] = value - (1 << 64) if value >= 1 << 63 else value

    def raise_exception(self, cause: int, tval: int) -> None:
        """Undo the exited instruction and trap instead (e.g. an access to no device)."""
        self.s[L.PC] = self.ex[L.EX_PC]
        self.s[L.ICOUNT] -= 1
        self.s[L.PC] = self.core.take_trap(self.s, self.c, cause, tval, int(self.ex[L.EX_PC]))

    def access_fault(self) -> None:
        """The exited MMIO access hit no device: load/store access fault (priv spec 3.7), with
        mtval/stval the faulting *virtual* address (priv spec 3.1.16)."""
        store = bool(self.ex[L.EX_STORE])
        self.raise_exception(L.EXC_STORE_ACCESS if store else L.EXC_LOAD_ACCESS, int(self.ex[L.EX_VADDR]))

    # ---- accessors -------------------------------------------------------------------
    @property
    def pc(self) -> int:
        return int(self.s[L.PC])

    @property
    def priv(self) -> int:
        return int(self.s[L.PRIV])

    @property
    def instret(self) -> int:
        return self.state_view[_ICOUNT]

    def x(self, n: int) -> int:
        return int(self.s[n]) & ((1 << 64) - 1)

    def state(self) -> dict:
        """Plain-data copy of the architectural state (for snapshots)."""
        return {"s": self.s.tolist(), "c": self.c.tolist()}

    def load_state(self, d: dict) -> None:
        self.s[:] = np.asarray(d["s"], dtype=np.int64)
        self.c[:] = np.asarray(d["c"], dtype=np.int64)
        reset_tlb(self.tlb)
        if self.jit is not None:
            self.jit.flush()  # snapshots hold no translations: start cold

