"""Driving a VM's guest shell through its console (control socket), for the slow guest tests."""

from __future__ import annotations

import time

from wirt.vm.control import call

PROMPT = "wirt:/# "
BOOT_TIMEOUT = 240.0
_calls = 0


def wait_shell(vm, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until the guest's busybox shell prompt is on the console."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = vm.status()
        assert st.state == "running", f"VM {vm.name} is {st.state}: {st.reason}"
        if PROMPT in call(vm.paths.control, "console-tail", lines=5)["text"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"no shell prompt on {vm.name}'s console within {timeout} s")


def run(vm, command: str, marker: str, timeout: float = 30.0) -> str:
    """Type `command`; return the console tail once `marker` shows up outside the echoed command.
    Build markers with the guest's shell (e.g. $((6*7))) so the echo itself never matches."""
    vm.console_input(command + "\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = call(vm.paths.control, "console-tail", lines=20)["text"]
        if marker in text.replace(command, ""):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{command!r} printed no {marker!r}")


def value(vm, expression: str, tag: str, timeout: float = 30.0) -> str:
    """The output of `expression` in the guest, on a line `<tag>-value=...` (e.g. value(vm, "$(cat /tmp/n)", "n"))."""
    global _calls
    _calls += 1  # a fresh key each call: older output on the console never matches
    key = f"{tag}{_calls}-value="
    command = f"echo {tag}{_calls}-''value=\"{expression}\""
    text = run(vm, command, key, timeout)
    for line in reversed(text.splitlines()):
        if line.strip().startswith(key):
            return line.strip()[len(key):]
    raise AssertionError(f"no {key} line in {text!r}")
