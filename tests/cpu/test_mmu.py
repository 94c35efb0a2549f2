"""Sv39/Sv48 address translation: page sizes, permission checks, A/D updates, invalid and
reserved PTEs, non-canonical addresses, MPRV, and TLB maintenance (sfence.vma, satp).

Page tables are built from Python into guest RAM before the run (`PageTables`); the test
body switches on translation and runs in S- or U-mode. Every fault goes to the M-mode
handler of tests/cpu/asmkit.py, which records mcause/mtval/mepc (s10/s11/s8).

References: privileged spec 1.12 — 3.1.6.3 (MPRV, MXR, SUM), 4.1.11 (satp), 4.2.1
(sfence.vma), 4.3.1-4.3.2 (Sv32 PTE format and the translation algorithm that Sv39/Sv48
reuse: step 3 invalid/reserved PTEs, step 5 permissions, step 6 misaligned superpages,
step 7 A/D), 4.4 (Sv39, incl. 4.4.1 canonical addresses and reserved bits 63:54), 4.5 (Sv48).
"""

from __future__ import annotations

import pytest

from tests.cpu import asmkit as K

V, R, W, X, U, G, A, D = 1, 2, 4, 8, 16, 32, 64, 128
RAM = 8 << 20
POOL = 0x80600000          # page-table pages
DATA = 0x80400000          # 4 KiB data pages: page k at DATA + k * 4096
MEGA = 0x80200000          # a 2 MiB-aligned physical region for the megapage
MISS = 0x0000_0080_0000_0000  # Sv39: a VA with bit 39 set and bits 63:40 clear


def mark(k: int) -> int:
    return 0xA5A5_0000_0000_0000 | (k << 8) | k


class DictMemory:
    """Sparse stand-in for GuestMemory (for computing table addresses ahead of a run)."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def write(self, addr: int, data: bytes) -> None:
        for i in range(0, len(data), 8):
            self.words[addr + i] = int.from_bytes(data[i: i + 8], "little")

    def read_u64(self, addr: int) -> int:
        return self.words.get(addr, 0)

    def write_u64(self, addr: int, value: int) -> None:
        self.words[addr] = value


class PageTables:
    """Sv39/Sv48 tables in guest RAM. Levels: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB, 3 = 512 GiB."""

    def __init__(self, mem, sv: int, pool: int = POOL) -> None:
        self.mem = mem
        self.levels = {39: 3, 48: 4}[sv]
        self.mode = {39: 8, 48: 9}[sv]
        self.next = pool
        self.root = self._alloc()

    def _alloc(self) -> int:
        a = self.next
        self.next += 4096
        self.mem.write(a, bytes(4096))
        return a

    def pte_addr(self, va: int, level: int) -> int:
        table = self.root
        for lvl in range(self.levels - 1, level, -1):
            slot = table + 8 * ((va >> (12 + 9 * lvl)) & 511)
            pte = self.mem.read_u64(slot)
            if not pte & V:
                new = self._alloc()
                pte = ((new >> 12) << 10) | V
                self.mem.write_u64(slot, pte)
            table = ((pte >> 10) & ((1 << 44) - 1)) << 12
        return table + 8 * ((va >> (12 + 9 * level)) & 511)

    def map(self, va: int, pa: int, flags: int, level: int = 0) -> int:
        return self.raw(va, ((pa >> 12) << 10) | flags, level)

    def raw(self, va: int, pte: int, level: int = 0) -> int:
        addr = self.pte_addr(va, level)
        self.mem.write_u64(addr, pte)
        return addr

    def satp(self, asid: int = 0) -> int:
        return (self.mode << 60) | (asid << 44) | (self.root >> 12)


def satp_for(sv: int, pool: int = POOL, asid: int = 0) -> int:
    return ({39: 8, 48: 9}[sv] << 60) | (asid << 44) | (pool >> 12)


CODE_PAGE = r"""
    .pushsection .text
    .balign 4096
code_page:
    li a0, 0x77
    ret
    .balign 4096
    .popsection
"""


def body_in(mode: str, sv: int, text: str, pool: int = POOL) -> str:
    """Turn on translation, enter S or U and run text there; finish from that mode."""
    return CODE_PAGE + f"""
    li t0, {satp_for(sv, pool)}
    csrw satp, t0
    sfence.vma
    ENTER_{mode}
""" + text + "\n    j pass\n"


def base_tables(r: K.Ran, sv: int, user: bool = False) -> PageTables:
    """Identity gigapage over RAM (code, data, tables), data pages with markers."""
    pt = PageTables(r.m.memory, sv)
    pt.map(0x80000000, 0x80000000, V | R | W | X | A | D | (U if user else 0), level=2)
    for k in range(32):
        r.m.memory.write_u64(DATA + 4096 * k, mark(k))
        r.m.memory.write_u64(DATA + 4096 * k + 8, mark(k) + 1)
    return pt


def load_probe(label: str, va: int, off: int = 0) -> str:
    """A load of va+off into a0 (a0 = -1 if it faults), then trap count/cause/tval and a0."""
    return f"""
    li a0, -1
    li s10, -1
    li s11, -1
    li t1, {va}
    ld a0, {off}(t1)         /* {label} */
    TRAPS
    REC a0
"""


def store_probe(label: str, va: int, value: int = 0x5A) -> str:
    return f"""
    li s10, -1
    li s11, -1
    li t1, {va}
    li t2, {value}
    sd t2, 0(t1)             /* {label} */
    TRAPS
