"""Varlink framing over AF_UNIX stream sockets: JSON objects, each ended by a NUL byte.

A call is {"method": ..., "parameters": {...}} with "more": true for a stream of
replies or "oneway": true for none; a reply is {"parameters": {...}} with
"continues": true while more follow, or {"error": "...", "parameters": {...}}.
Sockets here are non-blocking and driven by the daemon's poll loop.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 16 << 20  # refuse a peer that sends more than this without a NUL
_UCRED = struct.Struct("3i")


class VarlinkError(Exception):
    """The peer broke the protocol (bad JSON, not an object, oversized): drop the link."""


@dataclass(frozen=True, slots=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_cred(sock: socket.socket) -> PeerCred:
    """SO_PEERCRED of a connected AF_UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return PeerCred(*_UCRED.unpack(raw))


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\0"


def decode(raw: bytes) -> dict[str, Any]:
    """One message (the bytes before its NUL) as a JSON object; VarlinkError otherwise.

    RecursionError too: json recurses once per level of nesting, and a peer's "[[[["
    must drop its link, not escape into the daemon's loop.
    """
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise VarlinkError(f"not JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise VarlinkError("message is not a JSON object")
    return decoded


class VarlinkStream:
    """One connection: buffered sends and NUL-split receives, never blocking."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        return bool(self._outbuf)

    def send(self, message: dict[str, Any]) -> None:
        self._outbuf += encode(message)
        self.flush()

    def flush(self) -> None:
        """Write what the socket takes now; the rest waits for POLLOUT."""
        while self._outbuf and not self.closed:
            try:
                sent = self.sock.send(self._outbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            del self._outbuf[:sent]

    def receive(self) -> list[dict[str, Any]]:
        """Every complete message readable now. Raises EOFError when the peer hung up
        (after the messages it sent) and VarlinkError on a protocol violation."""
        eof = False
        why = "peer closed the connection"
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ECONNRESET (the peer closed with our bytes unread) may follow data it
                # sent first: the complete messages are still returned.
                eof, why = True, str(exc)
                break
            if not chunk:
                eof = True
                break
            self._inbuf += chunk
            if len(self._inbuf) > MAX_MESSAGE and b"\0" not in self._inbuf:
                raise VarlinkError("message too large")
        messages: list[dict[str, Any]] = []
        while True:
            end = self._inbuf.find(b"\0")
            if end < 0:
                break
            raw = bytes(self._inbuf[:end])
            del self._inbuf[: end + 1]
            messages.append(decode(raw))
        if eof and not messages:
            raise EOFError(why)
        return messages

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()


def connect(path: str) -> socket.socket:
    """A blocking connect (a local socket answers at once), then non-blocking use."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(2.0)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
