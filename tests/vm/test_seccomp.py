"""The VM process confined after set-up (wirt.vm.confinement, docs/security.md): a seccomp filter
(/proc/PID/status shows "Seccomp: 2"), and Landlock on the CPU thread where the kernel has it.
A forbidden system call, made through a test-only hook, kills the process, and the VM is
reported crashed with the reason."""

from __future__ import annotations

import time

import pytest

from wirt.confine.landlock import abi_version
from wirt.confine.seccomp import ALLOWED, seccomp_mode
from wirt.errors import WirtError
from wirt.vm.control import call


@pytest.fixture
def hooked(tiny_vm, monkeypatch):
    monkeypatch.setenv("WIRT_TEST_HOOKS", "1")  # the VM process gets the debug-* control commands
    tiny_vm.start()
    return tiny_vm


def test_running_vm_process_is_filtered(hooked):
    st = hooked.status()
    assert seccomp_mode(st.pid) == 2
    conf = st.live["confinement"]
    assert conf["seccomp"] >= 100 and not any("seccomp" in n for n in conf["notices"])
    assert conf["landlock"] == abi_version()
    assert "execve" not in ALLOWED and "fork" not in ALLOWED and "ptrace" not in ALLOWED


def test_forbidden_system_call_kills_the_vm_and_says_why(hooked):
    try:
        call(hooked.paths.control, "debug-forbidden-syscall", timeout=10.0)
    except WirtError:
        pass  # the connection died with the process
    deadline = time.monotonic() + 30
    while hooked.status(query=False).state != "crashed":
        assert time.monotonic() < deadline, hooked.status(query=False)
        time.sleep(0.1)
    reason = hooked.status(query=False).reason
    assert "SIGSYS" in reason and "seccomp" in reason


@pytest.mark.skipif(abi_version() < 1, reason="this kernel has no Landlock (the VM logs a notice)")
def test_cpu_thread_opens_only_the_vms_files(hooked, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    inside = hooked.paths.root / "inside.txt"
    inside.write_text("vm file")
    assert call(hooked.paths.control, "debug-open", file=str(inside))["opened"]
    r = call(hooked.paths.control, "debug-open", file=str(outside))
    assert not r["opened"] and "ermission" in r["error"]
    assert not call(hooked.paths.control, "debug-open", file="/etc/shadow")["opened"]
    assert hooked.status().state == "running"


def test_without_test_hooks_there_is_no_debug_command(tiny_vm):
    tiny_vm.start()
    with pytest.raises(WirtError, match="unknown"):
        call(tiny_vm.paths.control, "debug-forbidden-syscall", timeout=10.0)


def test_every_allowed_call_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    missing = [name for name in ALLOWED if f"| `{name}` |" not in doc]
    assert not missing, f"docs/security.md does not explain {missing}"


# Starts a VM from a process whose system calls named in argv[1] fail with ENOSYS, as in a container
# whose runtime's seccomp profile does not know them: the VM process inherits that filter, so the
# kernel really refuses them to it.
_START_WITHOUT = """
import errno, json, sys
import pyseccomp as sc
f = sc.SyscallFilter(sc.ALLOW)
for name in sys.argv[1].split(","):
    f.add_rule(sc.ERRNO(errno.ENOSYS), name)
f.load()
from wirt.vm.api import VM
VM("tiny").start()
"""


@pytest.mark.parametrize("blocked, notice, applied", [
    ("landlock_create_ruleset", "Landlock unavailable", "seccomp"),
    ("seccomp", "seccomp unavailable", "landlock"),
])
def test_confinement_degrades_with_a_notice(tiny_vm, blocked, notice, applied):
    """Where the kernel refuses Landlock or seccomp, the VM runs, and says so in its log and status;
    the other mechanism is still applied. Without cgroup v2, the resource limits say so too."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _START_WITHOUT, blocked], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    st = tiny_vm.status()
    assert st.state == "running"
    conf = st.live["confinement"]
    assert any(n.startswith(notice) for n in conf["notices"]), conf
    assert conf[applied] > 0 and conf["landlock" if applied == "seccomp" else "seccomp"] == 0, conf
    log = tiny_vm.paths.console_log.read_text()
    assert f"wirt: notice: {notice}" in log, log
    if st.live["limits"]["method"] != "cgroup2":
        assert any(n.startswith("cgroup v2 unavailable") for n in conf["notices"]), conf
        assert "wirt: notice: cgroup v2 unavailable" in log