"""


def fetch_probe(label: str, va: int) -> str:
    return f"""
    li a0, -1
    li s10, -1
    li s11, -1
    li t1, {va}
    jalr ra, 0(t1)           /* {label} */
    TRAPS
    REC a0
"""


class Expect:
    """Expected results for the probes, in order, with a running trap count."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int | None]] = []
        self.count = 0

    def ok(self, label: str, value: int | None = None, kind: str = "load") -> None:
        self.items += [(f"{label}: count", self.count), (f"{label}: cause", -1), (f"{label}: tval", -1)]
        if kind != "store":
            self.items.append((f"{label}: value", value))

    def fault(self, label: str, cause: int, tval: int, kind: str = "load") -> None:
        self.count += 1
        self.items += [(f"{label}: count", self.count), (f"{label}: cause", cause), (f"{label}: tval", tval)]
        if kind != "store":
            self.items.append((f"{label}: value", -1))

    def raw(self, label: str, value: int | None) -> None:
        self.items.append((label, value))


@pytest.mark.parametrize("sv", [39, 48])
def test_page_sizes_and_misaligned_superpages(sv: int) -> None:
    """4 KiB pages, 2 MiB megapages and 1 GiB gigapages translate (4.3.2 step 8); a
    superpage whose PPN is not aligned to its size is a page fault (step 6) for loads (13),
    stores (15) and fetches (12), with stval = the virtual address."""
    text = (load_probe("4K", 0x3000) + load_probe("4K +8", 0x5000, 8)
            + load_probe("2M", 0x200000 + 0x1238) + load_probe("1G", 0x40000000 + (DATA - 0x80000000) + 0x7000)
            + load_probe("misaligned 2M", 0x400000 + 0x10) + store_probe("misaligned 2M", 0x400000 + 0x20)
            + fetch_probe("misaligned 2M", 0x400000 + 0x40)
            + load_probe("misaligned 1G", 0xC0000000 + 0x18) + store_probe("misaligned 1G", 0xC0000000 + 0x28))
    e = Expect()
    e.ok("4K", mark(3))
    e.ok("4K +8", mark(5) + 1)
    e.ok("2M", 0xBEEF_2222)
    e.ok("1G", mark(7))
    e.fault("misaligned 2M load", 13, 0x400010)
    e.fault("misaligned 2M store", 15, 0x400020, "store")
    e.fault("misaligned 2M fetch", 12, 0x400040)
    e.fault("misaligned 1G load", 13, 0xC0000018)
    e.fault("misaligned 1G store", 15, 0xC0000028, "store")

    def setup(r):
        pt = base_tables(r, sv)
        for k in (3, 5):
            pt.map(0x1000 * k, DATA + 0x1000 * k, V | R | W | A | D)
        r.m.memory.write_u64(MEGA + 0x1238, 0xBEEF_2222)
        pt.map(0x200000, MEGA, V | R | W | X | A | D, level=1)
        pt.map(0x40000000, 0x80000000, V | R | W | A | D, level=2)
        pt.map(0x400000, MEGA + 0x1000, V | R | W | X | A | D, level=1)
        pt.map(0xC0000000, MEGA, V | R | W | A | D, level=2)

    r = K.run(body_in("S", sv, text), f"mmu-sizes-{sv}", ram=RAM, setup=setup)
    K.expect_results(r, e.items)


def test_sv48_512g_page() -> None:
    """Sv48 (4.5): a leaf in the root table maps a 512 GiB terapage; a misaligned one faults."""
    tera = 0x0000_0080_0000_0000  # root index 1
    text = (load_probe("512G", tera + DATA + 0x2000) + load_probe("misaligned 512G", 2 * tera + 0x40)
            + load_probe("Sv39-only address bit 38 is fine in Sv48", 0x40_0000_0000 + (DATA - 0x80000000) + 0x4000))
    e = Expect()
    e.ok("512G", mark(2))
    e.fault("misaligned 512G", 13, 2 * tera + 0x40)
    e.ok("bit 38 in Sv48", mark(4))

    def setup(r):
        pt = base_tables(r, 48)
        pt.map(tera, 0, V | R | W | A | D, level=3)
        pt.map(2 * tera, 0x80000000, V | R | W | A | D, level=3)
        pt.map(0x40_0000_0000, 0x80000000, V | R | A, level=2)

    r = K.run(body_in("S", 48, text), "mmu-tera", ram=RAM, setup=setup)
    K.expect_results(r, e.items)


# Data pages with each permission combination (A and D preset so only R/W/X matter).
PERMS = {1: R, 2: R | W, 3: X, 4: R | X, 5: R | W | X}


def _perm_tables(r, sv=39, user_pages=False, user_code=False) -> PageTables:
    pt = base_tables(r, sv, user=user_code)
    for k, f in PERMS.items():
        pt.map(0x1000 * k, DATA + 0x1000 * k, V | f | A | D | (U if user_pages else 0))
    code = r.sym("code_page")
    for k, f in PERMS.items():
        pt.map(0x100000 + 0x1000 * k, code, V | f | A | D | (U if user_pages else 0))
    return pt


