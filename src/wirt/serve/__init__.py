"""`wirt serve`: the host's REST API (/v1, OpenAPI 3), event stream, metrics and web console.

Thin over wirt.vm (DESIGN.md: serve/ translates requests into vm/ calls). Built on aiohttp
(HTTP/1.1 server and websockets in one well-kept package, Unix-socket and TLS listeners, and a
client the tests and `--remote` use) and prometheus-client; both come with the `serve` extra.
"""

from __future__ import annotations

from wirt.errors import WirtError

__all__ = ["require_extra", "INSTALL_HINT"]

INSTALL_HINT = "wirt serve needs the serve extra: pip install 'wirt[serve]' (aiohttp, prometheus-client)"


def require_extra() -> None:
    """Raise a one-line WirtError saying how to install the server's libraries if they are missing."""
    try:
        import aiohttp  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError:
        raise WirtError(INSTALL_HINT) from None
