"""Host-wide hypervisor settings from `$WIRT_HOME/config.toml`, with defaults.

    [resources]
    memory_reserve = "1G"      # host memory kept for the host itself
    memory_overcommit = 1.0    # guest RAM may total (host memory - reserve) x this
    cpu_overcommit = 4.0       # vCPUs may total host cores x this
    vm_overhead = "256M"       # host memory one VM process needs beside guest RAM
    thin_provisioning = false  # true: start VMs whose disks could outgrow the free space
    rlimit_headroom = "8G"     # RLIMIT_AS above guest RAM when no cgroup v2 is available
    io_weight = 100            # cgroup v2 io.weight of each VM (1-10000)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from wirt.errors import WirtError
from wirt.units import parse_size
from wirt.vm.store import wirt_home

__all__ = ["Settings", "load_settings"]


@dataclass(frozen=True)
class Settings:
    memory_reserve: int = 1 << 30
    memory_overcommit: float = 1.0
    cpu_overcommit: float = 4.0
    vm_overhead: int = 256 << 20
    thin_provisioning: bool = False
    rlimit_headroom: int = 8 << 30
    io_weight: int = 100


def load_settings(home: Path | None = None) -> Settings:
    """Settings from config.toml (absent file: defaults); bad values raise one-line WirtErrors."""
    path = (home or wirt_home()) / "config.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Settings()
    except tomllib.TOMLDecodeError as exc:
        raise WirtError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
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
