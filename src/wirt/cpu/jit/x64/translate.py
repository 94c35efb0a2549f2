"""The template translator: a region of guest code straight to x86-64 bytes, inside the core.

QEMU's lesson: code that runs a few dozen times is worth translating only if translation costs
about as much as interpreting it a few times. LLVM takes milliseconds per region; this
translator, compiled by numba into the core, takes microseconds, so the core translates a
region synchronously after a handful of lookups (jq[JQ_XTHR]). LLVM can re-optimize the hottest
ones (level 2, cpu/jit/cache.py), which is off by default: its code returns to the core at every
exit where this code chains (docs/cpu.md).

A region (the blocks reachable on one 4 KiB page from an entry, as region.discover finds them)
becomes one function with the contract of emit.py:

    int64 fn(int64 *s, int64 *c, int64 *tlb, uint8 *ram, int64 *jpg, int64 limit)

It returns JR_END, JR_SIDE or JR_LIMIT with s[PC] (virtual) and s[ICOUNT] written. Guest
registers stay in `s`: every instruction loads its operands and stores its result, so an exit
only writes pc and the count. Loads and stores check the software TLB inline with the
interpreter's permission rules, then the RAM bounds and alignment, and for stores the page's
translation word and HTIF's tohost; any failed check leaves *before* the instruction (JR_SIDE)
and the interpreter runs it. Host registers in the generated code:

    rbx  s          rbp  guest RAM     r12  TLB      r13  CSR array c
    r14  virtual address of the page (pc - page offset)       r15  instruction count
    [rsp] limit     [rsp+8] jpg        rax rcx rdx rsi rdi r8-r11: scratch
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wirt.cpu.jit.x64.asm import (
    ADD, AND, CC_A, CC_AE, CC_B, CC_E, CC_G, CC_GE, CC_L, CC_NE, CMP, NOIDX, OR, R8, R9, R12, R13,
    R10, R11, R14, R15, RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP, SAR, SHL, SHR, SUB, XOR, alu_ri, alu_rm,
    alu_rr, call_r, cmp_rx, cqo, enc, imul_rr, jcc, jmp, lea, load_x, mov_mi, mov_ri, mov_rm,
    mov_mr, mov_rr, movsxd, or_mi, patch32, pop, push, ret, setcc_zx, shift_cl, shift_ri, store_x,
    test_m8, test_ri, u8, u32, unary, jmp_r, lea_x, jcc8, jmp8, patch8, movabs)
from wirt.cpu.layout import (
    CSR_FCSR, CSR_MSTATUS, F0, ICOUNT, JR_END, JR_LIMIT, JR_SIDE, MS_FS, PC, PTE_D, PTE_R, PTE_U, PTE_W,
    PTE_X, PRV_U, TLB_ENTRIES, JR_MODE, JIT_LAST, JIT_LAST_IC, TOHOST, JT_MODE_SHIFT, JT_SLOTS, JQ_CHAIN, RESERVATION, RES_VALUE)

MAX_INSNS = 96          # guest instructions per region
MAX_BLOCK = 64          # per block
MAX_BLOCKS = 96
BODY = 56               # bytes of a region's prologue: chained entries jump past it
SCRATCH = 128 * 1024    # bytes at the start of a code buffer the translator keeps for itself
W_DISP = 0              # ... as int64 words: per mode number, where its dispatcher is
W_TAILS = 512           # the side-exit, limit-exit and mode-exit tails
W_AT = 1024             # block starts by page halfword (all zero between calls)
W_WORK = 4096           # working arrays
MAX_CODE = 128 * 1024   # bytes a region can take at most (under 200 per instruction, with stubs)
GROUP_MIN = 3           # loads or stores on one base register checked together (see `group`)
GROUP_SPAN = 512        # bytes such a group may span at most
NAN_BOX = -(1 << 32)

# Instruction classes (what `kind` returns).
K_NONE, K_ALU, K_LOAD, K_STORE, K_BRANCH, K_JAL, K_JALR, K_FENCE, K_FP, K_AMO, K_CSR = range(11)
# How a block ends.
E_SIDE, E_FALL, E_BRANCH, E_JAL, E_JALR = 0, 1, 2, 3, 4

_S_PC = 8 * PC
_S_IC = 8 * ICOUNT
_S_LAST = 8 * JIT_LAST
_S_LAST_IC = 8 * JIT_LAST_IC


@njit(cache=True, nogil=True)
def kind(inst, fp):
    """The class of an instruction this translator handles, or K_NONE (the interpreter runs it,
    and raises the exception for anything reserved or illegal)."""
    op = inst & 0x7F
    f3 = (inst >> 12) & 7
    f7 = (inst >> 25) & 0x7F
    if op == 0x13:
        if f3 == 1 and (inst >> 26) & 0x3F != 0:
            return K_NONE
        if f3 == 5 and ((inst >> 26) & 0x3F) != 0 and ((inst >> 26) & 0x3F) != 0x10:
            return K_NONE
        return K_ALU
    if op == 0x33:
        if f7 == 0 or f7 == 1 or (f7 == 0x20 and (f3 == 0 or f3 == 5)):
            return K_ALU
        return K_NONE
    if op == 0x1B:
        if f3 == 0 or (f3 == 1 and f7 == 0) or (f3 == 5 and (f7 == 0 or f7 == 0x20)):
            return K_ALU
        return K_NONE
    if op == 0x3B:
        if f7 == 0 and (f3 == 0 or f3 == 1 or f3 == 5):
            return K_ALU
        if f7 == 0x20 and (f3 == 0 or f3 == 5):
            return K_ALU
        if f7 == 1 and f3 != 1 and f3 != 2 and f3 != 3:
            return K_ALU
        return K_NONE
    if op == 0x37 or op == 0x17:
        return K_ALU
    if op == 0x03:
        return K_LOAD if f3 != 7 else K_NONE
    if op == 0x23:
        return K_STORE if f3 <= 3 else K_NONE
    if op == 0x07:
        return K_LOAD if fp and (f3 == 2 or f3 == 3) else K_NONE
    if op == 0x27:
        return K_STORE if fp and (f3 == 2 or f3 == 3) else K_NONE
    if op == 0x63:
        return K_BRANCH if f3 != 2 and f3 != 3 else K_NONE
    if op == 0x6F:
        return K_JAL
    if op == 0x67:
        return K_JALR if f3 == 0 else K_NONE
    if op == 0x0F and f3 == 0:
        return K_FENCE
    if op == 0x2F and (f3 == 2 or f3 == 3):
        f5 = (inst >> 27) & 0x1F
        if f5 == 2 and ((inst >> 20) & 31) != 0:
            return K_NONE
        if (f5 <= 4 or f5 == 8 or f5 == 12 or f5 == 16 or f5 == 20 or f5 == 24
                or f5 == 28):
            return K_AMO
        return K_NONE
    if fp and (op == 0x53 or op == 0x43 or op == 0x47 or op == 0x4B or op == 0x4F):
        return K_FP
    if op == 0x73 and f3 != 0 and f3 != 4:
        return K_CSR
    return K_NONE


@njit(cache=True, nogil=True)
def branch_offset(inst):
    return (((inst >> 31) << 12) | (((inst >> 7) & 1) << 11)
            | (((inst >> 25) & 0x3F) << 5) | (((inst >> 8) & 0xF) << 1))


@njit(cache=True, nogil=True)
def jal_offset(inst):
    return (((inst >> 31) << 20) | (((inst >> 12) & 0xFF) << 12)
            | (((inst >> 20) & 1) << 11) | (((inst >> 21) & 0x3FF) << 1))


# ---- region discovery ---------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def discover(ram16, rvc, poff, entry, fp, bs, bf, bn, be, bo, ii, io, il, at, work, lo):
    """Fill the block arrays (start, first instruction, count, end kind, end offset) and the
    instruction arrays (encoding, page offset, length) for the region entered at page offset
    `entry` of the page at RAM offset `poff`; `at[off >> 1]` = block number + 1 of the block
    starting there. Branch targets below page offset `lo` are left out (their jumps chain).
    Returns (blocks, instructions). Same shape as region.discover."""
    nw = 0
    work[nw] = entry
    nw += 1
    nb = 0
    ni = 0
    while nw > 0 and ni < MAX_INSNS and nb < MAX_BLOCKS:
        nw -= 1
        start = work[nw]
        if at[start >> 1] != 0:
            continue
        k = nb
        nb += 1
        at[start >> 1] = k + 1
        bs[k] = start
        bf[k] = ni
        bn[k] = 0
        be[k] = E_SIDE
        bo[k] = start
        off = start
        while True:
            if off >= 4096 or bn[k] >= MAX_BLOCK or ni >= MAX_INSNS:
                be[k] = E_FALL
                bo[k] = off
                break
            if off != start and at[off >> 1] != 0 and bn[at[off >> 1] - 1] > 0:
                be[k] = E_FALL          # join an existing block
                bo[k] = off
                break
            lo = np.int64(ram16[(poff + off) >> 1])
            if (lo & 3) != 3:
                inst = np.int64(rvc[lo])
                n = 2
            else:
                if off > 4096 - 4:
                    be[k] = E_SIDE
                    bo[k] = off
                    break
                inst = lo | (np.int64(ram16[((poff + off) >> 1) + 1]) << 16)
                inst = (inst ^ 0x80000000) - 0x80000000
                n = 4
            c = kind(inst, fp) if inst != 0 else K_NONE
            if c == K_NONE:
                be[k] = E_SIDE
                bo[k] = off
                break
            ii[ni] = inst
            io[ni] = off
            il[ni] = n
            ni += 1
            bn[k] += 1
            off += n
            if c == K_BRANCH:
                be[k] = E_BRANCH
                t = off - n + branch_offset(inst)
                if lo <= t < 4096 and at[t >> 1] == 0 and nw < len(work) - 2:
                    work[nw] = t
                    nw += 1
                if off < 4096 and at[off >> 1] == 0:
                    work[nw] = off
                    nw += 1
                break
            if c == K_JAL:
                be[k] = E_JAL
                t = off - n + jal_offset(inst)
                if lo <= t < 4096 and at[t >> 1] == 0 and nw < len(work) - 1:
                    work[nw] = t
                    nw += 1
                break
            if c == K_JALR:
                be[k] = E_JALR
                break
        if (be[k] == E_FALL and bo[k] < 4096 and at[bo[k] >> 1] == 0 and ni < MAX_INSNS
                and nw < len(work) - 1):
            work[nw] = bo[k]
            nw += 1
    return nb, ni


# ---- emission helpers ----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def ld(b, p, r, x):
    """Host register r = guest register x (slot x of s; slot 0 reads as zero)."""
    if x == 0:
        return alu_rr(b, p, XOR, r, r, 0)
    return mov_rm(b, p, r, RBX, 8 * x)


# A write-through cache of guest registers in host registers, within a block: a result still
# goes to the state array (so an exit writes nothing back), and is also kept in one of these
# registers, which no emitter of a block's body uses except where the cache is cleared (rsi
# and rdi: FP, AMO and CSR instructions; all of them: helper calls). A later instruction of
# the block reads the register instead of loading the value just stored: a load that follows
# a store to the same word waits for it (store-to-load forwarding, 4-5 cycles on the chain).
# hc[x]: host register holding guest register x, or -1; pg[k]: guest register in POOL[k].
POOL = np.array([R9, R10, R11, RSI, RDI], dtype=np.int64)


@njit(cache=True, nogil=True)
def ldc(b, p, r, x, hc):
    """Host register r = guest register x, from the block's register cache where it holds x."""
    h = hc[x] if x != 0 else -1
    if h >= 0:
        return mov_rr(b, p, r, h)
    return ld(b, p, r, x)


