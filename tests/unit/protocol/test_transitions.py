"""Every (state, message) pair of the two ASGI cycle tables.

The tests are parametrised over the tables themselves (``asgi_http.TRANSITIONS``,
``asgi_websocket.TRANSITIONS``) crossed with every State and every message kind the table
knows, plus a bogus type: a row added to a table is tested without editing this file
(apart from giving its message kind an example message and its wire check). Each pair
either makes the transition, checked by the next state and by the bytes on the wire as
the real client library parses them, or raises ``ASGIProtocolError`` with the exact text.

Separately, each table is checked against what the ASGI spec allows, so the table cannot
silently lose (or gain) a message the spec defines.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from wsproto.events import AcceptConnection, CloseConnection, TextMessage

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol import asgi_http, asgi_websocket
from channelserver.protocol.events import CloseTransport, Deliver

from .helpers import HTTPPair, WSPair, collect, rejection

HTTP = asgi_http.State
WS = asgi_websocket.State
BOGUS = "bogus"


def kinds_of(table: Any) -> list[str]:
    """Every message kind a table has a row for, in table order."""
    return list(dict.fromkeys(kind for _, kind in table))


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------

HTTP_WHERE = "GET / from 127.0.0.1:53122"

HTTP_MESSAGES: dict[str, dict[str, Any]] = {
    "http.response.start": {"type": "http.response.start", "status": 200, "headers": [(b"x-test", b"1")]},
    "http.response.body#more": {"type": "http.response.body", "body": b"part", "more_body": True},
    "http.response.body": {"type": "http.response.body", "body": b"last"},
    "http.response.early_hint": {"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload; as=style"]},
    "http.response.pathsend": {"type": "http.response.pathsend", "path": "/srv/file.txt"},
    BOGUS: {"type": "http.response.bogus"},
}

#: What the misuse text says is allowed, per state, written out by hand (keyed by the
#: state's value: the name apps see).
HTTP_EXPECTED = {
    "REQUEST": "expected http.response.start or http.response.early_hint",
    "RESPONSE": "expected http.response.body or http.response.pathsend",
    "COMPLETE": "expected no further message",
    "FAILED": "expected no further message",
}


def http_in_state(state: asgi_http.State) -> HTTPPair:
    """A pair whose one cycle is in ``state``, reached the way a real app gets there."""
    pair = HTTPPair()
    pair.request("GET", "/")
    cycle = pair.cycle
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    if state in (HTTP.RESPONSE, HTTP.COMPLETE):
        pair.app_send(cycle, {"type": "http.response.start", "status": 200, "headers": [(b"x-test", b"1")]})
    if state is HTTP.COMPLETE:
        pair.app_send(cycle, {"type": "http.response.body", "body": b"done"})
        assert [r.body for r in collect(pair.client_events())] == [b"done"]
    if state is HTTP.DISCONNECTED:
        pair.eof()
    if state is HTTP.FAILED:
        pair.run(pair.machine.app_failed(cycle))  # the app raised: 500
        assert pair.response().status == 500
    assert cycle.state is state
    return pair


def check_http_start(pair: HTTPPair, actions: list[Any]) -> None:
    # The head waits for the first body part, so a whole response is one write.
    assert pair.wire == b""
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"ok"})
    response = pair.response()
    assert (response.status, response.header(b"x-test"), response.body) == (200, b"1", b"ok")


def check_http_body_more(pair: HTTPPair, actions: list[Any]) -> None:
    events = pair.client_events()
    assert [type(e).__name__ for e in events] == ["Response", "Data"]
    assert events[0].status_code == 200
    assert events[1].data == b"part"
    assert not any(isinstance(a, Deliver) for a in actions)


def check_http_body(pair: HTTPPair, actions: list[Any]) -> None:
    response = pair.response()
    assert (response.status, response.body, response.header(b"content-length")) == (200, b"last", b"4")
    assert pair.delivered()[-1] == {"type": "http.disconnect"}


def check_http_early_hint(pair: HTTPPair, actions: list[Any]) -> None:
    events = pair.client_events()
    assert [(type(e).__name__, e.status_code) for e in events] == [("InformationalResponse", 103)]
    assert events[0].headers == [(b"link", b"</a.css>; rel=preload; as=style")]


def check_http_pathsend(pair: HTTPPair, actions: list[Any]) -> None:
    # The machine only takes the move: the I/O layer reads the file and sends it as body
    # parts (tests/integration/test_extensions.py), the last completing the response.
    assert actions == [] and pair.wire == b""
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"file"})
    assert pair.response().body == b"file"


HTTP_WIRE_CHECKS: dict[tuple[asgi_http.State, str], Callable[[HTTPPair, list[Any]], None]] = {
    (HTTP.REQUEST, "http.response.start"): check_http_start,
    (HTTP.REQUEST, "http.response.early_hint"): check_http_early_hint,
    (HTTP.RESPONSE, "http.response.pathsend"): check_http_pathsend,
    (HTTP.RESPONSE, "http.response.body#more"): check_http_body_more,
    (HTTP.RESPONSE, "http.response.body"): check_http_body,
}

HTTP_PAIRS = list(itertools.product(list(HTTP), [*kinds_of(asgi_http.TRANSITIONS), BOGUS]))


@pytest.mark.parametrize(("state", "kind"), HTTP_PAIRS, ids=[f"{s.value}-{k}" for s, k in HTTP_PAIRS])
def test_http_pair(state: asgi_http.State, kind: str) -> None:
    assert kind in HTTP_MESSAGES, f"give message kind {kind!r} an example message in HTTP_MESSAGES"
    pair = http_in_state(state)
    cycle = pair.cycle
    message = HTTP_MESSAGES[kind]
    wire_before = bytes(pair.wire)

    if state is HTTP.DISCONNECTED:
        # The client left: every send raises an OSError (ASGI spec 2.4), whatever it is.
        with pytest.raises(ClientDisconnected) as info:
            pair.app_send(cycle, message)
        assert isinstance(info.value, OSError)
        assert str(info.value) == f"client disconnected ({HTTP_WHERE})"
        assert pair.wire == wire_before
        return

    target = asgi_http.TRANSITIONS.get((state, kind))
    if target is not None:
        actions = pair.app_send(cycle, message)
        assert cycle.state is target
        assert (state, kind) in HTTP_WIRE_CHECKS, f"add a wire check for {(state, kind)}"
        HTTP_WIRE_CHECKS[state, kind](pair, actions)
        return

    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(cycle, message)
    assert str(info.value) == (
        f"{message['type']} not allowed in state {state.value}; {HTTP_EXPECTED[state.value]} ({HTTP_WHERE})"
    )
    assert cycle.state is state, "a refused message must not move the cycle"
    assert pair.wire == wire_before, "a refused message must not write anything"


HTTP_REFUSED = [(s, k) for s, k in HTTP_PAIRS if s is not HTTP.DISCONNECTED and (s, k) not in asgi_http.TRANSITIONS]


@pytest.mark.parametrize(("state", "kind"), HTTP_REFUSED, ids=[f"{s.value}-{k}" for s, k in HTTP_REFUSED])
def test_http_refused_message_reported_as_misuse(state: asgi_http.State, kind: str) -> None:
    """What the peer gets once a refusal is reported to the machine (``app_misused``, as
    ``AppInstance.send`` does): before a response was started, nothing valid was sent and
    the client gets a 500; once a valid head is committed, the refused message has no
    effect and the app's response stands; after the response, nothing."""
    pair = http_in_state(state)
    cycle = pair.cycle
    wire_before = bytes(pair.wire)
    closes_before = pair.closes
    with pytest.raises(ASGIProtocolError):
        pair.app_send(cycle, HTTP_MESSAGES[kind])
    actions = pair.run(pair.machine.app_misused(cycle))
    if state is HTTP.REQUEST:
        assert pair.response().status == 500
        assert pair.closes == 1
    elif state is HTTP.RESPONSE:
        assert actions == []
        assert cycle.state is HTTP.RESPONSE
        assert pair.wire == wire_before
        pair.app_send(cycle, HTTP_MESSAGES["http.response.body"])
        check_http_body(pair, actions)
        assert pair.closes == 0
    else:
        assert actions == []
        assert (cycle.state, bytes(pair.wire), pair.closes) == (state, wire_before, closes_before)


