"""Raw-socket clients for the core tests: exact bytes out, exact bytes back.

The high-level clients (``httpx``, ``websockets``) hide what the tests must see: the order
of pipelined responses, a ``100 Continue`` before the body, a HEAD response without one,
ping and pong frames, a close frame's code and reason, a socket dropped without a close
frame. These helpers send and read exactly what is on the wire.

Lives in ``tests/apps`` beside the applications it speaks to; the tests import it, the
servers never do.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "ERROR_LINE",
    "PING",
    "PONG",
    "TEXT",
    "Frame",
    "LogWindow",
    "RawConnection",
    "Response",
    "close_payload",
    "frame",
    "records",
    "tell",
    "token",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def token() -> str:
    """A fresh key for one test's facts in a shared server."""
    return os.urandom(6).hex()


_client: httpx.Client | None = None


def _http() -> httpx.Client:
    """One keep-alive client for all record look-ups (a new client per call costs ~30 ms)."""
    global _client
    if _client is None:
        _client = httpx.Client(timeout=30)
    return _client


def records(base_url: str, key: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
    """The facts the app recorded under ``key``, once there are ``count`` or ``timeout``
    passed (see recorder). ``count=0`` answers at once with what is there."""
    response = _http().get(f"{base_url}/_records/{key}", params={"count": count, "timeout": timeout})
    response.raise_for_status()
    result: list[Any] = response.json()
    return result


def tell(base_url: str, key: str) -> None:
    """Record ``key`` in the app: the test telling the app something happened."""
    _http().post(f"{base_url}/_records/{key}", params={"count": 0, "timeout": 0}).raise_for_status()


class LogWindow:
    """What a server logs between two sentinel requests: one made now, one on :meth:`text`.

    Each sentinel is a ``GET /_records/<sentinel>`` whose access line the window waits
    for, so the window holds exactly what the server logged in between, with no sleep to
    guess how long logging takes and nothing left over from earlier tests.
    """

    def __init__(self, server: Any, base_url: str) -> None:
        self.server = server
        self.base_url = base_url
        self.start = self._sync()

    def _sync(self) -> int:
        """Make a sentinel request; the output offset just after its log line."""
        sentinel = f"sentinel-{token()}"
        records(self.base_url, sentinel, 0, 0)
        self.server.wait_for(re.compile(re.escape(sentinel).encode()), 10.0)
        output = bytes(self.server.output)
        end = output.find(b"\n", output.index(sentinel.encode()))
        return len(output) if end == -1 else end + 1

    def text(self) -> str:
        end = self._sync()
        output = bytes(self.server.output)
        line_start = output.rfind(b"\n", 0, end - 1) + 1
        return output[self.start : line_start].decode("utf-8", "replace")

    def errors(self) -> list[str]:
        """Lines at error level or worse, and traceback lines."""
        return [line for line in self.text().splitlines() if ERROR_LINE.search(line)]


ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    #: The ``transfer-encoding: chunked`` pieces as they came (empty otherwise).
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True) -> bytes:
    """One WebSocket frame as a client sends it (masked)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


class RawConnection:
    """One TCP (or Unix) connection with a read buffer."""

    def __init__(self, port: int | None = None, *, uds: str | None = None, timeout: float = 5.0) -> None:
        if uds is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(uds)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = bytearray()
        self.port = port

    # -- bytes ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buffer += chunk

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.index(b"\r\n")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def read_until_close(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the server closed the connection (EOF or reset) with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        if chunk:
            self.buffer += chunk
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP/1.1 ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        """Send one request; a body gets a content-length unless headers say otherwise."""
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
        given = {name.lower() for name, _ in headers or []}
        lines += [f"{name}: {value}" for name, value in headers or []]
        if body and "content-length" not in given and "transfer-encoding" not in given:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def read_response(self, *, head: bool = False) -> Response:
        """Read one response (a 1xx counts as one) and its body, framed as HTTP says."""
        status_line = self.read_line()
        _version, status, reason = ([*status_line.split(b" ", 2), b""])[:3]
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = self.read_line()
            if not line:
                break
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status), reason, headers)
        code = response.status
        if head or code < 200 or code in (204, 304):
            return response
        if (response.header(b"transfer-encoding") or b"").lower() == b"chunked":
            while True:
                size = int(self.read_line().split(b";")[0], 16)
                if size == 0:
                    while self.read_line():
                        pass
                    break
                piece = self.read_exactly(size)
                self.read_line()
                response.chunks.append(piece)
            response.body = b"".join(response.chunks)
        elif response.header(b"content-length") is not None:
            response.body = self.read_exactly(int(response.header(b"content-length") or b"0"))
        else:
            response.body = self.read_until_close()
        return response

    # -- WebSocket -----------------------------------------------------------------------
    def ws_handshake(self, target: str, headers: list[tuple[str, str]] | None = None, then: bytes = b"") -> None:
        """Send an upgrade request, and ``then`` (frames) in the same write."""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target} HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{name}: {value}" for name, value in headers or []]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + then)

    def ws_open(self, target: str, headers: list[tuple[str, str]] | None = None, then: bytes = b"") -> Response:
        self.ws_handshake(target, headers, then)
        response = self.read_response(head=True)
        if response.status != 101:
            raise AssertionError(f"WebSocket handshake answered {response.status} {response.reason!r}")
        return response

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        self.send(frame(opcode, payload, fin=fin))

    def read_frame(self) -> Frame:
        first, second = self.read_exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exactly(8))[0]
        key = self.read_exactly(4) if second & 0x80 else b""
        payload = self.read_exactly(length)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(first & 0x80), first & 0x0F, payload, bool(first & 0x40))
