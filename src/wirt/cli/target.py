"""Which hypervisor the VM commands talk to: this host's (wirt.vm.api.VM), or with `--remote URL`
/ WIRT_REMOTE a `wirt serve` (wirt.serve.remote.RemoteVM, the same methods over REST)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["vm_class", "remote"]


def remote() -> bool:
    return bool(os.environ.get("WIRT_REMOTE"))


def vm_class() -> Any:
    if remote():
        from wirt.serve.remote import RemoteVM

        return RemoteVM
    from wirt.vm.api import VM

    return VM
