"""x86-64 instruction encoding for the template translator: bytes into a uint8 buffer.

Each function writes one instruction at position `p` of `b` and returns the position after
it. Only the forms the translator uses are here (Intel SDM vol. 2, chapter 2: REX prefix,
ModRM, SIB). Registers are numbered as the hardware does: rax=0 rcx=1 rdx=2 rbx=3 rsp=4
rbp=5 rsi=6 rdi=7 r8..r15=8..15.
"""

from numba import njit

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = 0, 1, 2, 3, 4, 5, 6, 7
R8, R9, R10, R11, R12, R13, R14, R15 = 8, 9, 10, 11, 12, 13, 14, 15
NOIDX = -1

# Opcodes of the "op r/m64, r64" group (SDM: 01 add, 09 or, 21 and, 29 sub, 31 xor, 39 cmp);
# op >> 3 is the /digit of the matching "op r/m64, imm" (81 /n, 83 /n) form.
ADD, OR, AND, SUB, XOR, CMP = 0x01, 0x09, 0x21, 0x29, 0x31, 0x39
# Shift /digits (C1 /n ib, D3 /n by cl).
SHL, SHR, SAR = 4, 5, 7
# Condition codes (jcc 0F 80+cc, setcc 0F 90+cc).
CC_B, CC_AE, CC_E, CC_NE, CC_L, CC_GE, CC_LE, CC_G = 0x2, 0x3, 0x4, 0x5, 0xC, 0xD, 0xE, 0xF
CC_A, CC_BE = 0x7, 0x6


@njit(cache=True, nogil=True)
def u8(b, p, v):
    b[p] = v & 0xFF
    return p + 1


@njit(cache=True, nogil=True)
def u32(b, p, v):
    for k in range(4):
        b[p + k] = (v >> (8 * k)) & 0xFF
    return p + 4


@njit(cache=True, nogil=True)
def u64(b, p, v):
    for k in range(8):
        b[p + k] = (v >> (8 * k)) & 0xFF
    return p + 8


@njit(cache=True, nogil=True)
def patch32(b, at, target):
    """Point the rel32 field at `at` (4 bytes, relative to its end) to `target`."""
    u32(b, at, target - (at + 4))


@njit(cache=True, nogil=True)
def enc(b, p, w, op, reg, base, index, scale, disp, mem):
    """One ModRM instruction: optional REX (W, R, X, B), opcode (one byte, or 0F xx given as
    0x0Fxx), ModRM and, for memory operands, SIB and displacement. `mem` false: register
    direct with `base` the r/m register."""
    rex = 0x40 | (w << 3) | (((reg >> 3) & 1) << 2) | ((base >> 3) & 1)
    if index >= 0:
        rex |= ((index >> 3) & 1) << 1
    if rex != 0x40:
        b[p] = rex
        p += 1
    if op > 0xFF:
        b[p] = op >> 8
        p += 1
    b[p] = op & 0xFF
    p += 1
    r = reg & 7
    if not mem:
        b[p] = 0xC0 | (r << 3) | (base & 7)
        return p + 1
    lo = base & 7
    if disp == 0 and lo != 5:
        mod = 0
    elif -128 <= disp <= 127:
        mod = 1
    else:
        mod = 2
    if index >= 0 or lo == 4:
        b[p] = (mod << 6) | (r << 3) | 4
        ix = (index & 7) if index >= 0 else 4
        b[p + 1] = (scale << 6) | (ix << 3) | lo
        p += 2
    else:
        b[p] = (mod << 6) | (r << 3) | lo
        p += 1
    if mod == 1:
        b[p] = disp & 0xFF
        p += 1
    elif mod == 2:
        p = u32(b, p, disp)
    return p


# ---- moves -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def mov_rm(b, p, dst, base, disp):
    """mov dst, [base + disp] (64-bit)."""
    return enc(b, p, 1, 0x8B, dst, base, NOIDX, 0, disp, True)


@njit(cache=True, nogil=True)
def mov_mr(b, p, base, disp, src):
    """mov [base + disp], src (64-bit)."""
    return enc(b, p, 1, 0x89, src, base, NOIDX, 0, disp, True)


@njit(cache=True, nogil=True)
def mov_mi(b, p, base, disp, imm):
    """mov qword [base + disp], imm32 (sign-extended)."""
    p = enc(b, p, 1, 0xC7, 0, base, NOIDX, 0, disp, True)
    return u32(b, p, imm)


