"""Behaviour of the HTTP/2 machine, with a real h2 client on the other end.

The scope of a stream, request bodies with ``more_body`` and their flow control, many
streams at once, responses that wait for the client's window (``blocked()``), a client's
RST_STREAM, trailers, what the app's misuse gets (the HTTP/1.1 table's answers), every
flood bound (rapid reset, PING, SETTINGS, empty DATA, oversized header blocks, long
frames), protocol errors, graceful shutdown and the idle timer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol.asgi_http import State
from channelserver.protocol.events import CloseTransport, Write
from channelserver.protocol.http2 import FLOOD_WINDOW, KEEP_ALIVE, PREFACE, HTTP2Connection, is_preface
from channelserver.protocol.http11 import ServerAnswer

from .helpers import CLIENT, HOST, SERVER, Link

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


@dataclass
class Stream:
    """One response as the real h2 client saw it."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ended: bool = False
    reset: ErrorCodes | int | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class H2Pair(Link):
    """A real h2 client talking to our HTTP/2 machine over a fake link."""

    def __init__(self, *, handshake: bool = True, keep_goaway: bool = False, **options: Any) -> None:
        """``keep_goaway``: the server's GOAWAY frames are recorded (``goaway_frames``) and
        not given to the h2 client, which stops reading anything after one (unlike
        browsers and nghttp2, which finish the streams the GOAWAY let through)."""
        super().__init__()
        # The Link starts with an HTTP/1.1 machine; this link carries HTTP/2 from the start.
        self.actions.clear()
        self.timers.clear()
        self.machine = HTTP2Connection(client=CLIENT, server=SERVER, **options)
        self.run(self.machine.start())
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config=config)
        self.client.initiate_connection()
        self._read = 0
        self.streams: dict[int, Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.keep_goaway = keep_goaway
        self.goaway_frames: list[GoAwayFrame] = []
        self.events: list[h2.events.Event] = []
        if handshake:
            self.flush()
            self.client_events()
            self.flush()

    # -- the client's side ---------------------------------------------------------------
    def flush(self) -> list[Any]:
        """Send what the client has to send to the machine, in one read."""
        data = self.client.data_to_send()
        return self.feed(data) if data else []

    def client_events(self) -> list[h2.events.Event]:
        """Hand the bytes the machine wrote since last time to the client."""
        new = bytes(self.wire[self._read :])
        self._read = len(self.wire)
        if self.keep_goaway:
            new = self._without_goaway(new)
        events = self.client.receive_data(new) if new else []
        for event in events:
            self.events.append(event)
            sid = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.ResponseReceived):
                self.streams.setdefault(event.stream_id, Stream()).headers = list(event.headers or [])
            elif isinstance(event, h2.events.DataReceived):
                self.streams.setdefault(event.stream_id, Stream()).body += event.data or b""
            elif isinstance(event, h2.events.TrailersReceived):
                self.streams.setdefault(event.stream_id, Stream()).trailers = list(event.headers or [])
            elif isinstance(event, h2.events.StreamEnded):
                self.streams.setdefault(event.stream_id, Stream()).ended = True
            elif isinstance(event, h2.events.StreamReset) and sid is not None:
                self.streams.setdefault(sid, Stream()).reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
        return events

    def _without_goaway(self, data: bytes) -> bytes:
        """``data`` (whole frames: the machine writes no partial ones) less its GOAWAYs."""
        kept = bytearray()
        view = memoryview(data)
        while view:
            frame, length = Frame.parse_frame_header(view[:9])
            whole = view[: 9 + length]
            if isinstance(frame, GoAwayFrame):
                frame.parse_body(whole[9:])
                self.goaway_frames.append(frame)
            else:
                kept += whole
            view = view[9 + length :]
        return bytes(kept)

    def exchange(self) -> None:
        """Let the client read, acknowledge what it read, and answer, until quiet."""
        for _ in range(1000):
            events = self.client_events()
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            data = self.client.data_to_send()
            if not data and not events:
                return
            if data:
                self.feed(data)
        raise AssertionError("the exchange does not settle")

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: list[tuple[bytes, bytes]] | None = None,
        data: bytes | None = None,
        end: bool = True,
    ) -> int:
        sid = self.client.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", HOST.encode()),
            (b":path", path.encode()),
            *(headers or []),
        ]
        self.client.send_headers(sid, fields, end_stream=end and data is None)
        if data is not None:
            self.client.send_data(sid, data, end_stream=end)
        self.flush()
        return sid

    def cycle_of(self, sid: int) -> Any:
        for started in self.started:
            if started.cycle.stream_id == sid:
                return started.cycle
        raise AssertionError(f"no app started for stream {sid}")

    def answer(self, sid: int, data: bytes = b"ok") -> None:
        cycle = self.cycle_of(sid)
        self.app_send(cycle, START)
        self.app_send(cycle, body(data))

    def response(self, sid: int) -> Stream:
        self.exchange()
        return self.streams[sid]


