"""LLVM IR for a region (see region.py): the interpreter's semantics, instruction by instruction.

One function per region:

    i64 @name(i8* s, i8* c, i8* tlb, i8* ram, i8* jpg, i64 limit)

It reads the guest registers it uses from `s` into locals (LLVM keeps them in host registers),
runs blocks while the instruction count stays within `limit`, and on every way out writes the
registers back, s[PC] and s[ICOUNT], and returns a JR_* code (layout.py). Every data access
goes through the software TLB with the interpreter's permission rules and is bounds-checked
against guest RAM; a miss, MMIO, misalignment or a store to a page holding translations is a
side exit *before* the instruction, with exact state, and the interpreter runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from wirt.cpu import layout as L
from wirt.cpu.jit.region import Block, Insn, branch_target, jal_target

# Declarations every module of regions starts with.
MODULE_HEADER = ("declare double @llvm.fma.f64(double, double, double)\n"
                 "declare float @llvm.fma.f32(float, float, float)\n")
I64_MIN = -(1 << 63)
# OP-FP funct7 >> 2 of the operations with an inline fast path, either precision: fadd, fsub,
# fmul, fdiv.
_FAST = {0: "fadd", 1: "fsub", 2: "fmul", 3: "fdiv"}
NAN_BOX = -(1 << 32)


@dataclass(frozen=True)
class Mode:
    """What the translation depends on besides the code bytes (part of the table key)."""

    dtlb: bool      # data accesses go through the TLB (translation or PMP on)
    rmask: int      # PTE bits that allow a load (R, or R|X with MXR)
    forbid_u: int   # a TLB hit needs (PTE.U) != forbid_u; -1 allows both
    fp: bool        # mstatus.FS != Off

    @staticmethod
    def from_key(mode: int) -> "Mode":
        """Decode the mode number the core computes (core.jit_mode)."""
        priv = mode & 3
        dpriv = (mode >> 2) & 3
        sum_ = (mode >> 4) & 1
        mxr = (mode >> 5) & 1
        dtlb = bool((mode >> 7) & 1)
        fp = bool((mode >> 8) & 1)
        del priv
        if dpriv == L.PRV_U:
            forbid = 0
        elif sum_:
            forbid = -1
        else:
            forbid = L.PTE_U
        return Mode(dtlb, L.PTE_R | (L.PTE_X if mxr else 0), forbid, fp)


class _Fn:
    """Text of one LLVM function under construction."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.tail: list[str] = []   # side-exit stubs, emitted after the blocks
        self.n = 0

    def t(self) -> str:
        self.n += 1
        return f"%t{self.n}"

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def op(self, text: str) -> str:
        r = self.t()
        self.lines.append(f"  {r} = {text}")
        return r

    def emit(self, text: str) -> None:
        self.lines.append(text)


def _regs(blocks: dict[int, Block]) -> tuple[set[int], set[int]]:
    """Guest register slots (x1..x31 as 1..31, f0..f31 as 32..63) read and written."""
    used: set[int] = set()
    written: set[int] = set()
    for b in blocks.values():
        for i in b.insns:
            inst = i.inst
            op = inst & 0x7F
            rd = (inst >> 7) & 31
            rs1 = (inst >> 15) & 31
            rs2 = (inst >> 20) & 31
            if op in (0x37, 0x17, 0x6F):
                srcs, dst = [], rd
            elif op in (0x13, 0x1B, 0x03, 0x67):
                srcs, dst = [rs1], rd
            elif op in (0x33, 0x3B):
                srcs, dst = [rs1, rs2], rd
            elif op == 0x23:
                srcs, dst = [rs1, rs2], 0
            elif op == 0x63:
                srcs, dst = [rs1, rs2], 0
            elif op == 0x07:
                srcs, dst = [rs1], L.F0 + rd
            elif op == 0x27:
                srcs, dst = [rs1, L.F0 + rs2], 0
            elif op in (0x53, 0x43, 0x47, 0x4B, 0x4F):   # the inline fast path's f registers
                srcs, dst = [L.F0 + rs1, L.F0 + rs2, L.F0 + ((inst >> 27) & 31)], L.F0 + rd
            else:
                srcs, dst = [], 0
            used.update(r for r in srcs if r != 0)
            if dst != 0:
                used.add(dst)
                written.add(dst)
    return used, written


