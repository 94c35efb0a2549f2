"""netback layer of wirt (see DESIGN.md): network backends behind one frame interface.

- `passt.PasstBackend` (user-mode, the default), `tap.TapBackend`, `socket.connect_socket` /
  `socket.listen_socket` / `socket.SocketHub` (VM to VM on one host).
- `mac.vm_mac` derives a stable MAC address from a VM's identity.
- `open_backend()` builds one from configuration values; `parse_net_spec()` reads the
  command line's `--net` value (`none`, `user`, `socket:PATH`, `socket-listen:PATH`, `tap:IFNAME`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from wirt.errors import WirtError
from wirt.netback.base import NetBackend

__all__ = ["NetBackend", "open_backend", "KINDS", "NetSpec", "parse_net_spec", "NET_SPEC_HELP"]

KINDS = ("user", "tap", "socket", "none")

NET_SPEC_HELP = "none, user, socket:PATH, socket-listen:PATH or tap:IFNAME"


@dataclass(frozen=True)
class NetSpec:
    """A network card's backend as the user named it: kind, tap name or socket path, listen or not."""

    kind: str
    target: str | None = None
    listen: bool = False

    def open(self, port_forwards: Iterable[str] = ()) -> NetBackend | None:
        """The backend this names (passt started, socket connected or bound, tap opened)."""
        return open_backend(self.kind, port_forwards=port_forwards, tap=self.target,
                            path=self.target, listen=self.listen)


def parse_net_spec(text: str, where: str = "--net") -> NetSpec:
    """Parse `none`, `user`, `socket:PATH` (join a hub or a listening peer), `socket-listen:PATH`
    (wait for one peer) or `tap:IFNAME`; a one-line WirtError for anything else."""
    t = text.strip()
    if t in ("none", "user"):
        return NetSpec(t)
    kind, _, arg = t.partition(":")
    if kind in ("socket", "socket-listen"):
        if not arg or "\0" in arg:
            raise WirtError(f"{where} {text!r}: give the socket's path after the colon, e.g. {kind}:/tmp/lab.sock")
        return NetSpec("socket", arg, listen=kind == "socket-listen")
    if kind == "tap":
        if not arg or len(arg.encode()) > 15 or "/" in arg or any(c.isspace() for c in arg):
            raise WirtError(f"{where} {text!r}: give the tap device's name (1-15 characters, no '/' or "
                            "spaces) after the colon, e.g. tap:tap0")
        return NetSpec("tap", arg)
    raise WirtError(f"{where} {text!r}: unknown network; use {NET_SPEC_HELP}")


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