def goaway_code(pair: H2Pair) -> ErrorCodes | int | None:
    pair.client_events()
    return pair.goaway.error_code if pair.goaway is not None else None


# -- the preface -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"PRI * HT", None),
        (PREFACE, True),
        (PREFACE + b"\x00\x00\x12\x04", True),
        (b"GET / HTTP/1.1\r\n", False),
        (b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n", False),
        (b"P", None),
        (b"X", False),
    ],
)
def test_is_preface(data: bytes, expected: bool | None) -> None:
    assert is_preface(data) is expected


def test_start_sends_the_settings_and_opens_the_connection_window() -> None:
    pair = H2Pair(max_concurrent_streams=50, initial_window_size=1 << 20, max_header_list_size=32768)
    changed = [e for e in pair.events if isinstance(e, h2.events.RemoteSettingsChanged)]
    assert changed
    settings_sent = {code: s.new_value for code, s in changed[0].changed_settings.items()}
    codes = h2.settings.SettingCodes
    assert settings_sent[codes.MAX_CONCURRENT_STREAMS] == 50
    assert settings_sent[codes.INITIAL_WINDOW_SIZE] == 1 << 20
    assert settings_sent[codes.MAX_HEADER_LIST_SIZE] == 32768
    assert pair.client.outbound_flow_control_window == 4 << 20
    assert pair.timers == {KEEP_ALIVE: 5.0}


# -- requests --------------------------------------------------------------------------------


def test_get_scope_and_response() -> None:
    pair = H2Pair(root_path="/mount", scheme="https")
    sid = pair.request("GET", "/a%20b/c?x=1", headers=[(b"x-thing", b"Value")])
    scope = pair.scope
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "2",
        "method": "GET",
        "scheme": "https",
        "path": "/mount/a b/c",
        "raw_path": b"/a%20b/c",
        "query_string": b"x=1",
        "root_path": "/mount",
        "headers": [(b"host", b"example.com"), (b"x-thing", b"Value")],
        "client": CLIENT,
        "server": SERVER,
        "extensions": {"http.response.trailers": {}, "http.response.pathsend": {}, "http.response.early_hint": {}},
    }
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    assert KEEP_ALIVE not in pair.timers
    pair.answer(sid, b"hello")
    assert pair.receive() == {"type": "http.disconnect"}
    pair.app_returned(pair.cycle)
    response = pair.response(sid)
    assert (response.status, response.body, response.ended) == (200, b"hello", True)
    assert response.header(b"content-length") == b"5"
    assert pair.timers == {KEEP_ALIVE: 5.0}, "idle again once the stream is done"
    assert pair.closes == 0


def test_host_header_is_kept_when_the_client_sends_one() -> None:
    pair = H2Pair()
    pair.request("GET", "/", headers=[(b"host", HOST.encode())])
    assert [h for h in pair.scope["headers"] if h[0] == b"host"] == [(b"host", HOST.encode())]


def test_post_with_a_streamed_body_and_its_flow_control() -> None:
    pair = H2Pair(initial_window_size=1000)
    sid = pair.request("POST", "/upload", data=b"a" * 600, end=False)
    cycle = pair.cycle_of(sid)
    assert pair.receive() == {"type": "http.request", "body": b"a" * 600, "more_body": True}
    pair.client.send_data(sid, b"b" * 400)
    pair.flush()
    assert pair.client.local_flow_control_window(sid) == 0, "the client used the stream's window"
    assert pair.receive() == {"type": "http.request", "body": b"b" * 400, "more_body": True}
    # The app consumed both parts and asks for more: their window goes back to the client.
    assert pair.receive() is None
    pair.client_events()
    assert pair.client.local_flow_control_window(sid) == 1000
    pair.client.send_data(sid, b"c" * 10, end_stream=True)
    pair.flush()
    assert pair.receive() == {"type": "http.request", "body": b"c" * 10, "more_body": False}
    pair.answer(sid, b"stored")
    assert pair.response(sid).body == b"stored"
    assert cycle.state is State.COMPLETE