def access_check(f: _Fn, m: "Mode", base: int, nram: int, addr: str, size: int, store: bool,
                 fail: str) -> str:
    """Emit the checks of a data access at `addr` and return its RAM offset; any failure
    branches to label `fail`: a TLB miss or a permission the mode lacks (the interpreter's
    rules, priv spec 4.3.1), an address outside RAM (MMIO), an access crossing into the next
    page, and for stores a
    page holding translations or HTIF's tohost (%tohost)."""
    if m.dtlb:
        vpn = f.op(f"ashr i64 {addr}, 12")
        idx = f.op(f"and i64 {vpn}, {L.TLB_ENTRIES - 1}")
        tagp = f.op(f"getelementptr i64, i64* %tlb, i64 {idx}")
        tag = f.op(f"load i64, i64* {tagp}")
        idx2 = f.op(f"add i64 {idx}, {L.TLB_ENTRIES}")
        ep = f.op(f"getelementptr i64, i64* %tlb, i64 {idx2}")
        e = f.op(f"load i64, i64* {ep}")
        ok = f.op(f"icmp eq i64 {tag}, {vpn}")
        if store:
            wd = L.PTE_W | L.PTE_D
            p = f.op(f"and i64 {e}, {wd}")
            ok2 = f.op(f"icmp eq i64 {p}, {wd}")
        else:
            p = f.op(f"and i64 {e}, {m.rmask}")
            ok2 = f.op(f"icmp ne i64 {p}, 0")
        ok = f.op(f"and i1 {ok}, {ok2}")
        if m.forbid_u != -1:
            u = f.op(f"and i64 {e}, {L.PTE_U}")
            ok3 = f.op(f"icmp ne i64 {u}, {m.forbid_u}")
            ok = f.op(f"and i1 {ok}, {ok3}")
        hit = f.label()
        f.emit(f"  br i1 {ok}, label %{hit}, label %{fail}")
        f.emit(f"{hit}:")
        pg = f.op(f"and i64 {e}, -4096")
        lo = f.op(f"and i64 {addr}, 4095")
        pa = f.op(f"or i64 {pg}, {lo}")
    else:
        pa = addr
    off = f.op(f"sub i64 {pa}, {base}")
    ok = f.op(f"icmp ule i64 {off}, {nram - size}")
    if size > 1:   # misaligned within a page is one host access; across pages the interpreter's
        al = f.op(f"and i64 {off}, 4095")
        ok2 = f.op(f"icmp ule i64 {al}, {4096 - size}")
        ok = f.op(f"and i1 {ok}, {ok2}")
    go = f.label()
    f.emit(f"  br i1 {ok}, label %{go}, label %{fail}")
    f.emit(f"{go}:")
    if store:
        # Only now is `off` known to lie in RAM, so its page word may be read.
        # A store to a page holding translations, or to HTIF's tohost, is the interpreter's.
        pgi = f.op(f"lshr i64 {off}, 12")
        jp = f.op(f"getelementptr i64, i64* %jpg, i64 {pgi}")
        jw = f.op(f"load i64, i64* {jp}")
        code = f.op(f"and i64 {jw}, 1")
        ok3 = f.op(f"icmp eq i64 {code}, 0")
        ok4 = f.op(f"icmp ne i64 {pa}, %tohost")
        ok = f.op(f"and i1 {ok3}, {ok4}")
        go = f.label()
        f.emit(f"  br i1 {ok}, label %{go}, label %{fail}")
        f.emit(f"{go}:")
    return off


def helper_name(m: "Mode", size: int, store: bool) -> str:
    """The module helper for one kind of access in one mode."""
    return (f"{'st' if store else 'ld'}{size}_{int(m.dtlb)}_{m.rmask}_"
            f"{'a' if m.forbid_u == -1 else m.forbid_u}")


