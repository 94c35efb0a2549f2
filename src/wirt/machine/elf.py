"""Loading bare-metal RISC-V ELF programs (pyelftools) into guest RAM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from wirt.errors import WirtError

EM_RISCV = 243


@dataclass
class ElfImage:
    """What a loader needs from an ELF: entry point, loadable segments and symbols."""

    entry: int
    segments: list[tuple[int, bytes, int]]  # (physical address, file bytes, memory size)
    symbols: dict[str, int] = field(default_factory=dict)


def read_elf(path: str | Path) -> ElfImage:
    """Parse a 64-bit RISC-V ELF, or raise WirtError with a one-line reason."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise WirtError(f"{p}: no such file; give the path of a RISC-V ELF program") from None
    except IsADirectoryError:
        raise WirtError(f"{p}: is a directory; give the path of a RISC-V ELF program") from None
    except PermissionError:
        raise WirtError(f"{p}: permission denied; check the file's permissions") from None
    with f:
        if f.read(4) != b"\x7fELF":
            raise WirtError(f"{p}: not an ELF file; build it with riscv64-unknown-elf-gcc")
        f.seek(0)
        try:
            elf = ELFFile(f)
            if elf.elfclass != 64:
                raise WirtError(f"{p}: a {elf.elfclass}-bit ELF; wirt runs 64-bit RISC-V (RV64) programs")
            if elf["e_machine"] not in ("EM_RISCV", EM_RISCV):
                raise WirtError(f"{p}: built for {elf['e_machine']}, not RISC-V; use a riscv64 toolchain")
            segments = []
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_memsz"] > 0:
                    segments.append((seg["p_paddr"], seg.data(), seg["p_memsz"]))
            if not segments:
                raise WirtError(f"{p}: the ELF has no loadable segment; link it with a linker script that places code in RAM")
            symbols: dict[str, int] = {}
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None:
                for sym in symtab.iter_symbols():
                    if sym.name and sym["st_info"]["type"] in ("STT_NOTYPE", "STT_OBJECT", "STT_FUNC"):
                        symbols.setdefault(sym.name, sym["st_value"])
            return ElfImage(elf["e_entry"], segments, symbols)
        except (ELFError, ValueError, KeyError, OSError) as exc:
            raise WirtError(f"{p}: damaged ELF file ({exc}); rebuild it") from None
