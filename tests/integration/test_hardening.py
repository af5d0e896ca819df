"""Hostile and careless clients against a real ``python -m channelserver`` (issue 6).

Every case goes over a real socket to a real server process serving
``tests/integration/hardening_apps.py``. Each malformed input must get its exact status or
close code and harm only its own connection: a normal client, connected before the bad one,
is still served after it, and the log between two sentinel requests has no traceback and
no error line (:class:`~tests.apps.wire.LogWindow`). The unit suite
(``tests/unit/protocol``) feeds the same kinds of bytes to the pure machines, whole and
byte by byte; here it is the assembled server: sockets, timers, app instances, logging.

Then the load cases, each bounded: slowloris and half-open WebSocket handshakes (closed
after ``--keep-alive-timeout`` while a normal client keeps being served), a 64 MiB WebSocket
message and a 1 GiB request body (refused without the server's memory growing), clients
and apps that stop consuming (reading pauses; ``send()`` waits), and 20,000 WebSocket
connect/close cycles (file descriptors back to baseline, RSS flat). Memory is the server
process's RSS (psutil) and its peak (``VmHWM`` in ``/proc/PID/status``, reset through
``/proc/PID/clear_refs`` before each case), so a transient spike counts too.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import selectors
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from bench.hardening import HALF_OPEN_WS_HEAD, SLOWLORIS_HEAD, NormalClient, attack, one_request, server_env
from channelserver.config import options
from tests.apps.wire import ERROR_LINE, LogWindow, RawConnection, records, tell, token
from tests.servers import ServerProcess, channelserver

APP = "hardening_apps:app"
MiB = 1024 * 1024
DEFAULT_MAX_BODY = 100 * MiB
DEFAULT_WS_MAX_SIZE = MiB
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def start(*flags: str) -> ServerProcess:
    return channelserver(APP, *flags, env=server_env())


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """Default limits and timeouts, access log on (the log windows need it)."""
    with start() as proc:
        yield proc


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Short head-read and handshake bounds for the slow-client cases."""
    with start("--keep-alive-timeout", "1", "--ws-handshake-timeout", "1", "--no-access-log") as proc:
        yield proc
        proc.stop()
        assert_no_traceback(proc.text)


def assert_no_traceback(text: str) -> None:
    bad = [line for line in text.splitlines() if ERROR_LINE.search(line)]
    assert not bad, "\n".join(bad[:20])


# -- raw frames and wire helpers --------------------------------------------------------------