def test_a_body_the_app_does_not_read_holds_only_the_stream_window() -> None:
    pair = H2Pair(initial_window_size=1000)
    sid = pair.request("POST", "/", data=b"x" * 1000, end=False)
    pair.client_events()
    assert pair.client.local_flow_control_window(sid) == 0, "no window back until the app reads"
    with pytest.raises(h2.exceptions.FlowControlError):
        pair.client.send_data(sid, b"more")


def test_the_end_of_a_request_in_its_own_frame() -> None:
    pair = H2Pair()
    sid = pair.request("POST", "/", data=b"part", end=False)
    pair.client.end_stream(sid)
    pair.flush()
    assert pair.inbox() == [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]


def test_a_response_before_the_whole_request_cuts_the_request_off() -> None:
    """RFC 9113 section 8.1: a complete response, then RST_STREAM NO_ERROR for the rest
    of the request; DATA still in flight is dropped and its window given back by h2."""
    pair = H2Pair(initial_window_size=1000)
    sid = pair.request("POST", "/", data=b"x" * 1000, end=False)
    pair.answer(sid, b"too early for the rest")
    assert pair.inbox()[-1] == {"type": "http.disconnect"}
    pair.client_events()
    response = pair.streams[sid]
    assert (response.body, response.ended, response.reset) == (b"too early for the rest", True, ErrorCodes.NO_ERROR)
    pair.app_returned(pair.cycle)
    assert pair.machine.streams == {}
    assert pair.closes == 0


def test_many_concurrent_streams_each_have_their_own_cycle() -> None:
    pair = H2Pair()
    sids = [pair.request("GET", f"/{n}") for n in range(20)]
    assert len(pair.started) == 20
    assert len({id(s.cycle) for s in pair.started}) == 20
    assert [s.scope["path"] for s in pair.started] == [f"/{n}" for n in range(20)]
    for sid in reversed(sids):
        pair.answer(sid, b"answer to %d" % sid)
        pair.app_returned(pair.cycle_of(sid))
    pair.exchange()
    for sid in sids:
        assert pair.streams[sid].body == b"answer to %d" % sid
        assert pair.streams[sid].ended
    assert pair.machine.streams == {}
    assert pair.timers == {KEEP_ALIVE: 5.0}


def test_a_stream_over_max_concurrent_streams_is_refused_alone() -> None:
    """A client opens up to 100 streams before it has read the server's SETTINGS: a stream
    over the advertised limit is refused (RST_STREAM REFUSED_STREAM, which clients retry),
    and the connection and its other streams go on (RFC 9113 section 5.1.2)."""
    pair = H2Pair(handshake=False, max_concurrent_streams=5)
    for n in range(6):
        pair.client.send_headers(
            pair.client.get_next_available_stream_id(),
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", f"/{n}".encode())],
            end_stream=True,
        )
    pair.flush()
    pair.client_events()
    assert goaway_code(pair) is None and pair.closes == 0
    assert len(pair.started) == 5
    assert pair.streams[11].reset == ErrorCodes.REFUSED_STREAM
    settings = [e for e in pair.events if isinstance(e, h2.events.RemoteSettingsChanged)]
    advertised = settings[0].changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value
    assert advertised == 5
    for stream in (1, 3, 5, 7, 9):
        pair.answer(stream)
    pair.client_events()
    assert all(pair.streams[sid].ended for sid in (1, 3, 5, 7, 9))


def test_head_and_204_responses_carry_no_data() -> None:
    pair = H2Pair()
    head = pair.request("HEAD", "/")
    pair.answer(head, b"body of a GET")
    nocontent = pair.request("GET", "/")
    cycle = pair.cycle_of(nocontent)
    pair.app_send(cycle, {"type": "http.response.start", "status": 204})
    pair.app_send(cycle, body(b""))
    pair.exchange()
    assert pair.streams[head].body == b""
    assert pair.streams[head].header(b"content-length") == b"13"
    assert pair.streams[head].ended
    assert pair.streams[nocontent].status == 204
    assert pair.streams[nocontent].header(b"content-length") is None


def test_connection_specific_headers_of_the_app_are_dropped() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    headers = [(b"Connection", b"close"), (b"Transfer-Encoding", b"chunked"), (b"X-Ok", b"1")]
    pair.app_send(cycle, {"type": "http.response.start", "status": 200, "headers": headers})
    pair.app_send(cycle, body(b"x"))
    response = pair.response(sid)
    assert response.header(b"x-ok") == b"1"
    assert response.header(b"connection") is None
    assert response.header(b"transfer-encoding") is None


