"""The handshake fast path (``handshake.py``) does what wsproto's handshake would, or leaves it to wsproto.

The property: for any upgrade request the HTTP machine hands over (each header the
handshake reads present, missing, repeated or wrong; offers of subprotocols and
extensions, valid or not; any other headers, framing headers among them; hosts IDNA
cannot decode; HTTP/1.0), and any answer of the app (an accept with or without a
subprotocol, offered or not, with any extra headers, valid or not, framing headers among
them; a close before the accept; a denial response; a failure; a timeout; a shutdown; the
peer leaving), a :class:`WebSocketConnection` with the fast handshake (the default)
returns the same actions as one where wsproto reads and answers every handshake
(``fast_handshake=False``): the same scope and messages to the app, the same bytes on the
wire, the same log lines, timers and closes, the same exceptions from ``send()``; and
after an accept the same frames both ways, so the connection wsproto works with agreed on
the same extensions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol.events import Deliver, StartApp
from channelserver.protocol.handshake import read_offer
from channelserver.protocol.websocket import HANDSHAKE, WebSocketConnection

CLIENT = ("127.0.0.1", 53122)
SERVER = ("127.0.0.1", 8000)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PLAIN = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]
#: A masked text frame "hi" from the client, and a masked close 1000.
TEXT_FRAME = bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2])
CLOSE_FRAME = bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])


@dataclass
class Case:
    headers: list[tuple[str, Any]]
    answer: tuple[Any, ...] = ("accept", None, [])
    http_version: str = "1.1"
    per_message_deflate: bool = True
    after: list[str] = field(default_factory=list)


# -- the requests ------------------------------------------------------------------------------

SUBPROTOCOLS = st.lists(st.sampled_from(["graphql-ws", "graphql-transport-ws", "chat", "", " v2 ", "a b"]), max_size=3)
EXTENSION_OFFERS = st.sampled_from(
    [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=20",
        "permessage-deflate; bogus",
        "x-webkit-deflate-frame",
        "foo, permessage-deflate",
        "",
    ]
)
OTHER = st.sampled_from(
    [
        ("User-Agent", "test"),
        ("Origin", "http://example.com"),
        ("Cookie", "a=b; c=d"),
        ("Content-Length", "0"),
        ("Content-Length", "5"),
        ("Transfer-Encoding", "chunked"),
        ("Expect", "100-continue"),
        ("X-Obs", b"caf\xe9"),
        ("Sec-WebSocket-Accept", "nonsense"),
    ]
)


@st.composite
def requests(draw: Any) -> tuple[list[tuple[str, Any]], str]:
    """Headers built from the plain handshake, each part maybe altered, plus others.
    Mostly valid, so that most cases take the fast path; each part sometimes not."""
    host = draw(st.sampled_from(["example.com"] * 4 + ["127.0.0.1:8000", "xn--zz", "a..b", "[::1]:8000", "Ex.COM"]))
    upgrade = draw(st.sampled_from(["websocket"] * 6 + ["WebSocket", "h2c", "websocket, h2c"]))
    connection = draw(st.sampled_from(["Upgrade"] * 5 + ["keep-alive, upgrade", "keep-alive", "close"]))
    key = draw(st.sampled_from([KEY] * 6 + ["short", "AAAAAAAAAAAAAAAAAAAAAA=="]))
    version = draw(st.sampled_from(["13"] * 6 + ["8", "13, 8"]))
    parts = {
        "host": ("Host", host),
        "upgrade": ("Upgrade", upgrade),
        "connection": ("Connection", connection),
        "key": ("Sec-WebSocket-Key", key),
        "version": ("Sec-WebSocket-Version", version),
    }
    http_version = draw(st.sampled_from(["1.1"] * 7 + ["1.0"]))
    headers: list[tuple[str, Any]] = []
    for name, header in parts.items():
        fate = draw(st.integers(0, 24))
        if fate == 0 and not (name == "host" and http_version == "1.1"):
            continue  # missing (h11 itself requires Host on HTTP/1.1)
        headers.append(header)
        if fate == 1:
            headers.append(header)  # repeated
    for offered in draw(st.lists(SUBPROTOCOLS, max_size=2)):
        headers.append(("Sec-WebSocket-Protocol", ", ".join(offered)))
    for offer in draw(st.lists(EXTENSION_OFFERS, max_size=2)):
        headers.append(("Sec-WebSocket-Extensions", offer))
    if draw(st.integers(0, 3)) == 0:
        headers += draw(st.lists(OTHER, max_size=2))
    else:
        headers.append(("User-Agent", "test"))
    order = draw(st.permutations(range(len(headers))))
    return [headers[i] for i in order], http_version


HEADER_VALUES = st.sampled_from(
    [
        (b"x-test", b"1"),
        (b"X-Mixed-Case", b"v"),
        (b"set-cookie", b"a=b"),
        (b"bad name", b"v"),
        (b"x-empty", b""),
        (b"x-space", b" padded "),
        (b"x-ctl", b"a\x01b"),
        (b"content-length", b"0"),
        (b"Transfer-Encoding", b"chunked"),
        (b"x-obs", b"caf\xe9"),
    ]
)
#: Mostly headers h11 writes as they are, sometimes one it refuses or rewrites.
EXTRA = st.lists(st.one_of(st.just((b"x-test", b"1")), HEADER_VALUES), max_size=3)


@st.composite
def answers(draw: Any) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["accept"] * 6 + ["close", "deny", "fail", "timeout", "shutdown", "eof"]))
    if kind == "accept":
        subprotocol = draw(st.sampled_from([None] * 4 + ["graphql-ws", "chat", "", "a b", "nope", "caf\xe9"]))
        return ("accept", subprotocol, draw(EXTRA))
    if kind == "deny":
        return ("deny", draw(st.sampled_from([403, 404, 500])), draw(st.lists(HEADER_VALUES, max_size=2)))
    return (kind,)


@st.composite
def cases(draw: Any) -> Case:
    headers, http_version = draw(requests())
    after = draw(st.lists(st.sampled_from(["text in", "text out", "close in", "eof"]), max_size=3))
    return Case(headers, draw(answers()), http_version, draw(st.booleans()), after)


# -- the two runs -------------------------------------------------------------------------------


def trace(case: Case, fast: bool) -> list[Any]:
    try:
        request = h11.Request(method="GET", target="/ws/", headers=case.headers, http_version=case.http_version)
    except h11.LocalProtocolError as exc:  # not a request the HTTP machine could hand over
        return [("no request", str(exc))]
    conn = WebSocketConnection(
        request,
        b"",
        client=CLIENT,
        server=SERVER,
        per_message_deflate=case.per_message_deflate,
        default_headers=lambda: [(b"server", b"channelserver")],
        ping_interval=None,
        fast_handshake=fast,
    )
    record: list[Any] = []

    def execute(actions: list[Any]) -> None:
        for action in actions:
            if type(action) is StartApp:
                record.append(("start", action.scope))
            elif type(action) is Deliver:
                record.append(("deliver", action.message))
            else:
                record.append(action)

    def app(message: dict[str, Any]) -> None:
        try:
            execute(conn.app_send(conn.cycle, message))
        except (ASGIProtocolError, ClientDisconnected) as exc:
            record.append(("raised", type(exc).__name__, str(exc)))
        except Exception as exc:  # what wsproto or h11 raise for a header they refuse
            record.append(("raised", type(exc).__name__, str(exc)))

    execute(conn.start())
    if not any(type(entry) is tuple and entry[0] == "start" for entry in record):
        execute(conn.eof())  # refused: the app never runs
        return record
    kind = case.answer[0]
    if kind == "accept":
        message: dict[str, Any] = {"type": "websocket.accept", "headers": case.answer[2]}
        if case.answer[1] is not None:
            message["subprotocol"] = case.answer[1]
        app(message)
    elif kind == "close":
        app({"type": "websocket.close"})
    elif kind == "deny":
        app({"type": "websocket.http.response.start", "status": case.answer[1], "headers": case.answer[2]})
        app({"type": "websocket.http.response.body", "body": b"denied"})
    elif kind == "fail":
        execute(conn.app_failed(conn.cycle))
    elif kind == "timeout":
        execute(conn.timer_fired(HANDSHAKE))
    elif kind == "shutdown":
        execute(conn.shutdown())
    elif kind == "eof":
        execute(conn.eof())
    for step in case.after:
        if step == "text in":
            execute(conn.receive_data(TEXT_FRAME))
        elif step == "text out":
            app({"type": "websocket.send", "text": "hello " * 20})
        elif step == "close in":
            execute(conn.receive_data(CLOSE_FRAME))
        else:
            execute(conn.eof())
    execute(conn.eof())
    return record


PROOF = settings(
    max_examples=3000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROOF
@given(cases())
@example(Case(PLAIN, after=["text in", "text out", "close in"]))
@example(Case([*PLAIN, ("Sec-WebSocket-Extensions", "permessage-deflate")], after=["text in", "text out"]))
@example(Case([*PLAIN, ("Sec-WebSocket-Protocol", "graphql-ws, chat")], answer=("accept", "chat", [(b"x-a", b"b")])))
@example(Case([*PLAIN, ("Sec-WebSocket-Protocol", "graphql-ws")], answer=("accept", "nope", [])))
@example(Case(PLAIN, answer=("accept", None, [(b"bad name", b"v")])))
@example(Case(PLAIN, answer=("accept", None, [(b"content-length", b"0")])))
@example(Case(PLAIN, answer=("deny", 403, [])))
@example(Case([("Host", "xn--zz"), *PLAIN[1:]]))
@example(Case([*PLAIN, ("Sec-WebSocket-Key", KEY)]))
@example(Case([*PLAIN, ("Content-Length", "5")]))
@example(Case(PLAIN[1:], http_version="1.0"))
def test_the_fast_handshake_changes_nothing_wsproto_would_do(case: Case) -> None:
    assert trace(case, fast=True) == trace(case, fast=False)


def offer_of(headers: list[tuple[str, str]]) -> Any:
    return read_offer(h11.Request(method="GET", target="/ws/", headers=headers))


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [("Sec-WebSocket-Protocol", "graphql-transport-ws")],
        [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")],
        [("Origin", "http://localhost:8000"), ("User-Agent", "Mozilla/5.0"), ("Cookie", "sessionid=x")],
    ],
)
def test_what_browsers_and_graphql_clients_send_is_read_without_wsproto(extra: list[tuple[str, str]]) -> None:
    """The fast path is taken for the handshakes clients really send (the proof only says
    that whatever it takes, it takes right)."""
    offer = offer_of([*PLAIN, *extra])
    assert offer is not None and offer.key == KEY.encode()
    conn = WebSocketConnection(
        h11.Request(method="GET", target="/ws/", headers=[*PLAIN, *extra]), b"", client=CLIENT, server=SERVER
    )
    conn.start()
    conn.app_send(conn.cycle, {"type": "websocket.accept"})
    assert conn._handshake is None, "wsproto's handshake was not needed"