@njit(cache=True, nogil=True)
def cache_clear(hc, pg):
    """Forget every cached register (a block's start, or a call that clobbers them)."""
    hc[:] = -1
    pg[:] = -1


@njit(cache=True, nogil=True)
def cache_drop(hc, pg, x):
    """Guest register x was written other than from rax: its cached copy is stale."""
    if hc[x] >= 0:
        for k in range(len(pg)):
            if pg[k] == x:
                pg[k] = -1
        hc[x] = -1


@njit(cache=True, nogil=True)
def cache_put(b, p, x, hc, pg, rr):
    """Guest register x was just written from rax: keep a copy in a pool register (its own,
    or the next in turn, whose guest register is then forgotten)."""
    h = hc[x]
    if h < 0:
        k = rr[0]
        rr[0] = (k + 1) % len(pg)
        if pg[k] >= 0:
            hc[pg[k]] = -1
        pg[k] = x
        h = POOL[k]
        hc[x] = h
    return mov_rr(b, p, h, RAX)


@njit(cache=True, nogil=True)
def read_later(ii, first, last, x):
    """Whether an instruction of ii[first:last] names x as rs1 or rs2 (a copy is worth keeping)."""
    for j in range(first, last):
        inst = ii[j]
        if (inst >> 15) & 31 == x or (inst >> 20) & 31 == x:
            return True
    return False


@njit(cache=True, nogil=True)
def leave_frame(b, p):
    """Undo the region prologue: the stack and the callee-saved registers as the caller left them."""
    p = alu_ri(b, p, ADD, RSP, 24, 1)
    p = pop(b, p, R15)
    p = pop(b, p, R14)
    p = pop(b, p, R13)
    p = pop(b, p, R12)
    p = pop(b, p, RBP)
    return pop(b, p, RBX)


@njit(cache=True, nogil=True)
def epilogue(b, p):
    return ret(b, leave_frame(b, p))


@njit(cache=True, nogil=True)
def exit_tail(b, p, code):
    """The shared end of exits (one per code buffer and code): pc in rax, count in rcx."""
    p = mov_mr(b, p, RBX, _S_PC, RAX)
    p = mov_mr(b, p, RBX, _S_IC, RCX)
    p = mov_ri(b, p, RAX, code)
    return epilogue(b, p)


@njit(cache=True, nogil=True)
def jmp_to(b, p, target):
    """jmp rel32 to a known position."""
    p, a = jmp(b, p)
    patch32(b, a, target)
    return p


@njit(cache=True, nogil=True)
def exit_stub(b, p, off, k, tail):
    """Leave with pc = page + off, count = r15 + k, through the exit tail at `tail`."""
    p = lea(b, p, RAX, R14, off)
    p = lea(b, p, RCX, R15, k)
    return jmp_to(b, p, tail)


@njit(cache=True, nogil=True)
def set_stub(stubs, nst, off, k, code):
    """Stub number nst leaves with pc = page + off, count = r15 + k and JR_* code `code`."""
    stubs[nst, 0] = off
    stubs[nst, 1] = k
    stubs[nst, 2] = code


@njit(cache=True, nogil=True)
def add_site(sites, ns, at, stub):
    """Record that the rel32 at `at` jumps to stub number `stub`; returns the new count."""
    sites[ns, 0] = at
    sites[ns, 1] = stub
    return ns + 1


@njit(cache=True, nogil=True)
def access(b, p, size, store, dtlb, rmask, forbid_u, ram_base, ram_size, sites, ns, stub,
           aligned=False):
    """Checks of a data access whose virtual address is in rax (priv spec 4.3.1 via the TLB, as
    the interpreter's permission rules); leaves the RAM offset in rax. Each failed check jumps
    to stub number `stub` (a side exit before the instruction): the jumps are recorded in
    sites[ns], sites[ns+1] (position of the rel32, stub). Returns (p, ns)."""
    if dtlb:
        p = mov_rr(b, p, RDX, RAX)
        p = shift_ri(b, p, SAR, RDX, 12, 1)                 # vpn
        p = enc(b, p, 0, 0x89, RDX, RCX, NOIDX, 0, 0, False)  # ecx = edx
        p = alu_ri(b, p, AND, RCX, TLB_ENTRIES - 1, 0)      # TLB index
        p = cmp_rx(b, p, RDX, R12, RCX, 3, 0)               # tag == vpn?
        p, at = jcc(b, p, CC_NE)
        ns = add_site(sites, ns, at, stub)
        p = enc(b, p, 1, 0x8B, RDX, R12, RCX, 3, 8 * TLB_ENTRIES, True)  # the entry's data word
        if store:
            p = mov_rr(b, p, RCX, RDX)
            p = alu_ri(b, p, AND, RCX, PTE_W | PTE_D, 1)
            p = alu_ri(b, p, CMP, RCX, PTE_W | PTE_D, 1)
            p, at = jcc(b, p, CC_NE)
        else:
            p = test_ri(b, p, RDX, rmask)
            p, at = jcc(b, p, CC_E)
        ns = add_site(sites, ns, at, stub)
        if forbid_u != -1:
            p = test_ri(b, p, RDX, PTE_U)
            p, at = jcc(b, p, CC_E if forbid_u == 0 else CC_NE)
            ns = add_site(sites, ns, at, stub)
        p = alu_ri(b, p, AND, RDX, -4096, 1)
        p = alu_ri(b, p, AND, RAX, 4095, 0)
        p = alu_rr(b, p, OR, RAX, RDX, 1)                   # physical address
    if store:   # HTIF's tohost is the machine's
        p = alu_rm(b, p, CMP, RAX, RBX, 8 * TOHOST)
        p, at = jcc(b, p, CC_E)
        ns = add_site(sites, ns, at, stub)
    if ram_base <= (1 << 31):                               # RAM offset = address - base
        p = alu_ri(b, p, ADD, RAX, -ram_base, 1)            # (imm32, sign-extended)
    else:
        p = mov_ri(b, p, RDX, ram_base)
        p = alu_rr(b, p, SUB, RAX, RDX, 1)
    if ram_size - size < (1 << 31):
        p = alu_ri(b, p, CMP, RAX, ram_size - size, 1)
    else:
        p = mov_ri(b, p, RDX, ram_size - size)
        p = alu_rr(b, p, CMP, RAX, RDX, 1)
    p, at = jcc(b, p, CC_A)                                 # outside RAM (unsigned): MMIO
    ns = add_site(sites, ns, at, stub)
    if size > 1 and aligned:    # atomics: misaligned is an exception (the interpreter's)
        p = test_ri(b, p, RAX, size - 1)
        p, at = jcc(b, p, CC_NE)
        ns = add_site(sites, ns, at, stub)
    elif size > 1 and (dtlb or store):
        # Misaligned is fine within a page (the host does it in one access, as the
        # interpreter's byte loop would); one that crosses into the next page needs that
        # page's translation: the interpreter's. Untranslated loads need no check: RAM is
        # contiguous and its bounds are checked above (a store must stay on the page whose
        # code word is checked below).
        p = enc(b, p, 0, 0x89, RAX, RCX, NOIDX, 0, 0, False)   # ecx = eax
        p = alu_ri(b, p, AND, RCX, 4095, 0)
        p = alu_ri(b, p, CMP, RCX, 4096 - size, 0)
        p, at = jcc(b, p, CC_A)
        ns = add_site(sites, ns, at, stub)
    if store:   # a page holding translations: the interpreter invalidates them
        p = mov_rr(b, p, RDX, RAX)
        p = shift_ri(b, p, SHR, RDX, 12, 1)
        p = mov_rm(b, p, RCX, RSP, 8)
        p = test_m8(b, p, RCX, RDX, 3, 0, 1)
        p, at = jcc(b, p, CC_NE)
        ns = add_site(sites, ns, at, stub)
    return p, ns