def helper_ir(m: "Mode", size: int, store: bool, base: int, nram: int) -> str:
    """An internal function doing `access_check`: the RAM offset, or -1 for a side exit."""
    f = _Fn()
    off = access_check(f, m, base, nram, "%addr", size, store, "fail")
    args = "i64* %tlb, i64* %jpg, i64 %tohost, " if store else "i64* %tlb, "
    return "\n".join([f"define internal fastcc i64 @{helper_name(m, size, store)}({args}i64 %addr) "
                      "nounwind {", "entry:", *f.lines, f"  ret i64 {off}", "fail:", "  ret i64 -1",
                      "}"]) + "\n"


class RegionEmitter:
    """Emits one region as an LLVM function (see the module docstring)."""

    def __init__(self, name: str, blocks: dict[int, Block], entry: int, mode: Mode,
                 ram_base: int, ram_size: int, fp_exec: int = 0,
                 helpers: dict | None = None) -> None:
        """`fp_exec`: host address of jit/fpcall.fp_exec (FP arithmetic), if any is used;
        `helpers`: the module's access helpers (helper_ir), to call instead of inline checks,
        filled in with those this region needs (None: inline checks)."""
        self.fp_exec = fp_exec
        self.outline = helpers is not None
        self.helpers = helpers if helpers is not None else {}
        self.name = name
        self.blocks = blocks
        self.entry = entry
        self.mode = mode
        self.base = ram_base
        self.nram = ram_size
        self.f = _Fn()

    # ---- registers -------------------------------------------------------------------------
    # Guest registers stay in the state array: a read is a load, a write a store. Side exits
    # then only write pc and the count, and LLVM's passes (level 2) keep hot registers in host
    # registers within loops (the arrays are noalias).
    def rd(self, r: int) -> str:
        if r == 0:
            return "0"
        return self.f.op(f"load i64, i64* %p{r}")

    def wr(self, r: int, v: str) -> None:
        if r != 0:
            self.f.emit(f"  store i64 {v}, i64* %p{r}")

    def vpc(self, off: int) -> str:
        return self.f.op(f"add i64 %vbase, {off}")

    # ---- exits -------------------------------------------------------------------------------
    def exit_to(self, pc: str, ic: str, code: int) -> str:
        """A stub that leaves with pc, icount and code; returns its label."""
        lab = self.f.label()
        self.f.tail += [f"{lab}:", f"  store i64 {pc}, i64* %pcp", f"  store i64 {ic}, i64* %icp",
                        f"  ret i64 {code}"]
        return lab

    def side_exit(self, off: int, ic: str) -> str:
        """Leave before the instruction at page offset `off` for the interpreter."""
        saved = self.f.lines
        self.f.lines = []
        pc = self.vpc(off)
        pre = self.f.lines
        self.f.lines = saved
        lab = self.f.label()
        self.f.tail += [f"{lab}:", *pre, f"  store i64 {pc}, i64* %pcp",
                        f"  store i64 {ic}, i64* %icp", f"  ret i64 {L.JR_SIDE}"]
        return lab

    def goto(self, target: int, ic: str, final_pc: str | None = None) -> None:
        """Continue at a page offset: a block of this region, or leave at a block boundary."""
        f = self.f
        if final_pc is None and 0 <= target < 4096 and target in self.blocks:
            f.emit(f"  store i64 {ic}, i64* %ic")
            f.emit(f"  br label %b{target}")
            return
        pc = final_pc if final_pc is not None else self.vpc(target)
        f.emit(f"  br label %{self.exit_to(pc, ic, L.JR_END)}")

    # ---- memory ------------------------------------------------------------------------------
    def ram_offset(self, addr: str, size: int, store: bool, side: str) -> str:
        """The RAM offset of a data access, after the TLB, permission, range and alignment checks;
        a failed check branches to `side`. Inline, or (`outline`) a call of a module helper that
        returns -1 on failure: the IR of cold code is then half the size, so it compiles in
        about half the time, at the cost of a call per access."""
        f = self.f
        if not self.outline:
            return access_check(f, self.mode, self.base, self.nram, addr, size, store, side)
        name = helper_name(self.mode, size, store)
        self.helpers[name] = (self.mode, size, store)
        args = "i64* %tlb, i64* %jpg, i64 %tohost, " if store else "i64* %tlb, "
        off = f.op(f"call fastcc i64 @{name}({args}i64 {addr})")
        ok = f.op(f"icmp sge i64 {off}, 0")
        go = f.label()
        f.emit(f"  br i1 {ok}, label %{go}, label %{side}")
        f.emit(f"{go}:")
        return off

    def mark_fs_dirty(self) -> None:
        f = self.f
        ms = f.op("load i64, i64* %mstatus")
        ms2 = f.op(f"or i64 {ms}, {L.MS_FS}")
        f.emit(f"  store i64 {ms2}, i64* %mstatus")

    def load(self, inst: int, side: str) -> None:
        f = self.f
        op = inst & 0x7F
        f3 = (inst >> 12) & 7
        rd = (inst >> 7) & 31
        addr = f.op(f"add i64 {self.rd((inst >> 15) & 31)}, {inst >> 20}")
        size = 1 << (f3 & 3)
        off = self.ram_offset(addr, size, False, side)
        p = f.op(f"getelementptr i8, i8* %ram, i64 {off}")
        ty = f"i{8 * size}"
        if size > 1:
            p = f.op(f"bitcast i8* {p} to {ty}*")
        v = f.op(f"load {ty}, {ty}* {p}, align 1")
        if op == 0x07:
            if size == 4:
                z = f.op(f"zext i32 {v} to i64")
                v = f.op(f"or i64 {z}, {NAN_BOX}")
            self.wr(L.F0 + rd, v)
            self.mark_fs_dirty()
            return
        if size < 8:
            v = f.op(f"{'zext' if f3 >= 4 else 'sext'} {ty} {v} to i64")
        self.wr(rd, v)

    def store(self, inst: int, side: str) -> None:
        f = self.f
        op = inst & 0x7F
        f3 = (inst >> 12) & 7
        imm = ((inst >> 25) << 5) | ((inst >> 7) & 31)
        addr = f.op(f"add i64 {self.rd((inst >> 15) & 31)}, {imm}")
        rs2 = (inst >> 20) & 31
        val = self.rd(L.F0 + rs2 if op == 0x27 else rs2)
        size = 1 << f3
        off = self.ram_offset(addr, size, True, side)
        p = f.op(f"getelementptr i8, i8* %ram, i64 {off}")
        ty = f"i{8 * size}"
        if size > 1:
            p = f.op(f"bitcast i8* {p} to {ty}*")
        if size < 8:
            val = f.op(f"trunc i64 {val} to {ty}")
        f.emit(f"  store {ty} {val}, {ty}* {p}, align 1")

    def normal(self, v: str, single: bool = False, boxed: bool = False) -> str:
        """i1: `v` holds a normal, non-zero number: exponent 1..0x7FE of binary64, or, `single`,
        1..0xFE of binary32 in the low 32 bits, NaN-boxed (upper 32 bits all ones, spec 12.2)
        when `boxed`."""
        f = self.f
        top = 255 if single else 2047                     # exponent all ones: inf or NaN
        e = f.op(f"lshr i64 {v}, {23 if single else 52}")
        e = f.op(f"and i64 {e}, {top}")
        e = f.op(f"add i64 {e}, -1")
        ok = f.op(f"icmp ult i64 {e}, {top - 1}")
        if single and boxed:
            hi = f.op(f"lshr i64 {v}, 32")
            box = f.op(f"icmp eq i64 {hi}, 4294967295")
            ok = f.op(f"and i1 {ok}, {box}")
        return ok

    def fpop(self, inst: int, side: str) -> None:
        """An F/D arithmetic instruction: a call of fpcall.fp_exec on the state arrays; if it
        reports the form illegal (it then wrote nothing) the interpreter raises the exception.

        add/sub/mul/div and the four fused multiply-adds, in binary64 and binary32, first try
        the host's operation, as the interpreter's fast path does: with round-to-nearest-even
        and fflags.NX already set, normal operands and a normal result, the host's correctly
        rounded result is the answer and NX (already set) is the only flag it could raise
        (tininess is detected after rounding, so a normal result never underflows). Singles
        must be NaN-boxed; the result is boxed.
        """
        f = self.f
        op = inst & 0x7F
        rm = (inst >> 12) & 7
        f7 = (inst >> 25) & 0x7F
        fmt = f7 & 3
        fast = rm in (0, 7) and fmt <= 1 and (op != 0x53 or (f7 >> 2) in _FAST)
        single = fmt == 0
        ty = "float" if single else "double"
        done = f.label()
        slow = f.label()
        if fast:
            fc = f.op(f"load i64, i64* %fcsr")
            mask = 1 | (0xE0 if rm == 7 else 0)   # NX, and frm == RNE for the dynamic mode
            m = f.op(f"and i64 {fc}, {mask}")
            ok = f.op(f"icmp eq i64 {m}, 1")
            regs = [(inst >> 15) & 31, (inst >> 20) & 31] + ([(inst >> 27) & 31] if op != 0x53 else [])
            vals = []
            for r in regs:
                v = self.rd(L.F0 + r)
                if single:
                    ok = f.op(f"and i1 {ok}, {self.normal(v, True, True)}")
                    v32 = f.op(f"trunc i64 {v} to i32")
                    vals.append(f.op(f"bitcast i32 {v32} to float"))
                else:
                    ok = f.op(f"and i1 {ok}, {self.normal(v)}")
                    vals.append(f.op(f"bitcast i64 {v} to double"))
            if op == 0x53:
                res = f.op(f"{_FAST[f7 >> 2]} {ty} {vals[0]}, {vals[1]}")
            else:
                a, b, c = vals
                if op in (0x4B, 0x4F):       # fnmsub, fnmadd: -(a*b)
                    a = f.op(f"fneg {ty} {a}")
                if op in (0x47, 0x4F):       # fmsub, fnmadd: - c
                    c = f.op(f"fneg {ty} {c}")
                fma = "llvm.fma.f32" if single else "llvm.fma.f64"
                res = f.op(f"call {ty} @{fma}({ty} {a}, {ty} {b}, {ty} {c})")
            if single:
                r32 = f.op(f"bitcast float {res} to i32")
                ri = f.op(f"zext i32 {r32} to i64")
                ok = f.op(f"and i1 {ok}, {self.normal(ri, True)}")
                ri = f.op(f"or i64 {ri}, {NAN_BOX}")
            else:
                ri = f.op(f"bitcast double {res} to i64")
                ok = f.op(f"and i1 {ok}, {self.normal(ri)}")
            commit = f.label()
            f.emit(f"  br i1 {ok}, label %{commit}, label %{slow}")
            f.emit(f"{commit}:")
            self.wr(L.F0 + ((inst >> 7) & 31), ri)
            ms = f.op("load i64, i64* %mstatus")
            fs = f.op(f"and i64 {ms}, {L.MS_FS}")
            dirty = f.op(f"icmp eq i64 {fs}, {L.MS_FS}")
            setd = f.label()
            f.emit(f"  br i1 {dirty}, label %{done}, label %{setd}")
            f.emit(f"{setd}:")
            ms2 = f.op(f"or i64 {ms}, {L.MS_FS}")
            f.emit(f"  store i64 {ms2}, i64* %mstatus")
            f.emit(f"  br label %{done}")
        else:
            f.emit(f"  br label %{slow}")
        f.emit(f"{slow}:")
        fn = f"inttoptr (i64 {self.fp_exec} to i64 (i64*, i64*, i64)*)"
        r = f.op(f"call i64 {fn}(i64* %s, i64* %c, i64 {inst})")
        bad = f.op(f"icmp ne i64 {r}, 0")
        f.emit(f"  br i1 {bad}, label %{side}, label %{done}")
        f.emit(f"{done}:")

    # ---- integer -------------------------------------------------------------------------------
    def muldiv64(self, f3: int, a: str, b: str) -> str:
        f = self.f
        if f3 == 0:
            return f.op(f"mul i64 {a}, {b}")
        if f3 in (1, 2, 3):
            ea = "sext" if f3 in (1, 2) else "zext"
            eb = "sext" if f3 == 1 else "zext"
            wa = f.op(f"{ea} i64 {a} to i128")
            wb = f.op(f"{eb} i64 {b} to i128")
            p = f.op(f"mul i128 {wa}, {wb}")
            h = f.op(f"lshr i128 {p}, 64")
            return f.op(f"trunc i128 {h} to i64")
        return self.divrem(f3, a, b, 64)

    def divrem(self, f3: int, a: str, b: str, bits: int) -> str:
        """div/divu/rem/remu (f3 4..7) with the spec's results for /0 and overflow (M 7.2)."""
        f = self.f
        ty = f"i{bits}"
        zero = f.op(f"icmp eq {ty} {b}, 0")
        mn = -(1 << (bits - 1))
        if f3 in (4, 6):
            amin = f.op(f"icmp eq {ty} {a}, {mn}")
            bm1 = f.op(f"icmp eq {ty} {b}, -1")
            ovf = f.op(f"and i1 {amin}, {bm1}")
            bad = f.op(f"or i1 {zero}, {ovf}")
            sb = f.op(f"select i1 {bad}, {ty} 1, {ty} {b}")
            if f3 == 4:
                q = f.op(f"sdiv {ty} {a}, {sb}")
                q = f.op(f"select i1 {ovf}, {ty} {mn}, {ty} {q}")
                return f.op(f"select i1 {zero}, {ty} -1, {ty} {q}")
            r = f.op(f"srem {ty} {a}, {sb}")
            r = f.op(f"select i1 {ovf}, {ty} 0, {ty} {r}")
            return f.op(f"select i1 {zero}, {ty} {a}, {ty} {r}")
        sb = f.op(f"select i1 {zero}, {ty} 1, {ty} {b}")
        if f3 == 5:
            q = f.op(f"udiv {ty} {a}, {sb}")
            return f.op(f"select i1 {zero}, {ty} -1, {ty} {q}")
        r = f.op(f"urem {ty} {a}, {sb}")
        return f.op(f"select i1 {zero}, {ty} {a}, {ty} {r}")

    def alu(self, inst: int, pc_off: int) -> None:
        f = self.f
        op = inst & 0x7F
        rd = (inst >> 7) & 31
        f3 = (inst >> 12) & 7
        f7 = (inst >> 25) & 0x7F
        if rd == 0:
            return  # no side effect: every translated ALU form writes only rd (hints included)
        if op == 0x37:
            self.wr(rd, str((inst >> 12) << 12))
            return
        if op == 0x17:
            self.wr(rd, f.op(f"add i64 %vbase, {pc_off + ((inst >> 12) << 12)}"))
            return
        a = self.rd((inst >> 15) & 31)
        if op == 0x13:
            imm = inst >> 20
            if f3 == 0:
                v = f.op(f"add i64 {a}, {imm}")
            elif f3 == 1:
                v = f.op(f"shl i64 {a}, {imm & 63}")
            elif f3 in (2, 3):
                c = f.op(f"icmp {'slt' if f3 == 2 else 'ult'} i64 {a}, {imm}")
                v = f.op(f"zext i1 {c} to i64")
            elif f3 == 4:
                v = f.op(f"xor i64 {a}, {imm}")
            elif f3 == 5:
                v = f.op(f"{'ashr' if (imm >> 10) & 1 else 'lshr'} i64 {a}, {imm & 63}")
            elif f3 == 6:
                v = f.op(f"or i64 {a}, {imm}")
            else:
                v = f.op(f"and i64 {a}, {imm}")
            self.wr(rd, v)
            return
        if op == 0x1B:
            imm = inst >> 20
            a32 = f.op(f"trunc i64 {a} to i32")
            if f3 == 0:
                r = f.op(f"add i32 {a32}, {imm}")
            elif f3 == 1:
                r = f.op(f"shl i32 {a32}, {imm & 31}")
            else:
                r = f.op(f"{'ashr' if f7 == 0x20 else 'lshr'} i32 {a32}, {imm & 31}")
            self.wr(rd, f.op(f"sext i32 {r} to i64"))
            return
        b = self.rd((inst >> 20) & 31)
        if op == 0x33:
            if f7 == 1:
                self.wr(rd, self.muldiv64(f3, a, b))
                return
            if f7 == 0x20:
                if f3 == 0:
                    v = f.op(f"sub i64 {a}, {b}")
                else:
                    sh = f.op(f"and i64 {b}, 63")
                    v = f.op(f"ashr i64 {a}, {sh}")
                self.wr(rd, v)
                return
            if f3 in (1, 5):
                sh = f.op(f"and i64 {b}, 63")
                v = f.op(f"{'shl' if f3 == 1 else 'lshr'} i64 {a}, {sh}")
            elif f3 in (2, 3):
                c = f.op(f"icmp {'slt' if f3 == 2 else 'ult'} i64 {a}, {b}")
                v = f.op(f"zext i1 {c} to i64")
            else:
                name = {0: "add", 4: "xor", 6: "or", 7: "and"}[f3]
                v = f.op(f"{name} i64 {a}, {b}")
            self.wr(rd, v)
            return
        # OP-32
        a32 = f.op(f"trunc i64 {a} to i32")
        b32 = f.op(f"trunc i64 {b} to i32")
        if f7 == 1:
            if f3 == 0:
                r = f.op(f"mul i32 {a32}, {b32}")
            else:
                r = self.divrem(f3, a32, b32, 32)
        elif f3 == 0:
            r = f.op(f"{'sub' if f7 == 0x20 else 'add'} i32 {a32}, {b32}")
        else:
            sh = f.op(f"and i32 {b32}, 31")
            kind = "shl" if f3 == 1 else ("ashr" if f7 == 0x20 else "lshr")
            r = f.op(f"{kind} i32 {a32}, {sh}")
        self.wr(rd, f.op(f"sext i32 {r} to i64"))

    # ---- blocks ------------------------------------------------------------------------------
    def block(self, b: Block) -> None:
        f = self.f
        f.emit(f"b{b.start}:")
        n = len(b.insns)
        if n == 0:
            ic = f.op("load i64, i64* %ic")
            f.emit(f"  br label %{self.side_exit(b.start, ic)}")
            return
        icv = f.op("load i64, i64* %ic")
        nxt = f.op(f"add i64 {icv}, {n}")
        over = f.op(f"icmp sgt i64 {nxt}, %limit")
        lim = self.exit_to(self.vpc_in_tail(b.start), icv, L.JR_LIMIT)
        go = f.label()
        f.emit(f"  br i1 {over}, label %{lim}, label %{go}")
        f.emit(f"{go}:")
        for k, i in enumerate(b.insns):
            inst = i.inst
            op = inst & 0x7F
            if k == n - 1 and b.end in ("branch", "jal", "jalr"):
                self.terminator(b, i, nxt)
                return
            if op in (0x03, 0x07, 0x23, 0x27):
                icx = icv if k == 0 else f.op(f"add i64 {icv}, {k}")
                side = self.side_exit(i.off, icx)
                if op in (0x03, 0x07):
                    self.load(inst, side)
                else:
                    self.store(inst, side)
            elif op == 0x0F:
                pass  # fence: one hart sees its own accesses in order
            elif op in (0x53, 0x43, 0x47, 0x4B, 0x4F):
                icx = icv if k == 0 else f.op(f"add i64 {icv}, {k}")
                self.fpop(inst, self.side_exit(i.off, icx))
            else:
                self.alu(inst, i.off)
        if b.end == "fall":
            self.goto(b.end_off, nxt)
        else:
            f.emit(f"  br label %{self.side_exit(b.end_off, nxt)}")

    def vpc_in_tail(self, off: int) -> str:
        """A virtual pc computed in the entry block (usable from any stub)."""
        r = self.f.t()
        self.entry_lines.append(f"  {r} = add i64 %vbase, {off}")
        return r

    def terminator(self, b: Block, i: Insn, nxt: str) -> None:
        f = self.f
        inst = i.inst
        op = inst & 0x7F
        rd = (inst >> 7) & 31
        link = i.off + i.ilen
        if op == 0x63:
            f3 = (inst >> 12) & 7
            a = self.rd((inst >> 15) & 31)
            bb = self.rd((inst >> 20) & 31)
            cond = {0: "eq", 1: "ne", 4: "slt", 5: "sge", 6: "ult", 7: "uge"}[f3]
            c = f.op(f"icmp {cond} i64 {a}, {bb}")
            tk, nt = f.label(), f.label()
            f.emit(f"  br i1 {c}, label %{tk}, label %{nt}")
            f.emit(f"{tk}:")
            self.goto(i.off + branch_target(inst), nxt)
            f.emit(f"{nt}:")
            self.goto(link, nxt)
        elif op == 0x6F:
            if rd:
                self.wr(rd, self.vpc(link))
            self.goto(i.off + jal_target(inst), nxt)
        else:
            t = f.op(f"add i64 {self.rd((inst >> 15) & 31)}, {inst >> 20}")
            t = f.op(f"and i64 {t}, -2")
            if rd:
                self.wr(rd, self.vpc(link))
            self.goto(-1, nxt, final_pc=t)

    # ---- the function --------------------------------------------------------------------------
    def emit(self) -> str:
        f = self.f
        used, written = _regs(self.blocks)
        has_store = any((i.inst & 0x7F) in (0x23, 0x27) for b in self.blocks.values() for i in b.insns)
        self.entry_lines: list[str] = []
        for b in sorted(self.blocks.values(), key=lambda b: b.start):
            self.block(b)
        head = [
            f"define i64 @{self.name}(i8* noalias nocapture %sp, i8* noalias nocapture %cp, "
            "i8* noalias nocapture %tp, i8* noalias nocapture %ramp, i8* noalias nocapture %jp, "
            "i64 %limit) nounwind {",
            "entry:",
            "  %s = bitcast i8* %sp to i64*",
            "  %c = bitcast i8* %cp to i64*",
            "  %tlb = bitcast i8* %tp to i64*",
            "  %ram = bitcast i8* %ramp to i8*",
            "  %jpg = bitcast i8* %jp to i64*",
            f"  %mstatus = getelementptr i64, i64* %c, i64 {L.CSR_MSTATUS}",
            f"  %fcsr = getelementptr i64, i64* %c, i64 {L.CSR_FCSR}",
            "  %ic = alloca i64",
        ]
        for r in sorted(used):
            head.append(f"  %p{r} = getelementptr i64, i64* %s, i64 {r}")
        head += [f"  %pcp = getelementptr i64, i64* %s, i64 {L.PC}",
                 "  %pc0 = load i64, i64* %pcp",
                 f"  %vbase = sub i64 %pc0, {self.entry}",
                 f"  %icp = getelementptr i64, i64* %s, i64 {L.ICOUNT}",
                 "  %ic0 = load i64, i64* %icp",
                 "  store i64 %ic0, i64* %ic"]
        if has_store:
            head += [f"  %thp = getelementptr i64, i64* %s, i64 {L.TOHOST}",
                     "  %tohost = load i64, i64* %thp"]
        head += self.entry_lines
        head.append(f"  br label %b{self.entry}")
        return "\n".join(head + f.lines + f.tail + ["}"]) + "\n"
