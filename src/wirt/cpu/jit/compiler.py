"""LLVM IR text to host machine code with llvmlite (the library numba itself compiles with).

Each batch of regions becomes one module in its own MCJIT engine, so a batch's code can be
freed as a whole when the translation cache is flushed. llvmlite releases the GIL while LLVM
works, so a background thread compiles while the core runs on the other host core.
"""

from __future__ import annotations

import threading
import time

import llvmlite.binding as llvm

_lock = threading.Lock()
_host: tuple | None = None


def host_supported() -> bool:
    """True where a code generator exists for this host (x86-64; others use the interpreter)."""
    import platform
    return platform.machine().lower() in ("x86_64", "amd64")


def host_fma() -> bool:
    """True where the host CPU has FMA3 (the template tier's fused multiply-add fast path)."""
    return bool(llvm.get_host_cpu_features().get("fma", False))


def _target_machine(opt: int = 2):
    """A new target machine for the host CPU: an MCJIT engine takes ownership of the one it gets."""
    global _host
    if _host is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _host = (llvm.Target.from_default_triple(), llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten())
    target, cpu, features = _host
    return target.create_target_machine(cpu=cpu, features=features, opt=opt, codemodel="jitdefault")


_local = threading.local()


def _context():
    """This thread's LLVM context: numba uses the global one, maybe on another thread meanwhile,
    and an LLVM context must not be used by two threads at once. Kept for the thread's life,
    so it outlives every module made in it."""
    ctx = getattr(_local, "context", None)
    if ctx is None:
        ctx = _local.context = llvm.create_context()
        _contexts.append(ctx)
    return ctx


_contexts: list = []


class Compiled:
    """One compiled batch: keeps its engine (and so its code) alive."""

    def __init__(self, engine, addresses: dict[str, int], code_bytes: int, seconds: float) -> None:
        self.engine = engine
        self.addresses = addresses
        self.code_bytes = code_bytes
        self.seconds = seconds


def compile_ir(ir_text: str, names: list[str], level: int = 1) -> Compiled:
    """Compile a module of region functions; returns their host addresses.

    level 1: no IR passes and LLVM's fast instruction selection (about 2 ms a region: for the
    broad code of a boot; a function pass manager alone costs 0.7 ms a run); level 2: the O2
    pipeline and full code generation (tens of ms a region: for the hottest loops).
    """
    t0 = time.perf_counter()
    with _lock:
        tm = _target_machine(0 if level == 1 else 2)
        mod = llvm.parse_assembly(ir_text, context=_context())
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        if level == 2:
            pto = llvm.create_pipeline_tuning_options(speed_level=2)
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
        engine = llvm.create_mcjit_compiler(mod, tm)
        engine.finalize_object()
        addrs = {n: engine.get_function_address(n) for n in names}
    # Code size is not reported by MCJIT; the IR size is a fair proxy for the cache's budget.
    return Compiled(engine, addrs, len(ir_text) // 4, time.perf_counter() - t0)
