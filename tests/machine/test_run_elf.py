"""`wirt run-elf`: the demo, exit codes, --max-insns, --trace, and one-line errors (exit 2,
no traceback) for every kind of bad input. Runs in-process through wirt.cli.main and, once
each for success and failure, as the installed `wirt` console script."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_program, cross_compiler
from wirt.cli import main

GREETING = "Hello from a RISC-V program running on wirt!"
TRACE_LINE = re.compile(r"^([0-9a-f]{16}) ([0-9a-f]{8}|[0-9a-f]{4} {4}) ([USHM])$")


def wirt_script() -> str:
    found = shutil.which("wirt")
    if found:
        return found
    candidate = Path(sys.executable).parent / "wirt"
    assert candidate.exists(), "the wirt console script is not installed next to the interpreter"
    return str(candidate)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["run-elf", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {lines!r}"
    assert lines[0].startswith("wirt: error: "), lines[0]
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"


# ---- programs -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exit5() -> Path:
    return build_program("li gp, 5\nj fail\n", "cli-exit5")


@pytest.fixture(scope="module")
def spin() -> Path:
    return build_program("1: j 1b\n", "cli-spin")


TRACE_BODY = r"""
    la t0, 1f
    csrw mepc, t0
    li t0, 3 << 11
    csrc mstatus, t0           /* MPP = U */
    mret
1:  li a1, 2
    c.addi a1, 1
    j pass
"""


@pytest.fixture(scope="module")
def traced() -> Path:
    return build_program(TRACE_BODY, "cli-trace")


def _gcc(tmp: Path, name: str, source: str, *flags: str) -> Path:
    src = tmp / f"{name}.S"
    src.write_text(source)
    out = tmp / name
    subprocess.run([cross_compiler(), *flags, "-o", str(out), str(src)], check=True,
                   capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def bad_elves(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad")
    tiny = ".globl _start\n_start:\n  j _start\n"
    text = tmp / "notes.txt"
    text.write_text("this is not an ELF file\n")
    return {
        "rv32": _gcc(tmp, "rv32.elf", tiny, "-march=rv32i", "-mabi=ilp32", "-nostdlib", "-nostartfiles",
                     "-Wl,-Ttext=0x80000000"),
        "object": _gcc(tmp, "rel.o", tiny, "-c"),
        "low": _gcc(tmp, "low.elf", tiny, "-nostdlib", "-nostartfiles", "-Wl,-Ttext=0x1000"),
        "text": text,
        "dir": tmp,
        "missing": tmp / "no-such-program.elf",
    }


# ---- behaviour ------------------------------------------------------------------------------

def test_demo_prints_the_greeting_and_exits_0(capsys) -> None:
    code, out, err = run_cli(capsys, "--demo")
    assert code == 0, err
    assert GREETING in out
    assert "primes below 10000: 1229" in out


def test_program_exit_code_becomes_wirts(capsys, exit5) -> None:
    code, _, err = run_cli(capsys, str(exit5))
    assert code == 5, err


def test_max_insns_stops_an_infinite_loop(capsys, spin) -> None:
    code, _, err = run_cli(capsys, "--max-insns", "1000", str(spin))
    assert code not in (0, 2), f"exit {code}"
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "1000" in lines[0] and "max-insns" in lines[0], lines[0]


def test_trace_prints_each_retired_instruction(capsys, traced) -> None:
    from wirt.machine.baremetal import BareMetal
    from wirt.machine.elf import read_elf

    code, _, err = run_cli(capsys, "--trace", str(traced))
    assert code == 0, err
    lines = err.splitlines()
    parsed = [TRACE_LINE.match(ln) for ln in lines]
    assert all(parsed), [ln for ln, m in zip(lines, parsed) if not m][:3]
    reference = BareMetal(str(traced), 64 << 20, output=lambda b: None)
    result = reference.run()
    assert len(lines) == result.instructions, "one line per retired instruction"
    image = read_elf(traced)
    assert int(parsed[0].group(1), 16) == image.entry == 0x80000000
    # raw bits match the program text, compressed ones as 4 hex digits
    mem = reference.memory
    for m in parsed:
        pc, raw = int(m.group(1), 16), m.group(2).strip()
        width = len(raw) // 2
        assert int(raw, 16) == int.from_bytes(mem.read(pc, width), "little"), m.group(0)
    privs = "".join(m.group(3) for m in parsed)
    assert re.fullmatch(r"M+U+", privs), f"privilege column {privs!r}"
    assert any(len(m.group(2).strip()) == 4 for m in parsed), "the c.addi should be traced as 16 bits"


@pytest.mark.parametrize("kind, needles", [
    ("missing", ("no such file",)),
    ("dir", ("directory",)),
    ("text", ("not an ELF",)),
    ("rv32", ("32-bit",)),
    ("object", ("no loadable segment",)),
    ("low", ("outside RAM",)),
])
def test_bad_programs_give_one_line_errors(capsys, bad_elves, kind, needles) -> None:
    code, _, err = run_cli(capsys, str(bad_elves[kind]))
    assert_one_line_error(code, err, *needles)


def test_non_riscv_elf(capsys) -> None:
    host = Path("/bin/true") if Path("/bin/true").is_file() else Path(sys.executable).resolve()
    assert host.read_bytes()[:4] == b"\x7fELF"
    code, _, err = run_cli(capsys, str(host))
    assert_one_line_error(code, err, "RISC-V")


@pytest.mark.parametrize("ram", ["banana", "1000", "0", "12K5"])
def test_bad_ram_values(capsys, exit5, ram) -> None:
    code, _, err = run_cli(capsys, "--ram", ram, str(exit5))
    assert_one_line_error(code, err, ram)


def test_small_ram_rejects_a_program_that_does_not_fit(capsys, exit5) -> None:
    code, _, err = run_cli(capsys, "--ram", "4K", str(exit5))
    assert_one_line_error(code, err, "outside RAM")


@pytest.mark.parametrize("args", [[], ["--max-insns", "0", "--demo"]])
def test_bad_arguments(capsys, args) -> None:
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err)


def test_console_script_runs_the_demo() -> None:
    proc = subprocess.run([wirt_script(), "run-elf", "--demo"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert GREETING in proc.stdout


def test_console_script_error_is_one_line(tmp_path) -> None:
    proc = subprocess.run([wirt_script(), "run-elf", str(tmp_path / "missing.elf")],
                          capture_output=True, text=True, timeout=600)
    assert_one_line_error(proc.returncode, proc.stderr, "no such file")