@njit(cache=True, nogil=True)
def group(ii, first, last, op):
    """The loads (op 0x03) or stores (0x23) at ii[first:last] that can be checked together: the
    same kind on the same base register, whose bytes span at most GROUP_SPAN, up to one that
    loads into the base register (the last then). Returns (count, lowest offset, span).

    Unrolled copy and fill loops are made of these (Linux's memset stores 32 doublewords from
    one register, memcpy and the user copies load 8 and store 8): one TLB, permission, RAM,
    page and code-page check for the whole group instead of one per access, about 25 host
    instructions each."""
    base = (ii[first] >> 15) & 31
    lo = 0
    hi = 0
    g = 0
    for j in range(first, last):
        inst = ii[j]
        f3 = (inst >> 12) & 7
        if inst & 0x7F != op or (inst >> 15) & 31 != base or (op == 0x03 and f3 == 7) or (op == 0x23 and f3 > 3):
            break
        imm = (inst >> 20) if op == 0x03 else (((inst >> 25) << 5) | ((inst >> 7) & 31))
        nlo = imm if g == 0 or imm < lo else lo
        nhi = imm + (1 << (f3 & 3))
        if g > 0 and hi > nhi:
            nhi = hi
        if nhi - nlo > GROUP_SPAN:
            break
        lo = nlo
        hi = nhi
        g += 1
        if op == 0x03 and (inst >> 7) & 31 == base:
            break
    return g, lo, hi - lo


@njit(cache=True, nogil=True)
def group_fast(b, p, ii, first, g, lo, span, store, dtlb, rmask, forbid_u, ram_base, ram_size, hc, gs):
    """The fast path of a group (see `group`): one check of its whole span, then the accesses as
    plain host loads and stores. Returns (p, position of its closing jmp's rel32, failed checks
    in gs); the caller points the failed checks at the group's ordinary code, each access with
    its own checks (the slow path), and the jmp after it."""
    base = (ii[first] >> 15) & 31
    p = ldc(b, p, RAX, base, hc)
    if lo != 0:
        p = alu_ri(b, p, ADD, RAX, lo, 1)
    p, ng = access(b, p, span, store, dtlb, rmask, forbid_u, ram_base, ram_size, gs, 0, 0)
    if store:   # access compared HTIF's tohost with the first byte: the span must not hold it
        p = mov_rm(b, p, RDX, RBX, 8 * TOHOST)
        p = mov_ri(b, p, RCX, ram_base)
        p = alu_rr(b, p, SUB, RDX, RCX, 1)
        p = alu_rr(b, p, SUB, RDX, RAX, 1)
        p = alu_ri(b, p, CMP, RDX, span, 1)
        p, at = jcc(b, p, CC_B)
        gs[ng, 0] = at
        ng += 1
    last = -1
    for j in range(first, first + g):
        inst = ii[j]
        f3 = (inst >> 12) & 7
        size = 1 << (f3 & 3)
        if store:
            d = (((inst >> 25) << 5) | ((inst >> 7) & 31)) - lo
            rs2 = (inst >> 20) & 31
            if rs2 != last:
                p = ldc(b, p, RCX, rs2, hc)
                last = rs2
            p = store_x(b, p, size, RCX, RBP, RAX, 0, d)
        else:
            p = load_x(b, p, size, f3 < 4, RCX, RBP, RAX, 0, (inst >> 20) - lo)
            rd = (inst >> 7) & 31
            if rd != 0:
                p = mov_mr(b, p, RBX, 8 * rd, RCX)
    p, done = jmp(b, p)
    for q in range(ng):
        patch32(b, gs[q, 0], p)
    return p, done


@njit(cache=True, nogil=True)
def divrem(b, p, f3, w):
    """rax = rax (/ or %) rcx per funct3 4..7, with RISC-V's results for division by zero and
    overflow (unprivileged spec 13.2), w=0 on the low 32 bits."""
    signed = f3 == 4 or f3 == 6
    quot = f3 == 4 or f3 == 5
    p = alu_rr(b, p, OR, RCX, RCX, w)           # flags of rcx
    p, z = jcc8(b, p, CC_E)
    d1 = 0
    if signed:
        p = alu_ri(b, p, CMP, RCX, -1, w)
        p, go = jcc8(b, p, CC_NE)
        if quot:
            p = unary(b, p, 3, RAX, w)          # x / -1 = -x (the overflow case wraps to x)
        else:
            p = alu_rr(b, p, XOR, RAX, RAX, 0)  # x % -1 = 0
        p, d1 = jmp8(b, p)
        patch8(b, go, p)
        p = cqo(b, p, w)
        p = unary(b, p, 7, RCX, w)              # idiv
    else:
        p = alu_rr(b, p, XOR, RDX, RDX, 0)
        p = unary(b, p, 6, RCX, w)              # div
    if not quot:
        p = mov_rr(b, p, RAX, RDX)
    p, d2 = jmp8(b, p)
    patch8(b, z, p)
    if quot:
        p = mov_ri(b, p, RAX, -1)               # x / 0 = all ones; x % 0 = x
    patch8(b, d2, p)
    if signed:
        patch8(b, d1, p)
    return p


@njit(cache=True, nogil=True)
def lock_op(b, p, op, reg, w):
    """lock <op> [rdi], reg (op: 0x0FC1 xadd, 0x0FB1 cmpxchg; 0x87 xchg is locked anyway)."""
    if op != 0x87:
        b[p] = 0xF0
        p += 1
    return enc(b, p, w, op, reg, RDI, NOIDX, 0, 0, True)