def test_http_misuse_text_verbatim() -> None:
    pair = http_in_state(HTTP.REQUEST)
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"x"})
    assert str(info.value) == (
        "http.response.body not allowed in state REQUEST; expected http.response.start or http.response.early_hint (GET / from 127.0.0.1:53122)"
    )
    pair = http_in_state(HTTP.RESPONSE)
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, {"type": "http.response.start", "status": 200})
    assert str(info.value) == (
        "http.response.start not allowed in state RESPONSE; expected http.response.body or http.response.pathsend (GET / from 127.0.0.1:53122)"
    )


#: The HTTP messages of the ASGI spec (2.4) an app may send, and where they lead.
SPEC_HTTP = {
    (HTTP.REQUEST, "http.response.start"): HTTP.RESPONSE,
    (HTTP.RESPONSE, "http.response.body#more"): HTTP.RESPONSE,
    (HTTP.RESPONSE, "http.response.body"): HTTP.COMPLETE,
    # extensions (advertised in every scope, below)
    (HTTP.REQUEST, "http.response.early_hint"): HTTP.REQUEST,
    (HTTP.RESPONSE, "http.response.pathsend"): HTTP.RESPONSE,
}
#: Extension messages: allowed only when the scope advertises the extension.
SPEC_HTTP_EXTENSIONS = {
    "http.response.trailers": "http.response.trailers",
    "http.response.push": "http.response.push",
    "http.response.zerocopysend": "http.response.zerocopysend",
    "http.response.pathsend": "http.response.pathsend",
    "http.response.early_hint": "http.response.early_hint",
}