def test_read_write_execute_permissions() -> None:
    """4.3.2 step 5: loads need R (or X with MXR), stores need W, fetches need X; otherwise
    a page fault of the access type with stval = the virtual address."""
    text = ""
    e = Expect()
    for k, f in PERMS.items():
        text += load_probe(f"load {k}", 0x1000 * k)
        text += store_probe(f"store {k}", 0x1000 * k + 0x10)
        text += fetch_probe(f"fetch {k}", 0x100000 + 0x1000 * k)
        if f & R:
            e.ok(f"load flags {f:#x}", mark(k))
        else:
            e.fault(f"load flags {f:#x}", 13, 0x1000 * k)
        if f & W:
            e.ok(f"store flags {f:#x}", kind="store")
        else:
            e.fault(f"store flags {f:#x}", 15, 0x1000 * k + 0x10, "store")
        if f & X:
            e.ok(f"fetch flags {f:#x}", 0x77)
        else:
            e.fault(f"fetch flags {f:#x}", 12, 0x100000 + 0x1000 * k)
    text += "li t0, 1 << 19\ncsrs sstatus, t0\n" + load_probe("MXR: load X-only", 0x3000)
    text += "li t0, 1 << 19\ncsrc sstatus, t0\n" + load_probe("MXR off again", 0x3000)
    e.ok("MXR load X-only", mark(3))
    e.fault("MXR off: load X-only", 13, 0x3000)
    r = K.run(body_in("S", 39, text), "mmu-rwx", ram=RAM, setup=lambda r: _perm_tables(r))
    K.expect_results(r, e.items)
    assert r.m.memory.read_u64(DATA + 0x2010) == 0x5A, "store through a RW page missing"
    assert r.m.memory.read_u64(DATA + 0x1010) == 0, "store through a read-only page happened"


def test_supervisor_access_to_user_pages() -> None:
    """S-mode may load/store U pages only with SUM=1, and never executes them (4.3.2 step 5,
    3.1.6.3); the TLB must not keep a SUM=1 permission after SUM is cleared."""
    text = (load_probe("SUM=0 load U", 0x2000) + store_probe("SUM=0 store U", 0x2000)
            + "li t0, 1 << 18\ncsrs sstatus, t0\n"
            + load_probe("SUM=1 load U", 0x2000) + store_probe("SUM=1 store U", 0x2008, 0x66)
            + fetch_probe("SUM=1 fetch U", 0x100000 + 0x5000)
            + "li t0, 1 << 18\ncsrc sstatus, t0\n"
            + load_probe("SUM=0 again (cached)", 0x2000) + store_probe("SUM=0 again (cached)", 0x2008))
    e = Expect()
    e.fault("SUM=0 load", 13, 0x2000)
    e.fault("SUM=0 store", 15, 0x2000, "store")
    e.ok("SUM=1 load", mark(2))
    e.ok("SUM=1 store", kind="store")
    e.fault("SUM=1 fetch", 12, 0x105000)
    e.fault("SUM=0 again load", 13, 0x2000)
    e.fault("SUM=0 again store", 15, 0x2008, "store")
    r = K.run(body_in("S", 39, text), "mmu-sum", ram=RAM,
              setup=lambda r: _perm_tables(r, user_pages=True))
    K.expect_results(r, e.items)
    assert r.m.memory.read_u64(DATA + 0x2008) == 0x66


def test_user_access_to_supervisor_pages() -> None:
    """U-mode may access only U pages (4.3.2 step 5): loads, stores and fetches of S pages
    fault; U pages work."""
    text = (load_probe("U load S page", 0x1000) + store_probe("U store S page", 0x2000)
            + fetch_probe("U fetch S page", 0x100000 + 0x3000)
            + load_probe("U load U page", 0x11000) + store_probe("U store U page", 0x11008, 0x77)
            + fetch_probe("U fetch U page", 0x100000 + 0x13000))
    e = Expect()
    e.fault("U load S", 13, 0x1000)
    e.fault("U store S", 15, 0x2000, "store")
    e.fault("U fetch S", 12, 0x103000)
    e.ok("U load U", mark(17))
    e.ok("U store U", kind="store")
    e.ok("U fetch U", 0x77)

    def setup(r):
        pt = _perm_tables(r, user_code=True)
        pt.map(0x11000, DATA + 0x11000, V | R | W | U | A | D)
        pt.map(0x113000, r.sym("code_page"), V | X | U | A | D)

    r = K.run(body_in("U", 39, text), "mmu-user", ram=RAM, setup=setup)
    K.expect_results(r, e.items)
    assert r.m.memory.read_u64(DATA + 0x11008) == 0x77


def test_mprv_translates_m_mode_data_accesses() -> None:
    """3.1.6.3: with MPRV=1, M-mode loads and stores use the privilege in MPP (translation
    and protection as S or U); MPP=M means no translation. Fetches are not affected."""
    body = CODE_PAGE + f"""
    li t0, {satp_for(39)}
    csrw satp, t0
    sfence.vma
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, (1 << 11) | (1 << 17)   /* MPRV = 1, MPP = S */
    csrs mstatus, t0
    li t1, 0x1000
    ld a0, 0(t1)
    li t2, 0x99
    sd t2, 8(t1)
    li t0, 1 << 17
    csrc mstatus, t0
    REC a0
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, 1 << 17                 /* MPRV = 1, MPP = U: S page faults */
    csrs mstatus, t0
    li a0, -1
    ld a0, 0(t1)
    li t0, 1 << 17
    csrc mstatus, t0
    TRAPS
    REC a0
    REC s7
    li t0, (3 << 11) | (1 << 17)   /* MPRV = 1, MPP = M: physical */
    csrs mstatus, t0
    li t1, {DATA + 0x4000}
    ld a0, 0(t1)
    li t0, 1 << 17
    csrc mstatus, t0
    REC a0
    REC s9
    """

    def setup(r):
        pt = base_tables(r, 39)
        pt.map(0x1000, DATA + 0x6000, V | R | W | A | D)

    r = K.run(body, "mmu-mprv", ram=RAM, setup=setup)
    K.expect_results(r, [("MPP=S load", mark(6)), ("count", 1), ("MPP=U cause", 13), ("tval", 0x1000),
                         ("a0", -1), ("mstatus on trap", None), ("MPP=M physical", mark(4)), ("count", 1)])
    assert r.m.memory.read_u64(DATA + 0x6008) == 0x99, "MPRV store did not go through the mapping"
    assert (r.results[5] >> 11) & 3 == 3, "the trap came from M-mode"


