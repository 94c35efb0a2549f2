"""Whole-machine snapshots: a checksummed JSON state file plus a sparse memory image.

A snapshot folder holds
- `snapshot.json`: {"format": "wirt-snapshot", "version": 1, "checksum": "sha256:<hex>", "body": {...}}.
  The checksum covers the body's canonical JSON (sorted keys, no spaces). The body holds the
  hart and device state (`Machine.state()`, plain data only: no pickle), the machine's signature
  (memory size, device set) and the memory image's description. Higher layers add their own
  keys to the body (the VM layer adds identity, disks and the snapshot tree).
- `memory.img`: guest RAM as a sparse file the size of RAM. Only pages holding a non-zero byte
  are written; zero pages are holes and take no disk space. The body lists the written page
  runs ("extents") and the SHA-256 over them, so a truncated or corrupted image is refused.

Restoring maps the image copy-on-write over guest RAM (`GuestMemory.map_image`): nothing is
copied, and several machines (forks) can run from one image at once. Images are never rewritten
in place; a new snapshot is a new file, so a mapped image never changes under a running guest.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from wirt.errors import WirtError
from wirt.fileio import atomic_path, atomic_write, open_regular, read_regular
from wirt.machine.memory import PAGE

__all__ = ["FORMAT", "VERSION", "STATE_FILE", "MEMORY_FILE", "write_state_file", "read_state_file",
           "write_memory_image", "check_memory_image", "signature_differences", "save_machine",
           "check_restorable", "restore_machine"]

FORMAT = "wirt-snapshot"
VERSION = 1
STATE_FILE = "snapshot.json"
MEMORY_FILE = "memory.img"
MAX_STATE_FILE = 64 << 20  # a 64-hart machine state is a few MB; refuse far more before parsing it
_CHUNK = 1 << 30  # pwrite/pread move at most ~2 GiB per call on Linux


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def write_state_file(folder: Path, body: dict[str, Any]) -> Path:
    """Write `folder/snapshot.json` (atomically) with the body and its checksum."""
    raw = _canonical(body)
    doc = {"format": FORMAT, "version": VERSION, "checksum": "sha256:" + hashlib.sha256(raw).hexdigest(),
           "body": body}
    return atomic_write(Path(folder) / STATE_FILE, json.dumps(doc, sort_keys=True, indent=1), 0o400)


def read_state_file(folder: Path) -> dict[str, Any]:
    """The body of `folder/snapshot.json`, refused with a one-line error unless it is intact."""
    path = Path(folder) / STATE_FILE
    if not os.path.lexists(path):
        raise WirtError(f"{path} is missing: {folder} is not a wirt snapshot")
    text = read_regular(path, "snapshot state", MAX_STATE_FILE)  # no FIFO, no /dev/zero
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise WirtError(f"{path} is not valid JSON: the snapshot is corrupted or not a wirt snapshot; "
                        "delete it") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise WirtError(f"{path} is not a wirt snapshot (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise WirtError(f"{path} is snapshot format version {doc.get('version')!r}; this wirt reads version "
                        f"{VERSION}: use the wirt that made it")
    body = doc.get("body")
    if not isinstance(body, dict) or doc.get("checksum") != "sha256:" + hashlib.sha256(_canonical(body)).hexdigest():
        raise WirtError(f"{path}: checksum mismatch: the snapshot is corrupted; delete it")
    return body


# ---- memory image -------------------------------------------------------------------------------
def _nonzero_runs(array: np.ndarray, touched: np.ndarray | None = None) -> list[list[int]]:
    """[first_page, page_count] runs of pages that hold a non-zero byte. `touched` (bool per
    page, see GuestMemory.touched_pages) limits the scan: pages never touched are zero."""
    words = array.view(np.uint64).reshape(-1, PAGE // 8)
    if touched is None:
        nz = words.any(axis=1).astype(np.int8)
    else:
        nz = np.zeros(len(words), dtype=np.int8)
        idx = np.flatnonzero(touched)
        for i in range(0, len(idx), 8192):  # gather 32 MiB at a time
            part = idx[i:i + 8192]
            nz[part] = words[part].any(axis=1)
    edges = np.diff(np.concatenate(([0], nz, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [[int(a), int(b - a)] for a, b in zip(starts, ends)]


def write_memory_image(array: np.ndarray, path: Path, touched: np.ndarray | None = None) -> dict[str, Any]:
    """Write guest RAM to a sparse image at `path` (atomically); returns its description."""
    path = Path(path)
    runs = _nonzero_runs(array, touched)
    view = memoryview(array)
    h = hashlib.sha256()
    # Read-only: never rewritten, restored guests map it copy-on-write.
    with atomic_path(path, 0o400) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, len(array))  # all holes: zero pages are never written
            for first, count in runs:
                pos, end = first * PAGE, (first + count) * PAGE
                h.update(view[pos:end])
                while pos < end:
                    pos += os.pwrite(fd, view[pos:min(end, pos + _CHUNK)], pos)
        finally:
            os.close(fd)
    return {"file": path.name, "size": len(array), "page_size": PAGE, "extents": runs,
            "stored_bytes": sum(c for _, c in runs) * PAGE, "sha256": h.hexdigest()}


def check_memory_image(path: Path, meta: dict[str, Any], ram_size: int) -> None:
    """Refuse a memory image that is missing, truncated, of another size or whose data changed."""
    path = Path(path)
    if not isinstance(meta, dict):
        raise WirtError(f"{path}: the snapshot has no memory description; delete the snapshot")
    if not path.exists():
        raise WirtError(f"{path} is missing: the snapshot's memory image is gone; delete the snapshot")
    if meta.get("size") != ram_size or isinstance(meta.get("size"), bool):
        raise WirtError(f"{path}: the snapshot has {str(meta.get('size'))[:40]} bytes of RAM, the machine {ram_size}")
    extents = meta.get("extents")
    if not isinstance(extents, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(type(x) is int for x in e) for e in extents):
        raise WirtError(f"{path}: the snapshot's page list is not a list of page runs; delete the snapshot")
    fd = open_regular(path, os.O_RDONLY, "memory image")
    try:
        size = os.fstat(fd).st_size
        if size != ram_size or meta.get("page_size") != PAGE:
            raise WirtError(f"{path} is {size} bytes, expected {ram_size}: the memory image is truncated or "
                            "corrupted; delete the snapshot")
        h = hashlib.sha256()
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                for first, count in extents:
                    if first < 0 or count <= 0 or (first + count) * PAGE > size:
                        raise WirtError(f"{path}: the snapshot's page list is out of range; delete the snapshot")
                    h.update(view[first * PAGE:(first + count) * PAGE])
            finally:
                view.release()
    finally:
        os.close(fd)
    if h.hexdigest() != meta.get("sha256"):
        raise WirtError(f"{path}: memory image checksum mismatch: the image is corrupted; delete the snapshot")


# ---- whole machine ----------------------------------------------------------------------------
def check_signature(sig: Any, where: str) -> None:
    """Refuse (one line) a saved machine signature whose fields are not what `Machine.signature`
    writes: a whole number of harts and bytes of memory, and a list of virtio slot descriptions
    (tables of names to plain values). It is compared before anything else is checked."""
    def plain(v: Any) -> bool:
        return v is None or isinstance(v, (str, bool)) or (isinstance(v, int) and abs(v) < 1 << 64)

    ok = (isinstance(sig, dict)
          and all(type(sig.get(k)) is int and 0 <= sig[k] < 1 << 64 for k in ("harts", "memory_size"))
          and isinstance(sig.get("virtio", []), list) and len(sig.get("virtio", [])) <= 64
          and all(d is None or (isinstance(d, dict) and all(isinstance(k, str) and plain(v) for k, v in d.items()))
                  for d in sig.get("virtio", [])))
    if not ok:
        raise WirtError(f"{where}: the machine signature (harts, memory size, virtio slots) is malformed; "
                        "the snapshot was edited or damaged: delete it")


def signature_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two machine signatures, one phrase each ("memory: 512 MiB vs 1 GiB")."""
    from wirt.units import human_size

    out = []
    if saved.get("memory_size") != current.get("memory_size"):
        out.append(f"memory: snapshot {human_size(saved.get('memory_size') or 0)}, "
                   f"VM {human_size(current.get('memory_size') or 0)}")
    if saved.get("harts") != current.get("harts"):
        out.append(f"cpus: snapshot {saved.get('harts')}, VM {current.get('harts')}")
    a, b = saved.get("virtio", []), current.get("virtio", [])
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x != y:
            out.append(f"virtio slot {i}: snapshot {_describe(x)}, VM {_describe(y)}")
    return out


