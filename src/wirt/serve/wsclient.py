"""A small blocking websocket client (RFC 6455), standard library only, for `wirt --remote`:
`console`, `shell` and `exec -t`/`-i` stream over the server's websockets without the serve extra.

It opens the connection the way wirt.serve.client.Client does (unix:, http:, https: URLs with a
bearer token), sends masked frames (section 5.3: a client must), answers pings, joins fragmented
messages and ends at a close frame. One thread may receive while others send.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
from urllib.parse import urlsplit

from wirt.serve.client import Client, Reply

__all__ = ["WebSocket", "Refused", "TEXT", "BINARY"]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_MESSAGE = 16 << 20


class Refused(Exception):
    """The server answered the upgrade with an HTTP error: `reply` holds its status and body."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


class WebSocket:
    """One client connection: `send_text`, `send_bytes`, `receive` (None once closed), `close`."""

    def __init__(self, client: Client, path: str) -> None:
        conn = client._conn()
        conn.connect()
        self.sock: socket.socket = conn.sock
        self._buf = b""
        self._lock = threading.Lock()
        self._closed = False
        key = base64.b64encode(os.urandom(16)).decode()
        host = "localhost" if client.url.startswith("unix:") else (urlsplit(client.url).netloc or "localhost")
        head = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if client.token:
            head.append(f"Authorization: Bearer {client.token}")
        try:
            self._handshake(("\r\n".join(head) + "\r\n\r\n").encode(), key)
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)  # an interactive session may be quiet for hours (the server pings)

    def _handshake(self, request: bytes, key: str) -> None:
        """Send the upgrade request; raise Refused for an HTTP error, ConnectionError for a bad answer."""
        self.sock.sendall(request)
        status, headers = self._read_head()
        if status != 101:
            length = headers.get("content-length", "0")
            body = self._read_exactly(min(int(length), 1 << 20)) if length.isdigit() and int(length) else b""
            raise Refused(Reply(status, headers, body))
        want = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise ConnectionError("the server's websocket handshake is wrong (Sec-WebSocket-Accept)")

    # ---- reading -----------------------------------------------------------------------------------
    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buf += data

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > 65536:
                raise ConnectionError("the server's answer has no end of headers")
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(parts[1]), headers

    def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read_exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exactly(8))[0]
        if n > MAX_MESSAGE:
            raise ConnectionError(f"a websocket frame of {n} bytes is too large")
        mask = self._read_exactly(4) if b1 & 0x80 else b""
        data = self._read_exactly(n)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def receive(self) -> tuple[int, bytes] | None:
        """The next message as (TEXT or BINARY, payload); None once the connection is closed."""
        if self._closed:
            return None
        kind, parts = 0, []
        try:
            while True:
                fin, op, data = self._frame()
                if op == PING:
                    self._send(PONG, data)
                    continue
                if op == PONG:
                    continue
                if op == CLOSE:
                    self.close()
                    return None
                if op in (TEXT, BINARY):
                    kind, parts = op, [data]
                elif op == 0 and kind:
                    parts.append(data)
                else:
                    raise ConnectionError(f"unexpected websocket opcode {op}")
                if fin:
                    return kind, b"".join(parts)
        except OSError:
            self._closed = True
            return None

    # ---- writing -------------------------------------------------------------------------------------
    def _send(self, op: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | op])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = (int.from_bytes(data, "little") ^ int.from_bytes(mask * (n // 4 + 1), "little")
                  ).to_bytes(n + 4, "little")[:n] if n else b""
        with self._lock:
            if self._closed:
                raise ConnectionError("the websocket is closed")
            self.sock.sendall(head + mask + masked)

    def send_text(self, text: str) -> None:
        """One text message (the JSON control messages of the server's websockets)."""
        self._send(TEXT, text.encode())

    def send_bytes(self, data: bytes) -> None:
        """One binary message (console input, a command's stdin)."""
        self._send(BINARY, data)

    def close(self) -> None:
        """Say goodbye (a close frame, if the connection still works) and close the socket."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.sock.sendall(bytes([0x80 | CLOSE, 0x80 | 2]) + b"\0\0\0\0" + struct.pack("!H", 1000))
            except OSError:
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
