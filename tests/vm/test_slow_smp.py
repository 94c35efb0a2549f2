"""A 2-vCPU Debian guest under a minute of load on both vCPUs (slow: boots the real kernel).

Processes that fork and exit in a loop on every vCPU, beside pure compute loops, for 60 s, with
the translation tier on (the default): the console answers all along, and the kernel reports no
oops, BUG, soft lockup, hung task or RCU stall. A hart whose mtime ran ahead of the other's once
made such a guest stop preempting (docs/machine.md "SMP").
"""

from __future__ import annotations

import time

import pytest
from guestconsole import run, value, wait_shell

pytestmark = pytest.mark.slow

LOAD = ("(while true; do cat /proc/loadavg > /dev/null; done) & "
        "(while true; do ls /proc > /dev/null; done) & "
        "(i=0; while true; do i=$((i+1)); done) & "
        "(i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done) & ")
BAD = "Oops|BUG:|soft lockup|hung_task|blocked for more than|rcu_.*stall|stalls on CPUs"


def test_a_minute_of_load_on_two_vcpus(home):
    from wirt.vm.api import VM

    vm = VM.create("busy", memory="256M", disk="16M", net="none", image="initramfs", cpus=2)
    try:
        vm.start()
        wait_shell(vm)
        assert value(vm, "$(nproc)", "cpus") == "2"
        run(vm, LOAD + "echo loaded-$((2+3))", "loaded-5")
        end = time.monotonic() + 60
        last = -1
        while time.monotonic() < end:
            time.sleep(8)
            n = value(vm, "$(cat /tmp/n)", "n")   # the console answers within 30 s meanwhile
            if n.isdigit():
                assert int(n) != last, "the counter stopped"
                last = int(n)
        assert last > 0
        assert value(vm, f"$(dmesg | grep -c -E '{BAD}')", "bad") == "0", \
            run(vm, f"dmesg | grep -E '{BAD}' | head -5; echo shown-$((1+1))", "shown-2")
        assert value(vm, "$(grep -c processor /proc/cpuinfo)", "harts") == "2"
    finally:
        if vm.status(query=False).running:
            vm.stop(force=True)