def test_accessed_and_dirty_bits_set_by_hardware() -> None:
    """4.3.2 step 7: a load sets A, a store sets A and D, a fetch sets A; untouched PTEs keep
    A=D=0. A store to a page first loaded (TLB entry with D=0) must still set D."""
    text = """
    li t1, 0x6000
    ld a0, 0(t1)
    li t1, 0x7000
    sd a0, 0(t1)
    li t1, 0x9000
    ld a0, 0(t1)
    sd a0, 8(t1)
    li a0, 0
    li t1, 0x10a000
    jalr ra, 0(t1)
    REC a0
    REC s9
    """
    ptes = {}

    def setup(r):
        pt = base_tables(r, 39)
        for k in (6, 7, 8, 9):
            ptes[k] = pt.map(0x1000 * k, DATA + 0x1000 * k, V | R | W)
        ptes[10] = pt.map(0x10A000, r.sym("code_page"), V | X)

    r = K.run(body_in("S", 39, text), "mmu-ad", ram=RAM, setup=setup)
    K.expect_results(r, [("fetched", 0x77), ("no faults", 0)])
    flags = {k: r.m.memory.read_u64(a) & 0xFF for k, a in ptes.items()}
    assert flags[6] == V | R | W | A, f"load: PTE flags {flags[6]:#x}"
    assert flags[7] == V | R | W | A | D, f"store: PTE flags {flags[7]:#x}"
    assert flags[8] == V | R | W, f"untouched: PTE flags {flags[8]:#x}"
    assert flags[9] == V | R | W | A | D, f"load then store: PTE flags {flags[9]:#x}"
    assert flags[10] == V | X | A, f"fetch: PTE flags {flags[10]:#x}"


def test_invalid_and_reserved_ptes_fault() -> None:
    """4.3.2 step 3: V=0, W without R, and reserved bits 63:54 set (no Svnapot/Svpbmt, 4.4.1)
    are page faults with the access type's cause; so is a pointer PTE at the last level
    (step 4); stval is the full faulting virtual address."""
    # (va, PTE flags for the data mapping, PTE flags for the code mapping at va + 1 MiB):
    # each would be a usable leaf but for the one defect under test.
    cases = [(0x1000, R | W | A | D, X | A), (0x2000, W | A | D | V, W | X | A | V),
             (0x3000, (1 << 54) | V | R | W | A | D, (1 << 54) | V | X | A),
             (0x4000, (1 << 61) | V | R | W | A | D, (1 << 61) | V | X | A),
             (0x5000, (1 << 63) | V | R | W | A | D, (1 << 63) | V | X | A),
             (0x6000, W | X | V | A | D, W | X | V | A | D), (0x7000, V, V)]
    text = ""
    e = Expect()
    for va, _, _ in cases:
        text += load_probe(f"load {va:#x}", va, 0x18) + store_probe(f"store {va:#x}", va + 0x20)
        text += fetch_probe(f"fetch {va:#x}", va + 0x100000)
        e.fault(f"load {va:#x}", 13, va + 0x18)
        e.fault(f"store {va:#x}", 15, va + 0x20, "store")
        e.fault(f"fetch {va:#x}", 12, va + 0x100000)
    # control: the same construction with a valid PTE works
    text += load_probe("valid control", 0x8000, 8) + fetch_probe("valid control", 0x108000)
    e.ok("valid control load", mark(0) + 1)
    e.ok("valid control fetch", 0x77)

    def setup(r):
        pt = base_tables(r, 39)
        for va, f, fx in cases + [(0x8000, V | R | W | A | D, V | X | A)]:
            pt.raw(va, ((DATA >> 12) << 10) | f)
            pt.raw(va + 0x100000, ((r.sym("code_page") >> 12) << 10) | fx)

    r = K.run(body_in("S", 39, text), "mmu-invalid", ram=RAM, setup=setup)
    K.expect_results(r, e.items)
    assert r.m.memory.read_u64(DATA + 0x20) == 0, "a faulting store wrote memory"


@pytest.mark.parametrize("sv", [39, 48])
def test_non_canonical_addresses_fault(sv: int) -> None:
    """4.4.1/4.5.1: bits 63:VA_BITS must equal bit VA_BITS-1, else a page fault even though the
    low bits would select a valid mapping; sign-extended high addresses translate."""
    top = 1 << (39 if sv == 39 else 48)
    high = -(1 << (38 if sv == 39 else 47)) + 0x1000   # lowest canonical negative half + page
    text = (load_probe("canonical low", 0x1000) + load_probe("canonical high", high)
            + load_probe("bit VA_BITS set", top | 0x1000) + store_probe("bit VA_BITS set", top | 0x1008)
            + fetch_probe("bit VA_BITS set", top | 0x2000)
            + load_probe("bit 63 only", (1 << 63) | 0x1000)
            + load_probe("high half missing bit 63", (high & ((1 << 63) - 1))))
    e = Expect()
    e.ok("canonical low", mark(1))
    e.ok("canonical high", mark(8))
    e.fault("non-canonical load", 13, top | 0x1000)
    e.fault("non-canonical store", 15, top | 0x1008, "store")
    e.fault("non-canonical fetch", 12, top | 0x2000)
    e.fault("bit 63 only", 13, (1 << 63) | 0x1000)
    e.fault("high half missing bit 63", 13, high & ((1 << 63) - 1))

    def setup(r):
        pt = base_tables(r, sv)
        pt.map(0x1000, DATA + 0x1000, V | R | W | A | D)
        pt.map(0x2000, r.sym("code_page"), V | X | A)
        pt.map(high & ((1 << (39 if sv == 39 else 48)) - 1), DATA + 0x8000, V | R | A)

    r = K.run(body_in("S", sv, text), f"mmu-canon-{sv}", ram=RAM, setup=setup)
    K.expect_results(r, e.items)


