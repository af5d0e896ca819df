"""Behaviour of the HTTP/1.1 machine, with a real h11 client on the other end.

Keep-alive and pipelining, request bodies (content-length and chunked) with
``more_body``, ``Expect: 100-continue``, HEAD, the content-length of whole responses,
``http.disconnect``, ``ClientDisconnected``, an app that returns without answering, the
keep-alive timer, shutdown, and every kind of malformed request: the exact status, one
warning line, a closed transport and never an exception.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol.asgi_http import State
from channelserver.protocol.events import CloseTransport, Deliver, Log, SetTimer, StartApp, Write
from channelserver.protocol.headcheck import error_class
from channelserver.protocol.http11 import KEEP_ALIVE

from .helpers import CLIENT, SERVER, HTTPPair, read_responses, request_bytes

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def answer(pair: HTTPPair, cycle: Any, data: bytes = b"ok") -> list[Any]:
    pair.app_send(cycle, START)
    return pair.app_send(cycle, body(data))


# -- the scope ---------------------------------------------------------------------------


def test_scope_of_a_request() -> None:
    pair = HTTPPair(root_path="/mount")
    pair.request("GET", "/a%20b/c?x=1&y=%20", headers=[("X-Mixed-Case", "Value")])
    scope = pair.scope
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/mount/a b/c",
        "raw_path": b"/a%20b/c",
        "query_string": b"x=1&y=%20",
        "root_path": "/mount",
        "headers": [(b"host", b"example.com"), (b"x-mixed-case", b"Value")],
        "client": CLIENT,
        "server": SERVER,
        "extensions": {"http.response.pathsend": {}, "http.response.early_hint": {}, "http.response.trailers": {}},
    }


def test_scope_carries_a_copy_of_the_lifespan_state() -> None:
    state = {"db": "pool"}
    pair = HTTPPair(state=state)
    pair.request()
    assert pair.scope["state"] == state
    pair.scope["state"]["db"] = "changed by one request"
    assert state == {"db": "pool"}


# -- keep-alive and pipelining -----------------------------------------------------------


def test_keep_alive_serves_requests_one_after_another() -> None:
    pair = HTTPPair()
    assert pair.timers == {KEEP_ALIVE: 5.0}
    for n in range(3):
        pair.request("GET", f"/{n}")
        assert KEEP_ALIVE not in pair.timers, "no idle timeout while a request is in flight"
        answer(pair, pair.cycle, b"answer %d" % n)
        assert pair.response().body == b"answer %d" % n
        assert pair.timers == {KEEP_ALIVE: 5.0}
        pair.client.start_next_cycle()
    assert len(pair.started) == 3
    assert pair.closes == 0


@pytest.mark.parametrize(
    "framing",
    [b"", b"Content-Length: 0\r\n", b"Content-Length: 000\r\n"],
    ids=["no-framing-header", "content-length-0", "content-length-000"],
)
def test_a_request_without_a_body_ends_with_its_head(framing: bytes) -> None:
    """The empty body comes with the request; the bytes after the head (here the next
    request, pipelined) are the next request, read once the response is complete."""
    pair = HTTPPair()
    pair.feed(b"POST /a HTTP/1.1\r\nHost: a\r\n" + framing + b"\r\n" + request_bytes("GET", "/b"))
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    assert [s.scope["path"] for s in pair.started] == ["/a"]
    answer(pair, pair.cycle, b"first")
    assert [s.scope["path"] for s in pair.started] == ["/a", "/b"]
    answer(pair, pair.cycle, b"second")
    assert [r.body for r in read_responses(bytes(pair.wire), [b"POST", b"GET"], eof=False)] == [b"first", b"second"]
    assert pair.closes == 0


def test_bytes_after_a_bodiless_request_are_parsed_as_the_next_request() -> None:
    """A GET does not have a body just because bytes follow its head: they are the next
    request, and here not a valid one."""
    pair = HTTPPair()
    pair.feed(request_bytes("GET", "/") + b"not a request\r\n\r\n")
    answer(pair, pair.cycle, b"ok")
    responses = read_responses(bytes(pair.wire), [b"GET", b"GET"], eof=True)
    assert [r.status for r in responses] == [200, 400]
    assert pair.closes == 1


def test_pipelined_requests_are_answered_in_order() -> None:
    pair = HTTPPair()
    pair.feed(request_bytes("GET", "/first") + request_bytes("POST", "/second", body=b"payload"))
    # Only the first app runs: the second request waits until the first response is done.
    assert [s.scope["path"] for s in pair.started] == ["/first"]
    first = pair.cycle
    pair.app_send(first, START)
    pair.app_send(first, body(b"one", more=True))
    assert len(pair.started) == 1
    pair.app_send(first, body(b"!"))
    assert [s.scope["path"] for s in pair.started] == ["/first", "/second"]
    second = pair.cycle
    assert pair.receive(second) == {"type": "http.request", "body": b"payload", "more_body": False}
    answer(pair, second, b"two")
    assert [r.body for r in read_responses(bytes(pair.wire), [b"GET", b"POST"], eof=False)] == [b"one!", b"two"]
    assert pair.closes == 0


def test_http10_request_closes_after_the_response() -> None:
    pair = HTTPPair()
    pair.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert pair.scope["http_version"] == "1.0"
    answer(pair, pair.cycle)
    assert [r.status for r in read_responses(bytes(pair.wire))] == [200]
    assert pair.closes == 1


def test_connection_close_from_the_client_is_honoured() -> None:
    pair = HTTPPair()
    pair.request(headers=[("Connection", "close")])
    answer(pair, pair.cycle)
    assert pair.response().status == 200
    assert pair.closes == 1


# -- request bodies ----------------------------------------------------------------------


def test_content_length_body_in_pieces_with_more_body() -> None:
    pair = HTTPPair()
    head = request_bytes("POST", "/", body=b"0123456789")
    split = head.index(b"\r\n\r\n") + 4
    pair.feed(head[: split + 3])
    pair.feed(head[split + 3 : split + 7])
    pair.feed(head[split + 7 :])
    messages = pair.delivered()
    assert messages == [
        {"type": "http.request", "body": b"012", "more_body": True},
        {"type": "http.request", "body": b"3456", "more_body": True},
        {"type": "http.request", "body": b"789", "more_body": False},
    ]
    assert all(type(m["body"]) is bytes for m in messages), "ASGI bodies are bytes, not bytearray"


def test_chunked_body_with_more_body() -> None:
    pair = HTTPPair()
    pair.send(h11.Request(method="POST", target="/", headers=[("Host", "a"), ("Transfer-Encoding", "chunked")]))
    assert pair.delivered() == []
    pair.send(h11.Data(data=b"abc"))
    pair.send(h11.Data(data=b"de"))
    pair.send(h11.EndOfMessage())
    messages = pair.delivered()
    assert messages == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"de", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    assert all(type(m["body"]) is bytes for m in messages), "ASGI bodies are bytes, not bytearray"


def test_whole_body_in_one_feed_is_one_message() -> None:
    pair = HTTPPair()
    pair.request("PUT", "/", body=b"x" * 1000)
    assert pair.delivered() == [{"type": "http.request", "body": b"x" * 1000, "more_body": False}]


def test_expect_100_continue_is_sent_when_the_app_asks_for_the_body() -> None:
    pair = HTTPPair()
    pair.send(
        h11.Request(
            method="POST", target="/", headers=[("Host", "a"), ("Expect", "100-continue"), ("Content-Length", "3")]
        )
    )
    assert len(pair.started) == 1
    assert pair.wire == b"", "no 100 Continue before the app reads"
    assert pair.receive() is None  # the app awaits receive(): now the client may send
    assert [type(e) for e in pair.client_events()] == [h11.InformationalResponse]
    assert pair.client.their_state is h11.SEND_RESPONSE
    assert pair.receive() is None
    assert pair.client_events() == [], "100 Continue is sent once"
    pair.send(h11.Data(data=b"abc"), h11.EndOfMessage())
    assert pair.receive() == {"type": "http.request", "body": b"abc", "more_body": False}
    answer(pair, pair.cycle)
    assert pair.response().status == 200


def test_expect_100_continue_never_sent_when_the_app_answers_without_reading() -> None:
    pair = HTTPPair()
    pair.send(
        h11.Request(
            method="POST", target="/", headers=[("Host", "a"), ("Expect", "100-continue"), ("Content-Length", "3")]
        )
    )
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 417})
    pair.app_send(pair.cycle, body(b"no"))
    response = pair.response()
    assert (response.informational, response.status) == ([], 417)
    # The body the client might still send cannot be told from a next request: close.
    assert pair.closes == 1


# -- responses ---------------------------------------------------------------------------


def test_whole_response_gets_a_content_length() -> None:
    pair = HTTPPair()
    pair.request()
    answer(pair, pair.cycle, b"hello")
    response = pair.response()
    assert response.header(b"content-length") == b"5"
    assert response.header(b"transfer-encoding") is None
    assert response.body == b"hello"


def test_streamed_response_is_chunked() -> None:
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, START)
    pair.app_send(pair.cycle, body(b"a", more=True))
    pair.app_send(pair.cycle, body(b"", more=True))
    pair.app_send(pair.cycle, body(b"b"))
    response = pair.response()
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"content-length") is None
    assert response.body == b"ab"


def test_app_content_length_is_kept() -> None:
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 200, "headers": [(b"Content-Length", b"3")]})
    pair.app_send(pair.cycle, body(b"abc"))
    response = pair.response()
    assert [v for n, v in response.headers if n == b"content-length"] == [b"3"]


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_length_on_bodiless_statuses(status: int) -> None:
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": status})
    pair.app_send(pair.cycle, body(b""))
    response = pair.response()
    assert response.status == status
    assert response.header(b"content-length") is None


def test_head_has_no_body_but_the_content_length_of_one() -> None:
    pair = HTTPPair()
    pair.request("HEAD")
    answer(pair, pair.cycle, b"hello")
    response = pair.response()
    assert (response.status, response.header(b"content-length"), response.body) == (200, b"5", b"")
    # Nothing but the head on the wire: the next request parses cleanly.
    assert pair.wire.endswith(b"\r\n\r\n")
    pair.client.start_next_cycle()
    pair.request()
    answer(pair, pair.cycle, b"next")
    assert pair.response().body == b"next"


def test_head_streamed_sends_no_body_bytes() -> None:
    pair = HTTPPair()
    pair.request("HEAD")
    pair.app_send(pair.cycle, START)
    pair.app_send(pair.cycle, body(b"part", more=True))
    pair.app_send(pair.cycle, body(b"rest"))
    assert pair.response().body == b""
    assert pair.wire.endswith(b"\r\n\r\n")
    assert pair.closes == 0


def test_default_headers_come_first_and_are_valid() -> None:
    pair = HTTPPair(default_headers=lambda: b"server: channelserver\r\n")
    pair.request()
    answer(pair, pair.cycle)
    response = pair.response()
    assert response.headers[0] == (b"server", b"channelserver")


# -- disconnects -------------------------------------------------------------------------


def test_http_disconnect_is_delivered_after_the_response_completes() -> None:
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    pair.app_send(cycle, START)
    assert pair.receive() is None, "no disconnect while the response is in progress"
    pair.app_send(cycle, body(b"done"))
    assert pair.receive() == {"type": "http.disconnect"}


def test_eof_during_a_request_delivers_http_disconnect() -> None:
    pair = HTTPPair()
    pair.send(h11.Request(method="POST", target="/", headers=[("Host", "a"), ("Content-Length", "10")]))
    pair.send(h11.Data(data=b"12345"))
    actions = pair.eof()
    assert pair.delivered() == [
        {"type": "http.request", "body": b"12345", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert pair.kinds(actions) == ["Deliver", "CloseTransport"]
    assert pair.cycle.state is State.DISCONNECTED


def test_eof_while_idle_only_closes() -> None:
    pair = HTTPPair()
    assert pair.kinds(pair.eof()) == ["CloseTransport"]
    assert pair.eof() == []


def test_send_after_eof_raises_client_disconnected() -> None:
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, START)
    pair.app_send(cycle, body(b"streaming", more=True))
    pair.eof()
    with pytest.raises(ClientDisconnected) as info:
        pair.app_send(cycle, body(b"more", more=True))
    assert isinstance(info.value, OSError)
    assert str(info.value) == "client disconnected (GET / from 127.0.0.1:53122)"
    assert pair.app_returned(cycle, info.value) == []


# -- the app ending without an answer -------------------------------------------------------


def test_app_returned_without_a_response_gets_500_and_a_log_line() -> None:
    pair = HTTPPair()
    pair.request()
    actions = pair.app_returned(pair.cycle)
    assert pair.errors() == ["ASGI app returned without starting a response; sent 500 (GET / from 127.0.0.1:53122)"]
    response = pair.response()
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    # It says Connection: close, and the connection is closed after it.
    assert (b"connection", b"close") in response.headers
    assert CloseTransport() in actions


def test_app_returned_after_start_only_writes_the_head_then_closes() -> None:
    """The head the app committed stands: it is written, then the connection closes,
    since the body never came. The chunked body the head announces is cut short, so the
    client knows the response is incomplete; it is not replaced by a 500."""
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
    actions = pair.app_returned(pair.cycle)
    assert pair.errors() == [
        "ASGI app returned without completing the response; closed the connection (GET / from 127.0.0.1:53122)"
    ]
    assert pair.kinds(actions) == ["Log", "Write", "CloseTransport"]
    assert pair.wire.startswith(b"HTTP/1.1 201 Created\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n")
    with pytest.raises(h11.RemoteProtocolError, match="incomplete chunked read"):
        pair.client_events()


def test_app_raised_after_start_only_writes_the_head_then_closes() -> None:
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"5")]})
    actions = pair.app_returned(pair.cycle, RuntimeError("boom"))
    assert pair.logs == []  # the asyncio layer logs the exception with its traceback
    assert pair.kinds(actions) == ["Write", "CloseTransport"]
    assert pair.wire.startswith(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n")
    with pytest.raises(h11.RemoteProtocolError, match="received 0 bytes, expected 5"):
        pair.client_events()


def test_app_returned_after_start_only_to_head_gets_the_whole_head() -> None:
    """A response to HEAD is its head: the client has all of it before the close."""
    pair = HTTPPair()
    pair.request("HEAD")
    pair.app_send(pair.cycle, START)
    pair.app_returned(pair.cycle)
    response = pair.response()
    assert (response.status, response.body, response.header(b"connection")) == (200, b"", None)
    assert pair.closes == 1


def test_app_returned_with_an_invalid_head_held_back_gets_500() -> None:
    """The head is checked when it is written; here that is when the app returned. It
    cannot be written, so nothing valid was sent: 500, and the error names the header."""
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 200, "headers": [(b"bad name", b"x")]})
    pair.app_returned(pair.cycle)
    assert pair.errors() == [
        "ASGI app returned without completing the response; closed the connection (GET / from 127.0.0.1:53122)",
        "ASGI protocol error: http.response.start: Illegal header name b'bad name' (GET / from 127.0.0.1:53122)",
    ]
    assert pair.response().status == 500
    assert pair.closes == 1


def test_app_returned_mid_body_closes_the_connection() -> None:
    pair = HTTPPair()
    pair.request()
    pair.app_send(pair.cycle, START)
    pair.app_send(pair.cycle, body(b"half", more=True))
    actions = pair.app_returned(pair.cycle)
    assert pair.errors() == [
        "ASGI app returned without completing the response; closed the connection (GET / from 127.0.0.1:53122)"
    ]
    assert CloseTransport() in actions


def test_app_raised_before_the_response_gets_500_without_a_second_log_line() -> None:
    """The exception itself is logged by the asyncio layer, with its traceback."""
    pair = HTTPPair()
    pair.request()
    pair.app_returned(pair.cycle, RuntimeError("boom"))
    assert pair.logs == []
    assert pair.response().status == 500


def test_app_returned_after_completing_changes_nothing() -> None:
    pair = HTTPPair()
    pair.request()
    answer(pair, pair.cycle)
    assert pair.app_returned(pair.cycle) == []


# -- misuse: a refused message has no effect ------------------------------------------------


def send_as_app(pair: HTTPPair, cycle: Any, message: dict[str, Any]) -> list[Any]:
    """``send()`` as the app sees it (``AppInstance.send``): a message the machine refuses
    is reported back to it as ``app_misused``, then raised into the app."""
    try:
        return pair.app_send(cycle, message)
    except ASGIProtocolError:
        pair.run(pair.machine.app_misused(cycle))
        raise


SECOND_START = {"type": "http.response.start", "status": 500, "headers": [(b"x-second", b"1")]}
FIRST_START = {"type": "http.response.start", "status": 201, "headers": [(b"x-first", b"1")]}


def test_a_second_start_leaves_the_committed_head_standing() -> None:
    """The head is held back for the first body part; a second start is refused in the
    app's send() and changes nothing: the app catches it and sends its body, and the
    client gets the first status, headers and body on a connection that stays open."""
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    send_as_app(pair, cycle, FIRST_START)
    with pytest.raises(ASGIProtocolError) as info:
        send_as_app(pair, cycle, SECOND_START)
    assert str(info.value) == (
        "http.response.start not allowed in state RESPONSE; expected http.response.body or http.response.pathsend (GET / from 127.0.0.1:53122)"
    )
    assert (cycle.state, pair.wire, pair.closes) == (State.RESPONSE, bytearray(), 0)
    send_as_app(pair, cycle, body(b"first body"))
    response = pair.response()
    assert (response.status, response.header(b"x-first"), response.body) == (201, b"1", b"first body")
    assert response.header(b"x-second") is None
    assert pair.closes == 0
    pair.client.start_next_cycle()
    pair.request("GET", "/next")
    answer(pair, pair.cycle, b"next")
    assert pair.response().body == b"next"


def test_a_second_start_while_streaming_changes_nothing() -> None:
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    send_as_app(pair, cycle, FIRST_START)
    pair.run(pair.machine.flush_head(cycle))  # the app went to wait: the head went out
    send_as_app(pair, cycle, body(b"a", more=True))
    with pytest.raises(ASGIProtocolError):
        send_as_app(pair, cycle, SECOND_START)
    assert cycle.state is State.RESPONSE and pair.closes == 0
    send_as_app(pair, cycle, body(b"b"))
    response = pair.response()
    assert (response.status, response.body) == (201, b"ab")
    assert pair.closes == 0


@pytest.mark.parametrize("raised", [None, RuntimeError("boom")], ids=["returned", "raised"])
def test_a_second_start_then_no_body_writes_the_first_head_then_closes(raised: BaseException | None) -> None:
    """The app stops after the refused start (returns, or lets the error out): the head it
    committed is written and the connection closed, the body being incomplete. As for an
    app that returns after its start without a misuse."""
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    send_as_app(pair, cycle, FIRST_START)
    with pytest.raises(ASGIProtocolError):
        send_as_app(pair, cycle, SECOND_START)
    actions = pair.app_returned(cycle, raised)
    assert pair.kinds(actions)[-2:] == ["Write", "CloseTransport"]
    assert pair.wire.startswith(b"HTTP/1.1 201 Created\r\nx-first: 1\r\nTransfer-Encoding: chunked\r\n")
    assert b"x-second" not in pair.wire
    with pytest.raises(h11.RemoteProtocolError, match="incomplete chunked read"):
        pair.client_events()


@pytest.mark.parametrize("flushed", [False, True], ids=["head-held-back", "head-written"])
def test_a_body_part_over_the_content_length_is_refused_without_effect(flushed: bool) -> None:
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    send_as_app(pair, cycle, {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    if flushed:
        pair.run(pair.machine.flush_head(cycle))
    wire = bytes(pair.wire)
    too_much = "http.response.body: Too much data for declared Content-Length (GET / from 127.0.0.1:53122)"
    too_little = (
        "http.response.body: Too little data for declared Content-Length: the body is shorter than the "
        "content-length header says (GET / from 127.0.0.1:53122)"
    )
    for part, error in ((body(b"12345"), too_much), (body(b"123"), too_little), (body(b"12345", True), too_much)):
        with pytest.raises(ASGIProtocolError) as info:
            send_as_app(pair, cycle, part)
        assert str(info.value) == error
        assert (cycle.state, bytes(pair.wire), pair.closes) == (State.RESPONSE, wire, 0)
    send_as_app(pair, cycle, body(b"12", more=True))
    send_as_app(pair, cycle, body(b"34"))
    response = pair.response()
    assert (response.status, response.body) == (200, b"1234")
    assert pair.closes == 0


def test_a_body_before_any_start_gets_500() -> None:
    pair = HTTPPair()
    pair.request()
    with pytest.raises(ASGIProtocolError, match="not allowed in state REQUEST"):
        send_as_app(pair, pair.cycle, body(b"too early"))
    assert pair.response().status == 500
    assert pair.closes == 1


@pytest.mark.parametrize(
    "start",
    [
        {"type": "http.response.start", "status": "200"},
        {"type": "http.response.start", "status": 101},
        {"type": "http.response.start", "status": 200, "headers": [("a", "b")]},
    ],
    ids=["status-not-an-int", "status-informational", "headers-not-bytes"],
)
def test_an_invalid_first_start_gets_500(start: dict[str, Any]) -> None:
    pair = HTTPPair()
    pair.request()
    with pytest.raises(ASGIProtocolError):
        send_as_app(pair, pair.cycle, start)
    assert pair.response().status == 500
    assert pair.closes == 1


@pytest.mark.parametrize(
    "headers",
    [[(b"bad name", b"x")], [(b"x-a", b"a\r\nInjected: 1")], [(b"content-length", b"1"), (b"content-length", b"2")]],
    ids=["header-name", "header-value", "conflicting-lengths"],
)
def test_a_first_head_found_invalid_when_written_gets_500(headers: list[tuple[bytes, bytes]]) -> None:
    """The head is accepted by send() and checked when it is written, with the first body
    part: that send() raises, and the client gets a 500, as nothing valid was sent."""
    pair = HTTPPair()
    pair.request()
    cycle = pair.cycle
    send_as_app(pair, cycle, {"type": "http.response.start", "status": 200, "headers": headers})
    with pytest.raises(ASGIProtocolError) as info:
        send_as_app(pair, cycle, body(b"x"))
    assert str(info.value).startswith("http.response.start: ")
    response = pair.response()
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    assert pair.closes == 1


# -- timers and shutdown ------------------------------------------------------------------


def test_keep_alive_timer_closes_an_idle_connection() -> None:
    pair = HTTPPair()
    pair.request()
    answer(pair, pair.cycle)
    assert pair.kinds(pair.fire(KEEP_ALIVE)) == ["CloseTransport"]


def test_keep_alive_timer_does_nothing_during_a_request() -> None:
    pair = HTTPPair()
    pair.request()
    assert pair.fire(KEEP_ALIVE) == []
    answer(pair, pair.cycle)
    assert pair.response().status == 200


def test_shutdown_closes_an_idle_keep_alive_connection() -> None:
    pair = HTTPPair()
    pair.request()
    answer(pair, pair.cycle)
    assert pair.response().status == 200
    assert pair.kinds(pair.shutdown()) == ["CloseTransport"]


def test_shutdown_closes_an_idle_connection_whose_last_head_ended_with_bare_lf() -> None:
    """h11 ends a head at LF CR LF too; what the fold check kept of that head must not
    make the connection look as if a next head had begun."""
    pair = HTTPPair()
    pair.feed(b"GET / HTTP/1.1\r\nHost: a\n\r\n")
    answer(pair, pair.cycle)
    assert pair.response().status == 200
    assert pair.kinds(pair.shutdown()) == ["CloseTransport"]


def test_shutdown_serves_a_connection_whose_first_request_is_still_on_the_wire() -> None:
    """A connection accepted just before the shutdown has not had its request yet; closing
    it would fail a client that did nothing wrong. It gets a short timer, and its request
    is answered with connection: close."""
    pair = HTTPPair()
    actions = pair.shutdown()
    assert pair.kinds(actions) == ["SetTimer"]
    assert actions[0].delay <= 1.0
    pair.request()
    answer(pair, pair.cycle)
    response = pair.response()
    assert response.status == 200
    assert (b"connection", b"close") in response.headers


def test_shutdown_lets_the_request_in_flight_finish_with_connection_close() -> None:
    pair = HTTPPair()
    pair.request()
    assert pair.shutdown() == []
    answer(pair, pair.cycle)
    response = pair.response()
    assert (response.status, response.header(b"connection")) == (200, b"close")
    assert pair.closes == 1


# -- malformed requests -------------------------------------------------------------------

BIG = b"a" * 20000

MALFORMED = [
    ("bad-request-line", b"GET\r\n\r\n", 400),
    ("http09-simple-request", b"GET /\r\n\r\n", 400),
    ("http09-version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("http2-version-over-http1", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("space-in-header-name", b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
    ("control-byte-in-header-name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: x\r\n\r\n", 400),
    ("nul-in-header-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("nul-in-target", b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("obs-fold-after-bare-lf", b"GET / HTTP/1.1\nHost: a\nX-A: b\n\tc\n\n", 400),
    (
        "conflicting-content-length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("content-length-not-a-number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    ("content-length-negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    (
        "content-length-with-transfer-encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("unsupported-transfer-encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("oversized-header", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + BIG + b"\r\n\r\n", 431),
    ("oversized-target", b"GET /" + BIG + b" HTTP/1.1\r\nHost: a\r\n\r\n", 431),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", 431),
    # Heads that can no longer become valid are answered at once, not when a timeout ends
    # the wait for the rest of a head that will never come.
    ("http09-request-line-alone", b"GET /\r\n", 400),
    ("http09-request-line-bare-lf", b"GET /index.html\n", 400),
    ("cr-only-line-ends", b"GET / HTTP/1.1\rHost: x\r\r", 400),
    ("cr-only-after-the-request-line", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r", 400),
    ("cr-cr-lf", b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
    # h11's grammar lets control characters through in values; they never reach the app.
    ("control-byte-in-header-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", 400),
    ("escape-in-header-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[31mred\r\n\r\n", 400),
    ("del-in-header-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", 400),
    ("unit-separator-in-host", b"GET / HTTP/1.1\r\nHost: a\x1fb\r\n\r\n", 400),
    (
        "control-byte-in-a-value-with-a-body",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nX-A: \x08\r\n\r\nhi",
        400,
    ),
    (
        "control-byte-in-an-upgrade-request",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-A: \x0e\r\n\r\n",
        400,
    ),
]


@pytest.mark.parametrize("feed", ["whole", "bytewise"])
@pytest.mark.parametrize(("data", "status"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_request_gets_the_exact_status(data: bytes, status: int, feed: str) -> None:
    pair = HTTPPair()
    actions = pair.feed(data) if feed == "whole" else pair.feed_bytewise(data)
    assert not any(isinstance(a, StartApp) for a in actions), "the app never sees a malformed request"
    responses = read_responses(bytes(pair.wire))
    assert [r.status for r in responses] == [status]
    assert responses[0].header(b"connection") == b"close"
    assert pair.closes == 1
    warnings = pair.warnings()
    assert len(warnings) == 1 and len(pair.logs) == 1, pair.logs
    assert "127.0.0.1:53122" in warnings[0] and warnings[0].endswith(f"(answered {status})"), warnings[0]
    assert pair.feed(request_bytes()) == [], "nothing more is read after the answer"


@pytest.mark.parametrize(
    ("data", "answer_text", "logged"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-<script>alert(1)</script>: x\r\n\r\n",
            b"Bad Request: illegal header line\n",
            "illegal header line: bytearray(b'X-<script>alert(1)</script>: x')",
        ),
        (
            b"GET /<script> HTTP/1.1 x\r\nHost: a\r\n\r\n",
            b"Bad Request: illegal request line\n",
            "illegal request line: bytearray(b'GET /<script> HTTP/1.1 x')",
        ),
        (
            b"GET /<script>\r\n",
            b"Bad Request: illegal request line\n",
            "illegal request line: b'GET /<script>'",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: <script>\x1b\r\n\r\n",
            b"Bad Request: control character in request head\n",
            "control character in request head: b'X-A: <script>\\x1b'",
        ),
        (
            b"GET / HTTP/1.1\rX-A: <script>\r\r",
            b"Bad Request: CR without LF in request head\n",
            "CR without LF in request head: b'GET / HTTP/1.1\\rX-A: <script>\\r'",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: <script>\r\n folded\r\n\r\n",
            b"Bad Request: obsolete line folding in headers\n",
            "obsolete line folding in headers",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n<script>\r\n",
            b"Bad Request: illegal chunk header\n",
            "illegal chunk header: bytearray(b'<script>\\r\\n')",
        ),
    ],
    ids=["header-line", "request-line", "http09-request-line", "control-character", "bare-cr", "obs-fold", "chunk"],
)
def test_the_answer_names_the_error_and_only_the_log_line_quotes_the_request(
    data: bytes, answer_text: bytes, logged: str
) -> None:
    """The body of a 400 names the class of error; the request bytes that broke the rule
    (repr-escaped) are in the log line only, never echoed back to the client."""
    pair = HTTPPair()
    pair.feed(data)
    [response] = read_responses(bytes(pair.wire), [data.split(b" ", 1)[0]])
    assert (response.status, response.body) == (400, answer_text)
    assert b"<script>" not in pair.wire
    assert pair.warnings() == [f"Invalid HTTP request from 127.0.0.1:53122: {logged} (answered 400)"]


def test_every_h11_error_is_answered_by_its_class() -> None:
    """h11's messages that quote the request are cut to their class; a message not known
    is answered as a malformed request, whatever it says."""
    assert error_class("illegal header line: bytearray(b'a b: c')") == "illegal header line"
    assert error_class("malformed chunk footer: b'xy' (expected b'\\r\\n')") == "malformed chunk footer"
    assert error_class("Missing mandatory Host: header") == "Missing mandatory Host: header"
    assert error_class("something new: b'<script>'") == "malformed request"


@pytest.mark.parametrize("reads", ["one-read", "while-the-first-is-in-flight"])
def test_a_pipelined_head_with_a_control_character_is_refused_after_the_first_response(reads: str) -> None:
    """The head after a request is checked as every head is, however its bytes came."""
    first = request_bytes("POST", "/first", body=b"abc")
    second = b"GET /second HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n"
    pair = HTTPPair()
    if reads == "one-read":
        pair.feed(first + second)
    else:
        pair.feed(first)
        pair.feed(second)
    answer(pair, pair.cycle)
    assert [s.scope["path"] for s in pair.started] == ["/first"]
    assert [r.status for r in read_responses(bytes(pair.wire), [b"POST", b"GET"])] == [200, 400]
    assert pair.closes == 1


def test_tab_and_obs_text_in_a_value_reach_the_app() -> None:
    """Only control characters are refused: a tab inside a value and bytes 0x80-0xFF
    (obs-text) are field content."""
    pair = HTTPPair()
    pair.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb \x80\xff\r\n\r\n")
    assert (b"x-a", b"a\tb \x80\xff") in pair.scope["headers"]
    assert pair.logs == []


SPLIT_HEADS = [
    request_bytes("GET", "/a?b=c", [("Accept", "*/*")]),
    b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF line ends: h11 reads them
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"POST / HTTP/1.1\nHost: a\nContent-Length: 6\n\n\r\r\x01 \r\n",  # a body is not a head
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\na\rb\x7f\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\rb\r\n0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\nX-A: a\tb \x80\r\n\r\n",
    request_bytes("GET", "/first") + request_bytes("POST", "/second", body=b"x\ry"),
]


def split_outcome(reads: list[bytes]) -> tuple[Any, ...]:
    """What the apps and the client see of ``reads``: each app's scope and request body,
    the responses, and whether the connection closed (each app answers in turn)."""
    pair = HTTPPair()
    for data in reads:
        pair.feed(data)
    answered = 0
    while answered < len(pair.started):
        answer(pair, pair.started[answered].cycle, b"answer %d" % answered)
        answered += 1
    bodies = [b"".join(m.get("body", b"") for m in pair.delivered(s.cycle)) for s in pair.started]
    return [s.scope for s in pair.started], bodies, bytes(pair.wire), pair.closes, pair.logs


@pytest.mark.parametrize("data", SPLIT_HEADS)
def test_a_valid_request_split_anywhere_is_read_as_when_whole(data: bytes) -> None:
    """The checks that refuse a head as soon as it cannot become valid never refuse one
    still arriving: split at any point, or sent a byte at a time, it is read as whole."""
    whole = split_outcome([data])
    assert whole[3:] == (0, []), "the request is valid"
    for cut in range(1, len(data)):
        assert split_outcome([data[:cut], data[cut:]]) == whole, cut
    assert split_outcome([data[i : i + 1] for i in range(len(data))]) == whole


@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_bad_chunk_size_after_the_app_started_gets_400(feed: str) -> None:
    """The app was started by the head; the bad chunk comes later. The app is told
    ``http.disconnect``; the client, which got no response yet, gets its 400."""
    pair = HTTPPair()
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    pair.feed(head)
    assert len(pair.started) == 1
    chunk = b"zz\r\nabc\r\n"
    pair.feed(chunk) if feed == "whole" else pair.feed_bytewise(chunk)
    assert pair.delivered() == [{"type": "http.disconnect"}]
    assert [r.status for r in read_responses(bytes(pair.wire), [b"POST"])] == [400]
    assert pair.closes == 1
    assert len(pair.warnings()) == 1
    with pytest.raises(ClientDisconnected):
        pair.app_send(pair.cycle, START)


def test_duplicate_identical_content_length_is_one_length() -> None:
    """RFC 9112 section 6.3 lets a recipient treat ``3, 3`` as 3; the body is read once."""
    pair = HTTPPair()
    pair.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
    assert pair.delivered() == [{"type": "http.request", "body": b"abc", "more_body": False}]
    assert pair.logs == []


def test_unknown_method_reaches_the_app() -> None:
    pair = HTTPPair()
    pair.feed(b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n")
    assert pair.scope["method"] == "BREW"


def test_body_over_max_body_size_gets_413() -> None:
    pair = HTTPPair(max_body_size=10)
    pair.feed(request_bytes("POST", "/", body=b"x" * 11))
    assert pair.started == []
    assert [r.status for r in read_responses(bytes(pair.wire), [b"POST"])] == [413]
    assert pair.closes == 1


def test_chunked_body_over_max_body_size_gets_413_as_it_streams() -> None:
    pair = HTTPPair(max_body_size=10)
    pair.send(h11.Request(method="POST", target="/", headers=[("Host", "a"), ("Transfer-Encoding", "chunked")]))
    pair.send(h11.Data(data=b"x" * 6))
    assert pair.closes == 0
    pair.send(h11.Data(data=b"x" * 6))
    assert pair.delivered() == [
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert [r.status for r in read_responses(bytes(pair.wire), [b"POST"])] == [413]
    assert pair.closes == 1


def test_garbage_after_a_good_request_gets_400_after_its_response() -> None:
    """A pipelined good request is answered; the malformed one after it gets its 400."""
    pair = HTTPPair()
    pair.feed(request_bytes() + b"NOT HTTP\r\n\r\n")
    assert len(pair.started) == 1 and pair.closes == 0
    answer(pair, pair.cycle)
    assert [r.status for r in read_responses(bytes(pair.wire), [b"GET", b"GET"])] == [200, 400]
    assert pair.closes == 1
    assert all(isinstance(a, (Write, Deliver, SetTimer, Log, CloseTransport)) for a in pair.actions[-5:])