def test_streamed_response_flushed_head_then_parts() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, START)
    pair.run(pair.machine.flush_head(cycle))
    pair.client_events()
    assert pair.streams[sid].status == 200
    pair.app_send(cycle, body(b"one ", more=True))
    pair.app_send(cycle, body(b"two", more=True))
    pair.app_send(cycle, body(b""))
    response = pair.response(sid)
    assert (response.body, response.ended) == (b"one two", True)
    assert response.header(b"content-length") is None


# -- responses and the client's window ---------------------------------------------------


def test_a_response_larger_than_the_window_waits_for_window_update() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    payload = bytes(range(256)) * 800  # 204,800 bytes; the client's windows are 65,535
    pair.app_send(cycle, START)
    pair.app_send(cycle, body(payload))
    assert pair.machine.blocked(cycle), "most of it waits for the client's window"
    pair.client_events()
    assert len(pair.streams[sid].body) == 65535
    assert not pair.streams[sid].ended
    acked = 0
    for _ in range(20):
        if pair.streams[sid].ended:
            break
        received = len(pair.streams[sid].body)
        pair.client.acknowledge_received_data(received - acked, sid)  # WINDOW_UPDATEs
        acked = received
        pair.flush()
        pair.client_events()
    assert not pair.machine.blocked(cycle)
    assert pair.streams[sid].body == payload
    assert pair.inbox()[-1] == {"type": "http.disconnect"}


def test_blocked_turns_false_when_the_stream_is_reset() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, START)
    pair.app_send(cycle, body(b"x" * 200_000, more=True))
    assert pair.machine.blocked(cycle)
    pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    pair.flush()
    assert not pair.machine.blocked(cycle)
    with pytest.raises(ClientDisconnected):
        pair.app_send(cycle, body(b"more", more=True))


def test_a_smaller_initial_window_from_the_client_is_respected() -> None:
    pair = H2Pair()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.flush()
    pair.client_events()
    sid = pair.request()
    pair.answer(sid, b"0123456789abcdef")
    pair.client_events()
    assert pair.streams[sid].body == b"0123456789"
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    pair.flush()
    pair.client_events()
    assert pair.streams[sid].body == b"0123456789abcdef"
    assert pair.streams[sid].ended


# -- the client resets a stream ----------------------------------------------------------


def test_rst_stream_disconnects_that_stream_only() -> None:
    pair = H2Pair()
    first = pair.request("POST", "/one", data=b"partial", end=False)
    second = pair.request("GET", "/two")
    one, two = pair.cycle_of(first), pair.cycle_of(second)
    pair.client.reset_stream(first, ErrorCodes.CANCEL)
    pair.flush()
    assert pair.inbox(one)[-1] == {"type": "http.disconnect"}
    assert pair.inbox(two) == [{"type": "http.request", "body": b"", "more_body": False}]
    with pytest.raises(ClientDisconnected, match=r"client disconnected \(POST /one from 127.0.0.1:53122\)"):
        pair.app_send(one, START)
    pair.answer(second, b"still here")
    assert pair.response(second).body == b"still here"
    assert pair.closes == 0
    pair.app_returned(one, ClientDisconnected("gone"))
    pair.app_returned(two)
    assert pair.machine.streams == {}


def test_rst_stream_while_the_response_streams() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, START)
    pair.app_send(cycle, body(b"first", more=True))
    pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    pair.flush()
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    assert pair.receive() == {"type": "http.disconnect"}
    with pytest.raises(ClientDisconnected):
        pair.app_send(cycle, body(b"second", more=True))


# -- trailers --------------------------------------------------------------------------------


def test_trailers_go_out_as_a_headers_frame_with_end_stream() -> None:
    pair = H2Pair()
    sid = pair.request("POST", "/grpc", headers=[(b"te", b"trailers")], data=b"req")
    cycle = pair.cycle
    pair.app_send(cycle, {**START, "trailers": True})
    pair.app_send(cycle, body(b"payload"))
    assert pair.inbox()[-1] != {"type": "http.disconnect"}, "not complete before the trailers"
    pair.client_events()
    assert not pair.streams[sid].ended
    pair.app_send(cycle, {"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": True})
    pair.app_send(cycle, {"type": "http.response.trailers", "headers": [(b"grpc-message", b"OK")]})
    response = pair.response(sid)
    assert response.body == b"payload"
    assert response.trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"OK")]
    assert response.ended
    assert pair.inbox()[-1] == {"type": "http.disconnect"}


