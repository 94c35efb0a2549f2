"""`wirt top`: per-VM host CPU %, RSS, guest MIPS (and per vCPU), disk and network bytes/s.

Each sample asks every running VM's control socket for `stats` (guest counters plus the
process's /proc figures); rates are differences between two samples over their time apart.
"""

from __future__ import annotations

from typing import Any

from wirt.errors import WirtError
from wirt.units import human_size

__all__ = ["sample_all", "render", "json_rows", "format_table"]

_RATES = ("cpu_seconds", "instructions", "disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes")


def sample_all(prev: dict[str, dict[str, Any]], home: Any = None) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One sample of every running VM; returns table rows (rates vs `prev`) and the new raw samples."""
    from wirt.vm.api import VM
    from wirt.vm.control import call

    rows, raw = [], {}
    for vm in VM.list(home):
        st = vm.status(query=False)
        if st.state not in ("running", "paused", "starting"):
            continue
        try:
            s = call(vm.paths.control, "stats", timeout=2.0)
        except WirtError:
            rows.append({"name": vm.name, "state": "starting"})
            continue
        raw[vm.name] = s
        row: dict[str, Any] = {"name": vm.name, "state": st.state, "rss": s.get("rss_bytes", 0),
                               "jit": s.get("jit", {})}
        p = prev.get(vm.name)
        dt = (s["time"] - p["time"]) if p else 0.0
        for key in _RATES:
            row[key] = ((s.get(key, 0) - p.get(key, 0)) / dt) if p and dt > 0 else None
        vcpus, before = s.get("vcpu_instructions", []), (p or {}).get("vcpu_instructions", [])
        row["vcpu_mips"] = ([(a - b) / dt / 1e6 for a, b in zip(vcpus, before)]
                            if p and dt > 0 and len(before) == len(vcpus) else None)
        rows.append(row)
    return rows, raw


def _rate(v: float | None, bytes_: bool = True) -> str:
    if v is None:
        return "-"
    return f"{human_size(int(v))}/s" if bytes_ else f"{v:.1f}"


def _jit(j: dict[str, Any]) -> str:
    """Translation tier: regions compiled (optimized), translated code size, invalidations."""
    if j.get("setting", "off") == "off":
        return "off"
    return (f"{j.get('regions', 0)}+{j.get('optimized', 0)} {human_size(int(j.get('code_bytes', 0)))} "
            f"inv {j.get('invalidations', 0)}")


def _mips(total: float | None, vcpus: list[float] | None) -> str:
    """Guest MIPS, and with several vCPUs each one's in brackets: "41.2 [20.7 20.5]"."""
    if total is None:
        return "-"
    if not vcpus or len(vcpus) < 2:
        return f"{total / 1e6:.1f}"
    return f"{total / 1e6:.1f} [" + " ".join(f"{v:.1f}" for v in vcpus) + "]"


def render(rows: list[dict[str, Any]]) -> str:
    """The table `wirt top` prints."""
    if not rows:
        return "no running VMs"
    head = ("NAME", "STATE", "CPU%", "RSS", "MIPS", "DISK R", "DISK W", "NET RX", "NET TX", "JIT")
    table = [head]
    for r in rows:
        if "rss" not in r:
            table.append((r["name"], r["state"], *["-"] * 8))
            continue
        cpu = r["cpu_seconds"]
        mips = r["instructions"]
        table.append((r["name"], r["state"], "-" if cpu is None else f"{cpu * 100:.0f}", human_size(r["rss"]),
                      _mips(mips, r.get("vcpu_mips")), _rate(r["disk_read_bytes"]),
                      _rate(r["disk_write_bytes"]), _rate(r["net_rx_bytes"]), _rate(r["net_tx_bytes"]),
                      _jit(r.get("jit") or {})))
    return format_table(table)


def format_table(table: list[tuple[str, ...]]) -> str:
    """Rows of cells (the first one the heading) in left-aligned columns two spaces apart, as
    `wirt top` and the `ls` commands print them."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`wirt top --json`: per VM its state, rss (bytes), cpu_percent, mips and byte rates per second
    (disk_read, disk_write, net_rx, net_tx), vcpu_mips (one per vCPU); null where no rate is known
    yet (docs/cli.md)."""
    out = []
    for r in rows:
        def get(key: str) -> float | None:
            v = r.get(key)
            return None if v is None else round(v, 3)

        cpu, insns = get("cpu_seconds"), get("instructions")
        out.append({"name": r["name"], "state": r["state"], "rss": r.get("rss"),
                    "cpu_percent": None if cpu is None else round(cpu * 100, 1),
                    "mips": None if insns is None else round(insns / 1e6, 3),
                    "vcpu_mips": None if r.get("vcpu_mips") is None else [round(v, 3) for v in r["vcpu_mips"]],
                    "disk_read": get("disk_read_bytes"), "disk_write": get("disk_write_bytes"),
                    "net_rx": get("net_rx_bytes"), "net_tx": get("net_tx_bytes")})
    return out
