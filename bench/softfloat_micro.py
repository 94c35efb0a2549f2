"""Microbenchmark for wirt.cpu.softfloat: ns per call from inside a numba loop.

Times N calls of add_d / mul_d / div_d / sqrt_d / fma_d / add_s / mul_s / fma_s (RNE and RUP)
against the same count of plain int64 adds, in two shapes:
  * throughput: independent operations over a 1024-entry table of operands;
  * latency: each result feeds the next operation (like a dependent instruction stream).
Usage: python bench/softfloat_micro.py [N]   (default 10_000_000)
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from wirt.cpu import softfloat as sf

MASK = 1023


@njit(cache=True)
def _int_thr(a: np.ndarray, b: np.ndarray, n: int) -> int:
    acc = 0
    for i in range(n):
        acc ^= a[i & MASK] + b[(i * 7) & MASK]
    return acc


@njit(cache=True)
def _int_lat(a: np.ndarray, n: int) -> int:
    x = 1
    for i in range(n):
        x = (x + a[i & MASK]) ^ (x >> 7)
    return x


def _make_thr(fn, arity: int):  # type: ignore[no-untyped-def]
    if arity == 2:
        @njit(cache=False)
        def thr(a, b, c, rm, n):  # type: ignore[no-untyped-def]
            acc = 0
            fl = 0
            for i in range(n):
                r, f = fn(a[i & MASK], b[(i * 7) & MASK], rm)
                acc ^= r
                fl |= f
            return acc ^ fl
    elif arity == 1:
        @njit(cache=False)
        def thr(a, b, c, rm, n):  # type: ignore[no-untyped-def]
            acc = 0
            fl = 0
            for i in range(n):
                r, f = fn(a[i & MASK], rm)
                acc ^= r
                fl |= f
            return acc ^ fl
    else:
        @njit(cache=False)
        def thr(a, b, c, rm, n):  # type: ignore[no-untyped-def]
            acc = 0
            fl = 0
            for i in range(n):
                r, f = fn(a[i & MASK], b[(i * 7) & MASK], c[(i * 3) & MASK], rm, False, False)
                acc ^= r
                fl |= f
            return acc ^ fl
    return thr


def _make_lat(fn, arity: int):  # type: ignore[no-untyped-def]
    if arity == 2:
        @njit(cache=False)
        def lat(a, b, c, rm, n):  # type: ignore[no-untyped-def]
            x = a[0]
            fl = 0
            for i in range(n):
                x, f = fn(x, b[i & MASK], rm)
                fl |= f
            return x ^ fl
    elif arity == 1:
        @njit(cache=False)
        def lat(a, b, c, rm, n):  # type: ignore[no-untyped-def]
            x = a[0]
            fl = 0
            for i in range(n):
                x, f = fn(x ^ b[i & MASK], rm)  # xor keeps the chain dependent
                fl |= f
            return x ^ fl
    else:
        @njit(cache=False)
        def lat(a, b, c, rm, n):  # type: ignore[no-untyped-def]
            x = a[0]
            fl = 0
            for i in range(n):
                x, f = fn(b[i & MASK], c[i & MASK], x, rm, False, False)
                fl |= f
            return x ^ fl
    return lat


def _operands(double: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    if double:
        a = rng.uniform(0.5, 2.0, 1024).view(np.int64)
        b = rng.uniform(0.5, 2.0, 1024).view(np.int64)
        c = rng.uniform(-1.0, 1.0, 1024).view(np.int64)
        # latency-chain operands chosen so the chain stays in range (x * ~1, x / ~1)
        near1 = rng.uniform(0.999, 1.001, 1024).view(np.int64)
    else:
        a = rng.uniform(0.5, 2.0, 1024).astype(np.float32).view(np.int32).astype(np.int64)
        b = rng.uniform(0.5, 2.0, 1024).astype(np.float32).view(np.int32).astype(np.int64)
        c = rng.uniform(-1.0, 1.0, 1024).astype(np.float32).view(np.int32).astype(np.int64)
        near1 = rng.uniform(0.999, 1.001, 1024).astype(np.float32).view(np.int32).astype(np.int64)
    return a, b, c, near1


def _time(f, *args) -> float:  # type: ignore[no-untyped-def]
    f(*args[:-1], 1000)  # compile / warm up
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    a64 = np.random.default_rng(2).integers(-(1 << 40), 1 << 40, 1024)
    t = _time(_int_thr, a64, a64, n)
    print(f"{'int64 add':14s} throughput {t / n * 1e9:6.2f} ns/op")
    t = _time(_int_lat, a64, n)
    print(f"{'int64 add':14s} latency    {t / n * 1e9:6.2f} ns/op")
    cases = [
        ("add_d", sf.add_d, 2, True), ("mul_d", sf.mul_d, 2, True),
        ("div_d", sf.div_d, 2, True), ("sqrt_d", sf.sqrt_d, 1, True),
        ("fma_d", sf.fma_d, 3, True), ("add_s", sf.add_s, 2, False),
        ("mul_s", sf.mul_s, 2, False), ("fma_s", sf.fma_s, 3, False),
    ]
    for name, fn, arity, double in cases:
        a, b, c, near1 = _operands(double)
        thr = _make_thr(fn, arity)
        lat = _make_lat(fn, arity)
        for rm, rname in ((sf.RNE, "RNE"), (sf.RUP, "RUP")):
            t1 = _time(thr, a, b, c, rm, n)
            # latency chain: add x + c, mul/div x by ~1, fma b*c + x; sqrt: x -> sqrt(x)
            lb = near1 if name.startswith(("mul", "div")) else c
            if arity == 1:
                lb = np.zeros(1024, np.int64)
            t2 = _time(lat, a, lb, c, rm, n)
            print(f"{name:8s} {rname}   throughput {t1 / n * 1e9:6.2f} ns/op   "
                  f"latency {t2 / n * 1e9:6.2f} ns/op")


if __name__ == "__main__":
    main()
