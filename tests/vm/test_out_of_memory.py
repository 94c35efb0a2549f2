"""A VM process that runs out of memory is reported as crashed with the reason, and the other VMs
are untouched (issue 20; docs/security.md). The VM process grows through a test-only control hook
(WIRT_TEST_HOOKS=1: `debug-allocate`, host memory allocated and touched on the CPU thread, as a
leaking device model would) until its real limit stops it: RLIMIT_AS (a MemoryError) where there is
no cgroup v2, or the cgroup's memory.max (the kernel's OOM killer) where there is."""

from __future__ import annotations

import time

import pytest

from wirt.errors import WirtError
from wirt.vm.control import call


@pytest.fixture
def small_limit(home, monkeypatch):
    """VM processes limited to guest RAM + 1 GiB of address space (set-up peaks near 650 MiB), so
    reaching the limit costs a few hundred MiB of host memory, not the default 8 GiB headroom.
    The translation tier stays off: its compiler thread must not be the one to hit the limit."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[resources]\nrlimit_headroom = "1G"\nvm_overhead = "256M"\n')
    monkeypatch.setenv("WIRT_JIT", "0")
    monkeypatch.setenv("WIRT_TEST_HOOKS", "1")
    return home


def _echoes(vm, text: str, timeout: float = 20.0) -> None:
    vm.console_input(text)
    end = time.monotonic() + timeout
    while text not in call(vm.paths.control, "console-tail", lines=50)["text"]:
        assert time.monotonic() < end, f"{vm.name} did not echo {text!r}"
        time.sleep(0.05)


def test_out_of_memory_is_a_crash_with_the_reason_and_other_vms_run_on(small_limit, firmware):
    from wirt.vm.api import VM

    vms = [VM.create(n, memory="32M", disk="1M", image="none", net="none", firmware=str(firmware))
           for n in ("greedy", "bystander")]
    try:
        for vm in vms:
            vm.start()
        greedy, bystander = vms
        pid = bystander.status().pid
        _echoes(greedy, "hello")  # (no "f": the echo firmware powers off on it)
        try:
            r = call(greedy.paths.control, "debug-allocate", limit=8 << 30, timeout=180.0)
            pytest.fail(f"the VM process allocated {r} without reaching its limit")
        except WirtError as exc:
            assert "out of memory" in str(exc) or "connection" in str(exc).lower(), exc
        deadline = time.monotonic() + 60
        while greedy.status(query=False).state != "crashed":
            assert time.monotonic() < deadline, greedy.status(query=False)
            time.sleep(0.1)
        reason = greedy.status(query=False).reason
        assert "out of memory" in reason and "memory limit" in reason, reason
        assert "\n" not in reason
        st = bystander.status()
        assert st.state == "running" and st.pid == pid
        _echoes(bystander, "still here")
        greedy.start()  # and the crashed VM starts again
        _echoes(greedy, "again")
    finally:
        for vm in vms:
            if vm.status(query=False).running:
                vm.stop(force=True)
