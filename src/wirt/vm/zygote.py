"""A warm parent for VM processes: starting a VM is a fork(2), not a new interpreter.

A fresh VM process spends about half a second before its first guest instruction: the Python
interpreter, numpy, numba and the compiled CPU core load. The zygote (as on Android) is one
idle, single-threaded process per WIRT_HOME that has loaded all of that once; `spawn()` asks it
to fork, and the child runs `wirt.vm.process` from there (monitor and worker, as always). A
fork of a paused-in-memory interpreter takes milliseconds, and the children share the loaded
code pages with the zygote and each other (copy-on-write), which also lowers each VM's memory.

- Socket: $WIRT_HOME/zygote/<code hash>.sock (folder 0700, socket 0600). The hash covers
  wirt's source files and the interpreter, so an upgraded wirt never forks stale code; an
  old zygote idles out.
- Only the same uid (or root) is served (SO_PEERCRED, unix(7)). A request carries the VM
  name, working folder and environment as one JSON line, and the console log's descriptor
  (SCM_RIGHTS), which becomes the child's stdout and stderr.
- The zygote exits after IDLE_SECONDS without requests, or when its WIRT_HOME is deleted.
- `spawn()` returns None when no zygote answers (then the caller starts the VM process the
  ordinary way) and starts one in the background for next time. WIRT_ZYGOTE=0 turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["spawn", "socket_path", "stop", "Spawned", "main", "IDLE_SECONDS"]

IDLE_SECONDS = 600.0


def _code_hash() -> str:
    """Identity of the running code: wirt's .py files (path, size, mtime) and the interpreter."""
    root = Path(__file__).parent.parent  # the wirt package folder: this file is wirt/vm/zygote.py
    h = hashlib.sha256(sys.executable.encode())
    for p in sorted(root.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def socket_path(home: Path) -> Path:
    return Path(home) / "zygote" / f"{_code_hash()}.sock"


class Spawned:
    """A VM process forked by the zygote (not our child): `poll()` like subprocess.Popen's."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        """None while the process exists, else 0 (its exit status went to the zygote)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            return 0 if state in (b"Z", b"X") else None
        except (OSError, IndexError):
            return 0


def spawn(home: Path, name: str, log_fd: int, env: dict[str, str], cwd: Path) -> Spawned | None:
    """Fork VM process `name` from the zygote of `home`; None if none answers (one is started).
    WIRT_ZYGOTE=0 in the environment turns the zygote off (always None, none started)."""
    if env.get("WIRT_ZYGOTE", "1") == "0":
        return None
    path = socket_path(home)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    try:
        s.connect(str(path))
        request = json.dumps({"name": name, "cwd": str(cwd), "env": env}).encode() + b"\n"
        socket.send_fds(s, [request], [log_fd])
        reply = s.makefile("rb").readline()
        pid = json.loads(reply).get("pid") if reply else None
        return Spawned(int(pid)) if pid else None
    except (OSError, ValueError):
        _start(home, path, env)
        return None
    finally:
        s.close()


def _start(home: Path, path: Path, env: dict[str, str]) -> None:
    """Start a zygote for `home` in the background (it becomes useful once it has loaded)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.Popen([sys.executable, "-m", "wirt.vm.zygote", str(home), str(path)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, env=env, cwd="/")
    except OSError:
        pass


def stop(home: Path) -> None:
    """Stop the zygotes of `home` (any code version)."""
    folder = Path(home) / "zygote"
    for sock in folder.glob("*.sock") if folder.is_dir() else []:
        pidfile = sock.with_suffix(".pid")
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


# ---- the zygote process -----------------------------------------------------------------------
PRELOAD = ("wirt.vm", "wirt.machine", "wirt.devices", "wirt.netback", "wirt.storage")


def _preload() -> None:
    """Load everything a VM process needs before its first guest instruction: the modules of
    the layers it runs (so no child imports or compiles a module), the compiled core and the
    compiled virtqueue walk."""
    import importlib
    import pkgutil

    for name in PRELOAD:
        mod = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), name + "."):
            with contextlib.suppress(Exception):
                importlib.import_module(info.name)
    from wirt.cpu.hart import core_module
    from wirt.devices.virtio.ringwalk import warm

    core_module()
    warm()  # the compiled virtqueue walk, loaded once here instead of in every VM


def _child(conn: socket.socket, req: dict, log_fd: int) -> None:
    """In the forked child: become the VM process `req["name"]` (never returns)."""
    code = 1
    try:
        conn.close()
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the monitor waits for its worker
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        for fd in (devnull, log_fd):
            os.close(fd)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in req.get("env", {}).items()})
        os.chdir(req.get("cwd") or "/")
        from wirt.vm import process

        code = process.main([str(req["name"])])
    except BaseException:  # noqa: BLE001 -- the traceback goes to the console log
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(home: Path, path: Path) -> None:
    """Accept fork requests on `path` until idle or `home` is gone."""
    from wirt.vm.control import listen_private, peer_credentials

    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    srv = listen_private(path, 16)
    srv.settimeout(2.0)
    path.with_suffix(".pid").write_text(f"{os.getpid()}\n")
    allowed = (os.getuid(), 0)
    last = time.monotonic()
    try:
        while time.monotonic() - last < IDLE_SECONDS and Path(home).is_dir() and path.exists():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            last = time.monotonic()
            with conn:
                conn.settimeout(5.0)
                try:
                    if peer_credentials(conn)[1] not in allowed:
                        continue
                    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 1)
                    req = json.loads(msg)
                    if len(fds) != 1 or not isinstance(req, dict) or "name" not in req:
                        for fd in fds:
                            os.close(fd)
                        continue
                except (OSError, ValueError):
                    continue
                pid = os.fork()
                if pid == 0:
                    _child(conn, req, fds[0])
                os.close(fds[0])
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    finally:
        srv.close()
        with contextlib.suppress(OSError):
            if path.with_suffix(".pid").read_text().strip() == str(os.getpid()):
                path.unlink()
                path.with_suffix(".pid").unlink()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m wirt.vm.zygote WIRT_HOME SOCKET (started by wirt itself)", file=sys.stderr)
        return 2
    serve(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