def test_trailers_wait_for_the_window_behind_the_body() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, {**START, "trailers": True})
    pair.app_send(cycle, body(b"z" * 70_000))
    pair.app_send(cycle, {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})
    pair.client_events()
    assert pair.streams[sid].trailers == []
    assert not pair.streams[sid].ended
    pair.client.acknowledge_received_data(len(pair.streams[sid].body), sid)
    pair.flush()
    pair.client_events()
    assert pair.streams[sid].trailers == [(b"x-sum", b"1")]
    assert pair.streams[sid].ended
    assert len(pair.streams[sid].body) == 70_000


def test_trailers_not_announced_are_refused() -> None:
    pair = H2Pair()
    pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, START)
    pair.app_send(cycle, body(b"done"))
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(cycle, {"type": "http.response.trailers", "headers": []})
    assert str(info.value) == (
        "http.response.trailers not allowed in state COMPLETE: trailers not announced by 'trailers': True "
        "in http.response.start (GET / from 127.0.0.1:53122)"
    )


def test_trailers_before_the_body_ends_are_refused_by_the_table() -> None:
    pair = H2Pair()
    pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, {**START, "trailers": True})
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(cycle, {"type": "http.response.trailers", "headers": []})
    assert str(info.value) == (
        "http.response.trailers not allowed in state RESPONSE; expected http.response.body or http.response.pathsend (GET / from 127.0.0.1:53122)"
    )


def test_an_app_that_returns_without_its_announced_trailers_resets_the_stream() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, {**START, "trailers": True})
    pair.app_send(cycle, body(b"data"))
    pair.app_returned(cycle)
    assert pair.errors() == [
        "ASGI app returned without sending the trailers it announced; reset the stream (GET / from 127.0.0.1:53122)"
    ]
    assert pair.response(sid).reset == ErrorCodes.INTERNAL_ERROR
    assert pair.closes == 0


# -- the app's misuse, as the HTTP/1.1 table says -----------------------------------------


def test_a_body_before_any_start_gets_500() -> None:
    pair = H2Pair()
    sid = pair.request()
    other = pair.request("GET", "/other")
    cycle = pair.cycle_of(sid)
    with pytest.raises(ASGIProtocolError) as info:
        pair.app_send(cycle, body(b"early"))
    assert str(info.value) == (
        "http.response.body not allowed in state REQUEST; expected http.response.start or http.response.early_hint (GET / from 127.0.0.1:53122)"
    )
    pair.run(pair.machine.app_misused(cycle))
    assert cycle.state is State.FAILED
    response = pair.response(sid)
    assert (response.status, response.body) == (500, b"Internal Server Error\n")
    pair.answer(other, b"fine")
    assert pair.response(other).body == b"fine"
    assert pair.closes == 0


def test_a_second_start_leaves_the_committed_head_standing() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, START)
    with pytest.raises(ASGIProtocolError, match=r"http\.response\.start not allowed in state RESPONSE"):
        pair.app_send(cycle, START)
    assert pair.machine.app_misused(cycle) == []
    pair.app_send(cycle, body(b"kept"))
    assert pair.response(sid).body == b"kept"


