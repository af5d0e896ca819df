"""h2c by ``Upgrade`` (RFC 9113 section 3.1's cleartext upgrade, from RFC 7540 3.2): the
HTTP/1.1 machine hands a bodiless request that asks for it over, and the HTTP/2 machine
answers the 101, its SETTINGS, then the request as stream 1, to a real h2 client."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events

from channelserver.protocol.events import Log, StartApp, Upgrade
from channelserver.protocol.http2 import HTTP2Connection

from .helpers import CLIENT, SERVER, HTTPPair

UPGRADE_HEADERS = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "")]


def upgrade_headers(settings: str) -> list[tuple[str, str]]:
    return [(name, settings if name == "HTTP2-Settings" else value) for name, value in UPGRADE_HEADERS]


def client_settings() -> tuple[h2.connection.H2Connection, str]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    header = client.initiate_upgrade_connection()
    assert header is not None
    return client, header.decode()


def test_a_bodiless_request_asking_h2c_is_handed_over_with_its_settings() -> None:
    _, settings = client_settings()
    pair = HTTPPair(h2c=True)
    actions = pair.request("GET", "/up?x=1", upgrade_headers(settings))
    upgrades = [a for a in actions if isinstance(a, Upgrade)]
    assert len(upgrades) == 1
    assert upgrades[0].h2c_settings == settings.encode()
    assert not any(isinstance(a, StartApp) for a in actions)


def test_without_h2c_or_with_a_body_the_request_is_served_as_http1() -> None:
    _, settings = client_settings()
    for options, body in (({}, None), ({"h2c": True}, b"data")):
        pair = HTTPPair(**options)
        actions = pair.request("POST" if body else "GET", "/", upgrade_headers(settings), body=body)
        assert not any(isinstance(a, Upgrade) for a in actions)
        assert [a.scope["http_version"] for a in actions if isinstance(a, StartApp)] == ["1.1"]


def test_missing_connection_token_or_two_settings_headers_are_not_an_upgrade() -> None:
    _, settings = client_settings()
    for headers in (
        [("Connection", "Upgrade"), ("Upgrade", "h2c"), ("HTTP2-Settings", settings)],
        [*upgrade_headers(settings), ("HTTP2-Settings", settings)],
    ):
        pair = HTTPPair(h2c=True)
        actions = pair.request("GET", "/", headers)
        assert not any(isinstance(a, Upgrade) for a in actions)


def test_the_upgraded_request_is_stream_1_answered_over_http2() -> None:
    client, settings = client_settings()
    machine = HTTP2Connection(client=CLIENT, server=SERVER)
    headers = [(b"host", b"a"), (b"connection", b"Upgrade, HTTP2-Settings"), (b"upgrade", b"h2c"), (b"accept", b"*/*")]
    headers.append((b"http2-settings", settings.encode()))
    actions = machine.start_upgraded(settings.encode(), b"GET", b"/up?x=1", headers)
    wire = b"".join(a.data for a in actions if hasattr(a, "data") and isinstance(a.data, bytes))
    head, _, frames = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
    (start,) = [a for a in actions if isinstance(a, StartApp)]
    scope: dict[str, Any] = start.scope
    assert (scope["http_version"], scope["path"], scope["query_string"]) == ("2", "/up", b"x=1")
    assert scope["headers"] == [(b"host", b"a"), (b"accept", b"*/*")]
    client.receive_data(frames)
    out = machine.receive_data(client.data_to_send())
    cycle = start.cycle
    sent = machine.app_send(cycle, {"type": "http.response.start", "status": 200, "headers": []})
    sent += machine.app_send(cycle, {"type": "http.response.body", "body": b"over h2"})
    events = client.receive_data(
        b"".join(a.data for a in [*out, *sent] if hasattr(a, "data") and isinstance(a.data, bytes))
    )
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
    assert data == b"over h2"
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in events)


def test_an_unreadable_settings_header_is_a_400_and_a_close() -> None:
    machine = HTTP2Connection(client=CLIENT, server=SERVER)
    actions = machine.start_upgraded(b"AAAA", b"GET", b"/", [(b"host", b"a")])  # 3 bytes: not a SETTINGS payload
    assert [type(a).__name__ for a in actions] == ["Log", "Write", "CloseTransport"]
    assert isinstance(actions[0], Log) and "HTTP2-Settings" in actions[0].message
    assert machine.closed
