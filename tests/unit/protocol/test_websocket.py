"""Behaviour of the WebSocket machine, with a real wsproto client on the other end.

The handshake (checked by wsproto before the app starts), ``websocket.connect`` exactly
once with early frames held until accept, close before accept (403), denial responses,
messages both ways, close code and reason both ways, ping/pong kept from the app,
fragmentation, size limits, protocol errors from the peer (frames built by hand), EOF,
sends after the peer left, keepalive pings, shutdown and permessage-deflate.
"""

from __future__ import annotations

from typing import Any

import pytest
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from channelserver.errors import ClientDisconnected
from channelserver.protocol.asgi_websocket import State
from channelserver.protocol.events import CloseTransport, Log, StartApp, Write
from channelserver.protocol.websocket import HANDSHAKE, PING, PONG

from .helpers import WSPair, close_payload, frame, read_responses, rejection

CONNECT = {"type": "websocket.connect"}
WHERE = "GET /ws/ from 127.0.0.1:53122"


def text(data: str) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": data}


def binary(data: bytes) -> dict[str, Any]:
    return {"type": "websocket.receive", "bytes": data}


def disconnect(code: int, reason: str = "") -> dict[str, Any]:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


def accepted(**ws_options: Any) -> WSPair:
    pair = WSPair(ws_options=ws_options)
    pair.accept()
    return pair


def closes_seen(pair: WSPair) -> list[tuple[int, str]]:
    return [(e.code, e.reason) for e in pair.client_events() if isinstance(e, CloseConnection)]


# -- the opening handshake ----------------------------------------------------------------

UPGRADE = b"GET /ws/ HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


@pytest.mark.parametrize(
    ("headers", "status", "version_header"),
    [
        (b"Sec-WebSocket-Version: 13\r\n", 400, None),  # no Sec-WebSocket-Key
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n", 426, b"13"),
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400, None),  # no version at all
    ],
    ids=["missing-key", "wrong-version", "missing-version"],
)
def test_bad_handshake_is_refused_before_the_app_starts(
    headers: bytes, status: int, version_header: bytes | None
) -> None:
    pair = WSPair()
    pair.feed(UPGRADE + headers + b"\r\n")
    assert pair.upgrades, "the HTTP machine hands the upgrade over"
    assert not any(isinstance(a, StartApp) for a in pair.actions), "the app never starts"
    responses = read_responses(bytes(pair.wire))
    assert [r.status for r in responses] == [status]
    if version_header is not None:
        assert responses[0].header(b"sec-websocket-version") == version_header
    assert pair.closes == 1
    assert len(pair.warnings()) == 1 and len(pair.logs) == 1
    assert pair.warnings()[0].startswith("Rejected WebSocket handshake from 127.0.0.1:53122: ")
    assert pair.warnings()[0].endswith(f"(answered {status})")


def idna_error(host: bytes) -> str:
    """Python's own words for a host IDNA cannot decode (they differ between versions)."""
    try:
        host.decode("idna")
    except UnicodeError as exc:
        return str(exc)
    raise AssertionError(f"{host!r} decodes")


KEY_AND_VERSION = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0") + KEY_AND_VERSION,
            "a WebSocket handshake must be HTTP/1.1, not HTTP/1.0",
        ),
        (
            UPGRADE + KEY_AND_VERSION + b"Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n",
            "Sec-WebSocket-Key is given 2 times; a handshake has one",
        ),
        (
            UPGRADE + KEY_AND_VERSION + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Key is given 2 times; a handshake has one",
        ),
        (
            # HTTP/1.0 may leave out Host, which wsproto's own h11 then misses
            UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0").replace(b"Host: a\r\n", b"") + KEY_AND_VERSION,
            "a WebSocket handshake must be HTTP/1.1, not HTTP/1.0",
        ),
        (
            # wsproto decodes Host as IDNA: this one fails to
            UPGRADE.replace(b"Host: a", b"Host: xn--zz") + KEY_AND_VERSION,
            f"a handshake header is not ASCII, or Host not IDNA: {idna_error(b'xn--zz')}",
        ),
    ],
    ids=["http-1.0", "two-keys", "the-same-key-twice", "http-1.0-without-host", "host-not-idna"],
)
def test_handshake_rfc_6455_refuses_is_refused_as_a_bad_key_is(data: bytes, reason: str) -> None:
    """RFC 6455 4.2.1 and 11.3.1: an HTTP/1.1 request with one Sec-WebSocket-Key. wsproto
    accepts these; the app must not start, and the client is told why."""
    pair = WSPair()
    pair.feed(data + b"\r\n")
    assert pair.upgrades, "the HTTP machine hands the upgrade over"
    assert not any(isinstance(a, StartApp) for a in pair.actions), "the app never starts"
    [response] = read_responses(bytes(pair.wire))
    assert (response.status, response.body) == (400, reason.encode() + b"\n")
    assert response.header(b"content-type") == b"text/plain; charset=utf-8"
    assert pair.closes == 1
    assert [(log.level, log.message) for log in pair.logs] == [
        ("warning", f"Rejected WebSocket handshake from 127.0.0.1:53122: {reason} (answered 400)")
    ]


