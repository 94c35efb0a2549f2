"""Layout of the hart's state arrays: register slots, CSR numbers, exit codes and bit masks.

All hart state lives in numpy int64 arrays so the numba core can compile against it and a
snapshot can copy it: `s` (registers, pc, privilege, counters, platform wiring), `c` (the
4096 CSR slots, indexed by CSR number) and `tlb` (the software TLB).
"""

# ---- `s`: general state -------------------------------------------------------------------
S_SIZE = 256
X0 = 0            # x0..x31 at 0..31
F0 = 32           # f0..f31 at 32..63 (raw IEEE bits)
PC = 64
PRIV = 65         # 0 = U, 1 = S, 3 = M
RESERVATION = 66  # LR/SC reservation: physical address, or -1 when none
ICOUNT = 67       # instructions retired since reset (monotonic; counters are offsets of it)
INSTRET_OFF = 68  # minstret = ICOUNT + INSTRET_OFF
CYCLE_OFF = 69    # mcycle = ICOUNT + CYCLE_OFF
TIME_BASE = 70    # mtime at the moment ICOUNT was TIME_ICOUNT
TIME_ICOUNT = 71
TIME_SHIFT = 72   # mtime advances by one tick every 2**TIME_SHIFT instructions within a slice
MTIMECMP = 73     # CLINT mtimecmp of this hart
HW_IP = 74        # interrupt-pending bits driven by devices (MSIP from the CLINT; the PLIC's in EXT_IP)
ATTENTION = 75    # set non-zero by another thread to cut the current time slice short
TOHOST = 76       # physical address of HTIF tohost, or -1
RAM_BASE = 77
RAM_SIZE = 78
ROM_BASE = 79     # a small read/execute-only region (the boot ROM), fetched from `rom`
ROM_SIZE = 80
HARTID = 81
INHIBIT_CY = 82   # frozen mcycle value while mcountinhibit.CY is set
INHIBIT_IR = 83   # frozen minstret value while mcountinhibit.IR is set
PMP_ACTIVE = 84   # non-zero when some PMP entry is enabled (S/U accesses are then checked)
WFI_SKIPPED = 85  # mtime ticks skipped by deterministic WFI (added to TIME_BASE)
COUNTINHIBIT = 86  # mcountinhibit (CY = bit 0, IR = bit 2)
PMP_LOCKED = 87    # non-zero when an enabled PMP entry is locked (M-mode accesses are then checked)
RES_VALUE = 88     # LR/SC: the value LR loaded; SC is a host cmpxchg against it (docs/cpu.md)
JIT_LAST = 89      # translation tier, during one call from the core: host address of the table
                   # slot of the last region a chained exit entered (0: none); the core clears it
JIT_LAST_IC = 90   # ... and the instruction count at that entry (hot counts per region)
EXT_IP = 91        # MEIP/SEIP as the PLIC drives them (cpu/irqchip.py writes it, under its lock)
# PMP entries decoded when pmpcfg/pmpaddr are written: byte range [lo, hi) and cfg byte
# (0 for an entry that is off), so an access check is a few compares per entry.
PMP_LO = 128      # 16 slots
PMP_HI = 144      # 16 slots
PMP_CFG = 160     # 16 slots

# ---- exit record `ex` ---------------------------------------------------------------------
EX_SIZE = 16
EX_REASON = 0
EX_ADDR = 1       # mmio: physical address
EX_SIZE_B = 2     # mmio: access size in bytes
EX_STORE = 3      # mmio: 1 for a store
EX_VALUE = 4      # mmio store value / htif tohost value / fatal detail
EX_RD = 5         # mmio load: destination register
EX_KIND = 6       # mmio load: 0 sign-extend, 1 zero-extend, 2 fp single, 3 fp double
EX_PC = 7         # pc of the instruction that exited
EX_VADDR = 8      # mmio: the virtual address (mtval/stval if the access faults)

EXIT_BUDGET = 0
EXIT_MMIO = 1
EXIT_WFI = 2
EXIT_HTIF = 3
EXIT_POWEROFF = 4
EXIT_RESET = 5
EXIT_BREAKPOINT = 6
EXIT_FATAL = 7
EXIT_NAMES = ("budget", "mmio", "wfi", "htif", "poweroff", "reset", "breakpoint", "fatal")

