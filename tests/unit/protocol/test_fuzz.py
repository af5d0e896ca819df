"""Property tests of the pure protocol layer, for one stated invariant each.

HTTP: any byte string fed to :class:`HTTPConnection`, whole or one byte at a time, with an
app that answers every request it is given, produces only actions, never an exception.
What goes on the wire is the apps' 200 responses, in order, and possibly one error
response (4xx, or 5xx for an unsupported feature) after them, followed by a close.

WebSocket: any byte string fed to an accepted :class:`WebSocketConnection`, whole or one
byte at a time, with an app that echoes what it receives, produces only actions (never an
exception); the app gets ``websocket.receive`` messages with exactly one of ``text`` (str)
and ``bytes`` (bytes), then exactly one ``websocket.disconnect``; every close code, on the
wire or in ``websocket.disconnect``, is one RFC 6455 allows.

Runs are bounded (200 examples each, no database) so the suite stays fast.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.events import CloseConnection

from channelserver.errors import ClientDisconnected
from channelserver.protocol.asgi_http import HTTPCycle
from channelserver.protocol.asgi_http import State as HTTPState
from channelserver.protocol.events import (
    CancelTimer,
    CloseTransport,
    Deliver,
    Log,
    SetTimer,
    StartApp,
    Upgrade,
    Write,
)

from .helpers import HTTPPair, WSPair, close_payload, frame, read_responses

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- HTTP ---------------------------------------------------------------------------------

methods = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"BREW", b"G ET", b"", b"get"])
targets = st.one_of(
    st.sampled_from([b"/", b"/a?b=c", b"*", b"http://h/x", b"/%zz", b"/\xff", b"", b"/ws/"]),
    st.binary(max_size=12),
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.1 ", b"", b"HTTX/1.1"])
header_names = st.one_of(
    st.sampled_from(
        [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Upgrade", b"X-A", b"Bad Name"]
    ),
    st.binary(max_size=6),
)
header_values = st.one_of(
    st.sampled_from(
        [
            b"a",
            b"0",
            b"5",
            b"-1",
            b"chunked",
            b"gzip, chunked",
            b"close",
            b"keep-alive",
            b"100-continue",
            b"websocket",
            b"Upgrade",
            b"\x00",
            b" x ",
            b"5, 6",
        ]
    ),
    st.binary(max_size=8),
)
headers = st.lists(st.tuples(header_names, header_values), max_size=6).map(
    lambda hs: b"".join(n + b": " + v + b"\r\n" for n, v in hs)
)
bodies = st.one_of(
    st.binary(max_size=30),
    st.sampled_from([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"3\r\nab", b"0\r\n\r\n", b"hello"]),
)
requests = st.builds(
    lambda m, t, v, hs, b, host: (
        m + b" " + t + b" " + v + b"\r\n" + (b"Host: a\r\n" if host else b"") + hs + b"\r\n" + b
    ),
    methods,
    targets,
    versions,
    headers,
    bodies,
    st.booleans(),
)


@st.composite
def mutated(draw: Any, base: Any) -> bytes:
    """A drawn byte string with a few bytes flipped, dropped or inserted."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "drop", "insert"]))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "drop":
            del data[i]
        else:
            data.insert(i, draw(st.integers(0, 255)))
    return bytes(data)