def test_page_table_outside_ram_is_an_access_fault() -> None:
    """4.3.2 step 2: a PTE access that violates PMA/PMP raises an access-fault exception
    (of the original access type): here the root table is outside RAM."""
    body = """
    li t0, (8 << 60) | (0x10000000 >> 12)
    csrw satp, t0
    sfence.vma
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, (1 << 11) | (1 << 17)   /* MPRV = 1, MPP = S */
    csrs mstatus, t0
    li t1, 0x1000
    ld a0, 0(t1)
    sd a0, 0(t1)
    li t0, 1 << 17
    csrc mstatus, t0
    REC s9
    REC s10
    REC s11
    """
    r = K.run(body, "mmu-pt-access", ram=RAM)
    K.expect_results(r, [("count", 2), ("store: cause", 7), ("tval", 0x1000)])


def test_sfence_vma_flushes_changed_mappings() -> None:
    """4.2.1: after a PTE is changed, sfence.vma (global or for that address) makes the new
    mapping visible; an entry made invalid faults after sfence.vma."""
    text = """
    li t1, 0x1000
    ld a0, 0(t1)
    REC a0
    li t2, {pte2}
    li t3, {pte_addr}
    sd t2, 0(t3)
    sfence.vma
    ld a0, 0(t1)
    REC a0
    li t2, {pte3}
    sd t2, 0(t3)
    sfence.vma t1, zero
    ld a0, 0(t1)
    REC a0
    sd zero, 0(t3)
    sfence.vma t1
    li a0, -1
    ld a0, 0(t1)
    REC a0
    TRAPS
    """
    pt_holder = {}

    def make_tables(r):
        pt = base_tables(r, 39)
        pt_holder["pte"] = pt.map(0x1000, DATA + 0x1000, V | R | A)

    # The PTE address is deterministic (tables are allocated in order from POOL): find it
    # with a dry run on a scratch memory, then check the real run used the same one.
    dry = PageTables(DictMemory(), 39)
    dry.map(0x80000000, 0x80000000, 0, level=2)
    pte_addr = dry.map(0x1000, 0, 0)
    pte = lambda k: (((DATA + 0x1000 * k) >> 12) << 10) | V | R | A  # noqa: E731
    body = body_in("S", 39, text.format(pte2=pte(2), pte3=pte(3), pte_addr=pte_addr))
    r = K.run(body, "mmu-sfence", ram=RAM, setup=make_tables)
    assert pt_holder["pte"] == pte_addr
    K.expect_results(r, [("before", mark(1)), ("after sfence.vma", mark(2)),
                         ("after sfence.vma addr", mark(3)), ("invalidated", -1),
                         ("count", 1), ("cause", 13), ("tval", 0x1000)])


def test_sfence_vma_of_one_address_flushes_its_whole_superpage() -> None:
    """4.2.1: sfence.vma with an address invalidates every cached translation made from the
    leaf PTE that maps it. Two addresses in one 2 MiB megapage are cached (wirt keeps one TLB
    entry per 4 KiB page); the megapage PTE is changed and only the first address fenced: the
    second must see the new mapping too."""
    text = """
    li t1, 0x200000
    li t2, 0x201000
    li t4, 0x1000
    ld a0, 0(t1)
    REC a0
    ld a0, 0(t2)
    REC a0
    ld a0, 0(t4)
    REC a0
    li t0, {mega2}
    li t3, {mega_pte}
    sd t0, 0(t3)
    li t0, {small2}
    li t3, {small_pte}
    sd t0, 0(t3)
    sfence.vma t1
    ld a0, 0(t2)
    REC a0
    sfence.vma
    ld a0, 0(t4)
    REC a0
    """
    holder = {}

    def make_tables(r):
        pt = base_tables(r, 39)
        holder["mega"] = pt.map(0x200000, MEGA, V | R | A, level=1)
        holder["small"] = pt.map(0x1000, DATA + 0x1000, V | R | A)
        for k in range(2):
            r.m.memory.write_u64(MEGA + 0x1000 * k, mark(0x40 + k))
            r.m.memory.write_u64(DATA + 0x1000 * (8 + k), mark(8 + k))

    dry = PageTables(DictMemory(), 39)
    dry.map(0x80000000, 0x80000000, 0, level=2)
    mega_pte = dry.map(0x200000, 0, 0, level=1)
    small_pte = dry.map(0x1000, 0, 0)
    # New megapage: DATA + 8 pages is not 2 MiB aligned, so map the megapage to 0x80000000
    # (RAM start) instead and read what is there.
    mega2 = ((0x80000000 >> 12) << 10) | V | R | A
    small2 = (((DATA + 0x1000 * 9) >> 12) << 10) | V | R | A
    body = body_in("S", 39, text.format(mega2=mega2, mega_pte=mega_pte, small2=small2,
                                        small_pte=small_pte))
    r = K.run(body, "mmu-sfence-super", ram=RAM, setup=make_tables)
    assert holder["mega"] == mega_pte and holder["small"] == small_pte
    ram_word = r.m.memory.read_u64(0x80001000)
    K.expect_results(r, [("mega first", mark(0x40)), ("mega second", mark(0x41)),
                         ("small", mark(1)), ("mega second after fence", ram_word),
                         ("small after full fence", mark(9))])


