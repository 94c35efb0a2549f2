"""`wirt serve`: the host's REST API, event stream, metrics and web console (wirt.serve)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the REST API, events, metrics and web console",
        description="A user-level daemon: REST under /v1 (OpenAPI at /v1/openapi.json, docs at /v1/docs), "
                    "events at /v1/events, Prometheus metrics at /metrics, the web console at /ui/. "
                    "It listens on a Unix socket (mode 0600, this user only) and, with --listen, on TCP "
                    "with a bearer token ($WIRT_HOME/serve/token, made on first use). VMs are separate "
                    "processes: stopping the server leaves them running, and a new server finds them.")
    p.add_argument("--socket", metavar="PATH",
                   help="Unix socket (default $XDG_RUNTIME_DIR/wirt/api.sock, or $WIRT_HOME/serve/api.sock)")
    p.add_argument("--listen", metavar="HOST:PORT", help="also listen on TCP (bearer token required)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve TCP over TLS with this certificate (chain)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from wirt.serve import require_extra
    from wirt.vm.store import wirt_home

    require_extra()
    from wirt.serve.server import serve

    return serve(wirt_home(), args.socket, args.listen, args.tls_cert, args.tls_key)