def test_scope_of_a_websocket() -> None:
    pair = WSPair(root_path="/mount")
    pair.connect("/ws/a%20b?x=1", subprotocols=["graphql-transport-ws", "graphql-ws"])
    scope = pair.scope
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/mount/ws/a b"
    assert scope["raw_path"] == b"/ws/a%20b"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["graphql-transport-ws", "graphql-ws"]
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert "websocket.http.response" in scope["extensions"]
    assert all(name == name.lower() for name, _ in scope["headers"])


def test_connect_is_delivered_once_and_early_frames_wait_for_accept() -> None:
    pair = WSPair()
    pair.connect(then=frame(0x1, b"one") + frame(0x2, b"two"))
    assert pair.delivered() == [CONNECT]
    assert pair.receive() == CONNECT
    assert pair.receive() is None, "receive() waits; it does not return connect again"
    pair.feed(frame(0x1, b"three"))
    assert pair.receive() is None, "nothing reaches the app before it accepted"
    assert pair.delivered() == [CONNECT]
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    assert [type(e) for e in pair.client_events()] == [AcceptConnection]
    assert [pair.receive(), pair.receive(), pair.receive(), pair.receive()] == [
        text("one"),
        binary(b"two"),
        text("three"),
        None,
    ]
    assert pair.delivered().count(CONNECT) == 1


def test_accept_with_subprotocol_and_headers() -> None:
    pair = WSPair()
    pair.connect(subprotocols=["chat", "graphql-ws"])
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept", "subprotocol": "graphql-ws", "headers": [(b"x-a", b"1")]})
    events = pair.client_events()
    assert isinstance(events[0], AcceptConnection)
    assert events[0].subprotocol == "graphql-ws"
    assert (b"x-a", b"1") in events[0].extra_headers


def test_close_before_accept_is_403_and_logs_nothing() -> None:
    pair = WSPair()
    pair.connect()
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.close"})
    refused = rejection(pair.client_events())
    assert (refused.status, refused.finished) == (403, True)
    assert pair.logs == []
    assert pair.closes == 1
    assert pair.receive() == disconnect(1006)
    pair.app_returned(pair.cycle)
    assert pair.logs == []


