"""The image cache directory and atomic, checksummed downloads into it.

Every file lands in the cache through a temporary file in the same directory and an
`os.replace`, so a crash or a failed check never leaves a half file under the final name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from wirt.errors import WirtError
from wirt.fileio import atomic_path
from wirt.images import ui
from wirt.images.mirror import HINT
from wirt.paths import cache_dir

TIMEOUT = 60.0  # seconds without progress before a download is abandoned
CHUNK = 1 << 16
CACHE_MODE = 0o644  # cached files are ordinary readable files

def urlopen(url: str, **kw):
    """The one place where the image layer touches the network (tests replace it to prove a
    warm cache does no I/O). urllib is imported here, on the first download: with http.client
    and ssl it costs 18 ms of every start whose guest files are all cached."""
    import urllib.request

    return urllib.request.urlopen(url, **kw)


class NotFound(WirtError):
    """The mirror answered 404: the file is not there (callers may try another path)."""


def cache_root() -> Path:
    """`$WIRT_CACHE`, else `$XDG_CACHE_HOME/wirt`, else `~/.cache/wirt` (see wirt.paths)."""
    return cache_dir().expanduser()


#: Folders of the cache that hold guest images (bootable files), and what each kind is.
IMAGE_KINDS = {"kernel": "Linux kernel Image", "initrd": "initramfs", "firmware": "OpenSBI firmware",
               "rootdisk": "Debian root disk"}


def cached_images(root: Path | None = None) -> list[dict[str, object]]:
    """The guest images in the cache (`wirt image ls`): kind, path, size (bytes), mtime (seconds)."""
    root = root or cache_root()
    out: list[dict[str, object]] = []
    for kind in IMAGE_KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if not p.is_file() or p.name.endswith(".json") or p.name.startswith("."):
                continue
            st = p.stat()
            out.append({"kind": kind, "path": str(p), "name": p.name, "size": st.st_size,
                        "disk_used": st.st_blocks * 512, "mtime": int(st.st_mtime)})
    return out


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    label: str | None = None,
) -> Path:
    """Fetch `url` into `dest` with a progress bar; refuse it if its size or SHA-256 differ.

    The file appears under `dest` only after every check passed.
    """
    import urllib.error

    label = label or dest.name
    try:
        response = urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        kind = NotFound if exc.code == 404 else WirtError
        raise kind(_http_message(url, exc.code, exc.reason)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, FileNotFoundError):  # a file:// mirror without that file
            raise NotFound(f"not found on the mirror: {url}; {HINT}") from None
        raise WirtError(f"cannot reach the Debian mirror at {url}: {reason}; check the network or {HINT}") from None
    h = hashlib.sha256()
    got = 0
    with response, atomic_path(dest, CACHE_MODE, parents=True) as tmp:
        total = size if size is not None else _content_length(response)
        try:
            with open(tmp, "wb") as out, ui.byte_progress() as bar:
                task = bar.add_task(f"fetch {label}", total=total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    bar.update(task, completed=got)
        except (urllib.error.URLError, OSError) as exc:
            raise WirtError(f"download of {url} failed after {got} bytes: {exc}; try again or {HINT}") from None
        if size is not None and got != size:
            raise WirtError(
                f"size mismatch for {url}: got {got} bytes, the signed index says {size}; "
                f"the mirror may be updating (try again later) or {HINT}"
            )
        if sha256 is not None and h.hexdigest() != sha256.lower():
            raise WirtError(
                f"SHA256 mismatch for {url}: the file does not match the signed index; "
                f"the mirror may be corrupt or updating (try again later) or {HINT}"
            )
    return dest


def _content_length(response: object) -> int | None:
    value = getattr(response, "headers", {}).get("Content-Length") if hasattr(response, "headers") else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _http_message(url: str, code: int, reason: object) -> str:
    if code == 404:
        return f"not found on the mirror (HTTP 404): {url}; the mirror may not carry this suite or architecture; {HINT}"
    return f"the Debian mirror answered HTTP {code} {reason} for {url}; try again later or {HINT}"