#: Extension messages the machines check themselves, outside the table: trailers follow
#: the last body part only when http.response.start announced them (see
#: test_http11.py and test_http2.py's trailer tests).
OUTSIDE_THE_TABLE = {"http.response.trailers"}


def test_http_table_is_what_the_spec_allows() -> None:
    assert dict(asgi_http.TRANSITIONS) == SPEC_HTTP
    scope = http_in_state(HTTP.REQUEST).scope
    types = {kind.split("#")[0] for kind in kinds_of(asgi_http.TRANSITIONS)} | OUTSIDE_THE_TABLE
    for extension, message_type in SPEC_HTTP_EXTENSIONS.items():
        assert (extension in scope["extensions"]) == (message_type in types), extension


def test_http_states_are_all_reachable_and_named() -> None:
    assert [s.value for s in HTTP] == ["REQUEST", "RESPONSE", "COMPLETE", "DISCONNECTED", "FAILED"]
    for state in HTTP:
        assert http_in_state(state).cycle.state is state


def test_http_bad_fields_name_the_field() -> None:
    pair = http_in_state(HTTP.REQUEST)
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, {"type": "http.response.start", "status": "200"})
    assert str(info.value) == (
        f"http.response.start 'status' must be an int from 100 to 999, got str '200' ({HTTP_WHERE})"
    )
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, {"type": "http.response.start", "status": 200, "headers": [("a", "b")]})
    assert str(info.value) == (
        f"http.response.start 'headers' must be pairs of bytes, got tuple ('a', 'b') ({HTTP_WHERE})"
    )
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, "not a dict")
    assert str(info.value) == f"ASGI message must be a dict with a 'type' key, got 'not a dict' ({HTTP_WHERE})"
    assert pair.cycle.state is HTTP.REQUEST
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 200})
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, {"type": "http.response.body", "body": "text"})
    assert str(info.value) == f"http.response.body 'body' must be bytes, got str 'text' ({HTTP_WHERE})"


# ---------------------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------------------

WS_WHERE = "GET /ws/ from 127.0.0.1:53122"

WS_MESSAGES: dict[str, dict[str, Any]] = {
    "websocket.accept": {"type": "websocket.accept", "headers": [(b"x-test", b"1")]},
    "websocket.close": {"type": "websocket.close", "code": 4001, "reason": "done"},
    "websocket.http.response.start": {
        "type": "websocket.http.response.start",
        "status": 401,
        "headers": [(b"x-test", b"1")],
    },
    "websocket.http.response.body#more": {"type": "websocket.http.response.body", "body": b"part", "more_body": True},
    "websocket.http.response.body": {"type": "websocket.http.response.body", "body": b"last"},
    "websocket.send": {"type": "websocket.send", "text": "hello"},
    BOGUS: {"type": "websocket.bogus"},
}