def test_denial_response_sends_that_status_headers_and_body() -> None:
    pair = WSPair()
    pair.connect()
    pair.receive()
    cycle = pair.cycle
    pair.app_send(cycle, {"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
    pair.app_send(cycle, {"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
    pair.app_send(cycle, {"type": "websocket.http.response.body", "body": b"allowed"})
    refused = rejection(pair.client_events())
    assert (refused.status, refused.header(b"x-why"), refused.body, refused.finished) == (
        401,
        b"token",
        b"not allowed",
        True,
    )
    assert pair.closes == 1
    assert pair.logs == []
    assert pair.receive() == disconnect(1006)


def test_app_returned_before_accepting_gets_500_and_a_log_line() -> None:
    pair = WSPair()
    pair.connect()
    pair.app_returned(pair.cycle)
    assert rejection(pair.client_events()).status == 500
    assert pair.errors() == [f"ASGI app returned without accepting or closing ({WHERE}); sent 500"]
    assert pair.closes == 1


def test_app_returned_after_accept_closes_normally() -> None:
    pair = accepted()
    pair.app_returned(pair.cycle)
    assert closes_seen(pair) == [(1000, "")]
    assert pair.logs == []


def test_handshake_timeout_answers_503() -> None:
    pair = WSPair(ws_options={"handshake_timeout": 10.0})
    pair.connect()
    assert pair.timers[HANDSHAKE] == 10.0
    pair.fire(HANDSHAKE)
    assert rejection(pair.client_events()).status == 503
    assert pair.closes == 1
    assert len(pair.warnings()) == 1


# -- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (TextMessage(data="hello"), text("hello")),
        (TextMessage(data=""), text("")),
        (TextMessage(data="h\u00e9llo \U0001f600"), text("h\u00e9llo \U0001f600")),
        (BytesMessage(data=b"\x00\xff"), binary(b"\x00\xff")),
        (BytesMessage(data=b""), binary(b"")),
    ],
    ids=["text", "empty-text", "unicode", "bytes", "empty-bytes"],
)
def test_client_messages_reach_the_app(event: Any, message: dict[str, Any]) -> None:
    pair = accepted()
    pair.send(event)
    assert pair.receive() == message
    assert pair.receive() is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"text": "hello"}, (TextMessage, "hello")),
        ({"text": ""}, (TextMessage, "")),
        ({"bytes": b"\x00\xff"}, (BytesMessage, b"\x00\xff")),
        ({"bytes": b""}, (BytesMessage, b"")),
        ({"bytes": None, "text": "t"}, (TextMessage, "t")),
        ({"bytes": b"b", "text": None}, (BytesMessage, b"b")),
    ],
    ids=["text", "empty-text", "bytes", "empty-bytes", "bytes-none", "text-none"],
)
def test_app_messages_reach_the_client(message: dict[str, Any], expected: tuple[type, Any]) -> None:
    pair = accepted()
    pair.app_send(pair.cycle, {"type": "websocket.send", **message})
    assert [(type(e), e.data) for e in pair.client_events()] == [expected]


def test_fragmented_messages_are_joined_with_pings_in_between() -> None:
    pair = accepted()
    pair.send(TextMessage(data="hel", message_finished=False))
    pair.send(Ping(payload=b"mid"))
    pair.send(TextMessage(data="lo ", message_finished=False))
    assert pair.receive() is None, "no part of a message before its last fragment"
    pair.send(TextMessage(data="world", message_finished=True))
    pair.send(BytesMessage(data=b"ab", message_finished=False))
    pair.send(BytesMessage(data=b"cd", message_finished=True))
    assert [pair.receive(), pair.receive(), pair.receive()] == [text("hello world"), binary(b"abcd"), None]
    assert [type(e) for e in pair.client_events()] == [Pong]


# Frames the machine reads itself (whole, final, masked data frames of up to 64 KiB with
# no extension) and frames it hands to wsproto, mixed in one stream.
MIXED = [
    (frame(0x1, b"first"), text("first")),
    (frame(0x9, b"ping"), None),
    (frame(0x2, b"\x00" * 200), binary(b"\x00" * 200)),  # 16-bit length, read directly
    (frame(0x1, b"frag", fin=False), None),
    (frame(0xA, b"unsolicited"), None),
    (frame(0x0, b"mented", fin=True), text("fragmented")),
    (frame(0x2, b"b" * 70000), binary(b"b" * 70000)),  # over 64 KiB: streamed by wsproto
    (frame(0x1, b"c" * 10000), text("c" * 10000)),  # whole: read directly; in pieces: wsproto
    (frame(0x1, b""), text("")),
    (frame(0x1, "h\u00e9".encode()), text("h\u00e9")),
]


@pytest.mark.parametrize("feed", ["whole", "bytewise", "split"])
def test_frames_read_directly_and_by_wsproto_keep_their_order(feed: str) -> None:
    pair = accepted()
    data = b"".join(f for f, _ in MIXED)
    if feed == "whole":
        pair.feed(data)
    elif feed == "bytewise":
        pair.feed_bytewise(data[:2000])
        pair.feed(data[2000:])
    else:  # at a point inside a header, then inside a payload, of each frame
        cut, start = [], 0
        for f, _ in MIXED:
            cut += [start + 1, start + len(f) - 1]
            start += len(f)
        for a, b in zip([0, *cut], [*cut, len(data)], strict=True):
            pair.feed(data[a:b])
    assert [m for m in pair.delivered()[1:]] == [m for _, m in MIXED if m is not None]
    assert [type(e) for e in pair.client_events()] == [Pong]