def test_satp_write_switches_address_space() -> None:
    """Writing satp with another root (and ASID) selects the new tables at once (4.1.11);
    wirt flushes its TLB on every satp write, so the old root's cached translation of the
    same address is not used."""
    pool2 = POOL + 0x40000
    text = f"""
    li t1, 0x1000
    ld a0, 0(t1)
    REC a0
    li t0, {satp_for(39, pool2, asid=1)}
    csrw satp, t0
    ld a0, 0(t1)
    REC a0
    li t0, {satp_for(39, POOL, asid=0)}
    csrw satp, t0
    ld a0, 0(t1)
    REC a0
    csrr a0, satp
    REC a0
    """

    def setup(r):
        pt = base_tables(r, 39)
        pt.map(0x1000, DATA + 0x1000, V | R | A)
        pt2 = PageTables(r.m.memory, 39, pool2)
        pt2.map(0x80000000, 0x80000000, V | R | W | X | A | D, level=2)
        pt2.map(0x1000, DATA + 0x2000, V | R | A)

    r = K.run(body_in("S", 39, text), "mmu-satp-switch", ram=RAM, setup=setup)
    K.expect_results(r, [("root A", mark(1)), ("root B", mark(2)), ("root A again", mark(1)),
                         ("satp", satp_for(39))])


def test_tlb_rechecks_mxr_and_privilege() -> None:
    """Permission changes through mstatus take effect at once, also for translations already
    cached (4.3.2 step 5 applies to every access): MXR cleared after an X-only load, and a
    translation used as S (MPRV, MPP=S) then used as U (MPP=U) for an S-only page."""
    text = """
    li t0, 1 << 19
    csrs sstatus, t0
    li t1, 0x3000
    ld a0, 0(t1)
    REC a0
    li t0, 1 << 19
    csrc sstatus, t0
    li a0, -1
    ld a0, 0(t1)
    REC a0
    TRAPS
    TO_M
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, (1 << 11) | (1 << 17)   /* MPRV = 1, MPP = S */
    csrs mstatus, t0
    li t1, 0x1000
    ld a0, 0(t1)
    li t0, (3 << 11) | (1 << 17)
    csrc mstatus, t0
    REC a0
    li t0, 1 << 17                 /* MPRV = 1, MPP = U */
    csrs mstatus, t0
    li a0, -1
    ld a0, 0(t1)
    li t0, 1 << 17
    csrc mstatus, t0
    REC a0
    TRAPS
    """

    def setup(r):
        pt = base_tables(r, 39)
        pt.map(0x3000, DATA + 0x3000, V | X | A | D)
        pt.map(0x1000, DATA + 0x1000, V | R | W | A | D)

    r = K.run(body_in("S", 39, text), "mmu-tlb-perm", ram=RAM, setup=setup)
    K.expect_results(r, [("MXR load", mark(3)), ("MXR off", -1), ("count", 1), ("cause", 13),
                         ("tval", 0x3000), ("S load of S page", mark(1)), ("U load of the same page", -1),
                         ("count", 2), ("cause", 13), ("tval", 0x1000)])


def test_accesses_straddling_two_pages() -> None:
    """A 32-bit instruction or a misaligned load/store that spans two virtual pages uses both
    translations (which need not be physically contiguous). When the second page faults,
    mepc is the start of the instruction and mtval the address of the faulting portion
    (3.1.16); a faulting misaligned store writes nothing."""
    text = """
    li a0, -1
    li t1, 0x20ffe
    jalr ra, 0(t1)             /* addi a0, x0, 0x123 split across the pages, then c.jr ra */
    REC a0
    li a0, -1
    li t1, 0x30ffe
    jalr ra, 0(t1)             /* second page unmapped */
    TRAPS
    REC s8
    li t1, 0x40ffe
    jalr ra, 0(t1)             /* second page not executable */
    TRAPS
    REC s8
    li t1, 0x50ffc
    ld a0, 0(t1)               /* both pages readable */
    REC a0
    li t2, -1
    sd t2, 0(t1)               /* second page read-only */
    TRAPS
    li t1, 0x20ffc
    ld a0, 0(t1)               /* second page execute-only */
    TRAPS
    REC s9
    """

    def setup(r):
        pt = base_tables(r, 39)
        mem = r.m.memory
        pt.map(0x20000, DATA + 0x10000, V | R | X | A)
        pt.map(0x21000, DATA + 0x14000, V | X | A)
        mem.write(DATA + 0x10FFE, (0x12300513 & 0xFFFF).to_bytes(2, "little"))
        mem.write(DATA + 0x14000, (0x12300513 >> 16).to_bytes(2, "little") + (0x8082).to_bytes(2, "little"))
        pt.map(0x30000, DATA + 0x18000, V | R | X | A)
        mem.write(DATA + 0x18FFE, (0x0513).to_bytes(2, "little"))
        pt.map(0x40000, DATA + 0x18000, V | R | X | A)
        pt.map(0x41000, DATA + 0x14000, V | R | A)
        pt.map(0x50000, DATA + 0x1C000, V | R | W | A | D)
        pt.map(0x51000, DATA + 0x1E000, V | R | A | D)
        mem.write(DATA + 0x1CFFC, bytes([0x11, 0x22, 0x33, 0x44]))
        mem.write(DATA + 0x1E000, bytes([0x55, 0x66, 0x77, 0x88]))

    r = K.run(body_in("S", 39, text), "mmu-straddle", ram=RAM, setup=setup)
    K.expect_results(r, [
        ("split instruction", 0x123),
        ("unmapped 2nd page: count", 1), ("cause", 12), ("mtval", 0x31000), ("mepc", 0x30FFE),
        ("non-X 2nd page: count", 2), ("cause", 12), ("mtval", 0x41000), ("mepc", 0x40FFE),
        ("split load", 0x8877665544332211),
        ("split store: count", 3), ("cause", 15), ("stval", 0x51000),
        ("split load, X-only 2nd page: count", 4), ("cause", 13), ("stval", 0x21000),
        ("total", 4),
    ])
    assert r.m.memory.read(DATA + 0x1CFFC, 4) == bytes([0x11, 0x22, 0x33, 0x44]), \
        "the faulting misaligned store wrote its first page"