KIND_SIGNED = 0
KIND_UNSIGNED = 1
KIND_FP_S = 2
KIND_FP_D = 3

# ---- the PLIC's state `pl` (cpu/irqchip.py), shared by the harts of a machine ------------------
# Sets of sources are PL_BITS words of 32 bits each (bit b of word w: source 32w + b), as the
# registers lay them out. A hart's own array has PL_BASE 0: no PLIC, every access exits.
PL_LOCK = 0          # spinlock word: 0 free, 1 held
PL_BASE = 1          # guest physical address of the PLIC's window (0: none)
PL_WINDOW = 2        # its size in bytes
PL_NDEV = 3          # sources 1..PL_NDEV exist
PL_NCTX = 4          # contexts: 2h is hart h in M-mode, 2h+1 hart h in S-mode
PL_PMASK = 5         # priority bits implemented
PL_NHART = 6         # harts bound (their s arrays' addresses at PL_HART_S)
PL_NSTATUS = 7       # status registers bound (PL_STATUS)
PL_MAX_SRC = 1024
PL_MAX_HARTS = 64
PL_MAX_CTX = 2 * PL_MAX_HARTS
PL_BITS = PL_MAX_SRC // 32
PL_PENDING = 32                          # PL_BITS words
PL_CLAIMED = PL_PENDING + PL_BITS        # in service: claimed, not completed (gateway closed)
PL_LEVEL = PL_CLAIMED + PL_BITS          # the input lines' levels
PL_HART_S = PL_LEVEL + PL_BITS           # PL_MAX_HARTS host addresses (0: not bound)
PL_THRESHOLD = PL_HART_S + PL_MAX_HARTS  # per context
PL_OUT = PL_THRESHOLD + PL_MAX_CTX       # per context: 1 while its notification is asserted
PL_PRIORITY = PL_OUT + PL_MAX_CTX        # per source
PL_ENABLE = PL_PRIORITY + PL_MAX_SRC     # per context, PL_BITS words
# Interrupt status registers whose bits drive a source (virtio-mmio's InterruptStatus, with
# InterruptACK 4 bytes above it): PL_MAX_STATUS entries of PL_STATUS_W words: the register's
# guest physical address, its bits, the source they drive (high while any bit is set).
PL_MAX_STATUS = 16
PL_STATUS_W = 3
PL_STATUS = PL_ENABLE + PL_MAX_CTX * PL_BITS
PL_SIZE = PL_STATUS + PL_MAX_STATUS * PL_STATUS_W
# Register map (RISC-V PLIC specification v1.0.0, "Memory Map")
PLIC_PENDING_BASE = 0x001000
PLIC_ENABLE_BASE = 0x002000
PLIC_ENABLE_STRIDE = 0x80
PLIC_CONTEXT_BASE = 0x200000
PLIC_CONTEXT_STRIDE = 0x1000

# ---- TLB ----------------------------------------------------------------------------------
TLB_ENTRIES = 4096  # direct-mapped on virtual page number
# tlb[i] = tag (vaddr >> 12) or -1; tlb[TLB_ENTRIES + i] = physical page | PTE flag bits (bits
# 0-7) | the leaf's level << 8 (0: 4 KiB page; for sfence.vma of one address) (-1 is
# also the top page's tag: its slot, the last, has data 0 whenever its tag is -1 from a flush).
# 1024 entries made a 1 MiB O_DIRECT read take ~1000 conflict misses in the guest kernel
# (per-CPU data against the linear map): a side exit and a walk each.
TLB_SP_LO = 2 * TLB_ENTRIES      # lowest and highest virtual page number of the superpages
TLB_SP_HI = 2 * TLB_ENTRIES + 1  # filled since the last flush (empty: lo > hi)
TLB_SIZE = 2 * TLB_ENTRIES + 2

# ---- privilege levels ---------------------------------------------------------------------
PRV_U = 0
PRV_S = 1
PRV_M = 3