@njit(cache=True, nogil=True)
def mov_rr(b, p, dst, src):
    return enc(b, p, 1, 0x89, src, dst, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def mov_ri(b, p, dst, imm):
    """dst = imm (64-bit), in the shortest encoding."""
    if 0 <= imm <= 0xFFFFFFFF:              # mov r32, imm32 zero-extends
        if dst >= 8:
            b[p] = 0x41
            p += 1
        b[p] = 0xB8 + (dst & 7)
        return u32(b, p + 1, imm)
    if -(1 << 31) <= imm < (1 << 31):       # REX.W C7 /0: sign-extended imm32
        p = enc(b, p, 1, 0xC7, 0, dst, NOIDX, 0, 0, False)
        return u32(b, p, imm)
    b[p] = 0x48 | ((dst >> 3) & 1)          # REX.W B8+r io
    b[p + 1] = 0xB8 + (dst & 7)
    return u64(b, p + 2, imm)


@njit(cache=True, nogil=True)
def movabs(b, p, dst, imm):
    """dst = imm in the 10-byte form (REX.W B8+r io) whatever its value, so the immediate can
    be patched later; returns (position after, position of the imm64)."""
    b[p] = 0x48 | ((dst >> 3) & 1)
    b[p + 1] = 0xB8 + (dst & 7)
    return u64(b, p + 2, imm), p + 2


@njit(cache=True, nogil=True)
def lea(b, p, dst, base, disp):
    """dst = base + disp (64-bit, flags untouched)."""
    return enc(b, p, 1, 0x8D, dst, base, NOIDX, 0, disp, True)


@njit(cache=True, nogil=True)
def lea_x(b, p, dst, base, index):
    """dst = base + index."""
    return enc(b, p, 1, 0x8D, dst, base, index, 0, 0, True)


@njit(cache=True, nogil=True)
def movsxd(b, p, dst, src):
    """dst = sign-extended low 32 bits of src."""
    return enc(b, p, 1, 0x63, dst, src, NOIDX, 0, 0, False)


# ---- arithmetic --------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def alu_rr(b, p, op, dst, src, w):
    """dst = dst op src (op: ADD, OR, AND, SUB, XOR, CMP; w=0: 32-bit)."""
    return enc(b, p, w, op, src, dst, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def alu_rm(b, p, op, dst, base, disp):
    """dst = dst op [base + disp] (64-bit; the 03/0B/23/2B/33/3B "r64, r/m64" forms)."""
    return enc(b, p, 1, op + 2, dst, base, NOIDX, 0, disp, True)


@njit(cache=True, nogil=True)
def alu_ri(b, p, op, dst, imm, w):
    """dst = dst op imm (imm fits in a signed 32-bit field; sign-extended for w=1)."""
    if -128 <= imm <= 127:
        p = enc(b, p, w, 0x83, op >> 3, dst, NOIDX, 0, 0, False)
        return u8(b, p, imm)
    p = enc(b, p, w, 0x81, op >> 3, dst, NOIDX, 0, 0, False)
    return u32(b, p, imm)


@njit(cache=True, nogil=True)
def shift_ri(b, p, kind, dst, n, w):
    p = enc(b, p, w, 0xC1, kind, dst, NOIDX, 0, 0, False)
    return u8(b, p, n)


@njit(cache=True, nogil=True)
def shift_cl(b, p, kind, dst, w):
    """dst shifted by cl; the hardware masks the count to 6 (w=1) or 5 bits, as RISC-V does."""
    return enc(b, p, w, 0xD3, kind, dst, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def imul_rr(b, p, dst, src, w):
    return enc(b, p, w, 0x0FAF, dst, src, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def unary(b, p, ext, r, w):
    """F7 /ext on a register: 2 not, 3 neg, 4 mul, 5 imul, 6 div, 7 idiv (rdx:rax forms)."""
    return enc(b, p, w, 0xF7, ext, r, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def cqo(b, p, w):
    """Sign-extend rax into rdx (w=1, cqo) or eax into edx (cdq)."""
    if w:
        b[p] = 0x48
        p += 1
    b[p] = 0x99
    return p + 1


@njit(cache=True, nogil=True)
def setcc_zx(b, p, cc, dst):
    """dst = condition cc ? 1 : 0 (setcc dst8; movzx dst32, dst8). dst must be rax..rbx."""
    b[p] = 0x0F
    b[p + 1] = 0x90 + cc
    b[p + 2] = 0xC0 | dst
    return enc(b, p + 3, 0, 0x0FB6, dst, dst, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def test_ri(b, p, r, imm):
    """Flags of r & imm32 (sign-extended)."""
    p = enc(b, p, 1, 0xF7, 0, r, NOIDX, 0, 0, False)
    return u32(b, p, imm)


# ---- memory with index: [base + index * 2^scale + disp] -------------------------------------------
@njit(cache=True, nogil=True)
def load_x(b, p, size, signed, dst, base, index, scale, disp):
    """dst = the size-byte value at the address, zero- or sign-extended to 64 bits."""
    if size == 1:
        return enc(b, p, 1 if signed else 0, 0x0FBE if signed else 0x0FB6, dst, base, index, scale,
                   disp, True)
    if size == 2:
        return enc(b, p, 1 if signed else 0, 0x0FBF if signed else 0x0FB7, dst, base, index, scale,
                   disp, True)
    if size == 4:
        return enc(b, p, 1 if signed else 0, 0x63 if signed else 0x8B, dst, base, index, scale,
                   disp, True)
    return enc(b, p, 1, 0x8B, dst, base, index, scale, disp, True)


@njit(cache=True, nogil=True)
def store_x(b, p, size, src, base, index, scale, disp):
    """The low `size` bytes of src to the address (src must be rax..rbx for a byte store)."""
    if size == 1:
        return enc(b, p, 0, 0x88, src, base, index, scale, disp, True)
    if size == 2:
        b[p] = 0x66
        return enc(b, p + 1, 0, 0x89, src, base, index, scale, disp, True)
    return enc(b, p, 1 if size == 8 else 0, 0x89, src, base, index, scale, disp, True)


@njit(cache=True, nogil=True)
def cmp_rx(b, p, r, base, index, scale, disp):
    """Flags of r - [base + index * 2^scale + disp] (64-bit)."""
    return enc(b, p, 1, 0x3B, r, base, index, scale, disp, True)


@njit(cache=True, nogil=True)
def test_m8(b, p, base, index, scale, disp, imm):
    """Flags of byte [address] & imm8."""
    p = enc(b, p, 0, 0xF6, 0, base, index, scale, disp, True)
    return u8(b, p, imm)


@njit(cache=True, nogil=True)
def or_mi(b, p, base, disp, imm):
    """qword [base + disp] |= imm32 (sign-extended)."""
    p = enc(b, p, 1, 0x81, 1, base, NOIDX, 0, disp, True)
    return u32(b, p, imm)


# ---- control -----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def jcc(b, p, cc):
    """jcc rel32 to be patched; returns (position after, position of the rel32)."""
    b[p] = 0x0F
    b[p + 1] = 0x80 + cc
    return p + 6, p + 2


@njit(cache=True, nogil=True)
def jmp(b, p):
    """jmp rel32 to be patched; returns (position after, position of the rel32)."""
    b[p] = 0xE9
    return p + 5, p + 1


@njit(cache=True, nogil=True)
def jcc8(b, p, cc):
    """jcc rel8 to be patched: (position after, position of the rel8)."""
    b[p] = 0x70 + cc
    return p + 2, p + 1


@njit(cache=True, nogil=True)
def jmp8(b, p):
    """jmp rel8 to be patched: (position after, position of the rel8)."""
    b[p] = 0xEB
    return p + 2, p + 1


@njit(cache=True, nogil=True)
def patch8(b, at, target):
    """Point the rel8 field at `at` to `target` (within -128..127 of its end)."""
    b[at] = (target - (at + 1)) & 0xFF


@njit(cache=True, nogil=True)
def call_r(b, p, r):
    """call r (indirect, absolute address in a register)."""
    return enc(b, p, 0, 0xFF, 2, r, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def jmp_r(b, p, r):
    """jmp r (indirect)."""
    return enc(b, p, 0, 0xFF, 4, r, NOIDX, 0, 0, False)


@njit(cache=True, nogil=True)
def op_plus_r(b, p, op, r):
    """A one-byte opcode with the register in its low bits (push 50+r, pop 58+r), REX.B for r8+."""
    if r >= 8:
        b[p] = 0x41
        p += 1
    b[p] = op + (r & 7)
    return p + 1


@njit(cache=True, nogil=True)
def push(b, p, r):
    return op_plus_r(b, p, 0x50, r)


@njit(cache=True, nogil=True)
def pop(b, p, r):
    return op_plus_r(b, p, 0x58, r)


@njit(cache=True, nogil=True)
def ret(b, p):
    b[p] = 0xC3
    return p + 1
