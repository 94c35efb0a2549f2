"""Several harts on one machine (machine/smp.py): atomics across harts, message passing, IPIs
through the CLINT, the device tree, deterministic interleaving and snapshots of every hart.

The bare-metal program tests/machine/asm/smp.S runs on all harts at once (each enters it from
the boot ROM with a0 = mhartid) and leaves exact counts in RAM: amoadd, an LR/SC increment loop
and a spinlock around a plain increment, ITER times per hart each (unpriv spec 8.2, 8.4), plus
the flag-without-data reads of a message-passing litmus test (RVWMO forbids any) and the harts
woken from WFI by an IPI.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cross_compiler
from wirt.errors import WirtError
from wirt.machine.board import Machine, plan_boot
from wirt.machine.elf import read_elf
from wirt.machine.fdt import parse_dtb
from wirt.machine.snapshot import restore_machine, save_machine
from wirt.paths import cache_dir

MIB = 1 << 20
SOURCE = Path(__file__).parent / "asm" / "smp.S"
LINK = Path(__file__).parent.parent / "cpu" / "asm" / "link.ld"
PARAMS = 0x1000  # RAM offset of `params` in smp.S (its .data page)
ITER = 1_000_000  # the "a million times per hart"
MP_ROUNDS = 20_000


def smp_program() -> bytes:
    """smp.S assembled and laid out flat from RAM base (cached by content)."""
    key = hashlib.sha256(SOURCE.read_bytes() + LINK.read_bytes()).hexdigest()[:16]
    out = cache_dir() / "test-programs" / f"smp-{key}.elf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([cross_compiler(), "-march=rv64gc", "-mabi=lp64", "-nostdlib", "-nostartfiles", "-static",
                        "-mcmodel=medany", "-T", str(LINK), "-o", str(tmp), str(SOURCE)],
                       check=True, capture_output=True, text=True)
        tmp.rename(out)
    elf = read_elf(out)
    base = min(addr for addr, _, _ in elf.segments)
    image = bytearray(max(addr + size for addr, _, size in elf.segments) - base)
    for addr, data, _ in elf.segments:
        image[addr - base: addr - base + len(data)] = data
    return bytes(image)


def smp_machine(harts: int, deterministic: bool, iterations: int = ITER, jit: str | None = None) -> Machine:
    m = Machine(smp_program(), memory_size=64 * MIB, num_harts=harts, deterministic=deterministic,
                jit=jit)
    params = m.memory.array[PARAMS: PARAMS + 16].view(np.int64)
    params[:] = [harts, iterations]
    m.memory.array[PARAMS + 16: PARAMS + 24].view(np.int64)[0] = MP_ROUNDS
    return m


def counts(m: Machine) -> dict[str, int]:
    c = m.memory.array[PARAMS + 64: PARAMS + 112].view(np.int64).tolist()
    return {"amoadd": c[0], "lrsc": c[1], "locked": c[2], "mp_bad": c[3], "done": c[4], "ipi": c[5]}


def expected(harts: int, iterations: int = ITER) -> dict[str, int]:
    n = harts * iterations
    return {"amoadd": n, "lrsc": n, "locked": n, "mp_bad": 0, "done": harts, "ipi": harts - 1}


@pytest.mark.parametrize("harts", [2, 4])
@pytest.mark.parametrize("jit", ["off", "force"])
def test_atomics_are_exact_with_a_host_thread_per_hart(harts, jit):
    """Real-time mode: the harts run on host threads in parallel; every count is exact, in the
    interpreter and in translated code (atomics, fences and stores of jit/x64)."""
    m = smp_machine(harts, deterministic=False, jit=jit)
    result = m.run(max_insns=10**10)
    assert result.reason == "poweroff", result
    assert counts(m) == expected(harts)
    assert all(h.instret > 3 * ITER for h in m.harts)  # every hart did its share


def test_deterministic_mode_repeats_exactly_with_four_harts():
    """Deterministic mode interleaves the harts on one thread: two runs retire the same
    instructions on every hart and end with the same memory."""
    runs = []
    for _ in range(2):
        m = smp_machine(4, deterministic=True, iterations=200_000)
        result = m.run(max_insns=10**10)
        assert result.reason == "poweroff", result
        assert counts(m) == expected(4, 200_000)
        runs.append((result.instructions, [h.instret for h in m.harts],
                     hashlib.sha256(m.memory.array.tobytes()).hexdigest()))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("deterministic", [True, False])
def test_snapshot_of_two_harts_continues(tmp_path, deterministic):
    """A snapshot taken mid-run holds both harts; a fresh machine restored from it finishes
    with exact counts (and, in deterministic mode, the same instruction counts)."""
    iterations = 100_000
    m = smp_machine(2, deterministic=True, iterations=iterations)
    assert m.run(max_insns=400_000).reason == "limit"
    body = save_machine(m, tmp_path / "snap")
    assert len(body["machine"]["smp"]) == 1 and body["signature"]["harts"] == 2
    assert m.run(max_insns=10**10).reason == "poweroff"
    full = [h.instret for h in m.harts]

    r = smp_machine(2, deterministic=deterministic, iterations=iterations)
    restore_machine(r, tmp_path / "snap")
    assert [h.instret for h in r.harts] != [0, 0]
    assert r.run(max_insns=10**10).reason == "poweroff"
    assert counts(r) == expected(2, iterations)
    if deterministic:
        assert [h.instret for h in r.harts] == full

    one = Machine(smp_program(), memory_size=64 * MIB)
    with pytest.raises(WirtError, match="cpus"):
        restore_machine(one, tmp_path / "snap")


def test_device_tree_lists_every_hart_and_routes_the_plic_to_each():
    root = parse_dtb(plan_boot(64 * MIB, 4096, None, 0, num_harts=4).dtb).root
    cpus = root.find("/cpus")
    assert sorted(n.name for n in cpus.children if n.name.startswith("cpu@")) == [f"cpu@{h}" for h in range(4)]
    assert len(cpus.find("cpu-map/cluster0").children) == 4
    plic = next(n for n in root.find("/soc").children if n.name.startswith("plic@"))
    assert len(plic.props["interrupts-extended"]) == 4 * 2 * 2 * 4  # harts x (M, S) x (phandle, irq) x 4 bytes


def test_cpu_count_is_checked():
    with pytest.raises(WirtError, match="1 to 64 CPUs"):
        Machine(smp_program(), memory_size=64 * MIB, num_harts=65)