@njit(cache=True, nogil=True)
def amo(b, p, inst, ram_base):
    """LR, SC or an AMO (unpriv spec 8.2-8.4) on the RAM offset in rax, checked by `access`,
    as the interpreter does it: host atomic instructions, so they are atomic with respect to
    the other harts' threads (a locked x86 instruction is also a full fence, which covers
    aq/rl); SC succeeds only on this hart's reservation of the address and if the word still
    holds what LR loaded (one lock cmpxchg, docs/cpu.md)."""
    f5 = (inst >> 27) & 0x1F
    rd = (inst >> 7) & 31
    rs2 = (inst >> 20) & 31
    w = (inst >> 12) & 1                      # 1: .d, 0: .w
    if f5 == 2:                               # LR
        p = mov_ri(b, p, RDX, ram_base)
        p = alu_rr(b, p, ADD, RDX, RAX, 1)
        p = mov_mr(b, p, RBX, 8 * RESERVATION, RDX)
        p = load_x(b, p, 8 if w else 4, True, RAX, RBP, RAX, 0, 0)
        p = mov_mr(b, p, RBX, 8 * RES_VALUE, RAX)
        if rd != 0:
            p = mov_mr(b, p, RBX, 8 * rd, RAX)
        return p
    p = lea_x(b, p, RDI, RBP, RAX)            # host address of the word
    p = ld(b, p, RCX, rs2)
    if f5 == 3:                               # SC
        p = mov_ri(b, p, RDX, ram_base)
        p = alu_rr(b, p, ADD, RDX, RAX, 1)
        p = alu_rm(b, p, CMP, RDX, RBX, 8 * RESERVATION)
        p, f1 = jcc8(b, p, CC_NE)
        p = mov_rm(b, p, RAX, RBX, 8 * RES_VALUE)
        p = lock_op(b, p, 0x0FB1, RCX, w)
        p, f2 = jcc8(b, p, CC_NE)
        p = alu_rr(b, p, XOR, RAX, RAX, 0)    # success: 0
        p, d = jmp8(b, p)
        patch8(b, f1, p)
        patch8(b, f2, p)
        p = mov_ri(b, p, RAX, 1)
        patch8(b, d, p)
        p = mov_mi(b, p, RBX, 8 * RESERVATION, -1)
        if rd != 0:
            p = mov_mr(b, p, RBX, 8 * rd, RAX)
        return p
    if f5 == 1:
        p = lock_op(b, p, 0x87, RCX, w)       # xchg
        p = mov_rr(b, p, RAX, RCX)
    elif f5 == 0:
        p = lock_op(b, p, 0x0FC1, RCX, w)     # xadd
        p = mov_rr(b, p, RAX, RCX)
    else:
        p = enc(b, p, w, 0x8B, RAX, RDI, NOIDX, 0, 0, True)   # old
        loop = p
        p = mov_rr(b, p, RDX, RAX)
        if f5 == 4:
            p = alu_rr(b, p, XOR, RDX, RCX, w)
        elif f5 == 12:
            p = alu_rr(b, p, AND, RDX, RCX, w)
        elif f5 == 8:
            p = alu_rr(b, p, OR, RDX, RCX, w)
        else:
            # min/max/minu/maxu: rdx = rcx unless old already wins (cmov)
            cc = CC_L if f5 == 16 else (CC_G if f5 == 20 else (CC_B if f5 == 24 else CC_A))
            p = mov_rr(b, p, RDX, RCX)
            p = alu_rr(b, p, CMP, RAX, RCX, w)
            p = enc(b, p, w, 0x0F40 + cc, RDX, RAX, NOIDX, 0, 0, False)
        p = lock_op(b, p, 0x0FB1, RDX, w)     # cmpxchg: on failure rax = the current word
        p, a = jcc8(b, p, CC_NE)
        patch8(b, a, loop)
    if w == 0:
        p = movsxd(b, p, RAX, RAX)
    if rd != 0:
        p = mov_mr(b, p, RBX, 8 * rd, RAX)
    return p


@njit(cache=True, nogil=True)
def normal_or(b, p, r, single, boxed, fails, nf):
    """Jump (recorded in fails) unless r holds a normal, non-zero number: exponent 1..0x7FE of
    binary64, or, `single`, 1..0xFE of binary32 in the low half, NaN-boxed (upper 32 bits all
    ones, spec 12.2: anything else reads as the canonical NaN) when `boxed`. Uses rcx."""
    if single and boxed:
        p = mov_rr(b, p, RCX, r)
        p = shift_ri(b, p, SHR, RCX, 32, 1)
        p = alu_ri(b, p, CMP, RCX, -1, 0)
        p, fails[nf] = jcc(b, p, CC_NE)
        nf += 1
    if single:
        p = enc(b, p, 0, 0x89, r, RCX, NOIDX, 0, 0, False)   # ecx = low half of r
    else:
        p = mov_rr(b, p, RCX, r)
    top = 0xFF if single else 0x7FF                       # exponent all ones: inf or NaN
    p = shift_ri(b, p, SHR, RCX, 23 if single else 52, 0 if single else 1)
    p = alu_ri(b, p, AND, RCX, top, 0)
    p = alu_ri(b, p, SUB, RCX, 1, 0)
    p = alu_ri(b, p, CMP, RCX, top - 1, 0)
    p, fails[nf] = jcc(b, p, CC_AE)
    return p, nf + 1


@njit(cache=True, nogil=True)
def emit_bytes(b, p, v0, v1, v2, v3, v4, n):
    """The first n (at most 5) of the bytes v0..v4."""
    b[p] = v0
    if n > 1:
        b[p + 1] = v1
    if n > 2:
        b[p + 2] = v2
    if n > 3:
        b[p + 3] = v3
    if n > 4:
        b[p + 4] = v4
    return p + n


@njit(cache=True, nogil=True)
def xmm_from(b, p, xmm, r, single):
    """movd/movq xmm, r (r one of rax, rdx, rsi)."""
    modrm = 0xC0 | (xmm << 3) | r
    if single:
        return emit_bytes(b, p, 0x66, 0x0F, 0x6E, modrm, 0, 4)
    return emit_bytes(b, p, 0x66, 0x48, 0x0F, 0x6E, modrm, 5)


@njit(cache=True, nogil=True)
def fp_fast(b, p, inst, fma):
    """The interpreter's fast path for F and D arithmetic (docs/cpu.md "F and D"): with
    round-to-nearest-even, fflags.NX already set, normal operands and a normal result, the
    host's correctly rounded SSE result is the answer and NX the only flag it could raise (no
    operand is a NaN, infinity or zero, so no invalid operation or division by zero; a normal
    result is neither an overflow nor, tininess being detected after rounding on both sides,
    an underflow). Covers add, sub, mul and div in both precisions and, where the host has
    FMA3 (`fma`), the four fused multiply-adds, each one rounding as RISC-V's (spec 11.6):
    vfmadd/vfmsub/vfnmadd/vfnmsub213 with xmm0 = rs1, xmm1 = rs2, xmm2 = rs3 compute
    +-(rs2 * rs1) +- rs3. Single-precision operands must be NaN-boxed and the result is boxed.
    Returns (p, rel32 position of the jump past the slow path, or -1 if there is no fast
    path); any failed condition falls into the slow path emitted after it."""
    op = inst & 0x7F
    rm = (inst >> 12) & 7
    f7 = (inst >> 25) & 0x7F
    if rm != 0 and rm != 7:
        return p, -1
    fused = op == 0x43 or op == 0x47 or op == 0x4B or op == 0x4F
    if op == 0x53:
        fmt = f7 & 3
        kind = f7 >> 2
        if fmt > 1 or kind > 3:
            return p, -1
        sse = (0x58, 0x5C, 0x59, 0x5E)[kind]            # add, sub, mul, div
    elif fused and fma:
        fmt = f7 & 3
        if fmt > 1:
            return p, -1
        sse = 0xA9 + 2 * ((op - 0x43) >> 2)              # vfmadd/vfmsub/vfnmadd/vfnmsub213
    else:
        return p, -1
    single = fmt == 0
    fails = np.empty(10, np.int64)
    nf = 0
    p = mov_rm(b, p, RAX, R13, 8 * CSR_FCSR)
    p = alu_ri(b, p, AND, RAX, 1 | (0xE0 if rm == 7 else 0), 0)
    p = alu_ri(b, p, CMP, RAX, 1, 0)
    p, fails[nf] = jcc(b, p, CC_NE)
    nf += 1
    p = mov_rm(b, p, RAX, RBX, 8 * (F0 + ((inst >> 15) & 31)))
    p = mov_rm(b, p, RDX, RBX, 8 * (F0 + ((inst >> 20) & 31)))
    p, nf = normal_or(b, p, RAX, single, True, fails, nf)
    p, nf = normal_or(b, p, RDX, single, True, fails, nf)
    if fused:
        p = mov_rm(b, p, RSI, RBX, 8 * (F0 + ((inst >> 27) & 31)))
        p, nf = normal_or(b, p, RSI, single, True, fails, nf)
        p = xmm_from(b, p, 2, RSI, single)
    p = xmm_from(b, p, 0, RAX, single)
    p = xmm_from(b, p, 1, RDX, single)
    if fused:
        p = emit_bytes(b, p, 0xC4, 0xE2, 0x71 if single else 0xF1, sse, 0xC2, 5)
    else:
        p = emit_bytes(b, p, 0xF3 if single else 0xF2, 0x0F, sse, 0xC1, 0, 4)
    if single:
        p = emit_bytes(b, p, 0x66, 0x0F, 0x7E, 0xC0, 0, 4)         # movd eax, xmm0
        p, nf = normal_or(b, p, RAX, True, False, fails, nf)
        p = mov_ri(b, p, RCX, NAN_BOX)
        p = alu_rr(b, p, OR, RAX, RCX, 1)
    else:
        p = emit_bytes(b, p, 0x66, 0x48, 0x0F, 0x7E, 0xC0, 5)      # movq rax, xmm0
        p, nf = normal_or(b, p, RAX, False, False, fails, nf)
    p = mov_mr(b, p, RBX, 8 * (F0 + ((inst >> 7) & 31)), RAX)
    p = or_mi(b, p, R13, 8 * CSR_MSTATUS, MS_FS)
    p, done = jmp(b, p)
    for k in range(nf):
        patch32(b, fails[k], p)
    return p, done