def test_a_whole_small_frame_does_not_go_through_wsproto(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = accepted()
    ws = pair.machine.ws
    fed: list[bytes] = []
    monkeypatch.setattr(ws, "receive_data", fed.append)
    pair.feed(frame(0x1, b"hello") + frame(0x2, b"x" * 300))
    assert pair.delivered()[1:] == [text("hello"), binary(b"x" * 300)]
    assert fed == []


def test_a_compressed_message_reaches_the_app_decompressed() -> None:
    """With permessage-deflate the client's frames carry RSV1: none is read directly,
    wsproto inflates them."""
    pair = WSPair()
    pair.connect(extensions=[PerMessageDeflate()])
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    pair.client_events()
    pair.send(TextMessage(data="compressed " * 20))
    assert pair.receive() == text("compressed " * 20)


def test_message_of_max_size_is_delivered() -> None:
    pair = accepted(max_size=10)
    pair.send(BytesMessage(data=b"x" * 10))
    assert pair.receive() == binary(b"x" * 10)


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
def test_message_over_max_size_closes_1009(fragmented: bool) -> None:
    pair = accepted(max_size=10)
    if fragmented:
        pair.send(TextMessage(data="x" * 6, message_finished=False))
        assert pair.closes == 0
        pair.send(TextMessage(data="x" * 6, message_finished=True))
    else:
        pair.send(TextMessage(data="x" * 11))
    assert pair.receive() == disconnect(1009, "message larger than 10 bytes")
    assert closes_seen(pair) == [(1009, "message larger than 10 bytes")]
    pair.send(CloseConnection(code=1009))
    assert pair.closes == 1
    assert pair.receive() is None, "one disconnect only"


# -- close --------------------------------------------------------------------------------


def test_client_close_code_and_reason_reach_the_app() -> None:
    pair = accepted()
    pair.send(CloseConnection(code=4001, reason="client says bye"))
    assert pair.receive() == disconnect(4001, "client says bye")
    assert closes_seen(pair) == [(4001, "client says bye")], "the close is echoed"
    assert pair.closes == 1


def test_client_close_without_a_code_is_1005() -> None:
    pair = accepted()
    pair.feed(frame(0x8))
    assert pair.receive() == disconnect(1005)
    assert pair.closes == 1


def test_app_close_code_and_reason_reach_the_client() -> None:
    pair = accepted()
    pair.app_send(pair.cycle, {"type": "websocket.close", "code": 4002, "reason": "server says bye"})
    events = pair.client_events()
    assert [(e.code, e.reason) for e in events] == [(4002, "server says bye")]
    assert pair.closes == 0, "the peer has close_timeout to answer"
    assert pair.receive() is None
    pair.send(events[0].response())
    assert pair.receive() == disconnect(4002, "server says bye")
    assert pair.closes == 1


def test_app_close_default_code_is_1000() -> None:
    pair = accepted()
    pair.app_send(pair.cycle, {"type": "websocket.close"})
    assert closes_seen(pair) == [(1000, "")]


def test_close_handshake_timeout_drops_the_socket() -> None:
    pair = accepted(close_timeout=5.0)
    pair.app_send(pair.cycle, {"type": "websocket.close", "code": 1000})
    assert pair.timers["close_handshake"] == 5.0
    pair.fire("close_handshake")
    assert pair.closes == 1
    assert pair.receive() == disconnect(1000)


def test_eof_without_close_frame_is_1006() -> None:
    pair = accepted()
    actions = pair.eof()
    assert CloseTransport() in actions
    assert pair.receive() == disconnect(1006)
    assert pair.logs == []


def test_eof_before_accept_is_1006_and_accept_then_writes_nothing() -> None:
    pair = WSPair()
    pair.connect()
    pair.receive()
    pair.eof()
    assert pair.app_send(pair.cycle, {"type": "websocket.accept"}) == []
    assert pair.wire == b""
    assert pair.receive() == disconnect(1006)


def test_sends_after_the_peer_left_are_dropped_until_the_app_was_told() -> None:
    pair = accepted()
    pair.eof()
    cycle = pair.cycle
    assert pair.app_send(cycle, {"type": "websocket.send", "text": "mid-send"}) == []
    assert pair.app_send(cycle, {"type": "websocket.send", "bytes": b"again"}) == []
    assert pair.logs == []
    assert pair.receive() == disconnect(1006)  # the app is told: app_got_disconnect
    with pytest.raises(ClientDisconnected) as info:
        pair.app_send(cycle, {"type": "websocket.send", "text": "too late"})
    assert isinstance(info.value, OSError)
    assert str(info.value) == f"WebSocket client disconnected ({WHERE})"


def test_bytes_after_the_close_handshake_are_ignored() -> None:
    pair = accepted()
    pair.send(CloseConnection(code=1000))
    assert pair.closes == 1
    assert pair.feed(frame(0x1, b"late")) == []
    assert pair.feed(frame(0x8, close_payload(1000))) == []
    assert pair.receive() == disconnect(1000)
    assert pair.receive() is None


# -- ping and pong ------------------------------------------------------------------------


def test_ping_is_answered_and_never_reaches_the_app() -> None:
    pair = accepted()
    pair.send(Ping(payload=b"are you there"))
    assert [(type(e), e.payload) for e in pair.client_events()] == [(Pong, b"are you there")]
    assert pair.receive() is None
    assert pair.logs == []


@pytest.mark.parametrize("payload", [b"", b"unsolicited"], ids=["empty", "with-payload"])
def test_unsolicited_pong_delivers_nothing_and_logs_nothing(payload: bytes) -> None:
    pair = accepted()
    actions = pair.send(Pong(payload=payload))
    assert not any(isinstance(a, (Write, Log, CloseTransport)) for a in actions)
    assert pair.receive() is None
    assert pair.logs == []
    pair.send(TextMessage(data="still fine"))
    assert pair.receive() == text("still fine")


def test_pong_before_accept_is_held_and_delivers_nothing() -> None:
    pair = WSPair()
    pair.connect(then=frame(0xA, b"") + frame(0x9, b"p") + frame(0x1, b"after"))
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    assert [type(e) for e in pair.client_events()] == [AcceptConnection, Pong]
    assert [pair.receive(), pair.receive()] == [text("after"), None]
    assert pair.logs == []


def test_keepalive_pings_only_when_idle_and_closes_1011_without_pong() -> None:
    pair = accepted(ping_interval=20.0, ping_timeout=20.0)
    assert pair.timers[PING] == 20.0
    # Traffic during the interval: no ping, the timer is re-armed.
    pair.send(TextMessage(data="busy"))
    pair.fire(PING)
    assert pair.client_events() == []
    assert pair.timers[PING] == 20.0
    # A quiet interval: a ping, and a pong deadline.
    pair.fire(PING)
    events = pair.client_events()
    assert [type(e) for e in events] == [Ping]
    assert pair.timers[PONG] == 20.0
    pair.send(events[0].response())
    assert PONG not in pair.timers
    pair.fire(PING)  # the pong was traffic
    assert pair.client_events() == []
    pair.fire(PING)
    assert [type(e) for e in pair.client_events()] == [Ping]
    pair.fire(PING)
    assert pair.client_events() == [], "one ping outstanding at a time"
    # No pong: the peer is dead. Close 1011 and tell the app.
    pair.fire(PONG)
    assert closes_seen(pair) == [(1011, "keepalive ping timeout")]
    assert pair.receive() == {"type": "websocket.receive", "text": "busy"}
    assert pair.receive() == disconnect(1011, "keepalive ping timeout")
    assert pair.closes == 1
    assert pair.logs == [Log("info", f"No pong within 20.0s; closing ({WHERE})")]


def test_keepalive_off_sets_no_timer() -> None:
    pair = accepted(ping_interval=None)
    assert PING not in pair.timers


# -- protocol errors from the peer -------------------------------------------------------


def long_length(opcode: int, payload: bytes, bits: int, *, top_bit: bool = False) -> bytes:
    """A masked final frame whose length is written in the 16-bit or 64-bit form, whatever
    its size (RFC 6455 5.2 requires the shortest)."""
    masked = frame(opcode, payload)
    short = masked[1] & 0x7F
    rest = masked[2 + (2 if short == 126 else 8 if short == 127 else 0) :]
    if bits == 16:
        return bytes([masked[0], 0x80 | 126]) + len(payload).to_bytes(2, "big") + rest
    length = len(payload) | (1 << 63 if top_bit else 0)
    return bytes([masked[0], 0x80 | 127]) + length.to_bytes(8, "big") + rest


PROTOCOL_ERRORS = [
    ("unmasked-frame", frame(0x1, b"hi", mask=False), 1002),
    ("reserved-opcode-3", frame(0x3, b"x"), 1002),
    ("reserved-control-opcode-11", frame(0xB, b"x"), 1002),
    ("rsv1-without-extension", frame(0x1, b"x", rsv=0b100), 1002),
    ("rsv2", frame(0x1, b"x", rsv=0b010), 1002),
    ("rsv3", frame(0x1, b"x", rsv=0b001), 1002),
    ("fragmented-ping", frame(0x9, b"x", fin=False), 1002),
    ("fragmented-close", frame(0x8, close_payload(1000), fin=False), 1002),
    ("ping-over-125-bytes", frame(0x9, b"x" * 126), 1002),
    ("continuation-without-start", frame(0x0, b"x"), 1002),
    ("new-message-inside-fragmented", frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),
    ("close-code-999", frame(0x8, close_payload(999)), 1002),
    ("close-code-1005-on-the-wire", frame(0x8, close_payload(1005)), 1002),
    ("close-code-1006-on-the-wire", frame(0x8, close_payload(1006)), 1002),
    ("close-one-byte-payload", frame(0x8, b"\x03"), 1002),
    ("invalid-utf8-text", frame(0x1, b"\xff\xfe"), 1007),
    ("invalid-utf8-fragmented", frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b"\xff"), 1007),
    ("invalid-utf8-close-reason", frame(0x8, close_payload(1000, b"\xff")), 1007),
    ("text-length-in-16-bits", long_length(0x1, b"hello", 16), 1002),
    ("text-length-in-64-bits", long_length(0x1, b"hello", 64), 1002),
    ("binary-300-length-in-64-bits", long_length(0x2, b"x" * 300, 64), 1002),
    ("length-64-bit-top-bit-set", long_length(0x2, b"x" * 70000, 64, top_bit=True), 1002),
]


