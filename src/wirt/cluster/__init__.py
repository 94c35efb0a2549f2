"""A fleet of wirt hosts on Ray (the optional extra `wirt[cluster]`; DESIGN.md "Layers").

    placement.py  where a VM fits: vCPUs, memory, labels, spread/pack (pure, no Ray)
    resources.py  a node's budgets as Ray custom resources, a VM's demand as a bundle
    transfer.py   VM folders as files in chunks (sparse-aware), pulled from node to node
    bases.py      base images by SHA-256: each node's store, finding an image, rebasing overlays
    agent.py      HostAgent: one Ray actor per node, calling that node's wirt.vm API
    controller.py Controller: the one registry of VMs, placement, migration, node failure
    services.py   connecting to a cluster, starting the actors, turning Ray errors into WirtErrors
    node.py       `wirt cluster up/down`: this host's Ray node process
    cli.py        `wirt cluster ...`, `wirt migrate`, `wirt --cluster ADDR create/start/...`

Nothing below this layer imports it; only cli.py is loaded without Ray installed.
"""

from __future__ import annotations

from types import ModuleType

from wirt.errors import WirtError

__all__ = ["INSTALL_HINT", "require_ray"]

INSTALL_HINT = ("wirt cluster needs Ray, which is not installed; install the extra with "
                "`pip install 'wirt[cluster]'` (or `make setup`, which installs it)")


def require_ray() -> ModuleType:
    """The ray module, or a one-line WirtError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise WirtError(INSTALL_HINT) from None
    return ray