#: Keyed by the state name apps see in the error text (the ASGI spec's words).
WS_EXPECTED = {
    "CONNECTING": "expected websocket.accept, websocket.close or websocket.http.response.start",
    "RESPONSE": "expected websocket.http.response.body",
    "CONNECTED": "expected websocket.send or websocket.close",
    "CLOSING": "expected websocket.close",
}


def ws_in_state(state: asgi_websocket.State) -> WSPair:
    """A pair whose cycle is in ``state``. CLOSED is reached the common way: the peer
    closed; the app has not yet been handed its ``websocket.disconnect``."""
    pair = WSPair()
    pair.connect()
    assert pair.receive() == {"type": "websocket.connect"}
    cycle = pair.cycle
    if state is WS.RESPONSE:
        pair.app_send(cycle, {"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-test", b"1")]})
    if state in (WS.CONNECTED, WS.CLOSING, WS.CLOSED):
        pair.app_send(cycle, {"type": "websocket.accept"})
        assert [type(e) for e in pair.client_events()] == [AcceptConnection]
    if state is WS.CLOSING:
        pair.app_send(cycle, {"type": "websocket.close", "code": 1000})
        assert [type(e) for e in pair.client_events()] == [CloseConnection]
    if state is WS.CLOSED:
        pair.send(CloseConnection(code=1000, reason="bye"))
        assert [type(e) for e in pair.client_events()] == [CloseConnection]
    assert cycle.state is state
    return pair


def check_ws_accept(pair: WSPair, actions: list[Any]) -> None:
    events = pair.client_events()
    assert [type(e) for e in events] == [AcceptConnection]
    assert (b"x-test", b"1") in [(n.lower(), v) for n, v in events[0].extra_headers]
    pair.send(TextMessage(data="after accept"))
    assert pair.receive() == {"type": "websocket.receive", "text": "after accept"}


def check_ws_close_before_accept(pair: WSPair, actions: list[Any]) -> None:
    refused = rejection(pair.client_events())
    assert (refused.status, refused.body, refused.finished) == (403, b"", True)
    assert pair.closes == 1
    assert pair.receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def check_ws_denial_start(pair: WSPair, actions: list[Any]) -> None:
    # Nothing goes out until the first body part (the head may still change to a 500).
    assert pair.client_events() == []
    pair.app_send(pair.cycle, {"type": "websocket.http.response.body", "body": b"denied"})
    refused = rejection(pair.client_events())
    assert (refused.status, refused.header(b"x-test"), refused.body, refused.finished) == (401, b"1", b"denied", True)


def check_ws_denial_body_more(pair: WSPair, actions: list[Any]) -> None:
    refused = rejection(pair.client_events())
    assert (refused.status, refused.body, refused.finished) == (401, b"part", False)
    assert pair.closes == 0


def check_ws_denial_body(pair: WSPair, actions: list[Any]) -> None:
    refused = rejection(pair.client_events())
    assert (refused.status, refused.body, refused.finished) == (401, b"last", True)
    assert pair.closes == 1


def check_ws_send(pair: WSPair, actions: list[Any]) -> None:
    events = pair.client_events()
    assert [(type(e), e.data) for e in events] == [(TextMessage, "hello")]


def check_ws_close(pair: WSPair, actions: list[Any]) -> None:
    events = pair.client_events()
    assert [(type(e), e.code, e.reason) for e in events] == [(CloseConnection, 4001, "done")]
    # The app hears about the end when the peer answers the close.
    assert pair.receive() is None
    pair.send(events[0].response())
    assert pair.receive() == {"type": "websocket.disconnect", "code": 4001, "reason": "done"}
    assert pair.closes == 1


def check_ws_noop(pair: WSPair, actions: list[Any]) -> None:
    assert actions == []
    assert pair.client_events() == []


