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


def build_program(name: str, defines: dict[str, int] | None = None, march: str = "rv64imac") -> Path:
    """Compile HERE/<name>.c with start.S into a bare-metal ELF (cached by source digest).

    march "rv64imac" builds integer-only code; "rv64gc" uses the F and D extensions."""
    defines = defines or {}
    abi = "lp64d" if "g" in march or "d" in march else "lp64"
    march += "_zicsr_zifencei" if "g" not in march else ""
    flags = ["-O2", f"-march={march}", f"-mabi={abi}", "-mcmodel=medany", "-nostdlib", "-nostartfiles",
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