@pytest.mark.parametrize("feed", ["whole", "bytewise"])
@pytest.mark.parametrize(("data", "code"), [p[1:] for p in PROTOCOL_ERRORS], ids=[p[0] for p in PROTOCOL_ERRORS])
def test_protocol_error_from_the_peer_closes_with_its_code(data: bytes, code: int, feed: str) -> None:
    pair = accepted()
    pair.feed(data) if feed == "whole" else pair.feed_bytewise(data)
    assert [c for c, _ in closes_seen(pair)] == [code]
    messages = pair.delivered()[1:]
    assert [m["type"] for m in messages] == ["websocket.disconnect"]
    assert messages[0]["code"] == code
    assert pair.closes == 1
    assert len(pair.logs) <= 1 and all(log.exc is None and log.level in ("info", "warning") for log in pair.logs)


@pytest.mark.parametrize(
    ("bits", "reason"),
    [
        (16, "Payload length used 2 bytes when 1 would have sufficed"),
        (64, "Payload length used 8 bytes when 2 would have sufficed"),
    ],
)
@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_a_length_not_in_its_shortest_form_closes_1002_and_delivers_nothing(bits: int, reason: str, feed: str) -> None:
    """A 5-byte text frame with its length in 2 or 8 bytes is not read as a message: the
    connection fails with 1002 and wsproto's reason, as with any other frame."""
    pair = accepted()
    data = long_length(0x1, b"hello", bits) + frame(0x1, b"after")
    pair.feed(data) if feed == "whole" else pair.feed_bytewise(data)
    assert closes_seen(pair) == [(1002, reason)]
    assert pair.delivered()[1:] == [disconnect(1002, reason)]
    assert pair.logs == [Log("info", f"WebSocket protocol error from peer, closed 1002: {reason} ({WHERE})")]


