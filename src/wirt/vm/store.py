"""The VM store: `$WIRT_HOME/vms/NAME/` directories holding `vm.toml`, disks, `snapshots/`
and, while the VM runs, `run/` (DESIGN.md "A VM is files").

Every file is written atomically (temporary file in the same directory, fsync, rename,
fsync of the directory), so a crash leaves either the old or the new version, never half
a file. VM directories are 0700 and files 0600: a VM's disks and console hold the guest's
data, which other host users must not read.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from wirt.errors import NotFoundError, StateError, WirtError
from wirt.fileio import atomic_write, read_regular
from wirt.vm.schema import VMConfig, validate_name

__all__ = ["wirt_home", "atomic_write", "VMPaths", "VMStore", "DIR_MODE", "FILE_MODE"]

MAX_CONFIG = 1 << 20  # vm.toml is a few hundred bytes; refuse megabytes before parsing them
MAX_RECORD = 1 << 20  # run/info.json, last-exit.json: small JSON records
DIR_MODE = 0o700
FILE_MODE = 0o600


def wirt_home() -> Path:
    """$WIRT_HOME, else $XDG_DATA_HOME/wirt, else ~/.local/share/wirt (XDG base directory spec)."""
    if os.environ.get("WIRT_HOME"):
        return Path(os.environ["WIRT_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "wirt"


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON record (run/info.json, last-exit.json), or None when absent or unreadable.

    Only a regular file of at most MAX_RECORD bytes is read: a VM folder can be copied in, and a
    record that is a FIFO (an open blocks) or a link to /dev/zero (endless) must not hang `wirt ls`."""
    try:
        data = json.loads(read_regular(path, "record", MAX_RECORD))
    except (WirtError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class VMPaths:
    """Where the files of one VM live."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "vm.toml"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def run(self) -> Path:
        """Present only while the VM process runs (or after it was killed: then stale)."""
        return self.root / "run"

    @property
    def pid(self) -> Path:
        return self.run / "pid"

    @property
    def control(self) -> Path:
        return self.run / "control.sock"

    @property
    def data_socket(self) -> Path:
        """The raw byte stream to the guest's wirt.data port (wirt.vm.datachan; `wirt cp`)."""
        return self.run / "data.sock"

    @property
    def console_log(self) -> Path:
        return self.run / "console.log"

    @property
    def info(self) -> Path:
        """run/info.json: what the running process was started with (memory, cpus, start time)."""
        return self.run / "info.json"

    @property
    def exit_record(self) -> Path:
        """run/exit.json: written by the VM process just before a clean exit."""
        return self.run / "exit.json"

    @property
    def force_marker(self) -> Path:
        """run/force-stop: `wirt stop --force` was here (the kill is not a crash)."""
        return self.run / "force-stop"

    @property
    def last_exit(self) -> Path:
        """last-exit.json: how the previous run ended (kept across runs; 'crashed' lives here)."""
        return self.root / "last-exit.json"

    @property
    def last_console(self) -> Path:
        """console.log of the previous run (moved out of run/ when the process ends)."""
        return self.root / "console.log"

    def disk(self, path: str) -> Path:
        """A disk path from vm.toml: relative paths are relative to the VM directory."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p


class VMStore:
    """The VMs under one home directory."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else wirt_home()
        self.vms = self.home / "vms"

    def ensure(self) -> None:
        """Create the home and vms/ directories (0700)."""
        for d in (self.home, self.vms):
            d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    def paths(self, name: str) -> VMPaths:
        return VMPaths(self.vms / validate_name(name))

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.paths(name).config)

    def names(self) -> list[str]:
        """Names of all VMs, sorted (directories without a vm.toml are skipped; a vm.toml that is
        not a regular file counts: loading it says what is wrong, and `wirt ls` lists it as invalid)."""
        if not self.vms.is_dir():
            return []
        out = []
        for d in sorted(self.vms.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and os.path.lexists(d / "vm.toml"):
                out.append(d.name)
        return out

    def require(self, name: str) -> VMPaths:
        p = self.paths(name)
        if not os.path.lexists(p.config):
            raise NotFoundError(f"no VM named {name!r}; see `wirt ls` or create it with `wirt create {name}`")
        return p

    def load(self, name: str) -> VMConfig:
        """Read and validate vm.toml (errors name the file, the key and the fix)."""
        p = self.require(name)
        try:
            text = read_regular(p.config, "VM configuration", MAX_CONFIG).decode()  # no FIFO, no /dev/zero
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise WirtError(f"{p.config}: not valid TOML ({exc}); fix the syntax") from None
        except RecursionError:  # tomllib is recursive: [[[[...]]]] thousands deep
            raise WirtError(f"{p.config}: values are nested too deeply; fix the file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise WirtError(f"{p.config}: cannot read it ({exc}); check its permissions") from None
        cfg = VMConfig.from_dict(data, str(p.config))
        if cfg.name != name:
            raise WirtError(f"{p.config}: name: {cfg.name!r} does not match the directory {name!r}; "
                            f"set name = \"{name}\"")
        return cfg

    def save(self, cfg: VMConfig) -> None:
        """Write vm.toml atomically (the VM directory must exist)."""
        p = self.paths(cfg.name)
        atomic_write(p.config, "# wirt VM configuration (docs: wirt.vm.schema)\n" + tomli_w.dumps(cfg.to_dict()))

    def create(self, cfg: VMConfig) -> VMPaths:
        """Make the VM directory (refusing a duplicate name) and write its vm.toml."""
        self.ensure()
        p = self.paths(cfg.name)
        try:
            p.root.mkdir(mode=DIR_MODE)
        except FileExistsError:
            raise StateError(f"a VM named {cfg.name!r} already exists; pick another name or "
                            f"remove it with `wirt rm {cfg.name}`") from None
        os.chmod(p.root, DIR_MODE)  # mkdir's mode is masked by the umask
        p.snapshots.mkdir(mode=DIR_MODE)
        os.chmod(p.snapshots, DIR_MODE)
        try:
            self.save(cfg)
        except BaseException:
            shutil.rmtree(p.root, ignore_errors=True)
            raise
        return p

    def destroy(self, name: str) -> None:
        """Delete the VM directory and everything in it (the caller checked it is not running)."""
        p = self.paths(name)
        # Rename first so a half-deleted VM never shows up in `wirt ls`.
        trash = self.vms / f".deleted-{name}-{os.getpid()}"
        os.replace(p.root, trash)
        shutil.rmtree(trash, ignore_errors=True)