@njit(cache=True, nogil=True)
def alu(b, p, inst, off, known, hc):
    """An integer computation writing only rd (nothing for rd = x0: no side effects).

    `known`: the guest register rax holds (the previous instruction of the block wrote it
    from rax), or -1: its operand is taken from rax instead of loaded again. A dependent chain
    otherwise waits for a store-to-load forwarding (4-5 cycles) at every instruction. On
    return rax holds the value written to rd (except for lui, which stores an immediate)."""
    op = inst & 0x7F
    rd = (inst >> 7) & 31
    f3 = (inst >> 12) & 7
    f7 = (inst >> 25) & 0x7F
    rs1 = (inst >> 15) & 31
    rs2 = (inst >> 20) & 31
    if rd == 0:
        return p
    if op == 0x37:
        return mov_mi(b, p, RBX, 8 * rd, (inst >> 12) << 12)
    if op == 0x17:
        v = off + ((inst >> 12) << 12)
        if -(1 << 31) <= v < (1 << 31):
            p = lea(b, p, RAX, R14, v)
        else:
            p = mov_ri(b, p, RAX, v)
            p = alu_rr(b, p, ADD, RAX, R14, 1)
        return mov_mr(b, p, RBX, 8 * rd, RAX)
    rtype = op == 0x33 or op == 0x3B
    rcx_ready = False
    if rtype and rs2 == known and rs1 != known:
        p = mov_rr(b, p, RCX, RAX)              # rs2 from rax before rs1 replaces it
        rcx_ready = True
    if op == 0x13 and f3 == 0 and rs1 == 0:                # li: addi rd, x0, imm
        p = mov_ri(b, p, RAX, inst >> 20)
        return mov_mr(b, p, RBX, 8 * rd, RAX)
    if rs1 != known:
        p = ldc(b, p, RAX, rs1, hc)
    if op == 0x13:
        imm = inst >> 20
        if f3 == 0:
            if imm != 0:
                p = alu_ri(b, p, ADD, RAX, imm, 1)
        elif f3 == 1:
            p = shift_ri(b, p, SHL, RAX, imm & 63, 1)
        elif f3 == 2 or f3 == 3:
            p = alu_ri(b, p, CMP, RAX, imm, 1)
            p = setcc_zx(b, p, CC_L if f3 == 2 else CC_B, RAX)
        elif f3 == 4:
            p = alu_ri(b, p, XOR, RAX, imm, 1)
        elif f3 == 5:
            p = shift_ri(b, p, SAR if (imm >> 10) & 1 else SHR, RAX, imm & 63, 1)
        elif f3 == 6:
            p = alu_ri(b, p, OR, RAX, imm, 1)
        else:
            p = alu_ri(b, p, AND, RAX, imm, 1)
        return mov_mr(b, p, RBX, 8 * rd, RAX)
    if op == 0x1B:
        imm = inst >> 20
        if f3 == 0:
            p = alu_ri(b, p, ADD, RAX, imm, 0)
        elif f3 == 1:
            p = shift_ri(b, p, SHL, RAX, imm & 31, 0)
        else:
            p = shift_ri(b, p, SAR if f7 == 0x20 else SHR, RAX, imm & 31, 0)
        p = movsxd(b, p, RAX, RAX)
        return mov_mr(b, p, RBX, 8 * rd, RAX)
    if rs2 == rs1:
        p = mov_rr(b, p, RCX, RAX)
    elif not rcx_ready:
        p = ldc(b, p, RCX, rs2, hc)
    w = 1 if op == 0x33 else 0
    if f7 == 1:
        if f3 == 0:
            p = imul_rr(b, p, RAX, RCX, w)
        elif f3 == 1:
            p = unary(b, p, 5, RCX, 1)          # rdx:rax = signed rax * rcx
            p = mov_rr(b, p, RAX, RDX)
        elif f3 == 3:
            p = unary(b, p, 4, RCX, 1)          # unsigned
            p = mov_rr(b, p, RAX, RDX)
        elif f3 == 2:
            # mulhsu: high(unsigned product) - (rs1 < 0 ? rs2 : 0)
            p = mov_rr(b, p, R8, RAX)
            p = unary(b, p, 4, RCX, 1)
            p = shift_ri(b, p, SAR, R8, 63, 1)
            p = alu_rr(b, p, AND, R8, RCX, 1)
            p = alu_rr(b, p, SUB, RDX, R8, 1)
            p = mov_rr(b, p, RAX, RDX)
        else:
            p = divrem(b, p, f3, w)
    elif f3 == 0:
        p = alu_rr(b, p, SUB if f7 == 0x20 else ADD, RAX, RCX, w)
    elif f3 == 1:
        p = shift_cl(b, p, SHL, RAX, w)
    elif f3 == 5:
        p = shift_cl(b, p, SAR if f7 == 0x20 else SHR, RAX, w)
    elif f3 == 2 or f3 == 3:
        p = alu_rr(b, p, CMP, RAX, RCX, 1)
        p = setcc_zx(b, p, CC_L if f3 == 2 else CC_B, RAX)
    elif f3 == 4:
        p = alu_rr(b, p, XOR, RAX, RCX, 1)
    elif f3 == 6:
        p = alu_rr(b, p, OR, RAX, RCX, 1)
    else:
        p = alu_rr(b, p, AND, RAX, RCX, 1)
    if w == 0:
        p = movsxd(b, p, RAX, RAX)
    return mov_mr(b, p, RBX, 8 * rd, RAX)


@njit(cache=True, nogil=True)
def chains(mode):
    """Whether a region of this mode number may jump straight into the next one. S and U
    modes fetch and load through the same TLB view, so the dispatcher's TLB check is the
    fetch's. M mode fetches untranslated (priv spec 3.1.6.3: MPRV moves only data accesses),
    so its pc is the physical address the dispatcher checks against RAM, unless MPRV gives
    data accesses another privilege (the mode number then says nothing of the fetch view) or
    locked PMP entries restrict M mode (the fetch then needs the PMP check: mode bit 7 is set
    for M-mode data accesses exactly then). Bare-metal programs run entirely in M mode."""
    priv = mode & 3
    if priv != 3:
        return True
    return ((mode >> 2) & 3) == 3 and ((mode >> 7) & 1) == 0


@njit(cache=True, nogil=True)
def entered(b, p, jq_addr):
    """What every chained entry records: one more chained entry, and that the region of the
    slot in rsi runs from the count in r15 (the core credits its hot count from there)."""
    p = mov_ri(b, p, RCX, jq_addr)
    p = enc(b, p, 1, 0xFF, 0, RCX, NOIDX, 0, 8 * JQ_CHAIN, True)   # inc jq[JQ_CHAIN]
    p = mov_mr(b, p, RBX, _S_LAST, RSI)
    return mov_mr(b, p, RBX, _S_LAST_IC, R15)


@njit(cache=True, nogil=True)
def not_template(b, p, xbase, xsize):
    """Jump unless the function in r8 lies in this buffer (the template tier's code; LLVM's
    lies elsewhere). Returns (p, position of the rel32). Uses r9 and rcx."""
    p = mov_rr(b, p, R9, R8)
    p = mov_ri(b, p, RCX, xbase)
    p = alu_rr(b, p, SUB, R9, RCX, 1)
    p = mov_ri(b, p, RCX, xsize)
    p = alu_rr(b, p, CMP, R9, RCX, 1)
    return jcc(b, p, CC_AE)


@njit(cache=True, nogil=True)
def stale(b, p, page):
    """Jump unless the page's generation word (jpg[page], a constant page) is the one the slot
    in rsi was made from. Returns (p, position of the rel32). Uses r8 and r9."""
    p = mov_rm(b, p, R9, RSP, 8)
    p = mov_rm(b, p, R8, R9, 8 * page)                    # jpg[page]
    p = cmp_rx(b, p, R8, RSI, NOIDX, 0, 16)
    return jcc(b, p, CC_NE)


