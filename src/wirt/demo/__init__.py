"""wirt's own bare-metal demo and benchmark programs, built with Debian's RISC-V cross compiler.

The sources live here; builds are cached in the user's cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from wirt.errors import WirtError
from wirt.paths import cache_dir

HERE = Path(__file__).parent
CC = "riscv64-unknown-elf-gcc"


def build_program(name: str, defines: dict[str, int] | None = None) -> Path:
    """Compile HERE/<name>.c with start.S into a bare-metal ELF (cached by source digest)."""
    defines = defines or {}
    flags = ["-O2", "-march=rv64imac", "-mabi=lp64", "-mcmodel=medany", "-nostdlib", "-nostartfiles",
             "-static", "-ffreestanding", "-fno-builtin", "-I", str(HERE)]
    flags += [f"-D{k}={v}" for k, v in sorted(defines.items())]
    h = hashlib.sha256(" ".join(flags).encode())
    for f in ("start.S", "link.ld", "htif.h", f"{name}.c"):
        h.update((HERE / f).read_bytes())
    out = cache_dir() / "programs" / f"{name}-{h.hexdigest()[:16]}.elf"
    if out.exists():
        return out
    cc = shutil.which(CC)
    if cc is None:
        raise WirtError(f"{CC} not found; install it with `apt-get install gcc-riscv64-unknown-elf` "
                        "(or run `make run`, which does)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    proc = subprocess.run([cc, *flags, "-T", str(HERE / "link.ld"), "-o", str(tmp),
                           str(HERE / "start.S"), str(HERE / f"{name}.c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise WirtError(f"building {name}.c failed: {proc.stderr.strip().splitlines()[-1]}")
    tmp.rename(out)
    return out


def build_demo() -> Path:
    """The demo shown by `wirt run-elf --demo` and `make run`."""
    return build_program("demo")
