"""Real Debian guests in VM processes (slow: each boot takes 30-60 s on the emulated hart)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from guestconsole import PROMPT
from guestconsole import run as _run
from guestconsole import wait_shell as _shell

from wirt.vm.status import read_pid

pytestmark = pytest.mark.slow


@pytest.fixture
def debian(home):
    from wirt.vm.api import VM

    made = []

    def make(name: str):
        vm = VM.create(name, memory="256M", disk="64M", net="none", image="initramfs")
        made.append(vm)
        return vm

    yield make
    for vm in made:
        if vm.status(query=False).running:
            vm.stop(force=True)


def test_start_stop_start_crash_start(debian):
    vm = debian("deb1")
    vm.start()
    _shell(vm)
    _run(vm, "echo hv-$((6*7))", "hv-42")
    st = vm.stop(timeout=60)  # "poweroff -f" typed on the console
    assert st.state == "stopped" and st.reason == "poweroff"
    vm.start()
    _shell(vm)
    os.kill(read_pid(vm.paths.pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while vm.status().state != "crashed" and time.monotonic() < deadline:
        time.sleep(0.1)
    st = vm.status()
    assert st.state == "crashed" and "SIGKILL" in st.reason
    assert any(PROMPT.strip() in line for line in st.last_exit["console_tail"])
    assert vm.start().state == "running"
    vm.stop(force=True)


def test_data_persists_on_disk(debian):
    vm = debian("deb2")
    vm.start()
    _shell(vm)
    # The marker is computed by the guest's shell, so the echoed command line never matches it.
    _run(vm, "printf 'persist-%s\\n' $((40+2)) | dd of=/dev/vda conv=fsync 2>/dev/null; sync; "
             "echo wrote-$((1+1))", "wrote-2", 60)
    assert vm.stats()["disk_write_bytes"] > 0
    vm.stop(timeout=60)
    vm.start()
    _shell(vm)
    _run(vm, "head -c 10 /dev/vda; echo", "persist-42")


def test_two_vms_at_once(debian):
    a, b = debian("one"), debian("two")
    a.start()
    b.start()
    _shell(a)
    _shell(b)
    _run(a, "echo from-$((1+1))", "from-2")
    assert b.status().state == "running"
    assert a.stats()["rss_bytes"] > 0 and b.stats()["instructions"] > 0
    a.stop(timeout=60)
    assert b.status().state == "running"
    b.stop(timeout=60)