@njit(cache=True, nogil=True)
def dispatch(b, p, mode, dtlb, ram_base, ram_size, jt_addr, xbase, xsize, jq_addr, outs):
    """The region's way out at a block boundary, pc in rax: enter the translation of that pc
    directly if the table has a valid one made by this tier ("chaining"; QEMU's
    goto_tb/lookup_and_goto_ptr), else return JR_END to the core.

    It repeats the core's checks before it enters a region: the fetch TLB entry with execute
    permission (priv spec 4.3.1; S and U modes only, where fetch and data use the same TLB
    view, so the region's mode decides), the page inside RAM, not the page's last halfword,
    then the table slot's key (RAM offset, mode) and the page's generation word. The limit is
    checked by the target's first block, so time slices end as they do without chaining.
    A target LLVM compiled (level 2) is entered by a tail call. The slot entered and the count
    at entry go to s[JIT_LAST] and s[JIT_LAST_IC]: the core credits what runs after them to
    that region, so a region reached only by chaining still becomes hot."""
    p = mov_mr(b, p, RBX, _S_PC, RAX)
    p = mov_mr(b, p, RBX, _S_IC, R15)
    if not chains(mode):
        p = mov_ri(b, p, RAX, JR_END)
        return epilogue(b, p)
    no = 0
    p = mov_rr(b, p, RDX, RAX)
    if dtlb:                    # S or U mode (M mode fetches untranslated: see chains)
        p = shift_ri(b, p, SAR, RDX, 12, 1)
        p = enc(b, p, 0, 0x89, RDX, RCX, NOIDX, 0, 0, False)  # ecx = edx
        p = alu_ri(b, p, AND, RCX, TLB_ENTRIES - 1, 0)
        p = cmp_rx(b, p, RDX, R12, RCX, 3, 0)
        p, outs[no] = jcc(b, p, CC_NE)
        no += 1
        p = enc(b, p, 1, 0x8B, RDX, R12, RCX, 3, 8 * TLB_ENTRIES, True)
        p = test_ri(b, p, RDX, PTE_X)
        p, outs[no] = jcc(b, p, CC_E)
        no += 1
        p = test_ri(b, p, RDX, PTE_U)
        p, outs[no] = jcc(b, p, CC_E if (mode & 3) == PRV_U else CC_NE)
        no += 1
        p = alu_ri(b, p, AND, RDX, -4096, 1)
        p = mov_rr(b, p, RCX, RAX)
        p = alu_ri(b, p, AND, RCX, 4095, 0)
        p = alu_rr(b, p, OR, RDX, RCX, 1)
    p = mov_rr(b, p, RCX, RAX)
    p = alu_ri(b, p, AND, RCX, 4095, 0)
    p = alu_ri(b, p, CMP, RCX, 0xFFE, 0)
    p, outs[no] = jcc(b, p, CC_E)
    no += 1
    p = mov_ri(b, p, RCX, ram_base)
    p = alu_rr(b, p, SUB, RDX, RCX, 1)                    # RAM offset
    p = mov_ri(b, p, RCX, ram_size - 1)
    p = alu_rr(b, p, CMP, RDX, RCX, 1)
    p, outs[no] = jcc(b, p, CC_A)
    no += 1
    # slot = table.slot_of(off, mode)
    p = mov_rr(b, p, RCX, RDX)
    p = shift_ri(b, p, SHR, RCX, 1, 1)
    p = mov_rr(b, p, RSI, RDX)
    p = shift_ri(b, p, SHR, RSI, 11, 1)
    p = alu_rr(b, p, XOR, RCX, RSI, 1)
    p = alu_ri(b, p, XOR, RCX, (mode * 0x51) & 0x7FFFFFFF, 1)
    p = alu_ri(b, p, AND, RCX, JT_SLOTS - 1, 0)
    p = shift_ri(b, p, SHL, RCX, 5, 1)                    # * JT_W * 8 bytes
    p = mov_ri(b, p, RSI, jt_addr)
    p = alu_rr(b, p, ADD, RSI, RCX, 1)
    p = mov_ri(b, p, R8, mode << JT_MODE_SHIFT)
    p = alu_rr(b, p, OR, R8, RDX, 1)
    p = cmp_rx(b, p, R8, RSI, NOIDX, 0, 0)                # key
    p, outs[no] = jcc(b, p, CC_NE)
    no += 1
    p = mov_rr(b, p, R8, RDX)
    p = shift_ri(b, p, SHR, R8, 12, 1)
    p = mov_rm(b, p, R9, RSP, 8)
    p = load_x(b, p, 8, False, R8, R9, R8, 3, 0)          # jpg[page]
    p = cmp_rx(b, p, R8, RSI, NOIDX, 0, 16)               # the generation it was made from
    p, outs[no] = jcc(b, p, CC_NE)
    no += 1
    p = mov_rm(b, p, R8, RSI, 8)                          # function
    p = alu_rr(b, p, OR, R8, R8, 1)
    p, outs[no] = jcc(b, p, CC_E)                         # an entry with nothing translated
    no += 1
    p = entered(b, p, jq_addr)
    p, other = not_template(b, p, xbase, xsize)           # LLVM's code
    p = mov_rr(b, p, R14, RAX)
    p = alu_ri(b, p, AND, R14, -4096, 1)                  # the new page's virtual base
    p = alu_ri(b, p, ADD, R8, BODY, 1)
    p = jmp_r(b, p, R8)
    # A region LLVM compiled has the same contract from its own prologue (pc and count are in
    # s): leave this frame as the epilogue does and jump to it with the arguments the core
    # passed, so it returns to the core itself (a tail call).
    patch32(b, other, p)
    p = mov_rr(b, p, R11, R8)
    p = mov_rr(b, p, RDI, RBX)
    p = mov_rr(b, p, RSI, R13)
    p = mov_rr(b, p, RDX, R12)
    p = mov_rr(b, p, RCX, RBP)
    p = mov_rm(b, p, R8, RSP, 8)
    p = mov_rm(b, p, R9, RSP, 0)
    p = leave_frame(b, p)
    p = jmp_r(b, p, R11)
    for q in range(no):
        patch32(b, outs[q], p)
    p = mov_ri(b, p, RAX, JR_END)
    return epilogue(b, p)


@njit(cache=True, nogil=True)
def chain_exit(b, p, t, poff, mode, dtlb, ram_size, jt_addr, xbase, xsize, jq_addr):
    """The fast way out to page offset `t` of the region's own page, before the general one
    (`lea rax, [r14 + t]; jmp dispatcher`, which the caller emits after it and where every
    miss lands). The dispatcher's checks of the fetch TLB, the RAM bounds and the page's last
    halfword hold for the page being run, so for a target on it only the table slot (its
    address and key are constants here), the page's generation word (read now: a store by
    another hart or a device may have dropped the page's code meanwhile) and the tier of the
    code found remain.

    The exit links itself (QEMU's goto_tb): the first time it finds template code in the slot
    it writes that function's address into its own `movabs` and points its `jmp rel32` at the
    function's body, so from then on an exit costs a compare of the slot's function with the
    one linked (a different key, a retranslation or an optimized (level 2) region all change
    it, and fall back to the checks), the generation check and a direct jump: about 12 host
    instructions and no indirect jump, against the dispatcher's 50. Only the hart's own thread
    runs and writes its code buffer, so patching needs no synchronization (x86 keeps stores to
    code coherent with fetch on the same core, SDM vol. 3 11.6).

    Where the mode fetches untranslated (M mode, or no paging and no PMP: `dtlb` off), a
    target on another page is as well known: its RAM offset is checked here, once, and the
    region jumps with r14 moved to the target's page (bare-metal code calls across pages at
    every function call)."""
    if not chains(mode) or (t & 0xFFF) == 0xFFE:
        return p
    off = poff + t
    cross = t < 0 or t >= 4096
    if cross and (dtlb or off < 0 or off >= ram_size):
        return p
    slot = ((off >> 1) ^ (off >> 11) ^ ((mode * 0x51) & 0x7FFFFFFF)) & (JT_SLOTS - 1)
    p = mov_ri(b, p, RSI, jt_addr + slot * 32)            # JT_W * 8 bytes a slot
    # ---- linked: the slot still holds the function this exit linked to (none yet: -1)
    p, fn_at = movabs(b, p, R9, -1)
    p = cmp_rx(b, p, R9, RSI, NOIDX, 0, 8)
    p, m0 = jcc(b, p, CC_NE)
    p, g0 = stale(b, p, off >> 12)
    p = entered(b, p, jq_addr)
    if cross:
        p = lea(b, p, R14, R14, (t >> 12) << 12)         # the target page's base
    p, jat = jmp(b, p)                                    # rel32 patched when linked
    # ---- not linked (or no longer): the full checks, then link and go
    patch32(b, m0, p)
    patch32(b, jat, p)
    p = mov_ri(b, p, R8, (mode << JT_MODE_SHIFT) | off)
    p = cmp_rx(b, p, R8, RSI, NOIDX, 0, 0)                # key
    p, m1 = jcc(b, p, CC_NE)
    p, m2 = stale(b, p, off >> 12)
    p = mov_rm(b, p, R8, RSI, 8)                          # function (0: nothing translated)
    p, m3 = not_template(b, p, xbase, xsize)              # LLVM's code, or none
    p = mov_ri(b, p, RCX, xbase + fn_at)                  # link: the function compared ...
    p = mov_mr(b, p, RCX, 0, R8)
    p = lea(b, p, RDX, R8, BODY)                          # ... and the jump to its body
    p = mov_ri(b, p, RCX, xbase + jat + 4)
    p = alu_rr(b, p, SUB, RDX, RCX, 1)
    p = enc(b, p, 0, 0x89, RDX, RCX, NOIDX, 0, -4, True)  # mov dword [rcx - 4], edx
    p = entered(b, p, jq_addr)
    if cross:
        p = lea(b, p, R14, R14, (t >> 12) << 12)
    p = alu_ri(b, p, ADD, R8, BODY, 1)
    p = jmp_r(b, p, R8)
    patch32(b, g0, p)
    patch32(b, m1, p)
    patch32(b, m2, p)
    patch32(b, m3, p)
    return p


@njit(cache=True, nogil=True)
def carve(w, q, n):
    """The n words of the scratch w from q, and the position after them."""
    return w[q: q + n], q + n