@st.composite
def valid_requests(draw: Any) -> bytes:
    """A well-formed request: content-length or chunked body, or none."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE"]))
    target = draw(st.sampled_from([b"/", b"/a/b?c=d", b"/%20x", b"http://example.com/abs", b"*"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    extra = draw(
        st.lists(
            st.sampled_from([b"Accept: */*", b"Connection: close", b"Connection: keep-alive", b"X-A: b"]), max_size=3
        )
    )
    payload = draw(st.binary(max_size=20))
    framing = draw(st.sampled_from(["none", "length", "chunked", "expect"]))
    lines = [method + b" " + target + b" " + version, b"Host: example.com", *extra]
    body = b""
    if framing in ("length", "expect"):
        lines.append(b"Content-Length: %d" % len(payload))
        if framing == "expect":
            lines.append(b"Expect: 100-continue")
        body = payload
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b"") + b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


http_inputs = st.one_of(
    st.binary(max_size=200),
    st.lists(valid_requests(), min_size=1, max_size=3).map(b"".join),
    st.lists(st.one_of(valid_requests(), requests), min_size=1, max_size=3).map(b"".join),
    mutated(st.lists(valid_requests(), min_size=1, max_size=2).map(b"".join)),
)

HTTP_ACTIONS = (Write, CloseTransport, StartApp, Deliver, SetTimer, CancelTimer, Log, Upgrade)


def answer_started(pair: HTTPPair, answered: list[bytes]) -> None:
    """The app: answer every HTTP request it was given with a whole 200 response (which
    may start the next pipelined request: loop until none is waiting)."""
    progress = True
    while progress:
        progress = False
        for start in pair.started:
            cycle = start.cycle
            if not isinstance(cycle, HTTPCycle) or cycle.state is not HTTPState.REQUEST:
                continue
            progress = True
            try:
                pair.app_send(cycle, {"type": "http.response.start", "status": 200})
                pair.app_send(cycle, {"type": "http.response.body", "body": b"ok"})
            except ClientDisconnected:
                continue
            answered.append(start.scope["method"].encode())


def check_http(data: bytes, bytewise: bool) -> None:
    pair = HTTPPair()
    answered: list[bytes] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        pair.feed(chunk)
        answer_started(pair, answered)
    pair.eof()
    answer_started(pair, answered)

    assert all(isinstance(a, HTTP_ACTIONS) for a in pair.actions)
    assert pair.closes == 1
    assert all(log.level in ("warning", "info") and log.exc is None for log in pair.logs), pair.logs
    if pair.upgrades:
        return  # the rest of the bytes were WebSocket frames: the other property's business
    responses = read_responses(bytes(pair.wire), [*answered, b"GET"])
    statuses = [r.status for r in responses]
    assert statuses[: len(answered)] == [200] * len(answered), statuses
    extra = statuses[len(answered) :]
    assert len(extra) <= 1 and all(400 <= s <= 599 for s in extra), statuses
    if extra:
        assert responses[-1].header(b"connection") == b"close"
        assert len(pair.warnings()) == 1


@FUZZ
@given(http_inputs)
def test_http_any_bytes_whole(data: bytes) -> None:
    check_http(data, bytewise=False)


@FUZZ
@given(http_inputs)
def test_http_any_bytes_one_at_a_time(data: bytes) -> None:
    check_http(data, bytewise=True)


def test_http_fuzz_app_sees_only_valid_requests() -> None:
    """The property's app path is exercised: a well-formed pair of requests is answered."""
    pair = HTTPPair()
    answered: list[bytes] = []
    pair.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    answer_started(pair, answered)
    assert answered == [b"GET", b"HEAD"]
    assert [r.status for r in read_responses(bytes(pair.wire), answered, eof=False)] == [200, 200]
    assert not pair.machine.closed and pair.machine.h11 is None, "kept alive; an h11 is made when bytes come"


# -- WebSocket ------------------------------------------------------------------------------

#: Close codes RFC 6455 (7.4) lets an endpoint send, plus the registered 1012-1014 and
#: the 3000-4999 application range; 1005 is how a close frame without a code reads.
WIRE_CODES = {1000, 1001, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} | set(range(3000, 5000))
#: What ``websocket.disconnect`` may carry: those, and 1006 for a connection lost.
DISCONNECT_CODES = WIRE_CODES | {1006}

