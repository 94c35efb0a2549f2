"""A host tap device the user created and named (Linux /dev/net/tun, IFF_TAP | IFF_NO_PI).

wirt does not create the device: that needs privileges, and the host's network setup (bridge,
addresses) is the user's business. Create one with `ip tuntap add dev NAME mode tap user USER`.
Each read from the tap file descriptor returns one Ethernet frame; each write sends one.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from typing import Callable

from wirt.errors import WirtError
from wirt.netback.base import MAX_FRAME, Deliver, NetBackend
from wirt.netback.loop import EventLoop

__all__ = ["TapBackend"]

log = logging.getLogger(__name__)

# linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


class TapBackend(NetBackend):
    """Frames to and from the host tap device `name`."""

    def __init__(self, name: str, tun_path: str = "/dev/net/tun") -> None:
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name:
            raise WirtError(f"bad tap device name {name!r}: 1-15 characters, no '/'")
        hint = f"create it with: ip tuntap add dev {name} mode tap user $USER"
        if not os.path.exists(f"/sys/class/net/{name}"):
            raise WirtError(f"tap device {name} does not exist; {hint}")
        try:
            fd = os.open(tun_path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise WirtError(f"{tun_path} is missing; load the tun kernel module (modprobe tun)") from None
        except PermissionError:
            raise WirtError(f"{tun_path}: permission denied; make it accessible to this user") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EPERM:
                raise WirtError(f"tap device {name}: permission denied; it must belong to this user ({hint})") from None
            if exc.errno == errno.EBUSY:
                raise WirtError(f"tap device {name} is in use by another process") from None
            if exc.errno == errno.EINVAL:
                raise WirtError(f"{name} exists but is not a tap device; name one made with "
                                f"'ip tuntap add dev NAME mode tap user $USER'") from None
            raise WirtError(f"tap device {name}: {exc.strerror}") from None
        self.name = name
        self.fd = fd
        self._loop = EventLoop(f"wirt-net tap {name}")
        self._deliver_many: Callable[[list[bytes]], None] = lambda frames: None
        self.closed = False
        self.dropped = 0

    # EventLoop handler protocol
    def fileno(self) -> int:
        return -1 if self.closed else self.fd

    def on_read(self) -> None:
        frames: list[bytes] = []
        for _ in range(64):  # bounded batch, then let the loop breathe
            try:
                frame = os.read(self.fd, MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            if frame:
                frames.append(frame)
        if frames:
            self._deliver_many(frames)

    def on_write(self) -> None:
        pass

    def wants_write(self) -> bool:
        return False

    def on_error(self, exc: BaseException) -> None:
        log.warning("tap %s: %s", self.name, exc)

    def start(self, deliver: Deliver) -> None:
        self.start_many(lambda frames: [deliver(f) for f in frames])

    def start_many(self, deliver_many: Callable[[list[bytes]], None]) -> None:
        self._deliver_many = deliver_many
        self._loop.add(self)
        self._loop.start()

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        try:
            os.write(self.fd, frame)
        except BlockingIOError:
            self.dropped += 1  # the host's queue is full: drop, as a busy wire would
        except OSError as exc:
            self.dropped += 1
            log.warning("tap %s: send failed: %s", self.name, exc.strerror)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove(self)
        self._loop.stop()
        os.close(self.fd)