# ---- the translator ----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def translate(b, pos, ram16, rvc, poff, entry, mode, ram_base, ram_size, fp_exec, jt_addr, xbase,
              jq_addr, csr_exec, forward, fma):
    """Translate the region entered at page offset `entry` of the RAM page at offset `poff` for
    mode number `mode` (core.run's jmode) into b[pos:]; returns (start of the function, end),
    equal if the entry instruction is not translatable. `forward`: the entry is where code was
    resumed (after a trap return or an exit), likely the middle of a loop: leave out the code
    before it, so a backward branch chains to the loop's own region instead of making another
    copy of the loop for every point an interrupt returns to (each would have to get hot alone). The caller guarantees MAX_CODE bytes
    of room and pos >= SCRATCH. `jt_addr`, `xbase`, `jq_addr`: host addresses of the hart's
    translation table, of b and of the hart's counters (chaining); `fp_exec`, `csr_exec`: the
    helpers of jit/fpcall.py and jit/csrcall.py; `fma`: the host has FMA3.

    b[:SCRATCH] is the translator's own: where this buffer's shared exit tails and per-mode
    dispatchers are (zero: not made since the last flush) and its working arrays."""
    dpriv = (mode >> 2) & 3
    sum_ = (mode >> 4) & 1
    mxr = (mode >> 5) & 1
    dtlb = ((mode >> 7) & 1) != 0
    fp = ((mode >> 8) & 1) != 0
    forbid_u = 0 if dpriv == PRV_U else (-1 if sum_ else PTE_U)
    rmask = PTE_R | (PTE_X if mxr else 0)

    w = b[:SCRATCH].view(np.int64)
    q = W_WORK
    bs, q = carve(w, q, MAX_BLOCKS)
    bf, q = carve(w, q, MAX_BLOCKS)
    bn, q = carve(w, q, MAX_BLOCKS)
    be, q = carve(w, q, MAX_BLOCKS)
    bo, q = carve(w, q, MAX_BLOCKS)
    code_at, q = carve(w, q, MAX_BLOCKS)
    ii, q = carve(w, q, MAX_INSNS)
    io, q = carve(w, q, MAX_INSNS)
    il, q = carve(w, q, MAX_INSNS)
    nfx = MAX_INSNS * 2 + MAX_BLOCKS * 2
    fix, q = carve(w, q, 2 * nfx)                   # (rel32 position, block)
    fix = fix.reshape((nfx, 2))
    dsites, q = carve(w, q, nfx)                    # jumps to the dispatcher
    sites, q = carve(w, q, 16 * MAX_INSNS)          # (rel32 position, stub)
    sites = sites.reshape((8 * MAX_INSNS, 2))
    nstubs = 2 * MAX_BLOCK + 2                      # per block: two per CSR instruction at most
    stubs, q = carve(w, q, 3 * nstubs)              # (page offset, k, code)
    stubs = stubs.reshape((nstubs, 3))
    stub_at, q = carve(w, q, nstubs)
    work, q = carve(w, q, 2 * MAX_BLOCKS + 2)
    outs, q = carve(w, q, 16)
    hc, q = carve(w, q, 32)
    pg, q = carve(w, q, len(POOL))
    rr, q = carve(w, q, 1)
    gs, q = carve(w, q, 32)                         # a group's failed checks (rel32 position, -)
    gs = gs.reshape((16, 2))
    at = w[W_AT: W_AT + 2048]                       # kept all zero between calls
    nb, ni = discover(ram16, rvc, poff, entry, fp, bs, bf, bn, be, bo, ii, io, il, at, work,
                      entry if forward else 0)
    if ni == 0:
        for k in range(nb):
            at[bs[k] >> 1] = 0
        return pos, pos
    nfix = 0
    nd = 0

    p = pos
    # This buffer's shared pieces, made on first use after a flush.
    if w[W_TAILS] == 0:
        w[W_TAILS] = p
        p = exit_tail(b, p, JR_SIDE)
        w[W_TAILS + 1] = p
        p = exit_tail(b, p, JR_LIMIT)
        w[W_TAILS + 2] = p
        p = exit_tail(b, p, JR_MODE)
    side_tail = w[W_TAILS]
    limit_tail = w[W_TAILS + 1]
    mode_tail = w[W_TAILS + 2]
    if w[W_DISP + mode] == 0:
        w[W_DISP + mode] = p
        p = dispatch(b, p, mode, dtlb, ram_base, ram_size, jt_addr, xbase, len(b), jq_addr, outs)
    disp = w[W_DISP + mode]
    p = (p + 15) & ~15
    start = p
    p = push(b, p, RBX)
    p = push(b, p, RBP)
    p = push(b, p, R12)
    p = push(b, p, R13)
    p = push(b, p, R14)
    p = push(b, p, R15)
    p = alu_ri(b, p, SUB, RSP, 24, 1)       # 16-byte aligned for calls; [rsp] limit, [rsp+8] jpg
    p = mov_rr(b, p, RBX, RDI)
    p = mov_rr(b, p, R13, RSI)
    p = mov_rr(b, p, R12, RDX)
    p = mov_rr(b, p, RBP, RCX)
    p = mov_mr(b, p, RSP, 8, R8)
    p = mov_mr(b, p, RSP, 0, R9)
    p = mov_rm(b, p, R15, RBX, _S_IC)
    p = mov_rm(b, p, R14, RBX, _S_PC)
    p = enc(b, p, 1, 0x81, 5, R14, NOIDX, 0, 0, False)   # sub r14, imm32: fixed length
    p = u32(b, p, entry)
    if p - start != BODY:   # where dispatch enters a region (its entry block follows)
        for k in range(nb):
            at[bs[k] >> 1] = 0
        return start, start

    for k in range(nb):
        code_at[k] = p
        ns = 0
        nst = 0
        n = bn[k]
        if n == 0:
            p = exit_stub(b, p, bs[k], 0, side_tail)
            continue
        # The whole block must fit under the instruction limit, or the interpreter runs it.
        p = lea(b, p, RAX, R15, n)
        p = alu_rm(b, p, CMP, RAX, RSP, 0)
        p, a = jcc(b, p, CC_G)
        set_stub(stubs, nst, bs[k], 0, JR_LIMIT)
        ns = add_site(sites, ns, a, nst)
        nst += 1
        done = False
        known = -1          # the guest register rax holds (see alu); none at a block's start
        cache_clear(hc, pg)   # nor in the register cache: a block may be jumped to from anywhere
        rr[0] = 0
        gend = 0            # a group's slow path ends before instruction gend ...
        gdone = -1          # ... where its fast path's jmp goes (rel32 position; -1: none)
        for j in range(n):
            inst = ii[bf[k] + j]
            off = io[bf[k] + j]
            op = inst & 0x7F
            c = kind(inst, fp)
            if j == gend and gdone >= 0:
                # Both paths of the group meet: only what both left in host registers is
                # known (the fast path updated no cache), so nothing is.
                patch32(b, gdone, p)
                gdone = -1
                cache_clear(hc, pg)
                known = -1
            if (op == 0x03 or op == 0x23) and j >= gend and j < n - 1:
                g, lo, span = group(ii, bf[k] + j, bf[k] + n - 1, op)
                if g >= GROUP_MIN:
                    p, gdone = group_fast(b, p, ii, bf[k] + j, g, lo, span, op == 0x23, dtlb, rmask,
                                          forbid_u, ram_base, ram_size, hc, gs)
                    gend = j + g
                    known = -1  # the slow path starts where rax was overwritten
            nk = -1             # what rax holds after this instruction
            if j == n - 1 and (c == K_BRANCH or c == K_JAL or c == K_JALR):
                p = alu_ri(b, p, ADD, R15, n, 1)
                link = off + il[bf[k] + j]
                rd = (inst >> 7) & 31
                if c == K_BRANCH:
                    rs1 = (inst >> 15) & 31
                    rs2 = (inst >> 20) & 31
                    f3 = (inst >> 12) & 7
                    if rs1 != known:
                        p = ldc(b, p, RAX, rs1, hc)
                    if rs2 == 0:
                        p = alu_ri(b, p, CMP, RAX, 0, 1)
                    elif hc[rs2] >= 0:
                        p = alu_rr(b, p, CMP, RAX, hc[rs2], 1)
                    else:
                        p = alu_rm(b, p, CMP, RAX, RBX, 8 * rs2)
                    cc = CC_E
                    if f3 == 1:
                        cc = CC_NE
                    elif f3 == 4:
                        cc = CC_L
                    elif f3 == 5:
                        cc = CC_GE
                    elif f3 == 6:
                        cc = CC_B
                    elif f3 == 7:
                        cc = CC_AE
                    t = off + branch_offset(inst)
                    p, a = jcc(b, p, cc)
                    if 0 <= t < 4096 and at[t >> 1] != 0:
                        fix[nfix, 0] = a
                        fix[nfix, 1] = at[t >> 1] - 1
                        nfix += 1
                    else:
                        set_stub(stubs, nst, t, 0, JR_END)
                        ns = add_site(sites, ns, a, nst)
                        nst += 1
                    t = link
                elif c == K_JAL:
                    if rd != 0:
                        p = lea(b, p, RAX, R14, link)
                        p = mov_mr(b, p, RBX, 8 * rd, RAX)
                    t = off + jal_offset(inst)
                else:
                    if (inst >> 15) & 31 != known:
                        p = ldc(b, p, RAX, (inst >> 15) & 31, hc)
                    p = alu_ri(b, p, ADD, RAX, inst >> 20, 1)
                    p = alu_ri(b, p, AND, RAX, -2, 1)
                    if rd != 0:
                        p = lea(b, p, RCX, R14, link)
                        p = mov_mr(b, p, RBX, 8 * rd, RCX)
                    p, a = jmp(b, p)                    # to the dispatcher, target in rax
                    dsites[nd] = a
                    nd += 1
                    done = True
                    break
                # continue at t: a block of the region, or leave for the core to find it
                if 0 <= t < 4096 and at[t >> 1] != 0:
                    p, a = jmp(b, p)
                    fix[nfix, 0] = a
                    fix[nfix, 1] = at[t >> 1] - 1
                    nfix += 1
                else:
                    p = chain_exit(b, p, t, poff, mode, dtlb, ram_size, jt_addr, xbase, len(b),
                                   jq_addr)
                    p = lea(b, p, RAX, R14, t)
                    p, a = jmp(b, p)
                    dsites[nd] = a
                    nd += 1
                done = True
                break
            if c == K_ALU:
                p = alu(b, p, inst, off, known, hc)
                rd = (inst >> 7) & 31
                if rd != 0:
                    if op != 0x37:
                        known = rd
                        if read_later(ii, bf[k] + j + 1, bf[k] + n, rd):
                            p = cache_put(b, p, rd, hc, pg, rr)
                        else:
                            cache_drop(hc, pg, rd)
                    else:
                        cache_drop(hc, pg, rd)
                        if rd == known:
                            known = -1  # lui stored an immediate over the register rax held
                continue
            if c == K_LOAD or c == K_STORE:
                set_stub(stubs, nst, off, j, JR_SIDE)
                f3 = (inst >> 12) & 7
                rd = (inst >> 7) & 31
                imm = (inst >> 20) if c == K_LOAD else (((inst >> 25) << 5) | ((inst >> 7) & 31))
                if (inst >> 15) & 31 != known:
                    p = ldc(b, p, RAX, (inst >> 15) & 31, hc)
                if imm != 0:
                    p = alu_ri(b, p, ADD, RAX, imm, 1)
                size = 1 << (f3 & 3)
                p, ns = access(b, p, size, c == K_STORE, dtlb, rmask, forbid_u, ram_base,
                               ram_size, sites, ns, nst)
                nst += 1
                if c == K_LOAD:
                    if op == 0x07:
                        if size == 4:
                            p = load_x(b, p, 4, False, RAX, RBP, RAX, 0, 0)
                            p = mov_ri(b, p, RCX, NAN_BOX)
                            p = alu_rr(b, p, OR, RAX, RCX, 1)
                        else:
                            p = load_x(b, p, 8, False, RAX, RBP, RAX, 0, 0)
                        p = mov_mr(b, p, RBX, 8 * (F0 + rd), RAX)
                        p = or_mi(b, p, R13, 8 * CSR_MSTATUS, MS_FS)
                    else:
                        p = load_x(b, p, size, f3 < 4, RAX, RBP, RAX, 0, 0)
                        if rd != 0:
                            p = mov_mr(b, p, RBX, 8 * rd, RAX)
                            nk = rd
                            if read_later(ii, bf[k] + j + 1, bf[k] + n, rd):
                                p = cache_put(b, p, rd, hc, pg, rr)
                            else:
                                cache_drop(hc, pg, rd)
                else:
                    rs2 = (inst >> 20) & 31
                    if op == 0x27:
                        p = ld(b, p, RCX, F0 + rs2)
                    else:
                        p = ldc(b, p, RCX, rs2, hc)
                    p = store_x(b, p, size, RCX, RBP, RAX, 0, 0)
            elif c == K_AMO:
                set_stub(stubs, nst, off, j, JR_SIDE)
                f5 = (inst >> 27) & 0x1F
                p = ld(b, p, RAX, (inst >> 15) & 31)
                p, ns = access(b, p, 4 << ((inst >> 12) & 1), f5 != 2, dtlb, rmask, forbid_u,
                               ram_base, ram_size, sites, ns, nst, True)
                nst += 1
                p = amo(b, p, inst, ram_base)
                cache_clear(hc, pg)     # rdi, and rd written in memory
            elif c == K_CSR:
                # csrcall.csr_exec(s, c, tlb, inst) with pc and the count of this instruction
                # written (counters read them): 0 done; 1 illegal, nothing written: leave
                # before it; 2 written: leave after it, for the core to recompute its mode
                # and look for interrupts (JR_MODE), as the interpreter does after a write.
                p = lea(b, p, RAX, R14, off)
                p = mov_mr(b, p, RBX, _S_PC, RAX)
                p = lea(b, p, RAX, R15, j)
                p = mov_mr(b, p, RBX, _S_IC, RAX)
                p = mov_rr(b, p, RDI, RBX)
                p = mov_rr(b, p, RSI, R13)
                p = mov_rr(b, p, RDX, R12)
                p = mov_ri(b, p, RCX, inst)
                p = mov_ri(b, p, RAX, csr_exec)
                p = call_r(b, p, RAX)
                for code in (JR_SIDE, JR_MODE):
                    if code == JR_SIDE:
                        set_stub(stubs, nst, off, j, code)
                    else:
                        set_stub(stubs, nst, off + il[bf[k] + j], j + 1, code)
                    p = alu_ri(b, p, CMP, RAX, 1 if code == JR_SIDE else 2, 1)
                    p, a = jcc(b, p, CC_E)
                    ns = add_site(sites, ns, a, nst)
                    nst += 1
                cache_clear(hc, pg)     # a call: caller-saved registers clobbered
            elif c == K_FENCE:
                # x86 keeps every order but store -> load (SDM 8.2.2): FENCE with a W
                # predecessor and an R successor needs mfence for other harts to agree.
                if ((inst >> 24) & 1) != 0 and ((inst >> 21) & 1) != 0:
                    b[p] = 0x0F
                    b[p + 1] = 0xAE
                    b[p + 2] = 0xF0
                    p += 3
            elif c == K_FP:
                # fpcall.fp_exec(s, c, inst): 0 done, else illegal form (nothing written)
                set_stub(stubs, nst, off, j, JR_SIDE)
                p, fast_done = fp_fast(b, p, inst, fma)
                p = mov_rr(b, p, RDI, RBX)
                p = mov_rr(b, p, RSI, R13)
                p = mov_ri(b, p, RDX, inst)
                p = mov_ri(b, p, RAX, fp_exec)
                p = call_r(b, p, RAX)
                p = alu_rr(b, p, OR, RAX, RAX, 1)
                p, a = jcc(b, p, CC_NE)
                ns = add_site(sites, ns, a, nst)
                nst += 1
                if fast_done >= 0:
                    patch32(b, fast_done, p)
                cache_clear(hc, pg)     # a call, and integer results (fcvt, fmv, compares)
            known = nk
        if not done:
            p = alu_ri(b, p, ADD, R15, n, 1)
            t = bo[k]
            if be[k] == E_FALL and 0 <= t < 4096 and at[t >> 1] != 0:
                p, a = jmp(b, p)
                fix[nfix, 0] = a
                fix[nfix, 1] = at[t >> 1] - 1
                nfix += 1
            elif be[k] == E_FALL:
                p = chain_exit(b, p, t, poff, mode, dtlb, ram_size, jt_addr, xbase, len(b),
                               jq_addr)
                p = lea(b, p, RAX, R14, t)
                p, a = jmp(b, p)
                dsites[nd] = a
                nd += 1
            else:
                p = exit_stub(b, p, t, 0, side_tail)
        # this block's out-of-line exits
        for q in range(nst):
            stub_at[q] = p
            if stubs[q, 2] == JR_END:
                p = chain_exit(b, p, stubs[q, 0], poff, mode, dtlb, ram_size, jt_addr, xbase,
                               len(b), jq_addr)
                p = lea(b, p, RAX, R14, stubs[q, 0])
                p, a = jmp(b, p)
                dsites[nd] = a
                nd += 1
            else:
                tail = side_tail
                if stubs[q, 2] == JR_LIMIT:
                    tail = limit_tail
                elif stubs[q, 2] == JR_MODE:
                    tail = mode_tail
                p = exit_stub(b, p, stubs[q, 0], stubs[q, 1], tail)
        for r in range(ns):
            patch32(b, sites[r, 0], stub_at[sites[r, 1]])
    for q in range(nfix):
        patch32(b, fix[q, 0], code_at[fix[q, 1]])
    for q in range(nd):
        patch32(b, dsites[q], disp)
    for k in range(nb):
        at[bs[k] >> 1] = 0
    return start, p