def ws_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True, length: int | None = None
) -> bytes:
    """One client frame. ``rsv`` is the three RSV bits (0b100 = RSV1); ``length`` overrides
    the announced payload length (to stream a payload separately). The mask key is random
    unless ``length`` is given (then zero, so a streamed payload needs no masking work)."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4) if length is None else b"\0\0\0\0"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def upgrade_request(target: str, headers: list[tuple[str, str]] | None = None, *, key: bytes | None = KEY) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key.decode()}")
    if headers is None:
        headers = [("Sec-WebSocket-Version", "13")]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_port(conn: RawConnection) -> int:
    return int(conn.sock.getsockname()[1])


def still_serving(server: ServerProcess, normal: RawConnection) -> None:
    """The normal client's keep-alive connection, opened before the bad input, still gets
    answers; and so does a new connection."""
    normal.request("GET", "/ok")
    response = normal.read_response()
    assert (response.status, response.body) == (200, b"ok")
    assert server.port is not None
    one_request(server.port)


def assert_quiet(window: LogWindow, port: int, status: int | None = None) -> None:
    """No traceback and no error line; at most one warning naming the bad client, and when
    there is one it names the answer. (Peer warnings are rate-limited to 20 per 10 s, so
    in a module of many bad clients one may be held back: never more than one.)"""
    text = window.text()
    assert_no_traceback(text)
    who = f"127.0.0.1:{port}"
    warnings = [line for line in text.splitlines() if who in line and " WARNING " in line]
    assert len(warnings) <= 1, warnings
    if warnings and status is not None:
        assert warnings[0].endswith(f"(answered {status})"), warnings[0]


# -- malformed HTTP requests ------------------------------------------------------------------

BIG = b"a" * 20000

MALFORMED_HTTP = [
    ("bad-request-line", b"GET\r\n\r\n", 400),
    ("two-spaces-in-request-line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("tls-hello-on-the-plain-port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x5a" * 32 + b"\r\n\r\n", 400),
    ("http09-simple-request", b"GET /\r\n\r\n", 400),
    ("http09-version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("http2-version-over-http1", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("space-in-header-name", b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
    ("control-byte-in-header-name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: x\r\n\r\n", 400),
    ("nul-in-header-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("nul-in-target", b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("non-ascii-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("obs-fold-space", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400),
    (
        "conflicting-content-length",
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("conflicting-content-length-list", b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd", 400),
    ("content-length-not-a-number", b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    ("content-length-negative", b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    (
        "content-length-with-transfer-encoding",
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "transfer-encoding-with-content-length",
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("unsupported-transfer-encoding", b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (
        "chunked-not-last",
        b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        501,
    ),
    ("oversized-header-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + BIG + b"\r\n\r\n", 431),
    ("oversized-target", b"GET /" + BIG + b" HTTP/1.1\r\nHost: a\r\n\r\n", 431),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", 431),
    (
        "content-length-over-max-body-size",
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (DEFAULT_MAX_BODY + 1),
        413,
    ),
]


@pytest.mark.parametrize(("data", "status"), [m[1:] for m in MALFORMED_HTTP], ids=[m[0] for m in MALFORMED_HTTP])
def test_malformed_request_gets_its_status_and_harms_no_one_else(
    server: ServerProcess, data: bytes, status: int
) -> None:
    with RawConnection(server.port) as normal, RawConnection(server.port) as bad:
        window = LogWindow(server, server.url)
        bad.send(data)
        response = bad.read_response()
        assert response.status == status, response
        assert response.header(b"connection") == b"close"
        assert bad.closed_by_peer(), "the server closes a connection it refused"
        still_serving(server, normal)
        assert_quiet(window, client_port(bad), status)


#: Heads h11 alone would wait on (for the rest of a head that can never come) or pass to the
#: app, and one whose answer used to quote it: each is answered 400 at once, naming the
#: error class without echoing the request.
HOSTILE_HEADS = [
    ("http09-request-line", b"GET /body?token=%s\r\n", b"illegal request line"),
    ("cr-only-line-ends", b"GET /body?token=%s HTTP/1.1\rHost: x\r\r", b"CR without LF in request head"),
    (
        "control-character-in-a-value",
        b"GET /body?token=%s HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n",
        b"control character in request head",
    ),
    (
        "escape-sequence-in-a-value",
        b"GET /body?token=%s HTTP/1.1\r\nHost: a\r\nUser-Agent: \x1b[2J\x1b[31m<script>\r\n\r\n",
        b"control character in request head",
    ),
    (
        "markup-as-a-header-name",
        b"GET /body?token=%s HTTP/1.1\r\nHost: a\r\n<script>alert(1)</script>: x\r\n\r\n",
        b"illegal header line",
    ),
]


@pytest.mark.parametrize(("head", "error"), [h[1:] for h in HOSTILE_HEADS], ids=[h[0] for h in HOSTILE_HEADS])
def test_hostile_head_is_answered_400_at_once_and_never_reaches_the_app(
    server: ServerProcess, head: bytes, error: bytes
) -> None:
    """No wait for the keep-alive timeout (5 s here): the client's own timeout is 1 s. The
    answer names the error class and not the request's bytes; those (escaped) are for the
    log line only."""
    key = token()
    with RawConnection(server.port) as normal, RawConnection(server.port, timeout=1.0) as bad:
        window = LogWindow(server, server.url)
        began = time.monotonic()
        bad.send(head % key.encode())
        response = bad.read_response()
        assert (response.status, response.body) == (400, b"Bad Request: " + error + b"\n")
        assert response.header(b"connection") == b"close"
        assert bad.closed_by_peer(timeout=1.0), "the server closes a connection it refused"
        assert time.monotonic() - began < 1.0
        assert records(server.url, f"{key}:started", 0, 0) == [], "the app never saw the request"
        still_serving(server, normal)
        assert_quiet(window, client_port(bad), 400)
        # Peer warnings are rate-limited across this module: the line may be held back.
        for line in window.text().splitlines():
            if f"127.0.0.1:{client_port(bad)}" in line:
                assert f"Invalid HTTP request from 127.0.0.1:{client_port(bad)}: {error.decode()}: " in line


def test_body_over_max_body_size_is_refused_before_the_app_starts(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.request("POST", f"/body?token={key}", [("Content-Length", str(DEFAULT_MAX_BODY + 1))])
        response = conn.read_response()
        assert response.status == 413
        assert str(DEFAULT_MAX_BODY).encode() in response.body, "the answer says what the limit is"
    assert records(server.url, f"{key}:started", 0, 0) == [], "the app never saw the request"


@pytest.mark.parametrize(
    "chunk",
    [b"zz\r\nabc\r\n", b"-5\r\nabc\r\n", b"ffffffffffffffffffffffff\r\nabc", b"3\r\nabcX\r\n0\r\n\r\n"],
    ids=["not-hex", "negative", "overflowing", "bad-chunk-end"],
)
def test_bad_chunk_after_the_app_started_gets_400_and_the_app_its_disconnect(
    server: ServerProcess, chunk: bytes
) -> None:
    key = token()
    with RawConnection(server.port) as normal, RawConnection(server.port) as bad:
        window = LogWindow(server, server.url)
        bad.request("POST", f"/body?token={key}", [("Transfer-Encoding", "chunked")])
        assert records(server.url, f"{key}:started") == [True]
        bad.send(chunk)
        response = bad.read_response()
        assert response.status == 400
        assert bad.closed_by_peer()
        assert len(records(server.url, f"{key}:disconnect")) == 1, "the app is told the request is gone"
        still_serving(server, normal)
        assert_quiet(window, client_port(bad), 400)


def test_duplicate_identical_content_length_is_one_length(server: ServerProcess) -> None:
    """RFC 9112 section 6.3: ``3, 3`` (or the header twice) is read as 3, once."""
    for headers in (b"Content-Length: 3\r\nContent-Length: 3\r\n", b"Content-Length: 3, 3\r\n"):
        with RawConnection(server.port) as conn:
            conn.send(b"POST /body HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\nabc")
            response = conn.read_response()
            assert response.status == 200
            assert response.json() == {"bytes": 3, "messages": 1}
            conn.request("GET", "/ok")
            assert conn.read_response().body == b"ok", "the connection is still in step"


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "M-SEARCH", "X_CUSTOM.1"])
def test_unknown_method_reaches_the_app(server: ServerProcess, method: str) -> None:
    """Methods are extensible (RFC 9110 section 9.1): the app decides, not the server."""
    with RawConnection(server.port) as conn:
        for _ in range(2):  # and the connection stays usable
            conn.request(method, "/method")
            response = conn.read_response()
            assert (response.status, response.body) == (200, method.encode())


def test_head_trickled_past_the_limit_gets_431(server: ServerProcess) -> None:
    """A head that never ends is refused once it passes h11_max_incomplete_event_size,
    while it is still arriving: the server does not wait for the end of a head it will
    not take."""
    limit = 16384
    with RawConnection(server.port) as normal, RawConnection(server.port) as bad:
        window = LogWindow(server, server.url)
        bad.send(b"GET /ok HTTP/1.1\r\nHost: a\r\nX-Big: ")
        sent = 0
        readable = selectors.DefaultSelector()
        readable.register(bad.sock, selectors.EVENT_READ)
        while sent < 50 * limit and not readable.select(0):
            bad.send(b"a" * 1000)
            sent += 1000
            if sent > limit:
                readable.select(0.05)  # the answer is due: give the server its turn
        readable.close()
        assert limit < sent < 10 * limit, sent
        assert bad.read_response().status == 431
        still_serving(server, normal)
        assert_quiet(window, client_port(bad), 431)


@pytest.mark.parametrize(("count", "status"), [(100, 200), (101, 431)])
def test_max_headers_is_the_boundary(server: ServerProcess, count: int, status: int) -> None:
    with RawConnection(server.port) as conn:
        conn.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * (count - 1) + b"\r\n")
        assert conn.read_response().status == status


def test_peer_warnings_are_rate_limited_and_the_server_keeps_serving() -> None:
    """60 bad clients in a burst: at most 20 warning lines per 10 s, one line each, no
    traceback; the normal client is served throughout."""
    with start("--no-access-log") as proc:
        assert proc.port is not None
        began = time.monotonic()
        for _ in range(60):
            with RawConnection(proc.port) as bad:
                bad.send(b"GET\r\n\r\n")
                assert bad.read_response().status == 400
        windows = 1 + int((time.monotonic() - began) // 10) + 1
        one_request(proc.port)
        proc.stop()
    warnings = [line for line in proc.text.splitlines() if " WARNING " in line]
    assert 1 <= len(warnings) <= 20 * windows, len(warnings)
    assert all("(answered 400)" in line or "similar warnings were not logged" in line for line in warnings)
    assert_no_traceback(proc.text)


# -- bad WebSocket handshakes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "headers", "status"),
    [
        (None, [("Sec-WebSocket-Version", "13")], 400),
        (b"not a base64 nonce!", [("Sec-WebSocket-Version", "13")], 400),
        (b"c2hvcnQ=", [("Sec-WebSocket-Version", "13")], 400),  # base64 of 5 bytes, not 16
        (KEY, [("Sec-WebSocket-Version", "8")], 426),
        (KEY, [("Sec-WebSocket-Version", "14")], 426),
        (KEY, [], 400),
    ],
    ids=["missing-key", "key-not-base64", "key-not-16-bytes", "version-8", "version-14", "missing-version"],
)
def test_bad_handshake_is_refused_before_the_app_starts(
    server: ServerProcess, key: bytes | None, headers: list[tuple[str, str]], status: int
) -> None:
    """RFC 6455 section 4.2.1-4.2.2: a handshake that is not as described gets an HTTP
    error (400); an unsupported version gets 426 naming the version served
    (``Sec-WebSocket-Version: 13``). The app never starts."""
    tok = token()
    with RawConnection(server.port) as normal, RawConnection(server.port) as bad:
        window = LogWindow(server, server.url)
        bad.send(upgrade_request(f"/ws/echo?token={tok}", headers, key=key))
        response = bad.read_response()
        assert response.status == status, response
        if status == 426:
            assert response.header(b"sec-websocket-version") == b"13"
        assert bad.closed_by_peer()
        assert records(server.url, f"{tok}:connect", 0, 0) == [], "the app never started"
        still_serving(server, normal)
        assert_quiet(window, client_port(bad), status)


# -- WebSocket protocol errors after the accept ------------------------------------------------

PROTOCOL_ERRORS = [
    ("unmasked-frame", ws_frame(0x1, b"hi", mask=False), 1002),
    ("reserved-data-opcode-3", ws_frame(0x3, b"x"), 1002),
    ("reserved-data-opcode-7", ws_frame(0x7, b"x"), 1002),
    ("reserved-control-opcode-11", ws_frame(0xB, b"x"), 1002),
    ("rsv1-without-an-extension", ws_frame(0x1, b"x", rsv=0b100), 1002),
    ("rsv2", ws_frame(0x1, b"x", rsv=0b010), 1002),
    ("rsv3", ws_frame(0x2, b"x", rsv=0b001), 1002),
    ("fragmented-ping", ws_frame(0x9, b"x", fin=False), 1002),
    ("fragmented-close", ws_frame(0x8, close_payload(1000), fin=False), 1002),
    ("ping-over-125-bytes", ws_frame(0x9, b"x" * 126), 1002),
    ("continuation-without-a-start", ws_frame(0x0, b"x"), 1002),
    ("new-message-inside-a-fragmented-one", ws_frame(0x1, b"a", fin=False) + ws_frame(0x1, b"b"), 1002),
    ("close-code-999", ws_frame(0x8, close_payload(999)), 1002),
    ("close-code-1004-reserved", ws_frame(0x8, close_payload(1004)), 1002),
    ("close-code-1005-on-the-wire", ws_frame(0x8, close_payload(1005)), 1002),
    ("close-code-1006-on-the-wire", ws_frame(0x8, close_payload(1006)), 1002),
    ("close-code-2999-unassigned", ws_frame(0x8, close_payload(2999)), 1002),
    ("close-code-5000", ws_frame(0x8, close_payload(5000)), 1002),
    ("close-one-byte-payload", ws_frame(0x8, b"\x03"), 1002),
    ("invalid-utf8-text", ws_frame(0x1, b"\xff\xfe"), 1007),
    ("invalid-utf8-across-fragments", ws_frame(0x1, b"\xe2\x82", fin=False) + ws_frame(0x0, b"\xff"), 1007),
    ("invalid-utf8-close-reason", ws_frame(0x8, close_payload(1000, b"\xff")), 1007),
]


@pytest.mark.parametrize(("data", "code"), [p[1:] for p in PROTOCOL_ERRORS], ids=[p[0] for p in PROTOCOL_ERRORS])
def test_protocol_error_after_accept_closes_with_its_code(server: ServerProcess, data: bytes, code: int) -> None:
    tok = token()
    with RawConnection(server.port) as normal, RawConnection(server.port) as bad:
        normal.ws_open(f"/ws/echo?token={token()}")
        window = LogWindow(server, server.url)
        bad.ws_open(f"/ws/echo?token={tok}")
        bad.send(data)
        close = bad.read_frame()
        assert (close.opcode, close.close_code) == (0x8, code), close
        assert bad.closed_by_peer(), "the server drops the connection after failing it"
        assert records(server.url, f"{tok}:disconnect") == [{"code": code}], "the app is told, with the code"
        normal.send(ws_frame(0x1, b"still here"))
        echo = normal.read_frame()
        assert (echo.opcode, echo.payload) == (0x1, b"still here")
        assert_quiet(window, client_port(bad))


# -- limits and memory ------------------------------------------------------------------------


class Memory:
    """RSS of the server process now and its peak since :meth:`reset` (``VmHWM``)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.pid = pid
        self.baseline = 0

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def reset(self) -> None:
        """Baseline = RSS now; the kernel's peak counter starts again from here."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as handle:
            handle.write("5")
        self.baseline = self.rss()

    def peak(self) -> int:
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def peak_growth(self) -> int:
        return self.peak() - self.baseline

    def growth(self) -> int:
        return self.rss() - self.baseline


def stream_until_answered(sock: socket.socket, pieces: Iterator[bytes], limit_seconds: float = 20.0) -> int:
    """Send ``pieces`` until the server answers (readable) or they run out; bytes sent.

    The pieces come from a generator: the body is never built in memory."""
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent = 0
    view = memoryview(b"")
    deadline = time.monotonic() + limit_seconds
    try:
        while time.monotonic() < deadline:
            events = sel.select(5)
            if not events:
                raise AssertionError(f"neither readable nor writable for 5 s after {sent} bytes")
            if any(mask & selectors.EVENT_READ for _, mask in events):
                return sent
            if not view:
                piece = next(pieces, None)
                if piece is None:
                    return sent
                view = memoryview(piece)
            try:
                n = sock.send(view)
            except BlockingIOError:
                continue
            except OSError:
                return sent
            sent += n
            view = view[n:]
        raise AssertionError(f"still sending after {limit_seconds} s")
    finally:
        sel.close()
        sock.setblocking(True)


def repeat(piece: bytes, times: int) -> Iterator[bytes]:
    for _ in range(times):
        yield piece


@pytest.mark.parametrize("ws_max_size", [DEFAULT_WS_MAX_SIZE, 16 * MiB], ids=["default-1MiB", "raised-16MiB"])
def test_64_mib_websocket_message_closes_1009_without_memory_growth(ws_max_size: int) -> None:
    """The message is refused once it passes ws_max_size, while it still arrives: what the
    server holds is bounded by the limit (the fragments kept to join), not by the message."""
    message = 64 * MiB
    with start("--no-access-log", "--ws-max-size", str(ws_max_size)) as proc:
        assert proc.port is not None
        memory = Memory(proc.proc.pid)
        tok = token()
        with RawConnection(proc.port, timeout=10) as conn:
            conn.ws_open(f"/ws/echo?token={tok}")
            memory.reset()
            conn.send(ws_frame(0x2, length=message))
            sent = stream_until_answered(conn.sock, repeat(b"\x42" * 65536, message // 65536))
            close = conn.read_frame()
            assert (close.opcode, close.close_code) == (0x8, 1009), close
            assert str(ws_max_size) in close.close_reason
        assert ws_max_size <= sent < message
        assert records(proc.url, f"{tok}:disconnect") == [{"code": 1009}]
        assert memory.peak_growth() < ws_max_size + 8 * MiB, memory.peak_growth()
        assert memory.growth() < 4 * MiB, memory.growth()
        one_request(proc.port)
        proc.stop()
    assert_no_traceback(proc.text)


def test_1_gib_request_body_is_refused_without_memory_growth() -> None:
    """Announced (content-length): 413 at once, nothing read. Chunked: counted as it
    streams, 413 once it passes max_body_size; the app, which read and dropped every piece,
    is told ``http.disconnect``. Both bodies come from a generator."""
    gib = 1024 * MiB
    piece = b"x" * 65536
    with start("--no-access-log") as proc:
        assert proc.port is not None
        memory = Memory(proc.proc.pid)
        memory.reset()

        announced = token()
        with RawConnection(proc.port, timeout=10) as conn:
            conn.send(
                b"POST /body?token=%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (announced.encode(), gib)
            )
            sent = stream_until_answered(conn.sock, repeat(piece, gib // len(piece)))
            assert conn.read_response().status == 413
        assert sent < 64 * MiB, "refused on the head, not after the body"
        assert records(proc.url, f"{announced}:started", 0, 0) == []

        chunked = token()
        framed = b"%x\r\n%s\r\n" % (len(piece), piece)
        with RawConnection(proc.port, timeout=10) as conn:
            conn.send(
                b"POST /body?token=%s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" % chunked.encode()
            )
            sent = stream_until_answered(conn.sock, repeat(framed, gib // len(piece)))
            response = conn.read_response()
            assert response.status == 413
        assert DEFAULT_MAX_BODY < sent < gib
        (seen,) = records(proc.url, f"{chunked}:disconnect")
        assert seen["bytes"] <= DEFAULT_MAX_BODY
        assert memory.peak_growth() < 8 * MiB, memory.peak_growth()
        assert memory.growth() < 4 * MiB, memory.growth()
        one_request(proc.port)
        proc.stop()
    assert_no_traceback(proc.text)


def send_until_blocked(sock: socket.socket, pieces: Iterator[bytes], stall: float = 1.0) -> tuple[int, bytes]:
    """Send until the socket stays unwritable for ``stall`` seconds (the server stopped
    reading) or the pieces run out; (bytes sent, the unsent rest of the current piece)."""
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_WRITE)
    sent = 0
    view = memoryview(b"")
    try:
        while True:
            if not view:
                piece = next(pieces, None)
                if piece is None:
                    return sent, b""
                view = memoryview(piece)
            if not sel.select(stall):
                return sent, bytes(view)
            try:
                n = sock.send(view)
            except BlockingIOError:
                continue
            sent += n
            view = view[n:]
    finally:
        sel.close()
        sock.setblocking(True)


def test_request_body_the_app_does_not_read_pauses_reading() -> None:
    """64 MiB offered to an app that does not read: the server stops reading at its
    high-water mark (256 KiB queued), so the client's sends block and the server's memory
    stays flat; once the app reads, every byte arrives."""
    body = 64 * MiB
    piece = b"y" * 65536
    with start("--no-access-log") as proc:
        assert proc.port is not None
        memory = Memory(proc.proc.pid)
        tok = token()
        with RawConnection(proc.port, timeout=20) as conn:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            memory.reset()
            conn.send(b"POST /hold?token=%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (tok.encode(), body))
            assert records(proc.url, f"{tok}:started") == [True]
            pieces = repeat(piece, body // len(piece))
            sent, rest = send_until_blocked(conn.sock, pieces)
            assert sent < body // 2, f"the server kept reading: {sent} bytes taken"
            assert memory.peak_growth() < 8 * MiB, memory.peak_growth()
            tell(proc.url, f"{tok}:release")
            conn.send(rest)
            for more in pieces:
                conn.send(more)
            response = conn.read_response()
        assert response.json()["bytes"] == body, "nothing lost while reading was paused"
        proc.stop()
    assert_no_traceback(proc.text)


def test_websocket_messages_the_app_does_not_receive_pause_reading() -> None:
    """100 messages of 1 MiB to an app that does not receive: the server must stop reading
    before it holds them all (a bounded inbound queue, in bytes as well as in messages), so
    its memory stays well under what was offered; once the app receives, all arrive."""
    count, size = 100, MiB
    with start("--no-access-log") as proc:
        assert proc.port is not None
        memory = Memory(proc.proc.pid)
        tok = token()
        with RawConnection(proc.port, timeout=20) as conn:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            conn.ws_open(f"/ws/hold?token={tok}&n={count}")
            assert records(proc.url, f"{tok}:accepted") == [True]
            memory.reset()
            message = ws_frame(0x2, length=size) + b"\x17" * size
            pieces = repeat(message, count)
            sent, rest = send_until_blocked(conn.sock, pieces)
            held = memory.peak_growth()
            tell(proc.url, f"{tok}:release")
            conn.send(rest)
            for more in pieces:
                conn.send(more)
            answer = conn.read_frame()
        assert json.loads(answer.payload) == {"bytes": count * size, "messages": count}
        assert held < 16 * MiB, (
            f"the server held {held >> 20} MiB for an app that did not receive ({sent >> 20} MiB sent)"
        )
        proc.stop()
    assert_no_traceback(proc.text)


def read_ws_messages(sock: socket.socket, count: int, size: int) -> list[int]:
    """Read ``count`` unmasked binary frames of ``size`` bytes; the index each starts with."""
    header = 4 if size < 1 << 16 else 10
    total = count * (header + size)
    data = bytearray()
    sock.settimeout(20)
    while len(data) < total:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {total} bytes")
        data += chunk
    step = header + size
    assert all(data[i] == 0x82 for i in range(0, total, step)), "every frame a final binary frame"
    return [int.from_bytes(data[i + header : i + header + 4], "big") for i in range(0, total, step)]


def test_client_that_stops_reading_makes_send_wait_with_memory_bounded() -> None:
    """The app sends 50,000 messages of 2 KiB (100 MiB) to a client that reads nothing:
    ``send()`` stops returning once the transport's buffer is over its high-water mark, the
    server's memory stays bounded, and when the client reads again every message arrives,
    in order."""
    count, size = 50_000, 2048
    with start("--no-access-log") as proc:
        assert proc.port is not None
        memory = Memory(proc.proc.pid)
        tok = token()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.connect(("127.0.0.1", proc.port))
        with sock, httpx.Client(base_url=proc.url, timeout=30) as http:
            memory.reset()
            sock.sendall(upgrade_request(f"/ws/flood?token={tok}&n={count}&size={size}"))
            progress = http.get("/sends", params={"token": tok, "hold": 1.0, "timeout": 15}).json()
            assert not progress["done"], progress
            assert 0 < progress["completed"] < count // 4, progress
            assert progress["waiting"] >= 1.0, "send() is waiting"
            assert memory.peak_growth() < 24 * MiB, memory.peak_growth()
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            assert head.startswith(b"HTTP/1.1 101 ")
            assert read_ws_messages(sock, count, size) == list(range(count))
            final = http.get("/sends", params={"token": tok, "hold": 1.0, "timeout": 15}).json()
            assert final["completed"] == count and final["done"], final
        proc.stop()
    assert_no_traceback(proc.text)


def test_websocket_peer_that_stops_reading_is_dropped_after_the_keepalive_timeout() -> None:
    """A peer that neither reads nor sends: the ping is queued behind what it does not
    read, so no pong comes and the keepalive gives up on it (close 1011 after
    ``ws_ping_interval + ws_ping_timeout``). Giving up must let go of everything: the
    connection (its socket and the data buffered for it are dropped, not kept until the
    peer reads) and the app instance, whose waiting ``send()`` is released."""
    with start("--ws-ping-interval", "1", "--ws-ping-timeout", "1") as proc:
        assert proc.port is not None
        process = psutil.Process(proc.proc.pid)
        tok = token()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.connect(("127.0.0.1", proc.port))
        with sock:
            port = sock.getsockname()[1]
            sock.sendall(upgrade_request(f"/ws/flood?token={tok}&n=50000&size=2048"))
            progress = httpx.get(f"{proc.url}/sends", params={"token": tok, "hold": 1.0, "timeout": 15}).json()
            assert progress["waiting"] is not None and progress["waiting"] >= 1.0, progress
            proc.wait_for(re.compile(rb"No pong within 1\.0s; closing"), 10)
            ended = records(proc.url, f"{tok}:ended", 1, 10)
            assert ended, "the app's send() was released and its instance ended"
            still = [c for c in process.net_connections("tcp") if c.raddr and c.raddr[1] == port]
            assert still == [], f"the server still holds the connection: {still}"
        proc.stop()
    assert_no_traceback(proc.text)


# -- slow clients -----------------------------------------------------------------------------


@pytest.mark.parametrize("head", [SLOWLORIS_HEAD, HALF_OPEN_WS_HEAD], ids=["slowloris", "half-open-websocket"])
def test_500_slow_heads_are_closed_after_the_timeout_while_others_are_served(
    slow_server: ServerProcess, head: bytes
) -> None:
    """500 connections each trickle one byte of a never-ending head every 0.25 s. The
    keep-alive timeout (1 s here) bounds the time to send a complete head: every one is
    closed after it, however busy it keeps itself, and the normal client's requests, one
    after another on fresh connections, all succeed meanwhile. (Its latency under this
    attack is reported by ``python -m bench.hardening``.)"""
    assert slow_server.port is not None
    with NormalClient(slow_server.port) as normal:
        result = attack(slow_server.port, head, 500, trickle=0.25, deadline=15.0)
    assert result.still_open == 0, result.summary()
    assert len(result.lifetimes) == 500
    assert min(result.lifetimes) >= 0.9, "none closed before the timeout"
    assert result.trickled > 500, "the attackers kept sending"
    assert normal.failures == [], normal.failures[:5]
    assert len(normal.latencies) >= 5, normal.summary()
    one_request(slow_server.port)


def test_idle_keep_alive_connection_is_closed_after_the_timeout(slow_server: ServerProcess) -> None:
    with RawConnection(slow_server.port) as conn:
        conn.request("GET", "/ok")
        assert conn.read_response().status == 200
        began = time.monotonic()
        assert conn.closed_by_peer(timeout=10), "an idle keep-alive connection is closed"
        assert time.monotonic() - began >= 0.9


def test_stalled_request_body_is_closed_after_the_body_read_timeout() -> None:
    """A client that sends a head and part of its body, then nothing: the server must not
    hold the connection and the app instance forever (the slow-body variant of slowloris:
    the keep-alive timeout stops once the head is in). The issue asks for a body-read stall
    timeout; Config has none yet, so this test names the option it needs,
    ``--body-read-timeout`` (seconds without body bytes while the request is unfinished),
    and expects a 408 and ``http.disconnect`` for the app when it passes."""
    if "body_read_timeout" not in {opt.name for opt in options()}:
        pytest.fail("Config has no body_read_timeout: a stalled request body is held forever")
    with start("--body-read-timeout", "1", "--no-access-log") as proc:
        tok = token()
        with RawConnection(proc.port, timeout=10) as conn:
            conn.request("POST", f"/body?token={tok}", [("Content-Length", "1000")])
            conn.send(b"x" * 10)
            assert records(proc.url, f"{tok}:started") == [True]
            response = conn.read_response()
            assert response.status == 408
            assert conn.closed_by_peer()
        assert records(proc.url, f"{tok}:disconnect") == [{"bytes": 10, "messages": 1}]


def test_500_handshakes_the_app_never_answers_get_503_after_the_timeout(slow_server: ServerProcess) -> None:
    """Complete upgrade requests to an app that neither accepts nor rejects: each gets 503
    after ``--ws-handshake-timeout`` (1 s), its app instance is told ``websocket.disconnect``,
    and the normal client is served meanwhile."""
    assert slow_server.port is not None
    tok = token()
    request = upgrade_request(f"/ws/never?token={tok}")
    sel = selectors.DefaultSelector()
    answers: dict[socket.socket, bytearray] = {}
    statuses: list[bytes] = []
    with NormalClient(slow_server.port) as normal:
        began = time.monotonic()
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", slow_server.port), timeout=5)
            sock.sendall(request)
            sock.setblocking(False)
            answers[sock] = bytearray()
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        while answers and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    answers[sock] += data
                    continue
                statuses.append(bytes(answers.pop(sock)).split(b"\r\n", 1)[0])
                sel.unregister(sock)
                sock.close()
        took = time.monotonic() - began
    for sock in answers:
        sock.close()
    sel.close()
    assert not answers, f"{len(answers)} still open"
    assert {status[:13] for status in statuses} == {b"HTTP/1.1 503 "}, set(statuses)
    assert took >= 1.0
    assert len(records(slow_server.url, f"{tok}:disconnect", 500, 10)) == 500
    assert normal.failures == [], normal.failures[:5]
    assert len(normal.latencies) >= 5


def test_connections_over_max_connections_get_503() -> None:
    limit = 20
    with start("--no-access-log", "--max-connections", str(limit)) as proc:
        assert proc.port is not None
        held = [RawConnection(proc.port) for _ in range(limit)]
        try:
            for conn in held:  # each is served: all of them were accepted
                conn.request("GET", "/ok")
                assert conn.read_response().status == 200
            with RawConnection(proc.port) as extra:
                response = extra.read_response()  # answered at once, before any request
                assert response.status == 503
                assert extra.closed_by_peer()
            # One leaves (the server closes it after answering): its place is free again.
            held[0].request("GET", "/ok", [("Connection", "close")])
            assert held[0].read_response().status == 200
            assert held[0].closed_by_peer()
            with RawConnection(proc.port) as again:
                again.request("GET", "/ok")
                assert again.read_response().status == 200
        finally:
            for conn in held:
                conn.close()
        proc.stop()
    assert "more than 20 open connections (answered 503)" in proc.text
    assert_no_traceback(proc.text)


# -- many connections: nothing left behind ------------------------------------------------------

CYCLE_HANDSHAKE = upgrade_request("/ws/cycle")
CYCLE_CLOSE = ws_frame(0x8, close_payload(1000))
#: The server spends about 0.35 ms of CPU per cycle and the raw-socket client 0.12 ms, so
#: the issue's full 20,000 measured cycles, after 10,000 of warm-up (the allocator settles
#: over the first 10,000-15,000), take about 12 s on a 2-core machine.
WARM_UP = 10_000
SEGMENTS = 10
SEGMENT = 2_000
PAGE = 4096


def ws_cycles(port: int, count: int, parallel: int = 16) -> None:
    """``count`` full WebSocket cycles, ``parallel`` at a time: connect, pre-built
    handshake, read the 101, pre-built close frame, read the server's close frame, then its
    EOF (the server closes the TCP connection first, RFC 6455 section 7.1.1)."""
    sel = selectors.DefaultSelector()
    started = done = 0

    def open_one() -> None:
        nonlocal started
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(CYCLE_HANDSHAKE)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, [False, bytearray()])
        started += 1

    try:
        while started < min(parallel, count):
            open_one()
        while done < count:
            events = sel.select(10)
            assert events, f"no progress for 10 s after {done} cycles"
            for key, _ in events:
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                upgraded, data = key.data
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not upgraded:
                    data += chunk
                    if b"\r\n\r\n" in data:
                        assert data.startswith(b"HTTP/1.1 101 "), bytes(data[:100])
                        key.data[0] = True
                        data.clear()
                        sock.sendall(CYCLE_CLOSE)
                elif chunk:
                    data += chunk
                else:
                    assert bytes(data[:4]) == b"\x88\x02\x03\xe8", bytes(data)  # close 1000, echoed
                    sel.unregister(sock)
                    sock.close()
                    done += 1
                    if started < count:
                        open_one()
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()


def server_memory(port: int) -> dict[str, Any]:
    """The server's memory as its app sees it (``/memory`` of hardening_apps)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /memory HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    result: dict[str, Any] = json.loads(data.partition(b"\r\n\r\n")[2])
    return result