# -- shutdown -------------------------------------------------------------------------------


def test_shutdown_closes_1012_with_reason_and_tells_the_app() -> None:
    pair = accepted()
    pair.shutdown()
    events = pair.client_events()
    assert [(e.code, e.reason) for e in events] == [(1012, "server restarting")]
    assert pair.receive() == disconnect(1012, "server restarting")
    pair.send(events[0].response())
    assert pair.closes == 1
    assert pair.receive() is None


def test_a_drain_lets_a_handshake_in_flight_finish_then_closes_it_with_1012() -> None:
    """A handshake is in flight like an HTTP request: the app answers it, and an accepted
    socket is closed with 1012 (a code clients reconnect on) instead of a 503 a browser
    cannot see."""
    pair = WSPair()
    pair.connect()
    assert pair.receive()["type"] == "websocket.connect"
    assert pair.shutdown() == []
    assert pair.client_events() == []
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    events = pair.client_events()
    assert isinstance(events[0], AcceptConnection)
    assert [(e.code, e.reason) for e in events[1:]] == [(1012, "server restarting")]
    assert pair.receive() == disconnect(1012, "server restarting")


def test_a_drain_during_the_handshake_sends_the_apps_rejection() -> None:
    pair = WSPair()
    pair.connect()
    pair.shutdown()
    pair.app_send(pair.cycle, {"type": "websocket.close"})
    assert rejection(pair.client_events()).status == 403
    assert pair.closes == 1


