"""User-mode networking through passt (Debian package `passt`), wirt's default backend.

passt gives the guest DHCP (192.0.2.2/24 here, gateway and DNS 192.0.2.1), DNS forwarding and
NAT to the host's network without privileges; connections to the gateway reach the host's
loopback. Port forwards map host ports to guest ports.

How it is started: `passt -f -q -F FD -m MTU [-t ...] [-u ...]`, where FD is one end of a
socketpair that wirt keeps the other end of. passt speaks QEMU's stream framing on it (4-byte
big-endian length + frame). Handing over a connected socket (rather than `-s PATH`) avoids the
socket-path trap: started as root, passt drops to `nobody` before it binds the socket, so the
bind fails in any directory `nobody` cannot write to. Checked with Debian 12's passt
(0.0~git20230309). passt exits when its socket closes; `close()` also terminates it. It runs
under SCHED_BATCH (`batch_scheduling`), so waking it does not preempt the vCPU.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, Callable, Iterable

from wirt.errors import WirtError
from wirt.netback.base import Deliver, NetBackend
from wirt.netback.stream import StreamBackend

__all__ = ["PasstBackend", "PortForward", "parse_port_forward", "socket_buffers", "SOCKET_BUFFER", "batch_scheduling"]

log = logging.getLogger(__name__)

_FWD = re.compile(r"^(?:(?P<addr>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host>\d+)(?::(?P<guest>\d+))?(?:/(?P<proto>tcp|udp))?$")


@dataclass(frozen=True)
class PortForward:
    """Host port `host_port` (optionally bound to `address`) forwarded to `guest_port`."""

    host_port: int
    guest_port: int
    protocol: str = "tcp"
    address: str | None = None

    def passt_args(self) -> list[str]:
        spec = f"{self.host_port}:{self.guest_port}"
        if self.address:
            spec = f"{self.address}/{spec}"  # passt's syntax: ADDR/PORT[:GUEST]
        return ["-t" if self.protocol == "tcp" else "-u", spec]

    def __str__(self) -> str:
        addr = f"{self.address}:" if self.address else ""
        return f"{addr}{self.host_port}:{self.guest_port}/{self.protocol}"


LOOPBACK = "127.0.0.1"


def parse_port_forward(text: str) -> PortForward:
    """Parse `[ADDR:]HOST[:GUEST][/tcp|/udp]`, e.g. `8080:80`, `5353:53/udp`, `0.0.0.0:2222:22`.
    Without ADDR the host port listens on 127.0.0.1 only (0.0.0.0 exposes it on every interface)."""
    m = _FWD.match(text.strip())
    if not m:
        raise WirtError(f"bad port forward {text!r}; use HOST:GUEST[/tcp|/udp], e.g. 8080:80 or 5353:53/udp")
    host = int(m["host"])
    guest = int(m["guest"]) if m["guest"] else host
    for port in (host, guest):
        if not 1 <= port <= 65535:
            raise WirtError(f"bad port forward {text!r}: port {port} is not in 1-65535")
    addr = m["addr"] or LOOPBACK  # reachable from this host only unless an address is given
    if any(int(part) > 255 for part in addr.split(".")):
        raise WirtError(f"bad port forward {text!r}: {addr} is not an IPv4 address")
    return PortForward(host, guest, m["proto"] or "tcp", addr)


#: Socket buffer size asked for on both ends of the link to passt (passt has no option of its
#: own for it; options set on its end before the hand-over stay with the socket). The kernel
#: caps it at net.core.wmem_max / rmem_max.
SOCKET_BUFFER = 4 << 20


def socket_buffers(*socks: socket.socket, size: int = SOCKET_BUFFER) -> None:
    """Ask for `size`-byte send and receive buffers, so a burst of 64 KiB frames does not stall
    the sender while the other side catches up."""
    for s in socks:
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass  # not allowed this large: the default stays


def batch_scheduling(pid: int) -> bool:
    """Put process `pid` (passt) under SCHED_BATCH (sched(7)); False where that cannot be done.

    Every frame the guest sends wakes passt from the vCPU's thread. Under the default policy a
    freshly woken passt preempts the waker when no core is idle (CFS's wake-up preemption, which
    the kernel skips for a SCHED_BATCH task: "a small scheduling penalty with respect to wakeup
    behavior"), so the vCPU sat in the send while passt, and the receive thread it wakes in
    turn, ran in its place, once or twice per frame. Under SCHED_BATCH passt runs on an idle
    core at once as before, otherwise at the next regular switch, taking several frames per
    wake-up; its share of the CPU over time is unchanged (nice 0). Any user may set the policy
    of their own processes.
    """
    try:
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # no such policy here, or the process is gone
        return False
    return True


#: passt's own default MTU (65520): the guest sends and receives up to 64 KiB frames, so a
#: bulk transfer costs the guest and wirt one frame per 64 KiB instead of per 1.5 KiB.
PASST_MTU = 65520


class PasstBackend(NetBackend):
    """A passt process connected through a socketpair."""

    #: passt builds every frame it sends to the guest with correct checksums.
    checksums_valid = True

    def __init__(self, port_forwards: Iterable[str | PortForward] = (), passt: str = "passt",
                 mtu: int = PASST_MTU, extra_args: Iterable[str] = ()) -> None:
        exe = shutil.which(passt)
        if exe is None:
            raise WirtError(f"{passt} not found; install Debian's passt package (apt-get install passt) "
                            "or choose another network backend")
        forwards = [f if isinstance(f, PortForward) else parse_port_forward(f) for f in port_forwards]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socket_buffers(ours, theirs)
        args = [exe, "-f", "-q", "-F", str(theirs.fileno()), "-m", str(mtu)]
        for f in forwards:
            args += f.passt_args()
        args += list(extra_args)
        try:
            self.process = subprocess.Popen(args, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            ours.close()
            raise WirtError(f"cannot start {exe}: {exc.strerror}") from None
        finally:
            theirs.close()
        batch_scheduling(self.process.pid)  # its wake-ups must not preempt the vCPU's thread
        self.port_forwards = forwards
        self.mtu = mtu
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        assert self.process.stderr is not None
        threading.Thread(target=self._drain_stderr, args=(self.process.stderr,),
                         name="wirt-passt-stderr", daemon=True).start()
        self._stream = StreamBackend(ours, name="wirt-net passt")
        self.closed = False

    def _drain_stderr(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            if line and "syslog" not in line:  # passt reports each failed syslog send
                self._stderr_tail.append(line)
                log.debug("passt: %s", line)

    @property
    def messages(self) -> list[str]:
        """passt's recent messages (warnings, errors)."""
        return list(self._stderr_tail)

    def start(self, deliver: Deliver) -> None:
        self._stream.start(deliver)

    def send(self, frame: bytes) -> None:
        self._stream.send(frame)

    def start_many(self, deliver_many: Callable[[list[bytes]], None]) -> None:
        self._stream.start_many(deliver_many)

    def send_many(self, frames: list[bytes]) -> None:
        self._stream.send_many(frames)

    def wait_drained(self, timeout: float) -> bool:
        return self._stream.wait_drained(timeout)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stream.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        rc = self.process.returncode
        if rc not in (0, -15) and self._stderr_tail:
            log.warning("passt exited with status %s: %s", rc, self._stderr_tail[-1])
