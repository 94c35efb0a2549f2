"""`wirt cp`: files and trees between the host and a running guest, as a tar stream.

The bytes go through the VM process's data socket (wirt.vm.datachan) to the guest's wirt.data
port (/dev/vportNp0), never through the JSON control socket; a command run by the guest agent
(`wirt exec`'s channel) puts `tar` on the guest end of the port. Both tar implementations the
guests have (busybox's, GNU's) read and write the GNU format used here, which keeps modes, times
and symlinks. Nothing is held in memory whole: the host reads and writes in 1 MiB pieces.

Host -> guest: the guest command extracts into DEST when it is a directory, else into a fresh
temporary directory beside DEST and renames the result onto DEST (so a failed copy leaves no
half file under DEST's name). One regular file skips tar: its bytes go straight to a temporary
file beside the target through `dd` in 64 KiB writes (busybox tar's extraction cost the guest 3.1-3.4
instructions per byte, dd 2.5), then its size is checked, its mode and time set, and it is renamed.
Guest -> host: the host extracts itself, refusing members that would land outside the
destination (absolute names, `..`, paths through symlinks the archive made), and dropping
set-uid/set-gid bits.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import socket
import stat
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wirt.errors import WirtError

__all__ = ["copy_to_guest", "copy_from_guest", "CHUNK"]

CHUNK = 1 << 20
BUSY_WAIT = 0.2  # seconds between attempts while another copy holds the VM's data port
Progress = Callable[[int], None]  # called with the bytes moved so far

# The guest end: find the port by name (sysfs), then the command. $P is the device.
_FIND_PORT = ("P=; for n in /sys/class/virtio-ports/*/name; do "
              "[ \"$(cat \"$n\" 2>/dev/null)\" = wirt.data ] && P=/dev/$(basename \"$(dirname \"$n\")\"); done; "
              "[ -c \"$P\" ] || { echo 'the guest has no wirt.data port (/sys/class/virtio-ports)' >&2; exit 97; }; ")


def _put_command(dest: str, name: str) -> str:
    """Extract the stream into DEST (a folder) or beside it and rename; then set the folders'
    times from stdin ("MTIME PATH" lines: busybox tar leaves folders with the time of extraction)."""
    d, n = shlex.quote(dest), shlex.quote(name)
    return _FIND_PORT + (
        f"D={d}; N={n}; "
        "times() { while read -r mt mp; do touch -c -d \"@$mt\" -- \"$1/$mp\"; done; }; "
        "if [ -d \"$D\" ]; then tar -x -f - -C \"$D\" < \"$P\" || exit 1; times \"$D\"; exit 0; fi; "
        "dir=$(dirname -- \"$D\"); "
        "[ -d \"$dir\" ] || { echo \"$dir: no such directory\" >&2; exit 1; }; "
        "t=$(mktemp -d \"$dir/.wirt-cp.XXXXXX\") || exit 1; "
        "trap 'rm -rf -- \"$t\"; exit 143' TERM INT HUP; "  # `wirt cp` interrupted: no leftovers
        "tar -x -f - -C \"$t\" < \"$P\" && times \"$t\" && mv -f -- \"$t/$N\" \"$D\"; s=$?; "
        "rm -rf -- \"$t\"; exit $s")


def _put_file_command(dest: str, name: str, size: int, mode: int, mtime: int) -> str:
    """Write the port's bytes (one regular file, no archive) to a temporary file beside the target
    (DEST, or DEST/NAME when DEST is a folder), check that `size` bytes came, set mode and time, rename."""
    d, n = shlex.quote(dest), shlex.quote(name)
    return _FIND_PORT + (
        f"D={d}; N={n}; "
        "[ -d \"$D\" ] && D=\"${D%/}/$N\"; "
        "[ -d \"$D\" ] && { echo \"$D: is a directory\" >&2; exit 1; }; "
        "dir=$(dirname -- \"$D\"); "
        "[ -d \"$dir\" ] || { echo \"$dir: no such directory\" >&2; exit 1; }; "
        "t=$(mktemp \"$dir/.wirt-cp.XXXXXX\") || exit 1; "
        "trap 'rm -f -- \"$t\"; exit 143' TERM INT HUP; "
        "dd if=\"$P\" of=\"$t\" bs=65536 iflag=fullblock status=none; s=$(stat -c %s -- \"$t\"); "
        f"if [ \"$s\" != {size} ]; then echo \"the guest received $s of {size} bytes\" >&2; "
        "rm -f -- \"$t\"; exit 1; fi; "
        f"chmod {mode:o} \"$t\" && touch -c -d @{mtime} \"$t\" && mv -f -- \"$t\" \"$D\"; s=$?; "
        "rm -f -- \"$t\"; exit $s")


def _folder_times(src: Path, name: str) -> bytes:
    """"MTIME PATH" lines for the folders of a tree, deepest first, within the agent's stdin limit
    (beyond it, the outermost folders keep the time of extraction)."""
    from wirt.vm.agent import MAX_STDIN

    if not src.is_dir() or src.is_symlink():
        return b""
    lines = []
    for root, _, _ in os.walk(src):  # symlinks to folders are not followed
        rel = os.path.relpath(root, src)
        path = name if rel == "." else f"{name}/{rel}"
        if "\n" not in path:
            lines.append((path.count("/"), f"{int(os.lstat(root).st_mtime)} {path}\n".encode()))
    out, size = [], 0
    for _, line in sorted(lines, key=lambda x: -x[0]):
        if size + len(line) > MAX_STDIN:
            break
        out.append(line)
        size += len(line)
    return b"".join(out)


def _get_command(src: str, recursive: bool) -> str:
    s = shlex.quote(src)
    return _FIND_PORT + (
        f"S={s}; "
        "[ -e \"$S\" ] || [ -L \"$S\" ] || { echo \"$S: no such file or directory\" >&2; exit 1; }; "
        + ("" if recursive else "[ -d \"$S\" ] && { echo \"$S is a directory; use -r\" >&2; exit 1; }; ")
        + "cd -- \"$(dirname -- \"$S\")\" || exit 1; "
        "tar -c -f - \"./$(basename -- \"$S\")\" > \"$P\"")


class _Channel:
    """The client end of a VM's data socket, aware of the guest command that serves the other end:
    reads and writes give up when that command has ended (it will not drain or fill the port)."""

    def __init__(self, path: Path, done: threading.Event, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
            except FileNotFoundError:
                s.close()
                raise WirtError("this VM's process has no data socket (started by an older wirt?); "
                                "restart the VM for `wirt cp`") from None
            except OSError as exc:
                s.close()
                raise WirtError(f"cannot connect to {path}: {exc.strerror or exc}") from None
            s.settimeout(30)
            hello = s.recv(16)
            if hello == b"ok\n":
                break
            s.close()
            if hello != b"busy\n":
                raise WirtError(f"the VM's data socket refused the copy ({hello.decode(errors='replace').strip()})")
            if time.monotonic() >= deadline:
                raise WirtError("another `wirt cp` is using this VM's data port; try again when it ends")
            time.sleep(BUSY_WAIT)
        s.setblocking(False)
        self.sock = s
        self.done = done
        self.moved = 0
        self.progress: Progress | None = None

    def _wait(self, writable: bool) -> None:
        while True:
            r, w, _ = select.select([] if writable else [self.sock], [self.sock] if writable else [], [], 0.2)
            if r or w:
                return
            if self.done.is_set():
                raise _GuestEnded()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            self._wait(True)
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _GuestEnded() from exc
            view = view[n:]
            self._count(n)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        while True:
            self._wait(False)
            try:
                data = self.sock.recv(size)
            except BlockingIOError:
                continue
            self._count(len(data))
            return data

    def _count(self, n: int) -> None:
        self.moved += n
        if self.progress is not None and n:
            self.progress(self.moved)

    def close(self) -> None:
        self.sock.close()


class _GuestEnded(Exception):
    """The guest command ended while the host still had bytes to move (its error says why)."""


def _run_guest(vm: Any, command: str, timeout: float, stdin: bytes = b"") -> tuple[threading.Event, dict[str, Any]]:
    """Start `command` through the agent on a thread; the event is set when it has ended."""
    done = threading.Event()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = vm.exec(command, timeout=timeout, stdin=stdin)
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            out["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="wirt-cp-exec", daemon=True).start()
    return done, out


def _guest_outcome(out: dict[str, Any], what: str) -> None:
    if "error" in out:
        err = out["error"]
        raise err if isinstance(err, WirtError) else WirtError(f"{what}: {err}")
    r = out["result"]
    if r.status != 0:
        msg = r.stderr.decode(errors="replace").strip().splitlines()
        raise WirtError(f"{what}: " + ("; ".join(m.removeprefix("tar: ") for m in msg[-3:])
                                       or f"the guest command failed with status {r.status}"))


def _reset_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def tree_size(path: Path) -> int:
    """Bytes of regular files under `path` (the progress bar's total)."""
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                s = os.lstat(os.path.join(root, f))
                if stat.S_ISREG(s.st_mode):
                    total += s.st_size
    return total


def copy_to_guest(vm: Any, src: str | Path, dest: str, *, recursive: bool = False, timeout: float = 120.0,
                  progress: Progress | None = None) -> int:
    """Copy host file or tree `src` to `dest` in the guest (into it when it is a directory).
    Returns the bytes sent. `timeout`: seconds to wait for the agent and for the data port."""
    src = Path(src)
    try:
        st = src.lstat()
    except OSError as exc:
        raise WirtError(f"{src}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode) and not recursive:
        raise WirtError(f"{src} is a directory; use -r to copy a tree")
    if not dest.startswith("/"):
        raise WirtError(f"{dest}: give an absolute path in the guest, e.g. NAME:/root/")
    name = src.resolve().name if src.name in ("", ".", "..") else src.name
    if not name:
        raise WirtError(f"{src}: cannot copy the root directory; name a folder under it")
    vm._require_running()
    done = threading.Event()
    chan = _Channel(vm.paths.data_socket, done, timeout)
    chan.progress = progress
    try:
        if stat.S_ISREG(st.st_mode):  # the bytes alone (see the module's docstring)
            command, times = _put_file_command(dest, name, st.st_size, st.st_mode & 0o7777, int(st.st_mtime)), b""
        else:
            command, times = _put_command(dest, name), _folder_times(src, name) if recursive else b""
        done, out = _run_guest(vm, command, timeout, times)
        chan.done = done
        try:
            if stat.S_ISREG(st.st_mode):
                _send_file(src, chan)
            else:
                with tarfile.open(fileobj=chan, mode="w|", format=tarfile.GNU_FORMAT,  # type: ignore[call-overload]
                                  bufsize=CHUNK, copybufsize=CHUNK) as tar:
                    tar.add(str(src), arcname=name, recursive=recursive, filter=_reset_owner)
            chan.sock.shutdown(socket.SHUT_WR)
        except _GuestEnded:
            pass  # the guest's error below says why
        except OSError as exc:
            raise WirtError(f"{src}: {exc.strerror or exc}") from None
        done.wait()
    finally:
        chan.close()
    _guest_outcome(out, f"copy to {vm.name}:{dest}")
    return chan.moved


def _send_file(src: Path, chan: _Channel) -> None:
    """Stream a regular file's bytes into the channel, CHUNK at a time."""
    with open(src, "rb") as f:
        while data := f.read(CHUNK):
            chan.write(data)


def copy_from_guest(vm: Any, src: str, dest: str | Path, *, recursive: bool = False, timeout: float = 120.0,
                    progress: Progress | None = None) -> int:
    """Copy guest file or tree `src` to host `dest` (into it when it is a directory).
    Returns the bytes received."""
    if not src.startswith("/"):
        raise WirtError(f"{src}: give an absolute path in the guest, e.g. NAME:/etc/hostname")
    top = os.path.basename(src.rstrip("/")) or ""
    if not top or top in (".", ".."):
        raise WirtError(f"{src}: name a file or folder (not / or a path ending in . or ..)")
    dest = Path(dest)
    target = dest / top if dest.is_dir() else dest
    if not target.parent.is_dir():
        raise WirtError(f"{target.parent}: no such directory on the host")
    vm._require_running()
    done = threading.Event()
    chan = _Channel(vm.paths.data_socket, done, timeout)
    chan.progress = progress
    try:
        done, out = _run_guest(vm, _get_command(src, recursive), timeout)
        chan.done = done
        try:
            with tarfile.open(fileobj=chan, mode="r|", bufsize=CHUNK) as tar:  # type: ignore[call-overload]
                try:
                    _extract(tar, top, target)
                finally:
                    while chan.read(CHUNK):  # the rest (tar's padding, or all after an error): the
                        pass                 # guest's writes block until the host has read them
        except _GuestEnded:
            pass
        except tarfile.ReadError as exc:
            if not done.wait(5.0) or ("result" in out and out["result"].status == 0):
                raise WirtError(f"copy from {vm.name}:{src}: the guest sent a damaged archive ({exc})") from None
        done.wait()
    finally:
        chan.close()
    _guest_outcome(out, f"copy from {vm.name}:{src}")
    return chan.moved


def _norm(name: str) -> str:
    """A member name without empty and "." components ("./a//b" -> "a/b")."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _member_path(name: str, top: str, target: Path) -> Path:
    """Where member `name` (./TOP/...) goes; WirtError for anything outside TOP."""
    parts = _norm(name).split("/")
    if not parts or parts[0] != top or ".." in parts or name.startswith("/"):
        raise WirtError(f"the guest sent {name!r}, which is outside {top!r}; nothing more was written")
    return target.joinpath(*parts[1:])


def _inside(path: Path, target: Path) -> None:
    """The folder `path` is created in must be `target` or under it, after resolving symlinks
    (a symlink the archive made earlier must not carry later members elsewhere)."""
    parent = os.path.realpath(path.parent)
    root = os.path.realpath(target)
    if path != target and not (parent == root or parent.startswith(root.rstrip("/") + "/")):
        raise WirtError(f"the guest's archive leads {path} outside {target} through a symlink; nothing more was written")


def _extract(tar: tarfile.TarFile, top: str, target: Path) -> None:
    """Write a stream of members under `target` (the member TOP itself becomes `target`)."""
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    written: dict[str, Path] = {}
    for m in tar:
        path = _member_path(m.name, top, target)
        _inside(path, target)
        mode = m.mode & 0o1777  # no set-uid/set-gid bits from a guest
        if m.isdir():
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                raise WirtError(f"{path} exists and is not a directory")
            path.mkdir(mode=0o700, exist_ok=True)
            dirs.append((path, m))
        elif m.isreg():
            if path != target and path.is_symlink():
                path.unlink()
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | (os.O_NOFOLLOW if path != target else 0)
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "wb") as f:
                data = tar.extractfile(m)
                assert data is not None
                while chunk := data.read(CHUNK):
                    f.write(chunk)
                os.fchmod(f.fileno(), mode)
            os.utime(path, (m.mtime, m.mtime))
        elif m.issym():
            if path.is_symlink() or path.is_file():
                path.unlink()
            os.symlink(m.linkname, path)
            with contextlib.suppress(NotImplementedError, OSError):
                os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        elif m.islnk():
            src = written.get(_norm(m.linkname)) or _member_path(m.linkname, top, target)
            _inside(src, target)
            if path.exists() or path.is_symlink():
                path.unlink()
            os.link(src, path, follow_symlinks=False)
        else:
            continue  # devices, FIFOs: not copied
        written[_norm(m.name)] = path
    for path, m in reversed(dirs):  # children first changed the folders' times
        os.chmod(path, m.mode & 0o1777)
        os.utime(path, (m.mtime, m.mtime))