def test_an_invalid_header_value_is_refused_and_gets_500() -> None:
    pair = H2Pair()
    sid = pair.request()
    cycle = pair.cycle
    pair.app_send(cycle, {"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]})
    with pytest.raises(ASGIProtocolError, match="invalid value for header"):
        pair.app_send(cycle, body(b"x"))
    assert cycle.state is State.REQUEST
    pair.run(pair.machine.app_misused(cycle))
    assert pair.response(sid).status == 500


def test_app_returned_without_a_response_gets_500_and_a_log_line() -> None:
    pair = H2Pair()
    sid = pair.request()
    pair.app_returned(pair.cycle)
    assert pair.errors() == ["ASGI app returned without starting a response; sent 500 (GET / from 127.0.0.1:53122)"]
    assert pair.response(sid).status == 500
    assert pair.machine.streams == {}


def test_app_returned_after_start_only_writes_the_head_then_resets_the_stream() -> None:
    pair = H2Pair()
    sid = pair.request()
    other = pair.request()
    cycle = pair.cycle_of(sid)
    pair.app_send(cycle, START)
    pair.app_returned(cycle)
    assert pair.errors() == [
        "ASGI app returned without completing the response; reset the stream (GET / from 127.0.0.1:53122)"
    ]
    response = pair.response(sid)
    assert response.status == 200
    assert response.reset == ErrorCodes.INTERNAL_ERROR
    pair.answer(other)
    assert pair.response(other).ended
    assert pair.closes == 0


def test_app_raised_before_the_response_gets_500_without_a_log_line() -> None:
    pair = H2Pair()
    sid = pair.request()
    pair.app_returned(pair.cycle, RuntimeError("boom"))
    assert pair.errors() == []
    assert pair.response(sid).status == 500


# -- the connection ends -----------------------------------------------------------------


def test_eof_tells_every_app() -> None:
    pair = H2Pair()
    first, second = pair.request(), pair.request("POST", "/", data=b"x", end=False)
    pair.eof()
    for sid in (first, second):
        assert pair.delivered(pair.cycle_of(sid))[-1] == {"type": "http.disconnect"}
    assert pair.closes == 1
    with pytest.raises(ClientDisconnected):
        pair.app_send(pair.cycle_of(first), START)
    assert pair.feed(b"more") == []
    assert pair.machine.blocked(pair.cycle_of(first)) is False


def test_the_client_goaway_ends_the_connection() -> None:
    pair = H2Pair()
    pair.request()
    pair.client.close_connection()
    pair.flush()
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    assert pair.receive() == {"type": "http.disconnect"}
    assert pair.closes == 1


def test_keep_alive_timer_closes_an_idle_connection_with_goaway() -> None:
    pair = H2Pair()
    sid = pair.request()
    assert KEEP_ALIVE not in pair.timers
    assert pair.machine.timer_fired(KEEP_ALIVE) == [], "not idle while a stream is open"
    pair.answer(sid)
    pair.app_returned(pair.cycle)
    assert pair.timers == {KEEP_ALIVE: 5.0}
    pair.fire(KEEP_ALIVE)
    assert goaway_code(pair) == ErrorCodes.NO_ERROR
    assert pair.goaway is not None and pair.goaway.last_stream_id == sid
    assert pair.closes == 1


def test_graceful_shutdown_lets_the_stream_in_flight_finish() -> None:
    pair = H2Pair(keep_goaway=True)
    sid = pair.request("POST", "/slow", data=b"part one", end=False)
    cycle = pair.cycle
    pair.shutdown()
    assert pair.closes == 0
    # A stream the client opened before it read the GOAWAY is refused, without an app.
    late = pair.request("GET", "/late")
    assert len(pair.started) == 1
    pair.client_events()
    assert [(f.error_code, f.last_stream_id) for f in pair.goaway_frames] == [(ErrorCodes.NO_ERROR, sid)]
    assert pair.streams[late].reset == ErrorCodes.REFUSED_STREAM
    # The stream in flight goes on: its body arrives, its response goes out.
    pair.client.send_data(sid, b" and two", end_stream=True)
    pair.flush()
    assert [m["body"] for m in pair.inbox(cycle)] == [b"part one", b" and two"]
    pair.answer(sid, b"done")
    assert pair.closes == 0
    pair.app_returned(cycle)
    assert pair.closes == 1
    assert pair.response(sid).body == b"done"
    assert pair.response(sid).ended
    assert len(pair.goaway_frames) == 1


def test_shutdown_closes_an_idle_connection_at_once() -> None:
    pair = H2Pair()
    pair.shutdown()
    assert goaway_code(pair) == ErrorCodes.NO_ERROR
    assert pair.closes == 1


def test_force_shutdown_tells_the_apps_and_closes() -> None:
    pair = H2Pair()
    pair.request()
    pair.shutdown()
    pair.force_shutdown()
    assert pair.receive() == {"type": "http.request", "body": b"", "more_body": False}
    assert pair.receive() == {"type": "http.disconnect"}
    assert pair.closes == 1


# -- floods --------------------------------------------------------------------------------


def test_rapid_reset_gets_goaway_enhance_your_calm() -> None:
    pair = H2Pair(max_resets=10)
    for _ in range(11):
        sid = pair.request()
        pair.client.reset_stream(sid, ErrorCodes.CANCEL)
        pair.flush()
    assert goaway_code(pair) == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.closes == 1
    assert pair.warnings() == [
        "HTTP/2 flood from 127.0.0.1:53122: 11 streams reset by the client, 0 responses completed "
        "(sent GOAWAY ENHANCE_YOUR_CALM)"
    ]
    assert all(m[-1] == {"type": "http.disconnect"} for m in pair.delivered_log.values())


def test_resets_among_completed_responses_are_not_a_flood() -> None:
    pair = H2Pair(max_resets=10)
    for _ in range(30):
        done = pair.request()
        pair.answer(done)
        pair.app_returned(pair.cycle_of(done))
        cancelled = pair.request()
        pair.client.reset_stream(cancelled, ErrorCodes.CANCEL)
        pair.flush()
        pair.app_returned(pair.cycle_of(cancelled), ClientDisconnected("gone"))
        pair.exchange()
    assert pair.goaway is None
    assert pair.closes == 0


def test_new_streams_are_refused_while_reset_streams_apps_still_run() -> None:
    pair = H2Pair(max_concurrent_streams=2, max_resets=1000)
    for _ in range(4):
        pair.client.reset_stream(pair.request(), ErrorCodes.CANCEL)
        pair.flush()
    assert len(pair.started) == 4
    refused = pair.request()
    assert len(pair.started) == 4
    pair.client_events()
    assert pair.streams[refused].reset == ErrorCodes.REFUSED_STREAM
    pair.app_returned(pair.started[0].cycle)
    pair.request()
    assert len(pair.started) == 5


@pytest.mark.parametrize(
    ("kind", "send"),
    [
        ("PING", lambda c, n: c.ping(b"%08d" % n)),
        ("SETTINGS", lambda c, n: c.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0})),
    ],
)
def test_control_frame_floods_get_goaway_enhance_your_calm(kind: str, send: Any) -> None:
    pair = H2Pair()
    before = len(pair.wire)
    for n in range(101):
        send(pair.client, n)
    pair.flush()
    assert goaway_code(pair) == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.closes == 1
    assert pair.warnings() == [
        f"HTTP/2 flood from 127.0.0.1:53122: more than 100 {kind} frames within 10.0s (sent GOAWAY ENHANCE_YOUR_CALM)"
    ]
    assert len(pair.wire) - before == 17, "only the GOAWAY, none of the acknowledgements"