opcodes = st.one_of(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]), st.integers(0, 15))
payloads = st.one_of(
    st.binary(max_size=140),
    st.text(max_size=20).map(str.encode),
    st.builds(close_payload, st.sampled_from([1000, 1001, 1002, 999, 1005, 1006, 1015, 3000, 4999, 5000, 65535])),
    st.builds(
        close_payload,
        st.sampled_from([1000, 4000]),
        st.one_of(st.text(max_size=10).map(str.encode), st.binary(max_size=10)),
    ),
)
frames = st.builds(
    lambda op, p, fin, mask, rsv: frame(op, p, fin=fin, mask=mask, rsv=rsv),
    opcodes,
    payloads,
    st.booleans() | st.just(True),
    st.just(True) | st.booleans(),
    st.just(0) | st.integers(0, 7),
)


@st.composite
def valid_frames(draw: Any) -> bytes:
    """A well-formed client frame sequence: a message (maybe fragmented), a ping, a pong
    or a close."""
    kind = draw(st.sampled_from(["text", "bytes", "fragmented", "ping", "pong", "close"]))
    if kind == "text":
        return frame(0x1, draw(st.text(max_size=30)).encode())
    if kind == "bytes":
        return frame(0x2, draw(st.binary(max_size=80)))
    if kind == "fragmented":
        parts = draw(st.lists(st.binary(max_size=10), min_size=2, max_size=4))
        out = frame(0x2, parts[0], fin=False)
        for part in parts[1:-1]:
            out += frame(0x0, part, fin=False)
            if draw(st.booleans()):
                out += frame(0x9, b"mid")
        return out + frame(0x0, parts[-1])
    if kind in ("ping", "pong"):
        return frame(0x9 if kind == "ping" else 0xA, draw(st.binary(max_size=125)))
    code = draw(st.sampled_from([1000, 1001, 3000, 4999]))
    return frame(0x8, close_payload(code, draw(st.text(max_size=20)).encode()))


ws_inputs = st.one_of(
    st.binary(max_size=200),
    st.lists(valid_frames(), min_size=1, max_size=6).map(b"".join),
    st.lists(st.one_of(valid_frames(), frames), min_size=1, max_size=5).map(b"".join),
    mutated(st.lists(valid_frames(), min_size=1, max_size=4).map(b"".join)),
)

WS_ACTIONS = (Write, CloseTransport, Deliver, SetTimer, CancelTimer, Log)


def echo(pair: WSPair, received: list[dict[str, Any]]) -> None:
    """The app: receive everything delivered and echo each message back."""
    while True:
        message = pair.receive()
        if message is None:
            return
        received.append(message)
        if message["type"] == "websocket.receive":
            reply = {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
            pair.app_send(pair.cycle, reply)


def check_websocket(data: bytes, bytewise: bool) -> None:
    pair = WSPair(ws_options={"max_size": 64})
    pair.accept()
    start = len(pair.actions)
    received: list[dict[str, Any]] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        pair.feed(chunk)
        echo(pair, received)
    pair.eof()
    echo(pair, received)

    assert all(isinstance(a, WS_ACTIONS) for a in pair.actions[start:]), pair.actions[start:]
    assert all(log.level in ("warning", "info") and log.exc is None for log in pair.logs), pair.logs
    assert received[-1]["type"] == "websocket.disconnect"
    assert [m["type"] for m in received].count("websocket.disconnect") == 1
    assert received[-1]["code"] in DISCONNECT_CODES, received[-1]
    for message in received[:-1]:
        assert message["type"] == "websocket.receive"
        keys = set(message) - {"type"}
        assert keys in ({"text"}, {"bytes"}), message
        assert isinstance(message.get("text", message.get("bytes")), str if "text" in keys else bytes)
    events = pair.client_events()  # the real client must be able to parse all of it
    for event in events:
        if isinstance(event, CloseConnection):
            assert event.code in WIRE_CODES, event


@FUZZ
@given(ws_inputs)
def test_websocket_any_frames_whole(data: bytes) -> None:
    check_websocket(data, bytewise=False)


@FUZZ
@given(ws_inputs)
def test_websocket_any_frames_one_byte_at_a_time(data: bytes) -> None:
    check_websocket(data, bytewise=True)