def test_atomics_are_translated_as_stores() -> None:
    """AMOs and SC need write permission and raise store/AMO page faults (15); LR needs read
    permission (13); an AMO sets A and D (4.3.2 steps 5 and 7)."""
    text = (load_probe("warm", 0x1000)
            + """
    li s10, -1
    li t1, 0x1000
    amoadd.d a0, t1, (t1)      /* R-only page */
    TRAPS
    li t1, 0x3000
    lr.d a0, (t1)              /* X-only page */
    TRAPS
    li t1, 0x6000
    li t2, 9
    amoswap.d a0, t2, (t1)     /* RW page with A = D = 0 */
    REC a0
    ld a0, 0(t1)
    REC a0
    REC s9
    """)
    ptes = {}

    def setup(r):
        pt = _perm_tables(r)
        ptes[6] = pt.map(0x6000, DATA + 0x6000, V | R | W)

    r = K.run(body_in("S", 39, text), "mmu-amo", ram=RAM, setup=setup)
    K.expect_results(r, [("warm: count", 0), ("warm: cause", -1), ("warm: tval", -1), ("warm: value", mark(1)),
                         ("amo on R-only: count", 1), ("cause", 15), ("stval", 0x1000),
                         ("lr on X-only: count", 2), ("cause", 13), ("stval", 0x3000),
                         ("amoswap old", mark(6)), ("amoswap new", 9), ("total", 2)])
    assert r.m.memory.read_u64(ptes[6]) & (A | D) == A | D, "the AMO did not set A and D"


def test_flushed_tlb_entry_grants_nothing_at_the_top_page() -> None:
    """The TLB marks a flushed slot with tag -1, which is also the page number of the top
    page (0xffff_ffff_ffff_f000). After sfence.vma, a load there must walk (and fault on the
    unmapped page), not reuse the flushed slot's old translation of another page."""
    text = """
    li t1, 0x3ff000            /* vpn 0x3ff: the same TLB slot as the top page */
    ld a0, 0(t1)
    REC a0
    sfence.vma
""" + load_probe("top page after sfence.vma", -4096)

    def setup(r):
        pt = base_tables(r, 39)
        pt.map(0x3FF000, DATA + 0x1000, V | R | A)

    r = K.run(body_in("S", 39, text), "mmu-tlb-top-page", ram=RAM, setup=setup)
    K.expect_results(r, [("mapped page", mark(1)), ("count", 1), ("cause", 13), ("tval", -4096),
                         ("top page", -1)])


def test_access_fault_outside_ram_reports_the_virtual_address() -> None:
    """A translated load or store that reaches no device is an access fault whose mtval is the
    virtual address (priv spec 3.1.16), not the physical one the page maps to."""
    text = load_probe("load from a page mapped outside RAM", 0x5000, 8)
    text += store_probe("store to it", 0x5010)
    e = Expect()
    e.fault("load outside RAM", 5, 0x5008)
    e.fault("store outside RAM", 7, 0x5010, "store")

    def tables(r):
        pt = base_tables(r, 39)
        pt.map(0x5000, 0x4000_0000, V | R | W | A | D)

    r = K.run(body_in("S", 39, text), "mmu-vaddr-fault", ram=RAM, setup=tables)
    K.expect_results(r, e.items)


def _access_probe(label: str, va: int, insn: str) -> str:
    """`insn` (an access through t1 = va) with the trap registers reset; records them and a0."""
    return f"""
    li a0, -1
    li s10, -1
    li s11, -1
    li t1, {va}
    {insn}                  /* {label} */
    TRAPS
    REC a0
"""


