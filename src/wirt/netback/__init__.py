"""netback layer of wirt (see DESIGN.md): network backends behind one frame interface.

- `passt.PasstBackend` (user-mode, the default), `tap.TapBackend`, `socket.connect_socket` /
  `socket.listen_socket` / `socket.SocketHub` (VM to VM on one host).
- `mac.vm_mac` derives a stable MAC address from a VM's identity.
- `open_backend()` builds one from configuration values.
"""

from __future__ import annotations

from typing import Iterable

from wirt.errors import WirtError
from wirt.netback.base import NetBackend

__all__ = ["NetBackend", "open_backend", "KINDS"]

KINDS = ("user", "tap", "socket", "none")


def open_backend(kind: str = "user", *, port_forwards: Iterable[str] = (), tap: str | None = None,
                 path: str | None = None, listen: bool = False) -> NetBackend | None:
    """A started-later backend from configuration: `user` (passt, with port forwards like
    `8080:80` or `5353:53/udp`), `tap` (the named tap device), `socket` (connect to a hub or peer
    at `path`, or wait for a peer there with `listen=True`), `none` (no backend: None)."""
    forwards = list(port_forwards)
    if forwards and kind != "user":
        raise WirtError(f"port forwards need the user network backend, not {kind!r}")
    if kind == "user":
        from wirt.netback.passt import PasstBackend

        return PasstBackend(forwards)
    if kind == "tap":
        if not tap:
            raise WirtError("the tap network backend needs a tap device name")
        from wirt.netback.tap import TapBackend

        return TapBackend(tap)
    if kind == "socket":
        if not path:
            raise WirtError("the socket network backend needs a socket path")
        from wirt.netback.socket import connect_socket, listen_socket

        return listen_socket(path) if listen else connect_socket(path)
    if kind == "none":
        return None
    raise WirtError(f"unknown network backend {kind!r}; use one of: {', '.join(KINDS)}")