def _describe(dev: dict[str, Any] | None) -> str:
    if not dev:
        return "empty"
    return " ".join(f"{k}={v}" for k, v in dev.items())


def save_machine(machine: Any, folder: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Snapshot a machine that is not running (between `run()` calls, or paused) into `folder`.

    Writes memory.img then snapshot.json (last, so a folder without it is an unfinished snapshot)
    and returns the body. `extra` keys are merged into the body.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    machine.flush_output()
    t0 = time.monotonic()
    memory = write_memory_image(machine.memory.array, folder / MEMORY_FILE, machine.memory.touched_pages())
    body = {"created": time.time(), "signature": machine.signature(), "machine": machine.state(),
            "memory": memory, "save_seconds": round(time.monotonic() - t0, 4), **(extra or {})}
    write_state_file(folder, body)
    return body


def check_restorable(machine: Any, folder: Path, body: dict[str, Any]) -> Path:
    """Everything a restore needs, checked without changing the machine: the body's parts, the
    machine's signature (memory size, device set), the memory image (a plain file beside the
    state file; its size and checksum) and the saved state (wirt.machine.statecheck). Returns
    the memory image's path."""
    from wirt.machine.statecheck import check_state

    folder = Path(folder)
    for key in ("signature", "machine", "memory"):
        if not isinstance(body.get(key), dict):
            raise WirtError(f"{folder / STATE_FILE} has no machine {key}: it is a disk-only snapshot")
    check_signature(body["signature"], str(folder / STATE_FILE))
    diffs = signature_differences(body["signature"], machine.signature())
    if diffs:
        raise WirtError(f"snapshot {folder.name} does not fit this machine: " + "; ".join(diffs))
    if body["memory"].get("file", MEMORY_FILE) != MEMORY_FILE:
        raise WirtError(f"{folder / STATE_FILE}: the memory image must be {MEMORY_FILE} beside it, not "
                        f"{str(body['memory'].get('file'))[:200]!r}; the snapshot was edited: delete it")
    image = folder / MEMORY_FILE
    check_memory_image(image, body["memory"], machine.memory.size)
    check_state(machine.state(), body["machine"])
    return image


def restore_machine(machine: Any, folder: Path, body: dict[str, Any] | None = None,
                    checked: bool = False) -> dict[str, Any]:
    """Put `machine` (not running) into the state saved in `folder`; returns the snapshot's body.

    Everything is checked before anything changes (`check_restorable`; `checked`: the caller did
    it already). Should loading fail all the same, the machine gets its previous state back.
    """
    folder = Path(folder)
    if body is None:
        body = read_state_file(folder)
    image = folder / MEMORY_FILE if checked else check_restorable(machine, folder, body)
    old = machine.state()
    fd = open_regular(image, os.O_RDONLY, "memory image")
    try:
        try:
            machine.load_state(body["machine"])
        except Exception as exc:  # noqa: BLE001 -- checked above; this is the safety net
            machine.load_state(old)
            raise WirtError(f"snapshot {folder.name}: its machine state could not be loaded ({type(exc).__name__}); "
                            "the machine continues unchanged") from None
        try:
            machine.memory.map_image(fd)
        except (OSError, WirtError) as exc:
            machine.load_state(old)
            raise WirtError(f"snapshot {folder.name}: cannot map its memory image ({getattr(exc, 'strerror', None) or exc}); "
                            "the machine continues unchanged") from None
    finally:
        os.close(fd)  # the mapping keeps the file open
    return body
