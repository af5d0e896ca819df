"""WebSockets over HTTP/2 (RFC 8441, extended CONNECT) on a real server, with a client made
of ``h2`` and ``wsproto``: the same WebSocket machine and table as an HTTP/1.1 upgrade
run each stream, so a raw ASGI app and a Channels consumer behave as they do over
HTTP/1.1; many WebSockets share one connection; a rejection is that stream's answer; a
reset stream is the peer gone; a drain closes each with 1012 after its GOAWAY."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
from hyperframe.frame import DataFrame, Frame
from prometheus_client.parser import text_string_to_metric_families
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Event, TextMessage

from tests.apps.wire import records, token
from tests.servers import ServerProcess, channelserver

pytestmark = pytest.mark.timeout(60)


class H2WebSockets:
    """One HTTP/2 connection carrying WebSockets, each a stream with its own wsproto
    client connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.flush()
        self.ws: dict[int, Connection] = {}
        self.status: dict[int, int] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.received: dict[int, list[Event]] = {}
        self.body: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.settings: dict[int, int] = {}
        self.read_until(lambda: bool(self.settings))

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, path: str, extra: list[tuple[bytes, bytes]] | None = None) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"test"),
            (b"sec-websocket-version", b"13"),
            *(extra or []),
        ]
        self.h2.send_headers(sid, headers)
        self.flush()
        self.ws[sid] = Connection(ConnectionType.CLIENT)
        self.received[sid] = []
        self.body[sid] = b""
        return sid

    def send(self, sid: int, event: Event) -> None:
        self.h2.send_data(sid, self.ws[sid].send(event))
        self.flush()

    def read_until(self, done: Any) -> None:
        """Read whole frames until ``done()``. After a GOAWAY h2's client takes no more
        frames (browsers and nghttp2 go on with the streams it let through): DATA is then
        read off the frames directly."""
        while not done():
            data = self.sock.recv(65536)
            if not data:
                return
            self.buffer += data
            while len(self.buffer) >= 9:
                end = 9 + int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < end:
                    break
                frame, self.buffer = self.buffer[:end], self.buffer[end:]
                if self.goaway is None:
                    for event in self.h2.receive_data(frame):
                        self._event(event)
                else:
                    self._after_goaway(frame)
            if self.goaway is None:
                self.flush()

    def _after_goaway(self, data: bytes) -> None:
        frame, _ = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:]))
        if isinstance(frame, DataFrame):
            sid = frame.stream_id
            ws = self.ws[sid]
            if frame.data and ws.state.name != "CLOSED":
                ws.receive_data(frame.data)
                self.received[sid].extend(ws.events())
            if "END_STREAM" in frame.flags:
                self.ended.add(sid)

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings.update({code: value.new_value for code, value in event.changed_settings.items()})
        elif isinstance(event, h2.events.ResponseReceived):
            headers = dict(event.headers)
            self.status[event.stream_id] = int(headers[b":status"])
            self.headers[event.stream_id] = headers
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            sid = event.stream_id
            if self.status.get(sid) == 200:
                ws = self.ws[sid]
                if not event.data or ws.state.name == "CLOSED":
                    return
                ws.receive_data(event.data)
                for ws_event in ws.events():
                    self.received[sid].append(ws_event)
                    if isinstance(ws_event, CloseConnection) and ws.state.name != "CLOSED":
                        self.h2.send_data(sid, ws.send(ws_event.response()))
            else:
                self.body[sid] += event.data
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.reset[event.stream_id] = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def send_after_goaway(self, sid: int, event: Event) -> None:
        """A frame on a stream the server's GOAWAY let through (h2's client sends nothing
        after one): a DATA frame made by hand."""
        self.sock.sendall(DataFrame(sid, data=self.ws[sid].send(event)).serialize())

    def texts(self, sid: int) -> list[str]:
        return [e.data for e in self.received[sid] if isinstance(e, TextMessage)]

    def closes(self, sid: int) -> list[int]:
        return [int(e.code) for e in self.received[sid] if isinstance(e, CloseConnection)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def core() -> Iterator[ServerProcess]:
    with channelserver("core_app:app") as server:
        yield server


@pytest.fixture
def conn(core: ServerProcess) -> Iterator[H2WebSockets]:
    assert core.port is not None
    client = H2WebSockets(core.port)
    yield client
    client.close()


def test_the_server_offers_extended_connect(conn: H2WebSockets) -> None:
    assert conn.settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_an_echo_websocket_over_a_stream_with_the_scope_an_app_expects(conn: H2WebSockets, core: ServerProcess) -> None:
    key = token()
    sid = conn.open(f"/ws/echo?token={key}", [(b"sec-websocket-protocol", b"chat.v2")])
    conn.read_until(lambda: sid in conn.status)
    assert conn.status[sid] == 200
    assert conn.headers[sid][b"sec-websocket-protocol"] == b"chat.v2"
    assert conn.headers[sid][b"x-accepted"] == b"yes"
    assert b"sec-websocket-accept" not in conn.headers[sid] and b"upgrade" not in conn.headers[sid]
    conn.send(sid, TextMessage("one"))
    conn.send(sid, TextMessage("two"))
    conn.read_until(lambda: len(conn.texts(sid)) == 2)
    assert conn.texts(sid) == ["one", "two"]
    conn.send(sid, CloseConnection(code=1000))
    conn.read_until(lambda: sid in conn.ended)
    assert conn.closes(sid) == [1000]
    (scope,) = records(core.url, f"{key}:scope")
    assert scope["type"] == "websocket" and scope["http_version"] == "2"
    assert scope["path"] == "/ws/echo" and scope["subprotocols"] == ["chat.v2"]
    names = [name for name, _ in scope["headers"]]
    assert "host" in names and "sec-websocket-version" in names
    # nothing the stream did not carry: no HTTP/1.1 upgrade fields
    assert not {"connection", "upgrade", "sec-websocket-key"} & set(names)
    messages = records(core.url, f"{key}:messages", 4)
    assert messages[0] == {"type": "websocket.connect"}
    assert messages[-1]["type"] == "websocket.disconnect" and messages[-1]["code"] == 1000


def test_many_websockets_share_one_connection(conn: H2WebSockets) -> None:
    sids = [conn.open("/ws/echo") for _ in range(10)]
    conn.read_until(lambda: all(sid in conn.status for sid in sids))
    for n, sid in enumerate(sids):
        conn.send(sid, TextMessage(f"stream {n}"))
    conn.read_until(lambda: all(conn.texts(sid) for sid in sids))
    assert [conn.texts(sid) for sid in sids] == [[f"stream {n}"] for n in range(10)]


def test_a_rejection_is_that_streams_answer_and_the_connection_serves_on(conn: H2WebSockets) -> None:
    rejected = conn.open("/ws/reject")
    denied = conn.open("/ws/deny")
    conn.read_until(lambda: {rejected, denied} <= conn.ended)
    assert conn.status[rejected] == 403
    assert conn.status[denied] == 401 and conn.headers[denied][b"x-denied"] == b"because"
    assert conn.body[denied] == b"denied, go away"
    sid = conn.open("/ws/echo")
    conn.read_until(lambda: sid in conn.status)
    conn.send(sid, TextMessage("still here"))
    conn.read_until(lambda: bool(conn.texts(sid)))
    assert conn.texts(sid) == ["still here"]


def test_a_reset_stream_is_the_peer_gone(conn: H2WebSockets, core: ServerProcess) -> None:
    key = token()
    sid = conn.open(f"/ws/echo?token={key}")
    conn.read_until(lambda: sid in conn.status)
    conn.h2.reset_stream(sid)
    conn.flush()
    messages = records(core.url, f"{key}:messages", 2)
    assert messages[-1]["type"] == "websocket.disconnect" and messages[-1]["code"] == 1006


def test_a_channels_consumer_over_http2() -> None:
    """The per-message background task pattern of a Channels consumer: accept and replies
    from tasks it spawns, connect delivered once."""
    with channelserver("chanapp.asgi:application") as server:
        assert server.port is not None
        conn = H2WebSockets(server.port)
        try:
            key = token()
            sid = conn.open(f"/ws/bg/?token={key}")
            conn.read_until(lambda: sid in conn.status)
            assert conn.status[sid] == 200
            conn.send(sid, TextMessage("hi"))
            conn.read_until(lambda: bool(conn.texts(sid)))
            assert conn.texts(sid) == ["echo:hi"]
            conn.send(sid, CloseConnection(code=1000))
            conn.read_until(lambda: sid in conn.ended)
        finally:
            conn.close()
        assert records(server.url, f"{key}:accepted") == [True]


def test_a_drain_sends_goaway_then_closes_each_websocket_with_1012() -> None:
    with channelserver("core_app:app") as server:
        assert server.port is not None
        conn = H2WebSockets(server.port)
        try:
            sids = [conn.open("/ws/echo") for _ in range(3)]
            conn.read_until(lambda: all(sid in conn.status for sid in sids))
            server.signal(signal.SIGTERM)
            conn.read_until(lambda: all(conn.closes(sid) for sid in sids))
        finally:
            conn.close()
        assert conn.goaway is not None and conn.goaway.error_code == 0
        assert [conn.closes(sid) for sid in sids] == [[1012]] * 3
        assert server.wait() == 0, server.text


def test_a_drain_hold_keeps_its_websocket_stream_open_until_it_ends() -> None:
    """The ``channelserver.drain`` extension on an HTTP/2 stream: a held WebSocket is not
    closed at the GOAWAY, but with 1012 the moment its app lets the hold go."""
    with channelserver("extensions_app:app", env={"PYTHONPATH": str(Path(__file__).parent)}) as server:
        assert server.port is not None
        conn = H2WebSockets(server.port)
        try:
            held = conn.open("/ws/hold")
            conn.read_until(lambda: held in conn.status)
            server.signal(signal.SIGTERM)
            conn.read_until(lambda: conn.goaway is not None)
            conn.send_after_goaway(held, TextMessage("still served"))
            conn.read_until(lambda: bool(conn.texts(held)))
            assert conn.texts(held) == ["still served"] and conn.closes(held) == []
            conn.send_after_goaway(held, TextMessage("release"))
            conn.read_until(lambda: bool(conn.closes(held)))
        finally:
            conn.close()
        assert conn.closes(held) == [1012]
        assert server.wait() == 0, server.text


def test_websockets_over_http2_are_in_the_metrics_and_under_ws_max_connections() -> None:
    """An HTTP/2 stream's WebSocket counts as an open WebSocket while it lasts (its
    connection stays under ``http``), toward ``ws_max_connections``, and, once over, in the
    handshakes by outcome, the closes by code and side, and the messages each way."""
    metrics_line = re.compile(rb"Metrics on http://127\.0\.0\.1:(\d+)/metrics")
    with channelserver("core_app:app", "--metrics", "127.0.0.1:0", "--ws-max-connections", "3") as server:
        url = f"http://127.0.0.1:{server.wait_for(metrics_line)}/metrics"

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            text = httpx.get(url, timeout=10).text
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
            return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have))

        conn = H2WebSockets(server.port)
        try:
            sids = [conn.open("/ws/echo") for _ in range(3)]
            conn.read_until(lambda: all(sid in conn.status for sid in sids))
            assert [conn.status[sid] for sid in sids] == [200, 200, 200]
            over = conn.open("/ws/echo")  # a fourth: over ws_max_connections
            rejected = conn.open("/ws/reject")  # refused by the limit too, before its app
            conn.read_until(lambda: {over, rejected} <= conn.ended)
            assert conn.status[over] == 503 and conn.status[rejected] == 503
            for sid in sids:
                conn.send(sid, TextMessage("hi"))
            conn.read_until(lambda: all(conn.texts(sid) for sid in sids))
            samples = scrape()
            assert value(samples, "channelserver_connections_open", protocol="websocket") == 3
            assert value(samples, "channelserver_connections_open", protocol="http") == 1  # the HTTP/2 one
            assert value(samples, "channelserver_refused_total", limit="ws_max_connections") == 2
            conn.send(sids[0], CloseConnection(code=1000))  # the client closes one
            conn.read_until(lambda: sids[0] in conn.ended)
            conn.h2.reset_stream(sids[1])  # resets one: no close frame
            conn.flush()
        finally:
            conn.close()  # the third goes with the connection
        deadline = time.monotonic() + 10
        while value(samples := scrape(), "channelserver_connections_open") != 0:
            assert time.monotonic() < deadline, samples
            time.sleep(0.05)
        assert value(samples, "channelserver_websocket_handshakes_total", outcome="accepted") == 3
        assert value(samples, "channelserver_websocket_closes_total", code="1000", side="client") == 1
        assert value(samples, "channelserver_websocket_closes_total", code="1006", side="client") == 2
        assert value(samples, "channelserver_websocket_messages_total", direction="in") == 3
        assert value(samples, "channelserver_websocket_messages_total", direction="out") == 3