def test_control_frames_are_counted_per_flood_window() -> None:
    pair = H2Pair()
    for _ in range(3):
        for n in range(100):
            pair.client.ping(b"%08d" % n)
        pair.flush()
        assert FLOOD_WINDOW in pair.timers
        pair.fire(FLOOD_WINDOW)
    pair.client_events()
    assert pair.goaway is None
    assert len([e for e in pair.events if isinstance(e, h2.events.PingAckReceived)]) == 300


def test_empty_data_flood_gets_goaway_enhance_your_calm() -> None:
    pair = H2Pair()
    sid = pair.request("POST", "/", data=b"", end=False)
    for _ in range(101):
        pair.client.send_data(sid, b"")
    pair.flush()
    assert goaway_code(pair) == ErrorCodes.ENHANCE_YOUR_CALM
    assert "more than 100 empty DATA frames" in pair.warnings()[0]


def test_priority_frames_sent_with_requests_are_not_counted() -> None:
    pair = H2Pair(max_priority=5)
    for _ in range(10):
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_headers(
            sid,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")],
            end_stream=True,
            priority_weight=200,
        )
        pair.flush()
    assert pair.goaway is None and pair.closes == 0
    for n in range(6):
        pair.client.prioritize(101 + 2 * n, weight=10)
    pair.flush()
    assert goaway_code(pair) == ErrorCodes.ENHANCE_YOUR_CALM


def test_a_header_block_over_max_header_list_size_is_a_connection_error() -> None:
    pair = H2Pair(max_header_list_size=4096)
    pair.request("GET", "/", headers=[(b"x-big", b"v" * 8000)])
    assert pair.started == []
    assert goaway_code(pair) == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.closes == 1
    assert "Oversized header block" in pair.warnings()[0]


def test_a_continuation_flood_is_a_connection_error() -> None:
    pair = H2Pair()
    headers_frame = b"\x00\x00\x00\x01\x00\x00\x00\x00\x01"  # HEADERS, no END_HEADERS, stream 1
    continuation = b"\x00\x00\x00\x09\x00\x00\x00\x00\x01"  # an empty CONTINUATION
    pair.feed(headers_frame + continuation * 100)
    assert goaway_code(pair) == ErrorCodes.PROTOCOL_ERROR
    assert pair.warnings() == [
        "HTTP/2 protocol error from 127.0.0.1:53122: Too many continuation frames received. (sent GOAWAY PROTOCOL_ERROR)"
    ]


def test_a_frame_over_max_frame_size_is_refused_from_its_header() -> None:
    pair = H2Pair()
    # A DATA frame declaring 1 MiB: refused at once, not after 1 MiB was buffered.
    pair.feed(b"\x10\x00\x00\x00\x00\x00\x00\x00\x01" + b"x" * 100)
    assert goaway_code(pair) == ErrorCodes.FRAME_SIZE_ERROR
    assert pair.warnings() == [
        "Invalid HTTP/2 frame from 127.0.0.1:53122: a frame of 1048576 bytes, over the 16384 accepted "
        "(sent GOAWAY FRAME_SIZE_ERROR)"
    ]
    assert pair.closes == 1