WS_WIRE_CHECKS: dict[tuple[asgi_websocket.State, str], Callable[[WSPair, list[Any]], None]] = {
    (WS.HANDSHAKE, "websocket.accept"): check_ws_accept,
    (WS.HANDSHAKE, "websocket.close"): check_ws_close_before_accept,
    (WS.HANDSHAKE, "websocket.http.response.start"): check_ws_denial_start,
    (WS.RESPONSE, "websocket.http.response.body#more"): check_ws_denial_body_more,
    (WS.RESPONSE, "websocket.http.response.body"): check_ws_denial_body,
    (WS.CONNECTED, "websocket.send"): check_ws_send,
    (WS.CONNECTED, "websocket.close"): check_ws_close,
    (WS.CLOSING, "websocket.close"): check_ws_noop,
    (WS.CLOSED, "websocket.close"): check_ws_noop,
}

WS_PAIRS = list(itertools.product(list(WS), [*kinds_of(asgi_websocket.TRANSITIONS), BOGUS]))


@pytest.mark.parametrize(("state", "kind"), WS_PAIRS, ids=[f"{s.value}-{k}" for s, k in WS_PAIRS])
def test_websocket_pair(state: asgi_websocket.State, kind: str) -> None:
    assert kind in WS_MESSAGES, f"give message kind {kind!r} an example message in WS_MESSAGES"
    pair = ws_in_state(state)
    cycle = pair.cycle
    message = WS_MESSAGES[kind]
    wire_before = bytes(pair.wire)

    if state is WS.CLOSED:
        # The peer left and the app was not told yet: whatever it sends is dropped quietly,
        # so a consumer that is mid-send still reaches its disconnect handler.
        assert pair.app_send(cycle, message) == []
        assert pair.wire == wire_before
        assert pair.logs == []
        assert cycle.state is WS.CLOSED
        return

    target = asgi_websocket.TRANSITIONS.get((state, kind))
    if target is not None:
        actions = pair.app_send(cycle, message)
        assert cycle.state is target or (target is WS.CLOSING and cycle.state is WS.CLOSED)
        assert (state, kind) in WS_WIRE_CHECKS, f"add a wire check for {(state, kind)}"
        WS_WIRE_CHECKS[state, kind](pair, actions)
        return

    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(cycle, message)
    assert str(info.value) == (
        f"{message['type']} not allowed in state {state.value}; {WS_EXPECTED[state.value]} ({WS_WHERE})"
    )
    assert cycle.state is state, "a refused message must not move the cycle"
    assert pair.wire == wire_before, "a refused message must not write anything"


CLOSED_KINDS = [*kinds_of(asgi_websocket.TRANSITIONS), BOGUS]


@pytest.mark.parametrize("kind", CLOSED_KINDS)
def test_websocket_closed_after_disconnect_was_delivered(kind: str) -> None:
    """Once the app was handed ``websocket.disconnect``: ``send()`` raises an OSError
    (ASGI spec 2.4), except ``websocket.close``, which the table makes a no-op in CLOSED
    (a Channels consumer calling ``self.close()`` in its ``disconnect()`` must not fail)."""
    pair = ws_in_state(WS.CLOSED)
    assert pair.receive() == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}
    message = WS_MESSAGES[kind]
    if asgi_websocket.TRANSITIONS.get((WS.CLOSED, kind)) is WS.CLOSED:
        assert pair.app_send(pair.cycle, message) == []
        return
    with pytest.raises(ClientDisconnected) as info:
        pair.app_send(pair.cycle, message)
    assert str(info.value) == f"WebSocket client disconnected ({WS_WHERE})"


def test_websocket_misuse_text_verbatim() -> None:
    """The example of issue 2, letter for letter."""
    pair = ws_in_state(WS.HANDSHAKE)
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, {"type": "websocket.send", "text": "too early"})
    assert str(info.value) == (
        "websocket.send not allowed in state CONNECTING; expected websocket.accept, websocket.close or "
        "websocket.http.response.start (GET /ws/ from 127.0.0.1:53122)"
    )


