"""The guest's /init and udhcpc scripts: syntax, and /init's logic run on the host with stub commands."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from wirt.images import scripts
from wirt.images.scripts import finisher_value, parse_exit_status, run_param

STUBS = ("mount", "mkdir", "hostname", "ip", "insmod", "devmem", "poweroff", "setsid", "busybox")


@pytest.mark.parametrize("script", [scripts.INIT, scripts.UDHCPC_SCRIPT], ids=["init", "udhcpc"])
def test_shell_syntax(script: str) -> None:
    subprocess.run(["sh", "-n"], input=script.encode(), check=True)


def test_helpers() -> None:
    assert finisher_value(0) == 0x5555
    assert finisher_value(3) == 0x33333
    assert finisher_value(255) == 0xFF3333
    assert run_param("echo a b") == "wirt.run=ZWNobyBhIGI="
    assert parse_exit_status("x\nwirt: exit status 7\r\n[  1.0] reboot: Power down\n") == 7
    assert parse_exit_status("no marker") is None


def _run_init(tmp_path: Path, cmdline: str, modules: list[str], nic: bool = False) -> tuple[str, list[str]]:
    """Run INIT under the host's sh with /proc/cmdline, /lib/modules, the host name, the network
    card (present if `nic`) and system commands redirected."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(parents=True)
    log = tmp_path / "calls"
    for name in STUBS:
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        (stubs / name).chmod(0o755)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    mods = tmp_path / "modules"
    mods.mkdir()
    (mods / "load-order").write_text("".join(m + "\n" for m in modules))
    script = (
        scripts.INIT.replace("/proc/cmdline", str(tmp_path / "cmdline"))
        .replace("/lib/modules", str(mods))
        .replace("/proc/sys/kernel/hostname", str(tmp_path / "hostname"))
        .replace("/sys/class/net/eth0", str(tmp_path / ("eth0" if nic else "no-eth0")))
        .replace("export PATH=/bin:/sbin:/usr/bin:/usr/sbin", f"export PATH={stubs}:$PATH")
    )
    (tmp_path / "eth0").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=20)
    calls = log.read_text().splitlines() if log.exists() else []
    return out.stdout + out.stderr, calls


@pytest.mark.skipif(shutil.which("base64") is None, reason="no base64 tool")
def test_init_runs_command_and_reports_status(tmp_path: Path) -> None:
    param = run_param('echo hello "$((1+2))"; exit 3')
    out, calls = _run_init(tmp_path, f"console=ttyS0 quiet {param} x=*", ["a", "b"])
    assert "hello 3" in out
    assert "wirt: exit status 3" in out
    inserted = [c for c in calls if c.startswith("insmod")]
    assert [Path(c.split()[1]).name for c in inserted] == ["a.ko", "b.ko"]
    assert "devmem 0x100000 32 0x33333" in calls
    assert calls[-1] == "poweroff -f"


@pytest.mark.skipif(shutil.which("base64") is None, reason="no base64 tool")
def test_init_success_and_shell(tmp_path: Path) -> None:
    out, calls = _run_init(tmp_path / "ok", run_param("true"), [])
    assert "wirt: exit status 0" in out and "devmem 0x100000 32 0x5555" in calls
    out, calls = _run_init(tmp_path / "sh", "console=ttyS0", [])
    assert "setsid cttyhack sh" in calls and calls[-1] == "poweroff -f" and "devmem" not in " ".join(calls)
    out, calls = _run_init(tmp_path / "bad", "wirt.run=!!!notbase64", [])
    assert "wirt: exit status 127" in out


@pytest.mark.skipif(shutil.which("base64") is None, reason="no base64 tool")
def test_init_names_the_guest_and_leases_an_address_before_the_command(tmp_path: Path) -> None:
    out, calls = _run_init(tmp_path / "nic", f"wirt.hostname=web-1 {run_param('echo ran >&2')}", [], nic=True)
    assert (tmp_path / "nic/hostname").read_text() == "web-1\n"
    dhcp = [c for c in calls if c.startswith("busybox udhcpc -i eth0")]
    assert len(dhcp) == 1 and "-s /etc/udhcpc/default.script" in dhcp[0]
    assert "wirt: exit status 0" in out
    out, calls = _run_init(tmp_path / "none", run_param("true"), [])
    assert not (tmp_path / "none/hostname").exists()  # the default name stays (hostname wirt)
    assert "hostname wirt" in calls and not any(c.startswith("busybox") for c in calls)
