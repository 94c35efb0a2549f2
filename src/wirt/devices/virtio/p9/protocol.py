"""9P2000.L wire format: little-endian integers, strings as u16 length + UTF-8, qids of 13 bytes.

Message numbers and layouts follow Linux include/net/9p/9p.h and net/9p/protocol.c (the client
this server talks to); every message starts with size[4] type[1] tag[2].
"""

from __future__ import annotations

import struct

__all__ = ["Reader", "Writer", "ProtocolError", "HEADER", "NAMES", "NOTAG", "NOFID", "VERSION", "qid", "message", "lerror"]

HEADER = struct.Struct("<IBH")  # size, type, tag
NOTAG = 0xFFFF
NOFID = 0xFFFF_FFFF
VERSION = "9P2000.L"

# Message types (9p.h enum p9_msg_t); R = T + 1.
TLERROR, RLERROR = 6, 7
TSTATFS, TLOPEN, TLCREATE, TSYMLINK, TMKNOD, TRENAME, TREADLINK = 8, 12, 14, 16, 18, 20, 22
TGETATTR, TSETATTR, TXATTRWALK, TXATTRCREATE, TREADDIR, TFSYNC, TLOCK, TGETLOCK = 24, 26, 30, 32, 40, 50, 52, 54
TLINK, TMKDIR, TRENAMEAT, TUNLINKAT = 70, 72, 74, 76
TVERSION, TAUTH, TATTACH, TFLUSH, TWALK, TREAD, TWRITE, TCLUNK, TREMOVE = 100, 102, 104, 108, 110, 116, 118, 120, 122

#: request type -> name ("TWALK"), for log messages
NAMES = {v: k for k, v in dict(globals()).items() if k.startswith("T") and isinstance(v, int) and k != "TLERROR"}

# qid.type (9p.h P9_QTDIR ...)
QTDIR, QTSYMLINK, QTFILE = 0x80, 0x02, 0x00


class ProtocolError(Exception):
    """A malformed message: answered with EPROTO (never a crash)."""


Qid = bytes  # 13 bytes: type[1] version[4] path[8]
_QID = struct.Struct("<BIQ")


def qid(qtype: int, version: int, path: int) -> Qid:
    return _QID.pack(qtype, version & 0xFFFF_FFFF, path & 0xFFFF_FFFF_FFFF_FFFF)


class Reader:
    """Decode the body of one request (after the 7-byte header)."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def _unpack(self, fmt: struct.Struct) -> tuple:
        if self.pos + fmt.size > len(self.buf):
            raise ProtocolError("message shorter than its fields")
        v = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return v

    def u8(self) -> int:
        return self._unpack(_U8)[0]

    def u16(self) -> int:
        return self._unpack(_U16)[0]

    def u32(self) -> int:
        return self._unpack(_U32)[0]

    def u64(self) -> int:
        return self._unpack(_U64)[0]

    def str(self) -> str:
        n = self.u16()
        if self.pos + n > len(self.buf):
            raise ProtocolError("string runs past the message")
        raw = bytes(self.buf[self.pos: self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "surrogateescape")


_U8, _U16, _U32, _U64 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


class Writer:
    """Build one reply body; `message(type, tag)` prefixes the header."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self.parts.append(_U8.pack(v))
        return self

    def u16(self, v: int) -> Writer:
        self.parts.append(_U16.pack(v))
        return self

    def u32(self, v: int) -> Writer:
        self.parts.append(_U32.pack(v & 0xFFFF_FFFF))
        return self

    def u64(self, v: int) -> Writer:
        self.parts.append(_U64.pack(v & 0xFFFF_FFFF_FFFF_FFFF))
        return self

    def str(self, s: str) -> Writer:
        raw = s.encode("utf-8", "surrogateescape")
        self.parts.append(_U16.pack(len(raw)) + raw)
        return self

    def raw(self, b: bytes) -> Writer:
        self.parts.append(b)
        return self

    def body(self) -> bytes:
        return b"".join(self.parts)


def message(rtype: int, tag: int, body: bytes, extra: int = 0) -> bytes:
    """Header + body; `extra` bytes of payload follow separately (a read's data)."""
    return HEADER.pack(HEADER.size + len(body) + extra, rtype, tag) + body


def lerror(tag: int, errno_: int) -> bytes:
    """Rlerror: the Linux errno of a failed request (9P2000.L)."""
    return message(RLERROR, tag, _U32.pack(errno_))