# ---- CSR numbers (privileged spec 1.12, tables 2.2-2.6) -----------------------------------
CSR_FFLAGS = 0x001
CSR_FRM = 0x002
CSR_FCSR = 0x003
CSR_CYCLE = 0xC00
CSR_TIME = 0xC01
CSR_INSTRET = 0xC02
CSR_SSTATUS = 0x100
CSR_SIE = 0x104
CSR_STVEC = 0x105
CSR_SCOUNTEREN = 0x106
CSR_SENVCFG = 0x10A
CSR_SSCRATCH = 0x140
CSR_SEPC = 0x141
CSR_SCAUSE = 0x142
CSR_STVAL = 0x143
CSR_SIP = 0x144
CSR_STIMECMP = 0x14D
CSR_SATP = 0x180
CSR_MVENDORID = 0xF11
CSR_MARCHID = 0xF12
CSR_MIMPID = 0xF13
CSR_MHARTID = 0xF14
CSR_MCONFIGPTR = 0xF15
CSR_MSTATUS = 0x300
CSR_MISA = 0x301
CSR_MEDELEG = 0x302
CSR_MIDELEG = 0x303
CSR_MIE = 0x304
CSR_MTVEC = 0x305
CSR_MCOUNTEREN = 0x306
CSR_MENVCFG = 0x30A
CSR_MCOUNTINHIBIT = 0x320
CSR_MSCRATCH = 0x340
CSR_MEPC = 0x341
CSR_MCAUSE = 0x342
CSR_MTVAL = 0x343
CSR_MIP = 0x344
CSR_PMPCFG0 = 0x3A0
CSR_PMPADDR0 = 0x3B0
CSR_MCYCLE = 0xB00
CSR_MINSTRET = 0xB02
CSR_TSELECT = 0x7A0

# ---- mstatus bits (privileged spec 3.1.6) ---------------------------------------------------
MS_SIE = 1 << 1
MS_MIE = 1 << 3
MS_SPIE = 1 << 5
MS_UBE = 1 << 6
MS_MPIE = 1 << 7
MS_SPP = 1 << 8
MS_VS = 3 << 9
MS_MPP = 3 << 11
MS_FS = 3 << 13
MS_XS = 3 << 15
MS_MPRV = 1 << 17
MS_SUM = 1 << 18
MS_MXR = 1 << 19
MS_TVM = 1 << 20
MS_TW = 1 << 21
MS_TSR = 1 << 22
MS_UXL = 3 << 32
MS_SXL = 3 << 34
MS_SD = -(1 << 63)
MSTATUS_WMASK = (MS_SIE | MS_MIE | MS_SPIE | MS_MPIE | MS_SPP | MS_MPP | MS_FS | MS_MPRV
                 | MS_SUM | MS_MXR | MS_TVM | MS_TW | MS_TSR)
SSTATUS_RMASK = MS_SIE | MS_SPIE | MS_UBE | MS_SPP | MS_VS | MS_FS | MS_XS | MS_SUM | MS_MXR | MS_UXL | MS_SD
SSTATUS_WMASK = MS_SIE | MS_SPIE | MS_SPP | MS_FS | MS_SUM | MS_MXR
MSTATUS_XL = (2 << 32) | (2 << 34)  # UXL = SXL = 64 bits, read-only

# ---- interrupts (privileged spec 3.1.9) -----------------------------------------------------
IRQ_SSI = 1
IRQ_MSI = 3
IRQ_STI = 5
IRQ_MTI = 7
IRQ_SEI = 9
IRQ_MEI = 11
MIP_SSIP = 1 << IRQ_SSI
MIP_MSIP = 1 << IRQ_MSI
MIP_STIP = 1 << IRQ_STI
MIP_MTIP = 1 << IRQ_MTI
MIP_SEIP = 1 << IRQ_SEI
MIP_MEIP = 1 << IRQ_MEI
MIE_MASK = 0xAAA
MIDELEG_MASK = MIP_SSIP | MIP_STIP | MIP_SEIP
MEDELEG_MASK = 0xB3FF  # every synchronous cause but ecall-from-M (11) and the reserved 10, 14

# ---- exception causes (privileged spec table 3.6) -------------------------------------------
EXC_INSN_MISALIGNED = 0
EXC_INSN_ACCESS = 1
EXC_ILLEGAL = 2
EXC_BREAKPOINT = 3
EXC_LOAD_MISALIGNED = 4
EXC_LOAD_ACCESS = 5
EXC_STORE_MISALIGNED = 6
EXC_STORE_ACCESS = 7
EXC_ECALL_U = 8
EXC_ECALL_S = 9
EXC_ECALL_M = 11
EXC_INSN_PAGE = 12
EXC_LOAD_PAGE = 13
EXC_STORE_PAGE = 15
INTERRUPT_BIT = -(1 << 63)

