"""The translation cache: hot entries requested by the core become compiled regions.

The core counts lookups of region entries in each hart's table and queues the hot ones
(layout.JQ_*). Between time slices the hart's own thread calls `service()`, which hands queued
entries to a background compiler thread (it decodes, emits LLVM IR and compiles; LLVM releases
the GIL, so it runs beside the core on another host core) and installs finished code in the
hart's table.

Several harts: code is shared by every hart of the machine, tables are per hart, and only a
hart's own thread writes its table, so a core never sees a half-written slot. A region one hart
asked for is installed in every hart that asked meanwhile, each at its own next `service()`.
The cache has a size limit; past it everything is dropped and translation starts over (QEMU's
tb_flush policy): each hart clears its own table at its next `service()`, and the dropped code
is freed only when every hart has done so, since until then a hart may still be running it.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time
from typing import Callable

import numpy as np

from wirt.cpu import layout as L
from wirt.cpu.jit.compiler import compile_ir, host_fma, host_supported
from wirt.cpu.jit.x64.buffer import address, code_buffer
from wirt.cpu.jit.emit import MODULE_HEADER, Mode, RegionEmitter, helper_ir
from wirt.cpu.jit.region import discover
from wirt.cpu.jit.table import slot_of
from wirt.hostmem import anonymous, release

DEFAULT_THRESHOLD = 16384     # lookups of an entry before it is translated (level 1): only
                              # code that stays hot; lower values made a Linux boot slower
DEFAULT_XTHRESHOLD = 32      # lookups of an entry before the template tier translates it
DEFAULT_HOT = 0               # instructions run in a region before LLVM optimizes it (level 2);
                              # 0: never, where the template tier translates. Level-2 code
                              # returns to the core at every exit where template code chains,
                              # and every bench/mips.py program, CoreMark and the Debian
                              # workload ran as fast or faster without it (docs/cpu.md)
LLVM_HOT = 64_000_000         # the same where LLVM also does the first level (no template
                              # tier): about as long as the compile takes (ski rental)
DEFAULT_LIMIT = 64 << 20      # bytes of translated code before a flush
MODULE_REGIONS = 64           # regions per LLVM module at most
L2_MODULE_REGIONS = 4         # optimized regions per module (each costs tens of ms)
RELEASE_MARGIN = 64 << 10     # code buffer bytes past the write position kept after a flush


def jit_setting(value: str | None = None) -> str:
    """The tier's setting: 'off', 'on' or 'force' (WIRT_JIT=0|1|force; default on)."""
    v = (value if value is not None else os.environ.get("WIRT_JIT", "1")).strip().lower()
    if v in ("0", "off", "false", "no"):
        return "off"
    if v in ("force", "2"):
        return "force"
    if v in ("1", "on", "true", "yes", ""):
        return "on"
    raise ValueError(f"WIRT_JIT={v!r} is not one of 0, 1, force")


_notice_shown = False