def test_a_handshake_unanswered_at_graceful_timeout_is_503() -> None:
    pair = WSPair()
    pair.connect()
    pair.shutdown()
    pair.force_shutdown()
    assert rejection(pair.client_events()).status == 503
    assert pair.closes == 1


# -- permessage-deflate ------------------------------------------------------------------------


def test_permessage_deflate_is_negotiated_when_offered() -> None:
    pair = WSPair(ws_options={"per_message_deflate": True})
    pair.connect(extensions=[PerMessageDeflate()])
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    events = pair.client_events()
    assert [type(e) for e in events] == [AcceptConnection]
    assert [type(x) for x in events[0].extensions] == [PerMessageDeflate]
    start = len(pair.wire)
    pair.app_send(pair.cycle, {"type": "websocket.send", "text": "compress me " * 20})
    assert pair.wire[start] & 0x40, "RSV1 marks a compressed message"
    assert len(pair.wire) - start < 100
    assert [e.data for e in pair.client_events()] == ["compress me " * 20]
    pair.send(TextMessage(data="and me " * 20))
    assert pair.receive() == text("and me " * 20)


def test_permessage_deflate_not_negotiated_when_not_offered_or_turned_off() -> None:
    pair = WSPair(ws_options={"per_message_deflate": False})
    pair.connect(extensions=[PerMessageDeflate()])
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    assert pair.client_events()[0].extensions == []
    plain = WSPair(ws_options={"per_message_deflate": True})
    plain.connect()
    plain.receive()
    plain.app_send(plain.cycle, {"type": "websocket.accept"})
    assert plain.client_events()[0].extensions == []
    assert b"permessage-deflate" not in plain.wire


def test_app_failure_after_accept_closes_1011() -> None:
    pair = accepted()
    pair.app_returned(pair.cycle, RuntimeError("boom"))
    assert closes_seen(pair) == [(1011, "Internal Server Error")]
    assert pair.cycle.state in (State.CLOSING, State.CLOSED)


def test_wsprotos_event_queue_is_a_list_and_still_yields_its_events_in_order() -> None:
    """The per-socket saving of websocket._Events rests on wsproto keeping its events in
    ``Connection._events`` (a deque it appends to and pops from the left)."""
    from collections import deque

    from wsproto.connection import Connection, ConnectionType

    assert type(Connection(ConnectionType.SERVER)._events) is deque  # where wsproto keeps them
    pair = accepted()
    events = pair.machine.ws._events
    assert type(events).__name__ == "_Events" and isinstance(events, list)
    # frames the reader hands to wsproto (fragments and a ping between them) come out in order
    pair.send(TextMessage(data="part one ", message_finished=False))
    pair.feed(frame(0x9, b"between"))
    pair.send(TextMessage(data="and two", message_finished=True))
    assert pair.receive() == text("part one and two")
    assert [type(e).__name__ for e in pair.client_events()] == ["Pong"]
    assert len(events) == 0
