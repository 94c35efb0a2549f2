"""Who may talk to `wirt serve`: the owner on the Unix socket (peer uid, SO_PEERCRED in unix(7)),
anyone with the bearer token on TCP (RFC 6750). The token is made on first use and kept 0600
in $WIRT_HOME/serve/token; a browser gets it once in the console's URL and keeps it as a cookie."""

from __future__ import annotations

import hmac
import os
import secrets
import socket
import struct
from pathlib import Path

from wirt.fileio import atomic_path
from wirt.vm.store import DIR_MODE

__all__ = ["serve_dir", "default_socket", "load_token", "peer_uid", "token_ok", "COOKIE"]

COOKIE = "wirt_token"


def serve_dir(home: Path) -> Path:
    d = Path(home) / "serve"
    d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(d, DIR_MODE)
    return d


def default_socket(home: Path) -> Path:
    """$XDG_RUNTIME_DIR/wirt/api.sock, or $WIRT_HOME/serve/api.sock when WIRT_HOME is set
    (a private home gets a private server) or there is no runtime directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and not os.environ.get("WIRT_HOME"):
        d = Path(runtime) / "wirt"
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        return d / "api.sock"
    return serve_dir(home) / "api.sock"


def load_token(home: Path) -> str:
    """The bearer token, generated (256 random bits) and stored 0600 on first use."""
    path = serve_dir(home) / "token"
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    with atomic_path(path, mode=0o600) as tmp:
        Path(tmp).write_text(token + "\n")
    return token


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED), or None."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def token_ok(given: str | None, token: str) -> bool:
    """Constant-time comparison (a timing side channel must not leak the token)."""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())