@pytest.mark.parametrize("jit", ["off", "force"])
def test_access_faults_under_translation_report_the_virtual_address(jit: str, monkeypatch) -> None:
    """Every kind of access fault taken under Sv39 has mtval = the faulting *virtual* address (priv
    spec 3.1.16), not the physical one its page maps to: an address outside RAM that reaches no
    device (loads, stores, FP loads and stores, LR, AMOs, fetches), the page just past the end of
    RAM, a misaligned access whose second part leaves RAM (mtval: the first byte that does), and a
    page PMP denies to S-mode. With WIRT_JIT=force the same program runs through the translation
    tier, whose side exits must leave the same trap values."""
    monkeypatch.setenv("WIRT_JIT", jit)
    end = 0x80000000 + RAM
    denied = DATA + 0x8000
    prologue = f"""
    li t0, 1 << 13                   /* mstatus.FS: FP loads and stores allowed */
    csrs mstatus, t0
    li t0, ({denied} >> 2) | 0x1ff   /* PMP entry 0: NAPOT 4 KiB at the denied page, no access */
    csrw pmpaddr0, t0
    li t0, -1                        /* entry 1: everything else */
    csrw pmpaddr1, t0
    li t0, 0x1f18
    csrw pmpcfg0, t0
"""
    e = Expect()
    text = load_probe("warm: a RAM page", 0x5000)
    e.ok("warm: a RAM page", mark(5))
    cases = [
        ("ld outside RAM", 0x10000, "ld a0, 8(t1)", 5, 0x10008),
        ("sd outside RAM", 0x10000, "sd t1, 16(t1)", 7, 0x10010),
        ("lw outside RAM", 0x10000, "lw a0, 4(t1)", 5, 0x10004),
        ("fld outside RAM", 0x10000, "fld f1, 24(t1)", 5, 0x10018),
        ("fsd outside RAM", 0x10000, "fsd f1, 32(t1)", 7, 0x10020),
        ("lr.d outside RAM", 0x10040, "lr.d a0, (t1)", 5, 0x10040),
        ("amoadd.d outside RAM", 0x10048, "amoadd.d a0, t1, (t1)", 7, 0x10048),
        ("amoswap.w outside RAM", 0x10050, "amoswap.w a0, t1, (t1)", 7, 0x10050),
        ("fetch outside RAM", 0x10000, "jalr ra, 0x20(t1)", 1, 0x10020),
        ("ld past the end of RAM", 0x12000, "ld a0, 0x40(t1)", 5, 0x12040),
        ("sb past the end of RAM", 0x12000, "sb t1, 0x41(t1)", 7, 0x12041),
        ("misaligned ld into the page past RAM", 0x11ffc, "ld a0, 0(t1)", 5, 0x12000),
        ("misaligned sd into the page past RAM", 0x11ffa, "sd t1, 0(t1)", 7, 0x12000),
        ("misaligned ld into a page outside RAM", 0x5ffc, "ld a0, 0(t1)", 5, 0x6000),
        ("ld from a page PMP denies", 0x7000, "ld a0, 0x18(t1)", 5, 0x7018),
        ("sw to a page PMP denies", 0x7000, "sw t1, 0x1c(t1)", 7, 0x701c),
        ("amoor.d on a page PMP denies", 0x7020, "amoor.d a0, t1, (t1)", 7, 0x7020),
        ("fetch from a page PMP denies", 0x7000, "jalr ra, 0x30(t1)", 1, 0x7030),
    ]
    for label, va, insn, cause, tval in cases:
        text += _access_probe(label, va, insn)
        e.fault(label, cause, tval)
    text += load_probe("after: a RAM page", 0x5008)
    e.ok("after: a RAM page", mark(5) + 1)

    def tables(r):
        pt = base_tables(r, 39)
        pt.map(0x5000, DATA + 0x5000, V | R | W | A | D)
        pt.map(0x6000, 0x4000_1000, V | R | W | A | D)
        pt.map(0x10000, 0x4000_0000, V | R | W | X | A | D)  # no device there (bare-metal machine)
        pt.map(0x11000, end - 0x1000, V | R | W | A | D)      # the last page of RAM
        pt.map(0x12000, end, V | R | W | X | A | D)           # the page just past it
        pt.map(0x7000, denied, V | R | W | X | A | D)

    r = K.run(prologue + body_in("S", 39, text), "mmu-vaddr-faults", ram=RAM, setup=tables)
    K.expect_results(r, e.items)
    if jit == "force":
        from wirt.cpu import layout as L

        assert int(r.m.hart.jq[L.JQ_INSNS]) > 0, "the translation tier ran nothing"


def test_sfence_vma_of_a_page_outside_every_superpage_leaves_superpage_entries() -> None:
    """tlb_flush_page looks for entries made from a superpage only when the address lies
    between the superpages filled since the last flush: a 4 KiB user page's fence drops its
    own entry and keeps the kernel's; a fence inside the megapage drops all of it."""
    from wirt.cpu.layout import TLB_ENTRIES, TLB_SP_HI, TLB_SP_LO
    from wirt.cpu.mmu import new_tlb, tlb_flush, tlb_flush_page

    t = new_tlb()
    assert t[TLB_SP_LO] > t[TLB_SP_HI]                 # no superpage yet
    for vpn in (0x200, 0x3FF):                         # two 4 KiB pieces of the megapage at 2 MiB
        t[vpn % TLB_ENTRIES] = vpn
        t[TLB_ENTRIES + vpn % TLB_ENTRIES] = 0x80000000 | V | R | (1 << 8)
    t[TLB_SP_LO], t[TLB_SP_HI] = 0x200, 0x3FF
    t[1] = 1                                           # a 4 KiB page at 0x1000
    t[TLB_ENTRIES + 1] = 0x80400000 | V | R
    tlb_flush_page(t, 0x1000)
    assert t[1] == -1 and t[0x200] == 0x200 and t[0x3FF] == 0x3FF
    tlb_flush_page(t, 0x3FF000)
    assert t[0x200] == -1 and t[0x3FF] == -1
    tlb_flush(t)
    assert t[TLB_SP_LO] > t[TLB_SP_HI]