#: The WebSocket messages of the ASGI spec (2.4) an app may send, and where they lead.
#: The last two rows are this server's choice: ``websocket.close`` is idempotent.
SPEC_WS = {
    (WS.HANDSHAKE, "websocket.accept"): WS.CONNECTED,
    (WS.HANDSHAKE, "websocket.close"): WS.CLOSED,
    (WS.HANDSHAKE, "websocket.http.response.start"): WS.RESPONSE,
    (WS.RESPONSE, "websocket.http.response.body#more"): WS.RESPONSE,
    (WS.RESPONSE, "websocket.http.response.body"): WS.CLOSED,
    (WS.CONNECTED, "websocket.send"): WS.CONNECTED,
    (WS.CONNECTED, "websocket.close"): WS.CLOSING,
    (WS.CLOSING, "websocket.close"): WS.CLOSING,
    (WS.CLOSED, "websocket.close"): WS.CLOSED,
}


def test_websocket_table_is_what_the_spec_allows() -> None:
    assert dict(asgi_websocket.TRANSITIONS) == SPEC_WS
    scope = ws_in_state(WS.HANDSHAKE).scope
    # The denial messages are allowed because the scope advertises the extension.
    assert "websocket.http.response" in scope["extensions"]


def test_websocket_state_names_are_the_specs() -> None:
    assert [s.value for s in WS] == ["CONNECTING", "RESPONSE", "CONNECTED", "CLOSING", "CLOSED"]
    for state in WS:
        assert ws_in_state(state).cycle.state is state


WS_BAD_FIELDS = [
    (
        WS.HANDSHAKE,
        {"type": "websocket.accept", "subprotocol": "chat"},
        "websocket.accept 'subprotocol' 'chat' was not offered by the client (offered: none)",
    ),
    (
        WS.HANDSHAKE,
        {"type": "websocket.accept", "subprotocol": 1},
        "websocket.accept 'subprotocol' must be a str or None, got int 1",
    ),
    (
        WS.HANDSHAKE,
        {"type": "websocket.accept", "headers": [("x", "y")]},
        "websocket.accept 'headers' must be pairs of bytes, got tuple ('x', 'y')",
    ),
    (
        WS.HANDSHAKE,
        {"type": "websocket.http.response.start", "status": 101},
        "websocket.http.response.start 'status' must be an int from 200 to 999, not 101, got int 101",
    ),
    (
        WS.HANDSHAKE,
        {"type": "websocket.http.response.start", "status": 403, "headers": 5},
        "websocket.http.response.start 'headers' must be an iterable of [name, value] pairs, got int 5",
    ),
    (
        WS.RESPONSE,
        {"type": "websocket.http.response.body", "body": "text"},
        "websocket.http.response.body 'body' must be bytes, got str 'text'",
    ),
    (
        WS.CONNECTED,
        {"type": "websocket.send"},
        "websocket.send needs 'bytes' or 'text', got neither",
    ),
    (
        WS.CONNECTED,
        {"type": "websocket.send", "text": b"bytes"},
        "websocket.send 'text' must be a str, got bytes b'bytes'",
    ),
    (
        WS.CONNECTED,
        {"type": "websocket.send", "bytes": "text"},
        "websocket.send 'bytes' must be bytes, got str 'text'",
    ),
    (
        WS.CONNECTED,
        {"type": "websocket.close", "code": 1006},
        "websocket.close 'code' must be a valid close code (1000-4999, not 1005/1006/1015), got int 1006",
    ),
    (
        WS.CONNECTED,
        {"type": "websocket.close", "reason": "x" * 124},
        "websocket.close 'reason' is 124 bytes; a close frame holds at most 123",
    ),
]

WS_BAD_FIELD_IDS = [
    "accept-subprotocol-not-offered",
    "accept-subprotocol-type",
    "accept-headers",
    "denial-status-101",
    "denial-headers",
    "denial-body-type",
    "send-neither",
    "send-text-type",
    "send-bytes-type",
    "close-code-1006",
    "close-reason-too-long",
]


