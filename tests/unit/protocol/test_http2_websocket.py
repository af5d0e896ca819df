"""WebSockets over HTTP/2 (RFC 8441) in the pure HTTP/2 machine: an extended CONNECT hands
the stream to a real WebSocket machine (the one an HTTP/1.1 upgrade gets), whose 101 is
read back into HEADERS :status 200, whose frames go out as the stream's DATA, and whose app
talks to it through ``from_websocket``. The client is a real h2 client with wsproto."""

from __future__ import annotations

from typing import Any

import h2.events
import h2.settings
from h2.errors import ErrorCodes
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from channelserver.protocol.events import StartApp
from channelserver.protocol.http2 import HTTP2Connection
from channelserver.protocol.websocket import WebSocketConnection

from .helpers import CLIENT, SERVER
from .test_http2 import H2Pair


def factory(request: Any, sid: int) -> WebSocketConnection:
    return WebSocketConnection(request, b"", client=CLIENT, server=SERVER, ping_interval=None, handshake_timeout=None)


def connect(pair: H2Pair, path: bytes = b"/ws") -> tuple[int, StartApp]:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(
        sid,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", path),
            (b":authority", b"example.com"),
            (b"sec-websocket-version", b"13"),
        ],
    )
    pair.flush()
    (start,) = [s for s in pair.started if s.stream == sid]
    return sid, start


def app(pair: H2Pair, start: StartApp, message: dict[str, Any]) -> None:
    """The app's send(), the way the connection's StreamHost runs it."""
    machine: HTTP2Connection = pair.machine
    pair.run(machine.from_websocket(start.stream, start.machine.app_send(start.cycle, message)))  # type: ignore[arg-type]


def test_extended_connect_is_offered_and_the_handshake_is_the_websocket_machines() -> None:
    pair = H2Pair(websocket=factory)
    settings = [e for e in pair.events if isinstance(e, h2.events.RemoteSettingsChanged)]
    assert settings[0].changed_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL].new_value == 1
    sid, start = connect(pair)
    assert isinstance(start.machine, WebSocketConnection)
    scope = start.scope
    assert (scope["type"], scope["http_version"], scope["path"]) == ("websocket", "2", "/ws")
    assert scope["headers"] == [(b"host", b"example.com"), (b"sec-websocket-version", b"13")]
    assert pair.inbox(start.cycle) == [{"type": "websocket.connect"}]
    app(pair, start, {"type": "websocket.accept", "headers": [(b"x-ok", b"1")]})
    pair.client_events()
    assert pair.streams[sid].headers[:1] == [(b":status", b"200")]
    assert (b"x-ok", b"1") in pair.streams[sid].headers
    assert not any(name in (b"upgrade", b"sec-websocket-accept") for name, _ in pair.streams[sid].headers)


def test_frames_both_ways_on_the_stream_and_a_close() -> None:
    pair = H2Pair(websocket=factory)
    sid, start = connect(pair)
    app(pair, start, {"type": "websocket.accept"})
    pair.client_events()
    ws = Connection(ConnectionType.CLIENT)
    pair.client.send_data(sid, ws.send(TextMessage("ping me")))
    pair.flush()
    assert pair.inbox(start.cycle)[-1] == {"type": "websocket.receive", "text": "ping me"}
    app(pair, start, {"type": "websocket.send", "text": "pong"})
    app(pair, start, {"type": "websocket.close", "code": 4000})
    pair.exchange()
    ws.receive_data(pair.streams[sid].body)
    events = list(ws.events())
    assert [e.data for e in events if isinstance(e, TextMessage)] == ["pong"]
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [4000]


def test_a_rejection_answers_the_stream_with_403_and_ends_it() -> None:
    pair = H2Pair(websocket=factory)
    sid, start = connect(pair)
    app(pair, start, {"type": "websocket.close"})
    pair.exchange()
    assert dict(pair.streams[sid].headers)[b":status"] == b"403"
    assert pair.streams[sid].ended
    assert pair.closes == 0


def test_a_reset_stream_tells_the_app_1006() -> None:
    pair = H2Pair(websocket=factory)
    sid, start = connect(pair)
    app(pair, start, {"type": "websocket.accept"})
    pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    pair.flush()
    assert pair.inbox(start.cycle)[-1]["type"] == "websocket.disconnect"
    assert pair.inbox(start.cycle)[-1]["code"] == 1006


def test_without_a_factory_connect_is_501_and_not_offered() -> None:
    pair = H2Pair()
    settings = [e for e in pair.events if isinstance(e, h2.events.RemoteSettingsChanged)]
    assert settings[0].changed_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL].new_value == 0


def test_a_paused_websocket_stream_holds_its_window_and_gives_it_back_on_resume() -> None:
    """What StreamHost asks and does when its app's queue fills and empties."""
    pair = H2Pair(websocket=factory)
    sid, start = connect(pair)
    app(pair, start, {"type": "websocket.accept"})
    machine: HTTP2Connection = pair.machine
    pair.run(machine.pause_websocket(sid, True))
    assert machine.websocket_paused(sid)
    ws = Connection(ConnectionType.CLIENT)
    pair.client.send_data(sid, ws.send(TextMessage("x" * 1000)))
    pair.flush()
    assert machine.ws[sid].unacked > 1000  # held back, not given to h2 to acknowledge
    pair.run(machine.pause_websocket(sid, False))
    assert not machine.websocket_paused(sid)
    assert machine.ws[sid].unacked == 0  # given back on resume