# ---- misa (privileged spec 3.1.1): RV64 with A, C, D, F, I, M, S, U --------------------------
MISA_VALUE = (2 << 62) | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20)
MISA_VALUE = MISA_VALUE - (1 << 64) if MISA_VALUE >= (1 << 63) else MISA_VALUE

# ---- Sv39/Sv48 PTE bits (privileged spec 4.3.1) ---------------------------------------------
PTE_V = 1
PTE_R = 2
PTE_W = 4
PTE_X = 8
PTE_U = 16
PTE_G = 32
PTE_A = 64
PTE_D = 128

# access types
ACC_FETCH = 0
ACC_LOAD = 1
ACC_STORE = 2

MENVCFG_STCE = -(1 << 63)
MENVCFG_WMASK = MENVCFG_STCE | 1  # STCE (Sstc) and FIOM

# ---- entering the core --------------------------------------------------------------------
# core.run's arrays, in the order of the (address, length) table its caller passes it
# (cpu/borrow.py, Hart._pack); their dtypes are fixed (core.run makes the views).
RUN_ARRAYS = ("s", "c", "tlb", "ram8", "ram16", "ram32", "ram64", "rom8", "rvc", "ex", "jt", "jq", "jpg", "xc",
              "pl")
RUN_WORDS = 2 * len(RUN_ARRAYS)

# ---- translation tier (cpu/jit) ----------------------------------------------------------------
# Per-hart translation table `jt`: JT_SLOTS direct-mapped slots of JT_W words:
#   key (RAM offset of the entry | mode << JT_MODE_SHIFT, or -1), function address, the
#   page's generation word (jpg) the code was made from.
JT_SLOTS = 1 << 16
JT_W = 4
JT_MODE_SHIFT = 40
# Per-hart request queue and counters `jq` (int64):
JQ_COUNT = 0       # requests waiting
JQ_FORCE = 1       # non-zero: return to the caller as soon as a request is queued (compile at once)
JQ_THRESHOLD = 2   # lookups of an entry before it is requested (0 = tier off)
JQ_CALLS = 3       # counters: regions entered, side exits, budget/limit exits, chained entries
JQ_SIDE = 4
JQ_LIMIT = 5
JQ_CHAIN = 6
JQ_INVAL = 7       # invalidations (a store or DMA to a page holding translations)
JQ_STEP = 8        # non-zero: return to the caller after every region (lockstep checking)
JQ_HOT = 9         # instructions run in a region before it is requested again, optimized (0: never)
JQ_INSNS = 10      # guest instructions run in translated code
JQ_XPOS = 11       # template tier (jit/x64): next free byte of the hart's code buffer
JQ_XBASE = 12      # host address of that buffer
JQ_XTHR = 13       # lookups of an entry before it is translated by the template tier (0: off)
JQ_XFP = 14        # host address of jit/fpcall.fp_exec
JQ_XN = 15         # regions translated
JQ_XFLUSH = 16     # buffer flushes
JQ_XJT = 17        # host address of the hart's translation table (chained exits read it)
JQ_XJQ = 18        # host address of this array (chained exits count in it)
JQ_XCSR = 19       # host address of jit/csrcall.csr_exec
JQ_XFMA = 20       # non-zero: the host has FMA3 (the template tier's fused multiply-add path)
JQ_LEVEL2 = 1 << 16  # set in a request's mode word: compile at the optimizing level
JQ_HEAD = 24
JQ_ENTRY = 4       # ram offset, mode, virtual pc, page generation
JQ_CAP = 64
JQ_SIZE = JQ_HEAD + JQ_ENTRY * JQ_CAP
# Shared page words `jpg` (int64 per RAM page): 2 * generation + 1 while translations may hold
# code from the page. A store to a page with the low bit set bumps it to the next even value,
# which invalidates every translation made from the page (they remember the odd value).
# Return codes of a translated region (the pc and icount are in s[PC], s[ICOUNT]):
JR_END = 0    # left at a block boundary: the next region may be entered at once
JR_SIDE = 1   # left before an instruction the interpreter must run (trap, MMIO, TLB miss, ...)
JR_LIMIT = 2  # the next block would pass the instruction limit: interpret up to it
JR_MODE = 3   # left after a CSR write: privilege/translation state or interrupt enables may differ