def measure_window(port: int, process: psutil.Process) -> tuple[list[int], list[dict[str, Any]]]:
    """Run :data:`SEGMENTS` segments of cycles: the RSS growth of each, and the server's
    Python memory (after a full collection) before the first and after each."""
    python = [server_memory(port)]  # each answer's EOF comes after every earlier close
    rss = [process.memory_info().rss]
    for _ in range(SEGMENTS):
        ws_cycles(port, SEGMENT)
        python.append(server_memory(port))
        rss.append(process.memory_info().rss)
    return [after - before for before, after in itertools.pairwise(rss)], python


@pytest.mark.timeout(180)
def test_20000_websocket_cycles_leave_no_fds_and_no_memory_behind() -> None:
    """10,000 cycles of warm-up, then 20,000 measured: ten segments of 2,000.

    File descriptors: exactly the baseline.

    Python objects, counted after a full collection: pymalloc's live blocks and the
    gc-tracked objects grow by a handful at most (one object a cycle would be 20,000).

    RSS: the issue's bound, 1 KB per 1,000 cycles, is 2 KB a segment, finer than RSS can
    show (it moves in 4 KiB pages) and than its noise: with no growth of Python objects,
    and the traced Python heap flat to a few KB, it still grows by a page here and there
    and by tens to hundreds of KB at random moments while the allocators settle (a
    connection's objects are freed by the cyclic collector, not by reference counting, so
    when their memory comes back varies). So the median segment may grow by at most one
    page: a one-off step lands in a few segments, a leak in most (one pointer a cycle,
    kept in a list, makes the median 12-22 KB). About one run in five the allocator is
    still settling through the whole window; then it counts as more warm-up and a second
    window must pass (a leak fails both)."""
    with start("--no-access-log") as proc:
        assert proc.port is not None
        process = psutil.Process(proc.proc.pid)
        one_request(proc.port)
        fds = process.num_fds()
        ws_cycles(proc.port, WARM_UP)
        growths, python = measure_window(proc.port, process)
        if statistics.median(growths) > PAGE:
            first = growths
            growths, python = measure_window(proc.port, process)
            assert statistics.median(growths) <= PAGE, f"RSS growth per {SEGMENT} cycles: {first}, then {growths}"
        one_request(proc.port)
        assert process.num_fds() == fds, "file descriptors back to the baseline"
        before, after = python[0], python[-1]
        assert after["blocks"] - before["blocks"] < 50, python
        assert after["objects"] - before["objects"] < 100, python
        proc.stop()
    assert_no_traceback(proc.text)