def test_a_malformed_frame_gets_goaway_protocol_error() -> None:
    pair = H2Pair()
    sid = pair.request("POST", "/", data=b"x", end=False)
    pair.feed(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # a DATA frame on stream 0
    assert goaway_code(pair) == ErrorCodes.PROTOCOL_ERROR
    assert pair.closes == 1
    assert len(pair.warnings()) == 1
    assert pair.warnings()[0].startswith("HTTP/2 protocol error from 127.0.0.1:53122: ")
    assert pair.delivered(pair.cycle_of(sid))[-1] == {"type": "http.disconnect"}


def test_a_bad_preface_gets_goaway_protocol_error() -> None:
    pair = H2Pair(handshake=False)
    pair.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert pair.warnings() == [
        "HTTP/2 protocol error from 127.0.0.1:53122: Invalid HTTP/2 preamble. (sent GOAWAY PROTOCOL_ERROR)"
    ]
    assert pair.closes == 1


def test_uppercase_request_header_names_are_a_protocol_error() -> None:
    pair = H2Pair()
    pair.client.config.validate_outbound_headers = False
    pair.client.config.normalize_outbound_headers = False
    pair.request("GET", "/", headers=[(b"X-Upper", b"1")])
    assert goaway_code(pair) == ErrorCodes.PROTOCOL_ERROR
    assert pair.started == []


# -- requests the server answers itself ------------------------------------------------


def test_a_body_over_max_body_size_gets_413() -> None:
    pair = H2Pair(max_body_size=10)
    sid = pair.request("POST", "/", data=b"x" * 8, end=False)
    cycle = pair.cycle
    pair.client.send_data(sid, b"y" * 8)
    pair.flush()
    assert pair.receive() == {"type": "http.request", "body": b"x" * 8, "more_body": True}
    assert pair.receive() == {"type": "http.disconnect"}
    response = pair.response(sid)
    assert response.status == 413
    assert pair.warnings() == [
        "Refused request from 127.0.0.1:53122: request body over the 10 bytes accepted (answered 413)"
    ]
    with pytest.raises(ClientDisconnected):
        pair.app_send(cycle, START)
    assert pair.closes == 0


def test_a_content_length_over_max_body_size_gets_413_without_an_app() -> None:
    pair = H2Pair(max_body_size=10)
    sid = pair.request("POST", "/", headers=[(b"content-length", b"100")], end=False)
    assert pair.started == []
    assert pair.response(sid).status == 413


def test_connect_is_not_served() -> None:
    pair = H2Pair()
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    pair.flush()
    assert pair.started == []
    assert pair.response(sid).status == 501


def test_the_gate_answers_before_any_app() -> None:
    def gate(head: Any) -> ServerAnswer | None:
        return ServerAnswer(200, "OK\n") if head.target == b"/health" else None

    pair = H2Pair(gate=gate)
    health = pair.request("GET", "/health")
    app = pair.request("GET", "/app")
    assert [s.scope["path"] for s in pair.started] == ["/app"]
    assert pair.response(health).body == b"OK\n"
    pair.answer(app)
    assert pair.response(app).ended


# -- any input, split anywhere ------------------------------------------------------------


def client_bytes() -> tuple[bytes, int]:
    """A client's preface, SETTINGS and a POST with a body, as bytes."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/p")])
    client.send_data(sid, b"hello", end_stream=True)
    client.ping(b"12345678")
    return client.data_to_send(), sid


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), max_size=20))
def test_a_valid_exchange_split_anywhere_reads_the_same(cuts: list[int]) -> None:
    data, _ = client_bytes()
    whole = H2Pair(handshake=False)
    whole.feed(data)
    split = H2Pair(handshake=False)
    pos = 0
    for cut in cuts:
        split.feed(data[pos : pos + cut])
        pos += cut
    split.feed(data[pos:])
    assert b"".join(m["body"] for m in whole.inbox()) == b"".join(m["body"] for m in split.inbox()) == b"hello"
    assert whole.inbox()[-1]["more_body"] is False and split.inbox()[-1]["more_body"] is False
    assert split.warnings() == [] and split.closes == 0
    assert bytes(split.wire) == bytes(whole.wire)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_after_the_preface_are_read_or_refused_with_goaway(junk: bytes) -> None:
    """The machine never raises: each input is read, or refused with a GOAWAY, a warning
    and a close."""
    pair = H2Pair()
    actions = pair.feed(junk)
    if pair.closes:
        assert any(type(a) is CloseTransport for a in actions)
        assert len(pair.warnings()) == 1
        assert goaway_code(pair) is not None
    for action in actions:
        if type(action) is Write:
            assert action.data
