"""Host-wide hypervisor settings from `$WIRT_HOME/config.toml`, with defaults.

    [resources]
    memory_reserve = "1G"      # host memory kept for the host itself
    memory_overcommit = 1.0    # guest RAM may total (host memory - reserve) x this
    cpu_overcommit = 4.0       # vCPUs may total host cores x this
    vm_overhead = "256M"       # host memory one VM process needs beside guest RAM
    thin_provisioning = false  # true: start VMs whose disks could outgrow the free space
    rlimit_headroom = "8G"     # RLIMIT_AS above guest RAM when no cgroup v2 is available
    io_weight = 100            # cgroup v2 io.weight of each VM (1-10000)

    [create]                   # defaults of `wirt create` / VM.create (arguments override them)
    cpus = 1
    memory = "512M"
    disk = "8G"                # or "none"
    image = "debian"           # debian | initramfs | none
    net = "user"               # user | tap:IF | socket:HUB | none

docs/cli.md ("config.toml") is the reference.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from wirt.errors import WirtError
from wirt.units import parse_size
from wirt.vm.store import wirt_home

__all__ = ["Settings", "CreateDefaults", "load_settings", "load_create_defaults"]


@dataclass(frozen=True)
class Settings:
    memory_reserve: int = 1 << 30
    memory_overcommit: float = 1.0
    cpu_overcommit: float = 4.0
    vm_overhead: int = 256 << 20
    thin_provisioning: bool = False
    rlimit_headroom: int = 8 << 30
    io_weight: int = 100


@dataclass(frozen=True)
class CreateDefaults:
    """What `wirt create` uses for an option not given (config.toml [create])."""

    cpus: int = 1
    memory: str = "512M"
    disk: str = "8G"
    image: str = "debian"
    net: str = "user"


def _read(home: Path | None) -> tuple[Path, dict[str, object]]:
    path = (home or wirt_home()) / "config.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return path, {}
    except tomllib.TOMLDecodeError as exc:
        raise WirtError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    except RecursionError:
        raise WirtError(f"{path}: values are nested too deeply; fix the file") from None
    return path, data


def load_create_defaults(home: Path | None = None) -> CreateDefaults:
    """config.toml's [create] defaults (absent: the built-in ones), each value checked."""
    from wirt.vm.schema import IMAGES, parse_net_mode

    path, data = _read(home)
    sec = data.get("create", {})
    if not isinstance(sec, dict):
        raise WirtError(f"{path}: create: is not a table; write a [create] section")
    out: dict[str, object] = {}
    for key, value in sec.items():
        where = f"{path}: create.{key}"
        if key not in CreateDefaults.__dataclass_fields__:
            raise WirtError(f"{where}: is not a known setting; use one of: " + ", ".join(CreateDefaults.__dataclass_fields__))
        if key == "cpus":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WirtError(f"{where}: {value!r} is not a CPU count; write e.g. 1")
        elif key in ("memory", "disk"):
            ok = isinstance(value, str) and (value == "none" and key == "disk" or _is_size(value))
            if not ok:
                raise WirtError(f"{where}: {value!r} is not a size; write e.g. \"512M\"" + (" or \"none\"" if key == "disk" else ""))
        elif key == "image":
            if value not in IMAGES:
                raise WirtError(f"{where}: {value!r} is not an image; use one of: " + ", ".join(IMAGES))
        else:
            parse_net_mode(value, where)
        out[key] = value
    return CreateDefaults(**{**CreateDefaults().__dict__, **out})


def _is_size(text: str) -> bool:
    try:
        parse_size(text)
    except WirtError:
        return False
    return True


def load_settings(home: Path | None = None) -> Settings:
    """Settings from config.toml (absent file: defaults); bad values raise one-line WirtErrors."""
    path, data = _read(home)
    res = data.get("resources", {})
    if not isinstance(res, dict):
        raise WirtError(f"{path}: resources: is not a table; write a [resources] section")
    d = Settings()
    out: dict[str, object] = {}
    for key, value in res.items():
        if key not in Settings.__dataclass_fields__:
            raise WirtError(f"{path}: resources.{key}: is not a known setting; use one of: "
                            + ", ".join(Settings.__dataclass_fields__))
        default = getattr(d, key)
        where = f"{path}: resources.{key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise WirtError(f"{where}: {value!r} is not a boolean; write true or false")
            out[key] = value
        elif key in ("memory_reserve", "vm_overhead", "rlimit_headroom"):
            try:
                n = parse_size(value) if isinstance(value, str) else value
            except WirtError:
                n = None
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise WirtError(f"{where}: {value!r} is not a size; write e.g. \"1G\"")
            out[key] = n
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
                raise WirtError(f"{where}: {value!r} is not a ratio; write a number such as 1.5")
            out[key] = float(value)
        else:  # io_weight
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10000:
                raise WirtError(f"{where}: {value!r} is out of range; use 1 to 10000 (cgroup v2 io.weight)")
            out[key] = value
    return Settings(**{**d.__dict__, **out})