@pytest.mark.parametrize(("state", "message", "text"), WS_BAD_FIELDS, ids=WS_BAD_FIELD_IDS)
def test_websocket_bad_field_is_refused_without_a_transition(
    state: asgi_websocket.State, message: dict[str, Any], text: str
) -> None:
    """A message with a bad field is refused before it changes anything, so the failure
    answer that follows (``app_failed``: 500 before accept, close 1011 after) still goes out."""
    pair = ws_in_state(state)
    wire_before = bytes(pair.wire)
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(pair.cycle, message)
    assert str(info.value) == f"{text} ({WS_WHERE})"
    assert pair.cycle.state is state
    assert pair.wire == wire_before
    pair.app_failed(pair.cycle)
    if state is WS.CONNECTED:
        assert [(type(e), e.code) for e in pair.client_events()] == [(CloseConnection, 1011)]
    else:
        refused = rejection(pair.client_events())
        assert (refused.status, refused.finished) == (500, True)
        assert pair.closes == 1


def test_websocket_refused_close_leaves_the_connection_open() -> None:
    """A close with a bad code is refused before it changes anything: the app can still
    send, and close properly."""
    pair = ws_in_state(WS.CONNECTED)
    with pytest.raises(ASGIProtocolError):
        pair.app_send(pair.cycle, {"type": "websocket.close", "code": 999})
    assert pair.cycle.state is WS.CONNECTED
    pair.app_send(pair.cycle, {"type": "websocket.send", "text": "still here"})
    assert [e.data for e in pair.client_events()] == ["still here"]
    actions = pair.app_send(pair.cycle, {"type": "websocket.close", "code": 1000})
    assert not any(isinstance(a, CloseTransport) for a in actions)
    assert [(type(e), e.code) for e in pair.client_events()] == [(CloseConnection, 1000)]


# ---------------------------------------------------------------------------------------
# Server-side inputs: the EVENTS tables
# ---------------------------------------------------------------------------------------


def event_names(table: Any) -> list[str]:
    return list(dict.fromkeys(name for _, name in table))


HTTP_EVENT_PAIRS = list(itertools.product(list(HTTP), event_names(asgi_http.EVENTS)))


@pytest.mark.parametrize(("state", "name"), HTTP_EVENT_PAIRS, ids=[f"{s.value}-{n}" for s, n in HTTP_EVENT_PAIRS])
def test_http_event_moves_only_as_its_table_says(state: asgi_http.State, name: str) -> None:
    cycle = asgi_http.HTTPCycle(b"GET", b"/", "127.0.0.1:53122")
    cycle.state = state  # test set-up only: the machine never sets a state outside the table
    target = asgi_http.EVENTS.get((state, name))
    assert cycle.event(name) is (target is not None)
    assert cycle.state is (target or state)


WS_EVENT_PAIRS = list(itertools.product(list(WS), event_names(asgi_websocket.EVENTS)))


@pytest.mark.parametrize(("state", "name"), WS_EVENT_PAIRS, ids=[f"{s.value}-{n}" for s, n in WS_EVENT_PAIRS])
def test_websocket_event_moves_only_as_its_table_says(state: asgi_websocket.State, name: str) -> None:
    cycle = asgi_websocket.WebSocketCycle(WS_WHERE)
    cycle.state = state  # test set-up only
    target = asgi_websocket.EVENTS.get((state, name))
    assert cycle.event(name) is (target is not None)
    assert cycle.state is (target or state)


def test_websocket_peer_gone_is_told_once() -> None:
    cycle = asgi_websocket.WebSocketCycle(WS_WHERE)
    cycle.state = WS.CONNECTED  # test set-up only
    assert cycle.gone() is True
    assert (cycle.state, cycle.peer_gone) == (WS.CLOSED, True)
    assert cycle.gone() is False


def test_no_module_but_the_cycles_moves_a_cycle() -> None:
    """h11's rule: what changes a cycle's state lives in the cycle's module. The machines
    and the I/O layer move a cycle only through its table inputs."""
    import pathlib
    import re

    import channelserver

    package = pathlib.Path(channelserver.__file__).parent
    owners = {package / "protocol" / "asgi_http.py", package / "protocol" / "asgi_websocket.py"}
    offenders = []
    for path in package.rglob("*.py"):
        if path in owners:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bcycle\.state\s*=(?!=)", line):
                offenders.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert offenders == []
