"""Which hypervisor the VM commands talk to: this host's (wirt.vm.api.VM), or with `--remote URL`
/ WIRT_REMOTE a `wirt serve` (wirt.serve.remote.RemoteVM, the same methods over REST)."""

from __future__ import annotations

import os
from typing import Any

from wirt.errors import WirtError

__all__ = ["vm_class", "remote", "get_vm", "running_vm"]


def remote() -> bool:
    return bool(os.environ.get("WIRT_REMOTE"))


def vm_class() -> Any:
    if remote():
        from wirt.serve.remote import RemoteVM

        return RemoteVM
    from wirt.vm.api import VM

    return VM


def get_vm(name: str) -> Any:
    """The VM called `name` on the hypervisor the commands talk to (WirtError if there is none)."""
    return vm_class().get(name)


def running_vm(name: str) -> Any:
    """The VM called `name`, refused in one line unless it is running or paused: console, exec and
    shell talk to its guest."""
    vm = get_vm(name)
    st = vm.status()
    if st.state not in ("running", "paused"):
        raise WirtError(f"VM {name!r} is {st.state}; start it with `wirt start {name}`")
    return vm
