"""``http.response.trailers`` on HTTP/1.1: after the last chunk of a chunked body, read back
by h11 as the client; dropped where the body is not chunked; refused when not announced."""

from __future__ import annotations

import h11
import pytest

from channelserver.errors import ASGIProtocolError
from channelserver.protocol.events import CloseTransport, Log

from .helpers import HTTPPair

START = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}


def started(headers: list[tuple[bytes, bytes]] | None = None) -> HTTPPair:
    pair = HTTPPair()
    pair.request("GET", "/", [("TE", "trailers")])
    assert pair.receive()["type"] == "http.request"
    pair.app_send(pair.cycle, {**START, "headers": headers or []})
    return pair


def test_trailers_follow_the_last_chunk_and_complete_the_response() -> None:
    pair = started()
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"part", "more_body": True})
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"last"})
    events = pair.client_events()
    assert not any(isinstance(e, h11.EndOfMessage) for e in events)  # not complete yet
    assert pair.receive() is None  # nor is the app told the exchange is over
    pair.app_send(pair.cycle, {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")], "more_trailers": True})
    pair.app_send(pair.cycle, {"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]})
    events += pair.client_events()
    response = events[0]
    assert isinstance(response, h11.Response) and (b"transfer-encoding", b"chunked") in response.headers
    assert b"".join(e.data for e in events if isinstance(e, h11.Data)) == b"partlast"
    (end,) = [e for e in events if isinstance(e, h11.EndOfMessage)]
    assert list(end.headers) == [(b"x-sum", b"1"), (b"grpc-status", b"0")]
    assert pair.receive() == {"type": "http.disconnect"}
    assert pair.closes == 0  # keep-alive goes on


def test_a_whole_body_in_one_message_is_chunked_too_when_trailers_come() -> None:
    pair = started()
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"all"})
    pair.app_send(pair.cycle, {"type": "http.response.trailers", "headers": [(b"x-t", b"v")]})
    events = pair.client_events()
    assert not any(name == b"content-length" for name, _ in events[0].headers)
    assert [list(e.headers) for e in events if isinstance(e, h11.EndOfMessage)] == [[(b"x-t", b"v")]]


def test_with_a_content_length_of_the_apps_the_trailers_are_dropped() -> None:
    pair = started([(b"content-length", b"3")])
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"abc"})
    pair.app_send(pair.cycle, {"type": "http.response.trailers", "headers": [(b"x-t", b"v")]})
    events = pair.client_events()
    assert [list(e.headers) for e in events if isinstance(e, h11.EndOfMessage)] == [[]]
    assert b"".join(e.data for e in events if isinstance(e, h11.Data)) == b"abc"


def test_trailers_not_announced_or_too_early_are_refused() -> None:
    pair = HTTPPair()
    pair.request("GET", "/")
    pair.receive()
    pair.app_send(pair.cycle, {"type": "http.response.start", "status": 200, "headers": []})
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"x"})
    with pytest.raises(ASGIProtocolError, match="not announced by 'trailers': True"):
        pair.app_send(pair.cycle, {"type": "http.response.trailers", "headers": []})
    pair = started()
    with pytest.raises(ASGIProtocolError, match=r"expected after the last http\.response\.body"):
        pair.app_send(pair.cycle, {"type": "http.response.trailers", "headers": []})


def test_an_app_that_returns_without_its_trailers_has_the_connection_closed() -> None:
    pair = started()
    pair.app_send(pair.cycle, {"type": "http.response.body", "body": b"x"})
    actions = pair.app_returned(pair.cycle)
    assert any(isinstance(a, Log) and "without sending the trailers it announced" in a.message for a in actions)
    assert any(isinstance(a, CloseTransport) for a in actions)