class TranslationCache:
    """Compiled regions of one machine's guest code, and the per-hart tables that find them."""

    def __init__(self, ram: np.ndarray, ram_base: int, code_pages: np.ndarray, rvc: np.ndarray,
                 setting: str = "on", threshold: int = DEFAULT_THRESHOLD,
                 limit_bytes: int = DEFAULT_LIMIT, hot: int | None = None, sync: bool = False,
                 xthreshold: int = DEFAULT_XTHRESHOLD) -> None:
        """`sync`: compile on the calling thread at once (tests; always so under "force")."""
        global _notice_shown
        if setting != "off" and not host_supported():
            if not _notice_shown:
                print("wirt: no code generator for this host CPU; using the interpreter only",
                      file=sys.stderr)
                _notice_shown = True
            setting = "off"
        self.setting = setting
        self.ram16 = ram.view(np.uint16)
        self.ram_base = ram_base
        self.ram_size = len(ram)
        self.jpg = code_pages
        self.rvc = rvc
        fixed = os.environ.get("WIRT_JIT_THRESHOLD")
        self.threshold = 1 if setting == "force" else int(fixed or threshold)
        # The template tier (jit/x64) translates after this many lookups of an entry (0: LLVM
        # does the first level too).
        self.xthreshold = int(os.environ.get("WIRT_JIT_XTHRESHOLD", xthreshold))
        if hot is None:
            hot = DEFAULT_HOT if self.xthreshold > 0 else LLVM_HOT
        self.hot = int(os.environ.get("WIRT_JIT_HOT", hot))
        if setting == "force" and self.xthreshold > 0:
            self.xthreshold = 1
        self.sync = sync or setting == "force"
        self.limit_bytes = limit_bytes
        # (off, mode) -> (fn, gen, level)
        self.regions: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.batches: list = []
        self.code_bytes = 0
        self.stats = {"regions": 0, "optimized": 0, "compile_s": 0.0, "flushes": 0, "discarded": 0}
        self.tables: list[np.ndarray] = []
        self._index: dict[int, int] = {}             # id(jt) -> hart number
        self._seen: list[int] = []                   # per hart: the flush generation its table has
        self._xbufs: list[tuple[np.ndarray, list[int]]] = []  # per hart: code buffer, [flushes seen]
        self._installs: list[list] = []              # per hart: (off, mode, fn, gen) to install
        self._jqviews: list[memoryview] = []         # per hart: its request queue, as a memoryview
        self._waiting: dict[tuple[int, int, int], set[int]] = {}  # pending -> harts that asked
        self._retired: list[tuple[int, list]] = []   # (flush generation, batches) still in use
        self._lock = threading.RLock()
        self._names = itertools.count()
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._flush_gen = 0

    @property
    def enabled(self) -> bool:
        return self.setting != "off"

    # ---- per-hart arrays ----------------------------------------------------------------------
    def new_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A hart's translation table, request queue and template-tier code buffer."""
        # 2 MiB, looked up at every region exit: on a huge page it costs no host TLB misses.
        jt = anonymous(L.JT_SLOTS * L.JT_W * 8).view(np.int64)
        jt[0::L.JT_W] = -1
        jq = np.zeros(L.JQ_SIZE, dtype=np.int64)
        jq[L.JQ_THRESHOLD] = self.threshold if self.enabled else 0
        jq[L.JQ_FORCE] = 1 if self.sync else 0   # the core returns at each request
        jq[L.JQ_HOT] = self.hot
        xc = code_buffer() if self.enabled and self.xthreshold > 0 else None
        if xc is None:
            xc = np.zeros(8, dtype=np.uint8)
        else:
            from wirt.cpu.jit.csrcall import csr_exec
            from wirt.cpu.jit.fpcall import fp_exec
            jq[L.JQ_XTHR] = self.xthreshold
            jq[L.JQ_XCSR] = csr_exec.address
            jq[L.JQ_XBASE] = address(xc)
            jq[L.JQ_XFP] = fp_exec.address
            jq[L.JQ_XJT] = address(jt)
            jq[L.JQ_XJQ] = address(jq)
            jq[L.JQ_XFMA] = 1 if host_fma() else 0
        with self._lock:
            self._index[id(jt)] = len(self.tables)
            self.tables.append(jt)
            self._seen.append(self._flush_gen)
            self._installs.append([])
            self._xbufs.append((xc, [0]))
            self._jqviews.append(memoryview(jq))
        return jt, jq, xc

    # ---- service (on the hart's thread, between time slices) ----------------------------------
    def servicer(self, jt: np.ndarray, jq: np.ndarray) -> Callable[[], None]:
        """The service of one hart's tables (take its requests, start their compiles, install
        what has finished), as a function of no arguments with everything it reads bound:
        Hart.run calls it at every return from the core (each MMIO exit, tens of
        thousands a second under I/O), and with nothing to do it returns before taking the
        lock, after reads only (of jq through a memoryview: Python ints, no numpy scalars; a
        compile finishing meanwhile is seen at the next call)."""
        me = self._index[id(jt)]
        jqv, done, installs, seen = self._jqviews[me], self._done.queue, self._installs[me], self._seen
        xflushes = self._xbufs[me][1]
        count, xflush = L.JQ_COUNT, L.JQ_XFLUSH

        def service() -> None:
            if (jqv[count] or done or installs or seen[me] != self._flush_gen
                    or jqv[xflush] != xflushes[0]):
                self._service(me, jt, jq)

        return service

    def _service(self, me: int, jt: np.ndarray, jq: np.ndarray) -> None:
        with self._lock:
            self._release_flushed(me, jq)
            if self._seen[me] != self._flush_gen:
                self._clear(jt)
                self._seen[me] = self._flush_gen
                self._free_retired()
            n = int(jq[L.JQ_COUNT])
            if n:
                reqs = jq[L.JQ_HEAD: L.JQ_HEAD + n * L.JQ_ENTRY].reshape(n, L.JQ_ENTRY).copy()
                jq[L.JQ_COUNT] = 0
                self._request(jt, me, reqs.tolist())
            self._collect()
            for off, mode, fn, gen in self._installs[me]:
                self._install(jt, off, mode, fn, gen)
            self._installs[me].clear()

    def _release_flushed(self, me: int, jq: np.ndarray) -> None:
        """After the core emptied hart `me`'s template buffer (it was full), give the host back
        the pages past the code written since: RSS follows the code in use, not the most the
        buffer ever held. Only this hart's thread writes its buffer, and it is here, not in
        the core."""
        xc, seen = self._xbufs[me]
        flushes = int(jq[L.JQ_XFLUSH])
        if flushes == seen[0]:
            return
        seen[0] = flushes
        release(xc, int(jq[L.JQ_XPOS]) + RELEASE_MARGIN)

    def _request(self, jt: np.ndarray, me: int, reqs: list) -> None:
        work: dict[int, list] = {1: [], 2: []}
        for off, mode, vpc, gen in reqs:
            level = 2 if mode & L.JQ_LEVEL2 else 1
            mode &= L.JQ_LEVEL2 - 1
            key = (off, mode)
            waiting = self._waiting.get((off, mode, level))
            if waiting is not None:
                waiting.add(me)   # another hart asked first: install it here too when done
                continue
            done = self.regions.get(key)
            current = self.jpg[off >> 12]
            if done is not None and done[1] == current:
                if done[2] >= level:
                    self._install(jt, off, mode, done[0], done[1])
                    continue
            elif level == 2 and gen != current:
                continue  # an optimized copy of code that has changed since it ran hot
            self._waiting[(off, mode, level)] = {me}
            work[level].append((off, mode, gen))
        for level, items in work.items():
            if not items:
                continue
            job = (items, level, self._flush_gen)
            if self.sync:
                self._done.put(self._compile(job))
            else:
                self._start_thread()
                self._jobs.put(job)

    def _emit(self, work: list[tuple[int, int, int]], level: int) -> tuple[str, list]:
        """Decode and emit regions into one module's IR. Runs on the compiler thread, reading
        RAM after the core marked the pages: a store since then changed their generation, and
        `_collect` drops what was made from the old bytes."""
        parts, entries = [], []
        helpers: dict | None = {} if level == 1 else None   # level 1: out-of-line accesses
        for off, mode, gen in work:
            page = off & ~0xFFF
            m = Mode.from_key(mode)
            blocks = discover(self.ram16[page >> 1: (page >> 1) + 2048], self.rvc, off & 0xFFF, m.fp)
            name = f"r{next(self._names)}"
            if not blocks[off & 0xFFF].insns:
                entries.append((off, mode, gen, None))   # nothing to translate at this entry
                continue
            parts.append(RegionEmitter(name, blocks, off & 0xFFF, m, self.ram_base,
                                       self.ram_size, self._fp_exec(), helpers).emit())
            entries.append((off, mode, gen, name))
        for hm, size, store in (helpers or {}).values():
            parts.append(helper_ir(hm, size, store, self.ram_base, self.ram_size))
        return MODULE_HEADER + "".join(parts), entries

    _fp_address = 0

    @classmethod
    def _fp_exec(cls) -> int:
        """Address of the FP helper translated code calls (compiled, or loaded, once)."""
        if not cls._fp_address:
            from wirt.cpu.jit.fpcall import fp_exec
            cls._fp_address = fp_exec.address
        return cls._fp_address

    def _compile(self, job):
        items, level, fgen = job
        text, entries = self._emit(items, level)
        names = [e[3] for e in entries if e[3] is not None]
        compiled = compile_ir(text, names, level) if names else None
        return compiled, entries, fgen, level

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="wirt-jit", daemon=True)
            self._thread.start()

    def _worker(self) -> None:
        """Compile queued work, cheapest first: every waiting level-1 region (in modules of up
        to MODULE_REGIONS: a module costs about 1 ms of LLVM set-up however small it is), then
        level-2 regions a few at a time (tens of ms each), so a burst of new code is not kept
        waiting behind the optimization of old loops. Newest requests first: they are the
        code running now."""
        pending: dict[tuple[int, int], list] = {}
        while True:
            block = not pending
            while True:
                try:
                    job = self._jobs.get(block)
                except queue.Empty:
                    break
                block = False
                if job is None:
                    return
                pending.setdefault((job[1], job[2]), []).extend(job[0])
            fgen = self._flush_gen
            for key in list(pending):
                if key[1] != fgen:     # made before a flush: nobody will install it
                    for off, mode, _ in pending.pop(key):
                        self._done.put((None, [(off, mode, 0, None)], key[1], key[0]))
            if not pending:
                continue
            level, fgen = key = min(pending)
            items = pending[key]
            take = MODULE_REGIONS if level == 1 else L2_MODULE_REGIONS
            chunk, rest = items[-take:], items[:-take]
            if rest:
                pending[key] = rest
            else:
                del pending[key]
            self._compile_safely((chunk[::-1], level, fgen))

    def _compile_safely(self, job) -> None:
        try:
            self._done.put(self._compile(job))
        except Exception as e:  # a bug in the emitter: keep running on the interpreter
            print(f"wirt: translation failed ({e}); continuing without it", file=sys.stderr)
            items, level, fgen = job
            self._done.put((None, [(o, m, g, "?") for o, m, g in items], fgen, level))

    def _collect(self) -> None:
        """Record finished compiles and queue their installs for the harts that asked."""
        while True:
            try:
                compiled, entries, fgen, level = self._done.get_nowait()
            except queue.Empty:
                return
            asked = [self._waiting.pop((off, mode, level), set()) for off, mode, _, _ in entries]
            if fgen != self._flush_gen:
                continue  # made before a flush
            if compiled is not None:
                self.batches.append(compiled)
                self.code_bytes += compiled.code_bytes
                self.stats["compile_s"] += compiled.seconds
            for (off, mode, gen, name), harts in zip(entries, asked):
                if name is not None and compiled is None:
                    continue  # the compile failed: the interpreter keeps this code
                if gen != self.jpg[off >> 12]:
                    self.stats["discarded"] += 1   # the page changed while we compiled
                    continue
                fn = compiled.addresses[name] if name is not None else 0
                self.regions[(off, mode)] = (fn, gen, level)
                self.stats["regions" if level == 1 else "optimized"] += fn != 0
                if level == 2 and fn:
                    # Optimized code is for the hottest loops, which the other harts are likely
                    # to run too (the same program on every vCPU): theirs at once, rather than
                    # after each has run it 64 million instructions at the template level.
                    harts = range(len(self.tables))
                for h in harts:
                    self._installs[h].append((off, mode, fn, gen))
            if self.code_bytes > self.limit_bytes:
                self._flush_deferred()

    @staticmethod
    def _install(jt: np.ndarray, off: int, mode: int, fn: int, gen: int) -> None:
        b = slot_of(off, mode) * L.JT_W
        jt[b] = -1          # the core runs on this thread: no reader sees the slot half-written
        jt[b + 1] = fn
        jt[b + 2] = gen
        jt[b + 3] = 0
        jt[b] = off | (mode << L.JT_MODE_SHIFT)

    @staticmethod
    def _clear(jt: np.ndarray) -> None:
        jt[0::L.JT_W] = -1
        jt[3::L.JT_W] = 0

    def _flush_deferred(self) -> None:
        """Drop every translation while harts run: each clears its own table at its next
        service(); the code stays alive until all have."""
        self._retired.append((self._flush_gen + 1, self.batches))
        self.batches = []
        self.regions.clear()
        for pending in self._installs:   # in place: each hart's servicer holds its list
            pending.clear()
        self.code_bytes = 0
        self._flush_gen += 1
        self.stats["flushes"] += 1

    def _free_retired(self) -> None:
        low = min(self._seen, default=self._flush_gen)
        self._retired = [(g, b) for g, b in self._retired if g > low]

    def flush(self) -> None:
        """Drop every translation now, with no hart running (memory replaced by a restore)."""
        with self._lock:
            self._flush_deferred()
            for i, jt in enumerate(self.tables):
                self._clear(jt)
                self._seen[i] = self._flush_gen
            self._free_retired()

    def counters(self, jq_list: list[np.ndarray]) -> dict:
        """Figures for stats and `wirt top`."""
        d = dict(self.stats)
        d["code_bytes"] = self.code_bytes
        d["setting"] = self.setting
        for name, idx in (("entered", L.JQ_CALLS), ("side_exits", L.JQ_SIDE),
                          ("limit_exits", L.JQ_LIMIT), ("chained", L.JQ_CHAIN),
                          ("invalidations", L.JQ_INVAL), ("translated_insns", L.JQ_INSNS),
                          ("template_regions", L.JQ_XN), ("template_flushes", L.JQ_XFLUSH)):
            d[name] = int(sum(int(q[idx]) for q in jq_list))
        d["regions"] += d["template_regions"]     # first-tier translations of either kind
        return d
