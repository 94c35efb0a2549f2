"""Run `wirt serve`: the application on its Unix socket and, optionally, TCP (with TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

from aiohttp import web

from wirt.errors import WirtError
from wirt.serve import auth
from wirt.serve.app import make_app

__all__ = ["serve", "parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT' ('[::1]:8080' for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise WirtError(f"--listen {text!r}: write HOST:PORT, e.g. 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def _claim_socket(path: Path) -> None:
    """Remove a stale socket file; refuse if a server answers there."""
    if not path.exists() and not path.is_symlink():
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        raise WirtError(f"another wirt serve listens on {path}; stop it first or give --socket")
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
    finally:
        s.close()


def _tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise WirtError("TLS needs both --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise WirtError(f"--tls-cert/--tls-key: cannot load them ({exc}); give a PEM certificate and key") from None
    return ctx


async def _serve(home: Path, sock: Path, listen: tuple[str, int] | None, ctx: ssl.SSLContext | None) -> None:
    app = make_app(home)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    _claim_socket(sock)
    old = os.umask(0o177)  # the socket is 0600 from birth
    try:
        site = web.UnixSite(runner, str(sock))
        await site.start()
    finally:
        os.umask(old)
    os.chmod(sock, 0o600)
    print(f"wirt serve: listening on unix:{sock}", flush=True)
    if listen is not None:
        tcp = web.TCPSite(runner, listen[0], listen[1], ssl_context=ctx)
        try:
            await tcp.start()
        except OSError as exc:
            await runner.cleanup()
            raise WirtError(f"--listen {listen[0]}:{listen[1]}: {exc.strerror}; pick another port") from None
        for addr in runner.addresses:
            if isinstance(addr, tuple):
                host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
                print(f"wirt serve: listening on {'https' if ctx else 'http'}://{host}:{addr[1]} "
                      f"(bearer token in {home / 'serve' / 'token'})", flush=True)
    print(f"wirt serve: API docs at /v1/docs, web console at /ui/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        print("wirt serve: stopped (VMs keep running)", file=sys.stderr, flush=True)


def serve(home: Path, socket_path: str | None = None, listen: str | None = None,
          tls_cert: str | None = None, tls_key: str | None = None) -> int:
    """Serve until SIGTERM or SIGINT. VMs are their own processes: they outlive the server."""
    sock = Path(socket_path) if socket_path else auth.default_socket(home)
    if len(os.fsencode(sock)) > 107:
        raise WirtError(f"socket path {sock} is too long for a Unix socket (107 bytes); give a shorter --socket")
    addr = parse_listen(listen) if listen else None
    ctx = _tls(tls_cert, tls_key)
    if addr is None and ctx is not None:
        raise WirtError("--tls-cert/--tls-key apply to TCP: give --listen HOST:PORT too")
    if addr is not None:
        auth.load_token(home)  # made before the first client can ask
    asyncio.run(_serve(home, sock, addr, ctx))
    return 0
