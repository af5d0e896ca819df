"""One HTTP/2 connection: h2 on the wire, one :class:`HTTPCycle` per stream.

Each stream a client opens is one ASGI HTTP exchange, driven by the same table as an
HTTP/1.1 request (:mod:`.asgi_http`): the same misuse errors, ``http.disconnect`` once the
response is complete or the client reset the stream, ``ClientDisconnected`` from ``send()``
after that. The streams' cycles are :class:`StreamCycle` objects, handed out in
``StartApp`` like HTTP/1.1's.

Inputs and outputs are those of :class:`~.machine.Machine`, plus :meth:`blocked` (below).
Rules kept here:

- the preface and SETTINGS go out at :meth:`start` (``max_concurrent_streams``,
  ``max_header_list_size``, ``header_table_size``, ``initial_window_size``,
  ``max_frame_size``); the connection window is raised to ``connection_window_size``;
- request bodies: each DATA frame is delivered as it comes (``more_body`` until
  END_STREAM). The flow-control window is given back when the app has *consumed* what was
  delivered (``app_wants_body``: its ``receive()`` found the queue empty), when the app is
  done with the stream, or when the response completes; so the bytes held for one stream
  are bounded by ``initial_window_size`` and for the connection by
  ``connection_window_size``, without pausing the socket (which would stall every other
  stream, and the PINGs and WINDOW_UPDATEs);
- responses: DATA that does not fit the stream's or the connection's send window is kept
  per stream and sent as WINDOW_UPDATEs come. :meth:`blocked` is True while a stream keeps
  more than ``stream_buffer`` unsent bytes: the I/O layer makes the app's ``send()`` wait
  until it is False again (checked after each :meth:`receive_data`);
- trailers: an app that said ``"trailers": True`` in ``http.response.start`` sends
  ``http.response.trailers`` after its last body part; they go out as a HEADERS frame with
  END_STREAM (the scope's ``extensions`` carry ``http.response.trailers``);
- a whole response sent in one body message gets a ``content-length``; HEAD, 204 and 304
  responses carry no DATA; connection-specific headers (``connection``, ``keep-alive``,
  ``transfer-encoding``, ...) are dropped, as HTTP/2 forbids them;
- refusals: a stream over ``max_concurrent_streams`` is a connection error in h2
  (``TooManyStreamsError``, GOAWAY PROTOCOL_ERROR: the client ignored the advertised
  limit); a new stream while more than twice that many app instances still run (streams
  the client reset whose apps have not returned yet) gets RST_STREAM REFUSED_STREAM, which
  a client may retry;
- floods end the connection with GOAWAY ENHANCE_YOUR_CALM and a warning: more than
  ``max_resets`` client resets of streams that had an app, while fewer than half as many
  responses completed (CVE-2023-44487, "rapid reset"); more than ``max_pings`` PINGs,
  ``max_settings`` SETTINGS, ``max_empty_data`` empty DATA frames or ``max_priority``
  PRIORITY frames within ``flood_window`` seconds (a timer, armed by the first such frame).
  A header block is bounded by h2 (64 CONTINUATION frames) and its decoded size by
  ``max_header_list_size`` (hpack: ``OversizedHeaderListError``, GOAWAY
  ENHANCE_YOUR_CALM); a frame longer than ``max_frame_size`` is refused from its header,
  before its body is buffered (h2 would buffer up to 16 MiB before checking);
- every other protocol error h2 finds is a GOAWAY with h2's error code, a warning naming
  it, and a close; every stream's app gets ``http.disconnect``;
- :meth:`shutdown` sends GOAWAY NO_ERROR naming the last stream taken, refuses streams
  opened after it, lets the streams in flight finish, then closes; an idle connection
  (no stream) is closed by the ``keep_alive`` timer with GOAWAY NO_ERROR.

A client GOAWAY ends the connection (h2 sends nothing after it): the apps are told.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11
from h2.errors import ErrorCodes
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

from ..errors import ASGIProtocolError, ClientDisconnected
from .asgi_http import APP_FAILED, HEAD_REFUSED, TRANSITIONS, HTTPCycle, State
from .events import Action, CancelTimer, CloseTransport, Deliver, Log, SetTimer, StartApp, Write
from .http11 import ServerAnswer
from .machine import Machine
from .request import Head, UpgradeRequest
from .scope import http_scope, peer
from .table import check_headers, misuse

__all__ = ["FLOOD_WINDOW", "KEEP_ALIVE", "PREFACE", "HTTP2Connection", "StreamCycle", "is_preface"]

#: What a client sends first on an HTTP/2 connection (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

KEEP_ALIVE = "keep_alive"
FLOOD_WINDOW = "h2_flood_window"
PING = "h2_ping"
PONG = "h2_pong"
_PING_DATA = b"csping\x00\x00"

_DISCONNECT = {"type": "http.disconnect"}
_H2_DEFAULT_WINDOW = 65535
#: Headers HTTP/2 forbids in a response (RFC 9113 section 8.2.2); an app's are dropped.
_CONNECTION_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"}
)
#: What an h2c upgrade's HTTP/1.1 request loses on the way to stream 1.
_H2C_DROPPED = _CONNECTION_HEADERS | {b"http2-settings"}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
#: What a :path may be made of: visible ASCII (the scope's path is decoded as ASCII).
_PATH = re.compile(rb"[\x21-\x7e]+")
_NO_BODY = frozenset({204, 304})
_PHRASES = {400: "Bad Request", 413: "Content Too Large", 500: "Internal Server Error", 501: "Not Implemented"}


def is_preface(data: bytes) -> bool | None:
    """Whether the first bytes of a cleartext connection are the HTTP/2 preface (a client
    with prior knowledge of h2c); None while too few bytes came to tell."""
    if len(data) >= len(PREFACE):
        return data[: len(PREFACE)] == PREFACE
    if PREFACE.startswith(data):
        return None
    return False


#: The stall timer of a stream waiting for the client's window: ``h2_stall:<stream id>``.
_STALL_TIMER = "h2_stall:"
#: Timer names of a WebSocket stream's machine: ``ws:<stream id>:<its own name>``.
_WS_TIMER = "ws:"
#: What an HTTP/1.1 handshake has and RFC 8441's does not (the stream is the upgrade).
_UPGRADE_FIELDS = (
    (b"connection", b"upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-key", b"AAAAAAAAAAAAAAAAAAAAAA=="),
)
#: The HTTP/1.1 answer's fields that are not HTTP/2's (or that RFC 8441 drops).
_NOT_H2_ANSWER = frozenset({b"connection", b"upgrade", b"sec-websocket-accept", b"transfer-encoding", b"keep-alive"})


def _answer_fields(headers: Any) -> list[tuple[bytes, bytes]]:
    return [(name.lower(), value) for name, value in headers if name.lower() not in _NOT_H2_ANSWER]


class _WebSocketStream:
    """A stream that carries a WebSocket: its machine, the stream's sending side
    (``stream``: outbox and end, as for a response), and the HTTP/1.1 answer of its
    handshake read back (``answer``, an h11 client)."""

    __slots__ = ("answer", "headers", "machine", "open", "paused", "sid", "stream", "unacked")

    def __init__(
        self, sid: int, stream: StreamCycle, machine: Any, answer: h11.Connection, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.sid = sid
        self.stream = stream
        self.machine = machine
        self.answer = answer
        self.headers = headers
        #: Accepted: what the machine writes from here are frames.
        self.open = False
        self.paused = False
        self.unacked = 0


class Phase(enum.Enum):
    """Where the connection is.

    ::

        OPEN --shutdown() with streams in flight--> DRAINING --last stream done--> CLOSED
        OPEN --idle timeout, shutdown() when idle, EOF, protocol error, flood--> CLOSED
    """

    __hash__ = object.__hash__  # identity, as in asgi_http.State

    OPEN = "OPEN"
    #: GOAWAY sent: streams after its last stream id are refused; the others finish.
    DRAINING = "DRAINING"
    #: Closed: inputs are ignored; apps' sends raise ClientDisconnected.
    CLOSED = "CLOSED"


class StreamCycle(HTTPCycle):
    """One stream's ASGI cycle (its state moves only through :class:`HTTPCycle`), and what
    the connection keeps for the stream: unsent DATA, unacknowledged request bytes,
    trailers."""

    __slots__ = (
        "app",
        "body_received",
        "end_queued",
        "gone",
        "head_only",
        "outbox",
        "request_ended",
        "returned",
        "sent",
        "sent_end",
        "stall_mark",
        "stream_id",
        "told",
        "trailers",
        "trailers_ready",
        "unacked",
        "want_trailers",
    )

    def __init__(self, method: bytes, target: bytes, client: str, stream_id: int) -> None:
        super().__init__(method, target, client)
        self.stream_id = stream_id
        #: An app instance runs for this stream (False: the server answers it itself).
        self.app = True
        self.returned = False
        #: Response DATA not yet sent (no window for it).
        self.outbox = bytearray()
        #: The response's end was queued (the last body part, or the server's own answer).
        self.end_queued = False
        #: END_STREAM went out (or the stream was reset): nothing more is sent.
        self.sent_end = False
        #: HEAD request, or a 204/304 response: body parts are dropped.
        self.head_only = method == b"HEAD"
        self.want_trailers = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self.trailers_ready = False
        self.request_ended = False
        #: DATA bytes sent; and what it was when the stall timer was armed (None: not armed).
        self.sent = 0
        self.stall_mark: int | None = None
        self.body_received = 0
        #: Flow-controlled bytes delivered and not yet given back to the client.
        self.unacked = 0
        #: http.disconnect was delivered.
        self.told = False
        #: The stream was reset or the connection lost (also once the cycle is COMPLETE,
        #: where the table has no move for it: trailers still to send).
        self.gone = False


class HTTP2Connection(Machine):
    """The HTTP/2 side of one connection (after ALPN ``h2``, or an h2c preface)."""

    def __init__(
        self,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        scheme: str = "http",
        root_path: str = "",
        state: dict[str, Any] | None = None,
        keep_alive_timeout: float = 5.0,
        default_headers: Callable[[], list[tuple[bytes, bytes]]] = list,
        extensions: Callable[[], dict[str, Any]] | None = None,
        max_body_size: int | None = None,
        gate: Callable[[Head], ServerAnswer | None] | None = None,
        max_concurrent_streams: int = 100,
        max_header_list_size: int = 65536,
        header_table_size: int = 4096,
        initial_window_size: int = 1 << 20,
        connection_window_size: int = 4 << 20,
        max_frame_size: int = 16384,
        stream_buffer: int = 65536,
        max_resets: int = 200,
        max_pings: int = 100,
        max_settings: int = 100,
        max_empty_data: int = 100,
        max_priority: int = 1000,
        flood_window: float = 10.0,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        websocket: Callable[[UpgradeRequest, int], Machine] | None = None,
        stall_timeout: float | None = 30.0,
    ) -> None:
        """``scheme``: the transport's ("https" under TLS, "http" for h2c); the client's
        ``:scheme`` is a claim, as HTTP/1.1's absolute-form target, and is not used.

        Settings advertised to the client (RFC 9113 section 6.5.2):
        ``max_concurrent_streams`` (100, h2's default), ``max_header_list_size`` (64 KiB of
        decoded header fields per block, as h2's default), ``header_table_size`` (the HPACK
        table, 4096: the protocol's default), ``max_frame_size`` (16384: the protocol's
        default), ``initial_window_size`` (1 MiB per stream, rather than 65,535: an upload
        is limited to a window per round trip, 655 KB/s at 100 ms with the default, 10 MB/s
        with 1 MiB; it is also what one stream may hold unread by its app).

        ``connection_window_size`` (4 MiB): the window shared by all streams, raised from
        65,535 at start; it bounds the request bytes the connection holds unread by apps.
        ``stream_buffer`` (64 KiB): unsent response bytes a stream may keep before
        :meth:`blocked` says its app's ``send()`` should wait.

        Flood bounds: ``max_resets`` (200) client resets of streams that had an app, while
        fewer than half as many responses completed, over the connection's life;
        ``max_pings``, ``max_settings``, ``max_empty_data`` (100 each) and ``max_priority``
        (1000) of those frames within ``flood_window`` (10 s). Over any: GOAWAY
        ENHANCE_YOUR_CALM.
        """
        self.client = client
        self.server = server
        self.client_text = peer(client) or "unknown client"
        self.scheme = scheme
        self.root_path = root_path
        self.scope_state = state
        self.keep_alive_timeout = keep_alive_timeout
        self.default_headers = default_headers
        self.extensions = extensions
        self.max_body_size = max_body_size
        self.gate = gate
        self.max_concurrent_streams = max_concurrent_streams
        self.max_frame_size = max_frame_size
        self.connection_window_size = connection_window_size
        self.stream_buffer = stream_buffer
        self.max_resets = max_resets
        self.flood_window = flood_window
        #: Keepalive: a PING after ``ping_interval`` without a byte from the client; the
        #: connection is closed when its ACK does not come within ``ping_timeout``.
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.heard = False
        self.awaiting_ack = False
        #: WebSockets over HTTP/2 (RFC 8441): with a factory of WebSocket machines (the
        #: same as for HTTP/1.1 upgrades), SETTINGS_ENABLE_CONNECT_PROTOCOL is offered and
        #: an extended CONNECT with ``:protocol websocket`` opens one, by stream id.
        self.websocket = websocket
        self.ws: dict[int, _WebSocketStream] = {}
        #: WebSocket streams a ``channelserver.drain`` hold keeps open: a drain's GOAWAY
        #: leaves them be until :meth:`close_websocket` (the hold ended) or
        #: :meth:`force_shutdown` (graceful_timeout).
        self.held: set[int] = set()
        #: A stream whose DATA has waited this long for the client's window without a byte
        #: going out is reset and its app told: a client that never opens its window
        #: (reading nothing, yet answering PINGs) holds no app forever.
        self.stall_timeout = stall_timeout
        self.flood_limits = {
            "PING": max_pings,
            "SETTINGS": max_settings,
            "empty DATA": max_empty_data,
            "PRIORITY": max_priority,
        }
        #: Frames of each flood kind since the flood window began.
        self.flood_counts: dict[str, int] = {}
        self.settings_seen = False

        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            validate_outbound_headers=True,
            normalize_outbound_headers=True,
        )
        conn = h2.connection.H2Connection(config=config)
        codes = h2.settings.SettingCodes
        # Initial values are in force at once (not when the client acknowledges them): the
        # limits protect from the first frame; the client, until it reads them, keeps to the
        # protocol's defaults, which are within them (or the same).
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                # h2 makes a stream over this a connection error; the limit advertised
                # (max_concurrent_streams, see _preamble) is enforced stream by stream in
                # _request, with REFUSED_STREAM: a client opens up to 100 streams before it
                # has read the server's SETTINGS (RFC 9113 section 5.1.2).
                codes.MAX_CONCURRENT_STREAMS: max(2 * max_concurrent_streams, max_concurrent_streams + 100),
                codes.MAX_HEADER_LIST_SIZE: max_header_list_size,
                codes.HEADER_TABLE_SIZE: header_table_size,
                codes.INITIAL_WINDOW_SIZE: initial_window_size,
                codes.MAX_FRAME_SIZE: max_frame_size,
                codes.ENABLE_CONNECT_PROTOCOL: 1 if websocket is not None else 0,
            },
        )
        # h2 sets these from the settings only when they change on an acknowledgement.
        conn.decoder.max_header_list_size = max_header_list_size
        conn.decoder.max_allowed_table_size = header_table_size
        conn.max_inbound_frame_size = max_frame_size
        self.h2 = conn

        self.phase = Phase.OPEN
        #: The streams with an app running or a response still going out, by stream id.
        self.streams: dict[int, StreamCycle] = {}
        #: App instances not returned yet (a reset stream's app may run on a while).
        self.running = 0
        #: Client resets of streams that had an app; responses sent whole.
        self.resets = 0
        self.completed = 0
        #: The last stream id named by the graceful GOAWAY; later streams are refused.
        self.goaway_stream_id: int | None = None
        #: The frame-length guard: bytes left in the frame being read (the preface first),
        #: and the part of a frame header read so far.
        self._skip = len(PREFACE)
        self._frame_head = b""

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # -- the I/O layer's questions ---------------------------------------------------------
    def blocked(self, cycle: StreamCycle) -> bool:
        """True while ``cycle``'s stream keeps more than ``stream_buffer`` response bytes
        unsent (the client's flow-control window is full): the app's ``send()`` should wait
        until this is False again. It turns False when WINDOW_UPDATEs let the bytes go
        (check after each :meth:`receive_data`), or when the stream or the connection ends
        (the next ``send()`` then raises ``ClientDisconnected``)."""
        return len(cycle.outbox) > self.stream_buffer and not cycle.sent_end and self.phase is not Phase.CLOSED

    # -- inputs from the peer, the clock and the server ------------------------------------
    def start(self) -> list[Action]:
        """Send the server's SETTINGS (the connection preface) and open the connection
        window; the idle timer runs until a stream opens."""
        conn = self.h2
        conn.initiate_connection()
        preamble = self._preamble()
        if self.connection_window_size > _H2_DEFAULT_WINDOW:
            conn.increment_flow_control_window(self.connection_window_size - _H2_DEFAULT_WINDOW)
        actions: list[Action] = [Write(preamble + conn.data_to_send()), SetTimer(KEEP_ALIVE, self.keep_alive_timeout)]
        if self.ping_interval is not None:
            actions.append(SetTimer(PING, self.ping_interval))
        return actions

    def start_upgraded(
        self, settings: bytes, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[Action]:
        """Instead of :meth:`start`, for a cleartext HTTP/1.1 request that asked ``Upgrade:
        h2c``: the ``101``, the server's SETTINGS, then the request goes on as stream 1
        (half-closed: it had no body), its response sent on that stream."""
        conn = self.h2
        try:
            conn.initiate_upgrade_connection(settings)
        except (ValueError, h2.exceptions.ProtocolError, HyperframeError) as exc:  # binascii.Error: a ValueError
            why = f"an HTTP2-Settings header h2 cannot read ({type(exc).__name__})"
            self.phase = Phase.CLOSED
            answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            return [
                Log("warning", f"Invalid h2c upgrade from {self.client_text}: {why} (answered 400)"),
                Write(answer),
                CloseTransport(),
            ]
        preamble = self._preamble()
        if self.connection_window_size > _H2_DEFAULT_WINDOW:
            conn.increment_flow_control_window(self.connection_window_size - _H2_DEFAULT_WINDOW)
        actions: list[Action] = [
            Write(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"),
            Write(preamble + conn.data_to_send()),
        ]
        if self.ping_interval is not None:
            actions.append(SetTimer(PING, self.ping_interval))
        fields = [(b":method", method), (b":path", target), (b":scheme", b"http")]
        fields.extend((name, value) for name, value in headers if name not in _H2C_DROPPED)
        ended = h2.events.StreamEnded(stream_id=1)
        self._request(h2.events.RequestReceived(stream_id=1, headers=fields, stream_ended=ended), actions)
        return self._flush(actions)

    def _over_limit(self, sid: int) -> bool:
        """Whether ``max_concurrent_streams`` client streams opened before ``sid`` are still
        open. h2 has read every frame of a read before its events are handled, so streams
        opened after ``sid`` in the same read are open too: they do not count against it."""
        earlier = sum(1 for other, stream in self.h2.streams.items() if other % 2 and other < sid and not stream.closed)
        return earlier >= self.max_concurrent_streams

    def _preamble(self) -> bytes:
        """The server's first SETTINGS as h2 wrote it, but advertising
        ``max_concurrent_streams`` (h2's own limit, a connection error, is set higher)."""
        data = self.h2.data_to_send()
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        assert isinstance(frame, SettingsFrame)
        frame.settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = self.max_concurrent_streams
        return frame.serialize() + data[9 + length :]

    def frames_end(self, data: bytes, frames: int) -> int:
        """Where the first ``frames`` frames that begin in ``data`` end (the frame, or the
        preface, an earlier read left unfinished comes first and is not counted), or
        ``len(data)`` when they reach its end. h2 reads every frame it is given before it
        returns one event, so the I/O layer hands it this much per event-loop turn: a read
        of hundreds of small frames (a rapid-reset burst) cannot hold the loop from every
        other connection while h2 works through it."""
        n = len(data)
        head = self._frame_head
        if head:  # a frame header begun by an earlier read
            need = 9 - len(head)
            if n < need:
                return n
            i = need + int.from_bytes((head + data[:need])[:3], "big")
        else:
            i = self._skip
        while i < n:
            if frames <= 0:
                return i
            if n - i < 9:
                return n
            i += 9 + int.from_bytes(data[i : i + 3], "big")
            frames -= 1
        return n

    def receive_data(self, data: bytes) -> list[Action]:
        if self.phase is Phase.CLOSED:
            return []
        self.heard = True
        actions: list[Action] = []
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return self._protocol_error(exc, actions)
        too_long = self._frame_too_long(data)
        if too_long is not None:
            self.h2.close_connection(ErrorCodes.FRAME_SIZE_ERROR)
            why = f"a frame of {too_long} bytes, over the {self.max_frame_size} accepted"
            return self._abort(
                f"Invalid HTTP/2 frame from {self.client_text}: {why} (sent GOAWAY FRAME_SIZE_ERROR)", actions
            )
        request_priority: h2.events.PriorityUpdated | None = None
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                request_priority = event.priority_updated
                self._request(event, actions)
            elif isinstance(event, h2.events.DataReceived):
                self._data(event, actions)
            elif isinstance(event, h2.events.StreamEnded):
                self._request_ended(event.stream_id, actions)
            elif isinstance(event, h2.events.StreamReset):
                self._reset(event, actions)
            elif isinstance(event, h2.events.WindowUpdated):
                self._window_opened(event.stream_id, actions)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if self.settings_seen:  # the first is the client's preface
                    self._count("SETTINGS", actions)
                self.settings_seen = True
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._window_opened(0, actions)
            elif isinstance(event, h2.events.PingReceived):
                self._count("PING", actions)
            elif isinstance(event, h2.events.PingAckReceived):
                if self.awaiting_ack:
                    self.awaiting_ack = False
                    actions.append(CancelTimer(PONG))
            elif isinstance(event, h2.events.PriorityUpdated):
                if event is not request_priority:  # a PRIORITY frame, not a HEADERS flag
                    self._count("PRIORITY", actions)
            elif isinstance(event, h2.events.ConnectionTerminated):
                # The client's GOAWAY: h2 sends nothing after it.
                self._close_all(actions)
                actions.append(CloseTransport())
            if self.closed:  # a flood, a reset's refusal or the client's GOAWAY ended it
                return actions
        return self._flush(actions)

    def eof(self) -> list[Action]:
        """The peer closed its side, or the transport was lost: every app is told."""
        if self.phase is Phase.CLOSED:
            return []
        actions: list[Action] = []
        self._close_all(actions)
        actions.append(CloseTransport())
        return actions

    def timer_fired(self, name: str) -> list[Action]:
        if self.phase is Phase.CLOSED:
            return []
        if name == KEEP_ALIVE and not self.streams:
            self.h2.close_connection(ErrorCodes.NO_ERROR)
            actions: list[Action] = [Write(self.h2.data_to_send())]
            self._close_all(actions)
            actions.append(CloseTransport())
            return actions
        if name.startswith(_STALL_TIMER):
            return self._stalled(int(name[len(_STALL_TIMER) :]))
        if name.startswith(_WS_TIMER):
            sid_text, _, inner = name[len(_WS_TIMER) :].partition(":")
            ws = self.ws.get(int(sid_text))
            return self._flush(self._from_ws(ws, ws.machine.timer_fired(inner))) if ws is not None else []
        if name == FLOOD_WINDOW:
            self.flood_counts.clear()
        elif name == PING and self.ping_interval is not None:
            actions = [SetTimer(PING, self.ping_interval)]
            if self.heard:
                self.heard = False
            elif not self.awaiting_ack:
                self.awaiting_ack = True
                self.h2.ping(_PING_DATA)
                actions.append(Write(self.h2.data_to_send()))
                if self.ping_timeout is not None:
                    actions.append(SetTimer(PONG, self.ping_timeout))
            return actions
        elif name == PONG and self.awaiting_ack:
            actions = [Log("info", f"No HTTP/2 PING ACK from {self.client_text} within {self.ping_timeout}s; closing")]
            self.h2.close_connection(ErrorCodes.NO_ERROR)
            actions.append(Write(self.h2.data_to_send()))
            self._close_all(actions)
            actions.append(CloseTransport())
            return actions
        return []

    def drain_begins(self) -> list[Action]:
        return []

    def shutdown(self) -> list[Action]:
        """Graceful: GOAWAY NO_ERROR with the last stream id taken; the streams in flight
        finish, then the connection closes (at once when there are none)."""
        if self.phase is Phase.CLOSED:
            return []
        conn = self.h2
        if not self.streams:
            conn.close_connection(ErrorCodes.NO_ERROR)
            actions: list[Action] = [Write(conn.data_to_send())]
            self._close_all(actions)
            actions.append(CloseTransport())
            return actions
        if self.phase is Phase.DRAINING:
            return []
        self.phase = Phase.DRAINING
        # Written directly, not by h2.close_connection: h2 refuses to send or receive
        # anything after its own GOAWAY, and the streams in flight still need both.
        self.goaway_stream_id = last = conn.highest_inbound_stream_id
        goaway = GoAwayFrame(0, last_stream_id=last, error_code=ErrorCodes.NO_ERROR)
        actions = [Write(conn.data_to_send() + goaway.serialize())]
        for ws in list(self.ws.values()):  # each closes with 1012 (or once its handshake ends)
            if ws.sid not in self.held:
                actions.extend(self._from_ws(ws, ws.machine.shutdown()))
        return self._flush(actions)

    def close_websocket(self, sid: int) -> list[Action]:
        """The drain hold of WebSocket stream ``sid`` ended: close it with 1012 now."""
        self.held.discard(sid)
        ws = self.ws.get(sid)
        if ws is None or self.phase is not Phase.DRAINING:
            return []
        return self._flush(self._from_ws(ws, ws.machine.shutdown()))

    def force_shutdown(self) -> list[Action]:
        """``graceful_timeout`` passed: close now; the apps still running are told."""
        if self.phase is Phase.CLOSED:
            return []
        conn = self.h2
        conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self.goaway_stream_id)
        actions: list[Action] = [Write(conn.data_to_send())]
        self._close_all(actions)
        actions.append(CloseTransport())
        return actions

    # -- inputs from the app instance of a stream ------------------------------------------
    def app_send(self, cycle: StreamCycle, message: Any) -> list[Action]:
        """Raises ``ASGIProtocolError`` on misuse, ``ClientDisconnected`` once the stream or
        the connection is gone. A refused message has no effect."""
        if type(message) is dict and message.get("type") == "http.response.trailers":
            return self._trailers(cycle, message)
        what, value = cycle.on_app_message(message)
        if what == "start":
            cycle.want_trailers = bool(message.get("trailers", False))
            return []
        if what == "pathsend":
            return []
        if what == "early_hint":
            if value and not cycle.gone and self.phase is not Phase.CLOSED:
                self.h2.send_headers(cycle.stream_id, [(b":status", b"103"), *((b"link", link) for link in value)])
            return self._flush([])
        body, more, new_state = value
        actions: list[Action] = []
        pending = cycle.pending_start
        if pending is not None:
            cycle.pending_start = None
            end = not more and (not body or cycle.head_only or pending[0] in _NO_BODY) and not cycle.want_trailers
            self._send_head(cycle, pending, None if more else len(body), end)
        if body and not cycle.head_only:
            cycle.outbox += body
        if not more:
            cycle.end_queued = True
        cycle.commit(new_state)
        self._pump(cycle, actions)
        if not more and not cycle.want_trailers:
            self._tell(cycle, actions)
        return self._flush(actions)

    def flush_head(self, cycle: StreamCycle) -> list[Action]:
        """The app started a response and went on to wait for something else: send the
        HEADERS now."""
        pending = cycle.pending_start
        if pending is None or cycle.state is not State.RESPONSE or cycle.gone or self.phase is Phase.CLOSED:
            return []
        cycle.pending_start = None
        self._send_head(cycle, pending, None, False)
        return self._flush([])

    def app_wants_body(self, cycle: StreamCycle) -> list[Action]:
        """The app consumed every body part delivered: give their window back."""
        if cycle.unacked and self.phase is not Phase.CLOSED:
            actions: list[Action] = []
            self._ack(cycle)
            return self._flush(actions)
        return []

    def app_misused(self, cycle: StreamCycle) -> list[Action]:
        """As HTTP/1.1: once a valid head is committed the response stands (the refused
        message had no effect); before that, 500."""
        if cycle.state is State.RESPONSE or cycle.state is State.COMPLETE:
            return []
        return self.app_failed(cycle)

    def app_failed(self, cycle: StreamCycle) -> list[Action]:
        """The app raised, misused ASGI with nothing valid sent, or returned without
        completing its response. No head committed: 500. A committed head stands (written
        now if still held back) and the stream is reset (INTERNAL_ERROR): the client sees
        the response cut short, the connection's other streams go on."""
        actions: list[Action] = []
        state = cycle.state
        if state is State.COMPLETE:
            if cycle.want_trailers and not cycle.trailers_ready and not cycle.gone:
                self._reset_stream(cycle, ErrorCodes.INTERNAL_ERROR, actions)
            return self._flush(actions)
        if not cycle.event(APP_FAILED):
            return []
        if self.phase is Phase.CLOSED or cycle.gone:
            return []
        if state is State.RESPONSE:
            pending = cycle.pending_start
            if pending is not None:
                cycle.pending_start = None
                try:
                    self._send_head(cycle, pending, None, False)
                except ASGIProtocolError as exc:  # the head cannot be written: nothing valid was sent
                    actions.append(Log("error", f"ASGI protocol error: {exc}"))
                    self._server_answer(cycle, 500, "Internal Server Error\n", (), actions)
                    self._tell(cycle, actions)
                    return self._flush(actions)
            self._reset_stream(cycle, ErrorCodes.INTERNAL_ERROR, actions)
            self._tell(cycle, actions)
            return self._flush(actions)
        self._server_answer(cycle, 500, "Internal Server Error\n", (), actions)
        self._tell(cycle, actions)
        return self._flush(actions)

    def app_returned(self, cycle: StreamCycle, exc: BaseException | None) -> list[Action]:
        """The app instance of ``cycle`` returned (``exc`` None) or raised ``exc``."""
        actions: list[Action] = []
        if not cycle.returned:
            cycle.returned = True
            self.running -= 1
        state = cycle.state
        if state is State.REQUEST or state is State.RESPONSE:
            if exc is None:
                if state is State.REQUEST:
                    text = "returned without starting a response; sent 500"
                else:
                    text = "returned without completing the response; reset the stream"
                actions.append(Log("error", f"ASGI app {text} ({cycle.where})"))
            actions.extend(self.app_failed(cycle))
        elif state is State.COMPLETE and cycle.want_trailers and not cycle.trailers_ready and not cycle.gone:
            if exc is None:
                text = "returned without sending the trailers it announced; reset the stream"
                actions.append(Log("error", f"ASGI app {text} ({cycle.where})"))
            actions.extend(self.app_failed(cycle))
        if self.phase is Phase.CLOSED:
            self.streams.pop(cycle.stream_id, None)
            return actions
        if cycle.unacked:
            self._ack(cycle)
        self._forget_if_done(cycle, actions)
        return self._flush(actions)

    # -- requests --------------------------------------------------------------------------
    def _request(self, event: h2.events.RequestReceived, actions: list[Action]) -> None:
        sid = event.stream_id
        if self.goaway_stream_id is not None and sid > self.goaway_stream_id:
            self._rst(sid, ErrorCodes.REFUSED_STREAM)  # opened after our GOAWAY
            return
        opened = self.h2.streams.get(sid)
        if opened is None or opened.closed:
            # Opened and reset by the client in the same read (h2 has read it all before its
            # events are handled): no app for it. It counts as a reset (a rapid-reset flood
            # is read in bursts like this).
            self.resets += 1
            self._check_resets(actions)
            return
        if self.h2.open_inbound_streams > self.max_concurrent_streams and self._over_limit(sid):
            # Over the advertised limit (a client's first flight, before it read our
            # SETTINGS): this stream is refused, which a client retries; the others go on.
            self._rst(sid, ErrorCodes.REFUSED_STREAM)
            return
        if self.running >= 2 * self.max_concurrent_streams:
            # Streams the client reset whose apps still run: no new app until some return.
            self._rst(sid, ErrorCodes.REFUSED_STREAM)
            self.resets += 1
            self._check_resets(actions)
            return
        method = target = authority = protocol = b""
        headers: list[tuple[bytes, bytes]] = []
        host = False
        size = 0
        content_length: bytes | None = None
        for name, value in event.headers or ():
            size += len(name) + len(value)
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    target = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    protocol = value
                continue
            if name == b"host":
                host = True
            elif name == b"content-length":
                content_length = value
            headers.append((name, value))
        if authority and not host:
            headers.insert(0, (b"host", authority))
        cycle = StreamCycle(method, target, self.client_text, sid)
        self.streams[sid] = cycle
        if len(self.streams) == 1:
            actions.append(CancelTimer(KEEP_ALIVE))
        cycle.request_ended = bool(event.stream_ended)
        if method == b"CONNECT" and protocol == b"websocket" and self.websocket is not None:
            cycle.app = False  # the stream's app is the WebSocket's: see _open_websocket
            # the server's WebSocket limits (ws_max_connections, ws_accept_rate) first, as
            # for an HTTP/1.1 handshake
            if not self._gated(Head(b"GET", target, b"2", headers, True, size, None, False, False), cycle, actions):
                self._open_websocket(cycle, target, headers, actions)
            return
        if method == b"CONNECT":
            cycle.app = False
            self._server_answer(cycle, 501, "Not Implemented: CONNECT is not served\n", (), actions)
            return
        if not _PATH.fullmatch(target) or not _TOKEN.fullmatch(method.lower()):
            cycle.app = False
            why = "a :path that is not visible ASCII" if _TOKEN.fullmatch(method.lower()) else "an invalid :method"
            actions.append(Log("warning", f"Invalid HTTP/2 request from {self.client_text}: {why} (answered 400)"))
            self._server_answer(cycle, 400, f"Bad Request: {why}\n", (), actions)
            return
        if content_length is not None and self.max_body_size is not None and content_length.isdigit():
            if int(content_length) > self.max_body_size:
                cycle.app = False
                why = f"content-length {int(content_length)} is over the {self.max_body_size} bytes accepted"
                actions.append(Log("warning", f"Refused request from {self.client_text}: {why} (answered 413)"))
                self._server_answer(cycle, 413, f"Content Too Large: {why}\n", (), actions)
                return
        if self._gated(Head(method, target, b"2", headers, False, size, content_length, False, False), cycle, actions):
            return
        extensions: dict[str, Any] = {
            "http.response.trailers": {},
            "http.response.pathsend": {},
            "http.response.early_hint": {},
        }
        if self.extensions is not None:
            extensions.update(self.extensions())
        scope = http_scope(
            method=method,
            target=target,
            http_version=b"2",
            headers=headers,
            scheme=self.scheme,
            server=self.server,
            client=self.client,
            root_path=self.root_path,
            state=self.scope_state,
            extensions=extensions,
        )
        self.running += 1
        actions.append(StartApp(cycle, scope))
        if cycle.request_ended:
            actions.append(Deliver(cycle, {"type": "http.request", "body": b"", "more_body": False}))

    def _data(self, event: h2.events.DataReceived, actions: list[Action]) -> None:
        sid = event.stream_id
        data = event.data or b""
        length = event.flow_controlled_length or 0
        ended = event.stream_ended is not None
        if not data and not ended:
            self._count("empty DATA", actions)
        ws = self.ws.get(sid)
        if ws is not None:
            if length:
                if ws.paused:
                    ws.unacked += length
                else:
                    self.h2.acknowledge_received_data(length, sid)
            if data:
                actions.extend(self._from_ws(ws, ws.machine.receive_data(bytes(data))))
            if ended:
                self._ws_gone(ws, actions)
            return
        cycle = self.streams.get(sid)
        if cycle is None or not cycle.app or cycle.told or cycle.request_ended:
            # Nobody reads it: its window goes back at once.
            if length:
                self.h2.acknowledge_received_data(length, sid)
            if cycle is not None and ended:
                cycle.request_ended = True
            return
        cycle.request_ended = ended
        cycle.unacked += length
        cycle.body_received += len(data)
        limit = self.max_body_size
        if limit is not None and cycle.body_received > limit:
            self._body_too_large(cycle, actions)
            return
        if data or ended:
            actions.append(Deliver(cycle, {"type": "http.request", "body": bytes(data), "more_body": not ended}))

    def _request_ended(self, sid: int, actions: list[Action]) -> None:
        ws = self.ws.get(sid)
        if ws is not None:
            self._ws_gone(ws, actions)
            return
        cycle = self.streams.get(sid)
        if cycle is None or cycle.request_ended:
            return
        cycle.request_ended = True
        if cycle.app and not cycle.told:
            actions.append(Deliver(cycle, {"type": "http.request", "body": b"", "more_body": False}))

    def _gated(self, head: Head, cycle: StreamCycle, actions: list[Action]) -> bool:
        """The server's gate (health checks, limits) answered the stream itself."""
        if self.gate is None:
            return False
        answer = self.gate(head)
        if answer is None:
            return False
        cycle.app = False
        if answer.why is not None:
            actions.append(
                Log("warning", f"Refused request from {self.client_text}: {answer.why} (answered {answer.status})")
            )
        self._server_answer(cycle, answer.status, answer.text, answer.headers, actions)
        return True

    def _body_too_large(self, cycle: StreamCycle, actions: list[Action]) -> None:
        why = f"request body over the {self.max_body_size} bytes accepted"
        head_sent = cycle.state is State.RESPONSE and cycle.pending_start is None
        cycle.disconnect()
        cycle.gone = True
        self._tell(cycle, actions)
        self._ack(cycle)
        if head_sent or cycle.state is State.COMPLETE:
            actions.append(Log("warning", f"Refused request from {self.client_text}: {why} (reset the stream)"))
            self._reset_stream(cycle, ErrorCodes.CANCEL, actions)
            return
        actions.append(Log("warning", f"Refused request from {self.client_text}: {why} (answered 413)"))
        cycle.pending_start = None
        self._server_answer(cycle, 413, f"Content Too Large: {why}\n", (), actions)

    def _reset(self, event: h2.events.StreamReset, actions: list[Action]) -> None:
        ws = self.ws.get(event.stream_id)
        if ws is not None:
            ws.stream.sent_end = True
            ws.stream.outbox.clear()
            self._ws_gone(ws, actions)
        cycle = self.streams.get(event.stream_id)
        if cycle is None:
            return
        responding = not cycle.sent_end
        cycle.sent_end = True  # nothing more goes out on it
        cycle.outbox.clear()
        if cycle.app:
            self._peer_gone(cycle, actions)
            if cycle.unacked:
                self._ack(cycle)
            if event.remote_reset and responding:
                self.resets += 1
                self._check_resets(actions)
                if self.phase is Phase.CLOSED:
                    return
        self._forget_if_done(cycle, actions)

    # -- responses -------------------------------------------------------------------------
    def _send_head(
        self, cycle: StreamCycle, pending: tuple[int, list[tuple[bytes, bytes]]], whole_length: int | None, end: bool
    ) -> None:
        status, headers = pending
        fields: list[tuple[bytes, bytes]] = [(b":status", b"%d" % status)]
        fields.extend(self.default_headers())
        has_length = False
        for name, value in headers:
            lname = name.lower()
            if not _TOKEN.fullmatch(lname):
                cycle.event(HEAD_REFUSED)
                raise ASGIProtocolError(f"http.response.start: invalid header name {name!r:.80} ({cycle.where})")
            if _BAD_VALUE.search(value):
                cycle.event(HEAD_REFUSED)
                raise ASGIProtocolError(
                    f"http.response.start: invalid value for header {name!r:.80}: {value!r:.80} ({cycle.where})"
                )
            if lname in _CONNECTION_HEADERS:
                continue
            if lname == b"content-length":
                has_length = True
            fields.append((lname, value.strip(b" \t")))
        if status in _NO_BODY:
            cycle.head_only = True
        elif whole_length is not None and not has_length:
            fields.append((b"content-length", b"%d" % whole_length))
        self.h2.send_headers(cycle.stream_id, fields, end_stream=end)
        if end:
            cycle.sent_end = True
            self._response_sent(cycle)

    def _trailers(self, cycle: StreamCycle, message: dict[str, Any]) -> list[Action]:
        mtype = "http.response.trailers"
        if cycle.gone or cycle.state is State.DISCONNECTED:
            raise ClientDisconnected(f"client disconnected ({cycle.where})")
        if cycle.state is not State.COMPLETE:
            raise misuse(TRANSITIONS, cycle.state, mtype, cycle.where)
        if not cycle.want_trailers or cycle.trailers_ready:
            why = "already sent" if cycle.trailers_ready else "not announced by 'trailers': True in http.response.start"
            raise ASGIProtocolError(f"{mtype} not allowed in state COMPLETE: trailers {why} ({cycle.where})")
        headers = check_headers(mtype, message.get("headers", ()), cycle)
        fields = []
        for name, value in headers:
            lname = name.lower()
            if not _TOKEN.fullmatch(lname) or _BAD_VALUE.search(value):
                raise ASGIProtocolError(f"{mtype}: invalid header {name!r:.80}: {value!r:.80} ({cycle.where})")
            if lname not in _CONNECTION_HEADERS:
                fields.append((lname, value.strip(b" \t")))
        cycle.trailers.extend(fields)
        actions: list[Action] = []
        if not message.get("more_trailers", False):
            cycle.trailers_ready = True
            self._pump(cycle, actions)
            self._tell(cycle, actions)
        return self._flush(actions)

    def _pump(self, cycle: StreamCycle, actions: list[Action]) -> None:
        """Send what the windows allow of ``cycle``'s DATA, then its end (END_STREAM on
        the last DATA frame, or the trailers) once everything went."""
        if cycle.sent_end or self.phase is Phase.CLOSED:
            return
        conn = self.h2
        sid = cycle.stream_id
        outbox = cycle.outbox
        while outbox:
            window = conn.local_flow_control_window(sid)
            if window <= 0:
                if cycle.stall_mark is None and self.stall_timeout is not None:
                    cycle.stall_mark = cycle.sent
                    actions.append(SetTimer(f"{_STALL_TIMER}{sid}", self.stall_timeout))
                return
            size = min(window, conn.max_outbound_frame_size, len(outbox))
            chunk = bytes(outbox[:size])
            del outbox[:size]
            cycle.sent += size
            last = not outbox and cycle.end_queued and not cycle.want_trailers
            conn.send_data(sid, chunk, end_stream=last)
            if last:
                cycle.sent_end = True
                self._response_sent(cycle)
                self._forget_if_done(cycle, actions)
                return
        if not cycle.end_queued:
            return
        if cycle.want_trailers:
            if not cycle.trailers_ready:
                return
            conn.send_headers(sid, cycle.trailers, end_stream=True)
        else:
            conn.end_stream(sid)
        cycle.sent_end = True
        self._response_sent(cycle)
        self._forget_if_done(cycle, actions)

    def _response_sent(self, cycle: StreamCycle) -> None:
        """END_STREAM went out: a request still arriving is cut off (RST_STREAM NO_ERROR,
        RFC 9113 section 8.1) and its window given back."""
        self.completed += 1
        if not cycle.request_ended:
            cycle.request_ended = True
            self._rst(cycle.stream_id, ErrorCodes.NO_ERROR)
        if cycle.unacked:
            self._ack(cycle)

    def _window_opened(self, sid: int | None, actions: list[Action]) -> None:
        """A WINDOW_UPDATE (stream 0: the connection's, every stream may go on)."""
        if sid:
            cycle = self.streams.get(sid)
            if cycle is not None and cycle.outbox:
                self._pump(cycle, actions)
            return
        for cycle in list(self.streams.values()):
            if cycle.outbox:
                self._pump(cycle, actions)

    def _server_answer(
        self,
        cycle: StreamCycle,
        status: int,
        text: str,
        headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
        actions: list[Action],
    ) -> None:
        """The server's own response on ``cycle``'s stream (500, 413, 400, a gate's)."""
        if cycle.sent_end or self.phase is Phase.CLOSED:
            return
        body = text.encode()
        fields = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
        cycle.want_trailers = False
        cycle.head_only = cycle.method == b"HEAD"
        self._send_head(cycle, (status, fields), len(body), not body or cycle.head_only)
        if not cycle.sent_end:
            cycle.outbox[:] = body
            cycle.end_queued = True
            self._pump(cycle, actions)
        self._forget_if_done(cycle, actions)

    def _reset_stream(self, cycle: StreamCycle, code: ErrorCodes, actions: list[Action]) -> None:
        if cycle.sent_end or self.phase is Phase.CLOSED:
            return
        cycle.sent_end = True
        cycle.outbox.clear()
        cycle.request_ended = True
        self._rst(cycle.stream_id, code)
        if cycle.unacked:
            self._ack(cycle)

    def _rst(self, sid: int, code: ErrorCodes) -> None:
        """RST_STREAM ``sid``, unless the client already closed it: the events of one read
        are handled after h2 has read all its frames, so a stream opened and reset in the
        same read is closed by the time its request is looked at."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.h2.reset_stream(sid, code)

    def _stalled(self, sid: int) -> list[Action]:
        """The stall timer of stream ``sid``: if nothing went out since it was armed and
        DATA still waits for the window, the stream is reset and its app told (its
        ``send()`` raises ``ClientDisconnected``); if some went out, it waits again."""
        ws = self.ws.get(sid)
        cycle = ws.stream if ws is not None else self.streams.get(sid)
        if cycle is None or cycle.stall_mark is None or self.phase is Phase.CLOSED:
            return []
        mark, cycle.stall_mark = cycle.stall_mark, None
        if not cycle.outbox or cycle.sent_end:
            return []
        actions: list[Action] = []
        if cycle.sent != mark:  # it moved: wait again
            cycle.stall_mark = cycle.sent
            assert self.stall_timeout is not None
            return [SetTimer(f"{_STALL_TIMER}{sid}", self.stall_timeout)]
        actions.append(
            Log(
                "info",
                f"HTTP/2 stream {sid} of {self.client_text} got no flow-control window for "
                f"{self.stall_timeout}s; reset it ({len(cycle.outbox)} bytes unsent)",
            )
        )
        self._reset_stream(cycle, ErrorCodes.CANCEL, actions)
        if ws is not None:
            self._ws_gone(ws, actions)
        elif cycle.app:
            self._peer_gone(cycle, actions)
        self._forget_if_done(cycle, actions)
        return self._flush(actions)

    # -- WebSockets over HTTP/2 (RFC 8441) ----------------------------------------------------
    def _open_websocket(
        self, stream: StreamCycle, target: bytes, headers: list[tuple[bytes, bytes]], actions: list[Action]
    ) -> None:
        """An extended CONNECT: the stream carries a WebSocket, run by the same machine
        (and table) as an HTTP/1.1 upgrade. It is handed the request an HTTP/1.1 client
        would have sent (the upgrade's own fields added: RFC 8441 has none, the stream is
        the upgrade); the app's scope gets the request's own headers and ``http_version``
        "2". Its answer (the 101, or a rejection) is read back and sent as this stream's
        HEADERS; its frames as DATA."""
        assert self.websocket is not None
        sid = stream.stream_id
        upgrade = [*headers, *_UPGRADE_FIELDS]
        machine = self.websocket(UpgradeRequest(b"GET", target, upgrade, b"1.1"), sid)
        answer = h11.Connection(h11.CLIENT)
        host = next((value for name, value in headers if name == b"host"), b"localhost")
        answer.send(h11.Request(method=b"GET", target=target, headers=[(b"host", host), *_UPGRADE_FIELDS[:2]]))
        answer.send(h11.EndOfMessage())
        ws = _WebSocketStream(sid, stream, machine, answer, headers)
        self.ws[sid] = ws
        actions.extend(self._from_ws(ws, machine.start()))

    def from_websocket(self, sid: int, actions: list[Action]) -> list[Action]:
        """What the WebSocket machine of stream ``sid`` returned to its app instance, put
        on the stream (the app's host calls this: see server/connection.py)."""
        ws = self.ws.get(sid)
        if ws is None:  # the stream is gone: only what the app must still be told
            return [a for a in actions if type(a) in (Deliver, Log)]
        return self._flush(self._from_ws(ws, actions))

    def stream_backlog(self, sid: int) -> int:
        """Bytes a WebSocket's stream keeps unsent (no window for them): its app's
        ``send()`` waits while this is over the stream buffer."""
        ws = self.ws.get(sid)
        return len(ws.stream.outbox) if ws is not None and not ws.stream.sent_end else 0

    def websocket_paused(self, sid: int) -> bool:
        """Whether WebSocket stream ``sid``'s window is held back (see :meth:`pause_websocket`)."""
        ws = self.ws.get(sid)
        return ws is not None and ws.paused

    def pause_websocket(self, sid: int, paused: bool) -> list[Action]:
        """Its app's queue is full (or was emptied): the stream's window is given back only
        once it reads again, so the client stops sending, and no other stream waits."""
        ws = self.ws.get(sid)
        if ws is None or ws.paused == paused:
            return []
        ws.paused = paused
        if not paused and ws.unacked and self.phase is not Phase.CLOSED:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(ws.unacked, sid)
            ws.unacked = 0
            return self._flush([])
        return []

    def _from_ws(self, ws: _WebSocketStream, actions: list[Action]) -> list[Action]:
        """The WebSocket machine's actions, as this connection's."""
        out: list[Action] = []
        for action in actions:
            kind = type(action)
            if kind is Write:
                self._ws_write(ws, action.data, out)  # type: ignore[union-attr]
            elif kind is CloseTransport:
                self._ws_end(ws, action.abort, out)  # type: ignore[union-attr]
            elif kind is SetTimer:
                out.append(SetTimer(f"{_WS_TIMER}{ws.sid}:{action.name}", action.delay))  # type: ignore[union-attr]
            elif kind is CancelTimer:
                out.append(CancelTimer(f"{_WS_TIMER}{ws.sid}:{action.name}"))  # type: ignore[union-attr]
            elif kind is StartApp:
                scope = action.scope  # type: ignore[union-attr]
                scope["http_version"] = "2"
                scope["headers"] = list(ws.headers)
                out.append(StartApp(action.cycle, scope, ws.machine, ws.sid))  # type: ignore[union-attr]
            else:
                out.append(action)
        return out

    def _ws_write(self, ws: _WebSocketStream, data: bytes, out: list[Action]) -> None:
        stream = ws.stream
        if stream.sent_end or self.phase is Phase.CLOSED:
            return
        if ws.open:  # frames
            stream.outbox += data
            self._pump(stream, out)
            return
        answer = ws.answer  # the handshake's HTTP/1.1 answer, read back
        answer.receive_data(data)
        while True:
            event = answer.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                self.h2.send_headers(ws.sid, [(b":status", b"200"), *_answer_fields(event.headers)])
                ws.open = True
                rest = bytes(answer.trailing_data[0])
                if rest:
                    stream.outbox += rest
                    self._pump(stream, out)
                return
            if isinstance(event, h11.Response):
                self.h2.send_headers(ws.sid, [(b":status", b"%d" % event.status_code), *_answer_fields(event.headers)])
            elif isinstance(event, h11.Data):
                stream.outbox += event.data
                self._pump(stream, out)
            elif isinstance(event, h11.EndOfMessage):
                stream.end_queued = True
                self._pump(stream, out)
                break

    def _ws_end(self, ws: _WebSocketStream, abort: bool, out: list[Action]) -> None:
        """The WebSocket machine closes its "transport": the stream ends (after what it
        still has to send), or is reset when it aborts."""
        stream = ws.stream
        if stream.sent_end or self.phase is Phase.CLOSED:
            self.ws.pop(ws.sid, None)
            return
        if abort:
            self._reset_stream(stream, ErrorCodes.CANCEL, out)
            self.ws.pop(ws.sid, None)
            self._forget_if_done(stream, out)
            return
        stream.end_queued = True  # after the closing frame, or the rejection's body
        self._pump(stream, out)

    def _ws_gone(self, ws: _WebSocketStream, actions: list[Action]) -> None:
        """The client ended or reset the stream, or the connection ended: the WebSocket's
        peer is gone."""
        if self.ws.pop(ws.sid, None) is None:
            return
        # nothing more is written to a peer that is gone: what its app must be told stays
        actions.extend(a for a in self._from_ws(ws, ws.machine.eof()) if type(a) in (Deliver, Log, CancelTimer))
        stream = ws.stream
        if not stream.sent_end and self.phase is not Phase.CLOSED:
            stream.end_queued = True
            self._pump(stream, actions)
        self._forget_if_done(stream, actions)

    # -- streams and the connection --------------------------------------------------------
    def _ack(self, cycle: StreamCycle) -> None:
        """Give the window of ``cycle``'s delivered bytes back to the client."""
        size, cycle.unacked = cycle.unacked, 0
        if size:
            self.h2.acknowledge_received_data(size, cycle.stream_id)

    def _tell(self, cycle: StreamCycle, actions: list[Action]) -> None:
        """The app gets http.disconnect, once."""
        if cycle.app and not cycle.told:
            cycle.told = True
            actions.append(Deliver(cycle, _DISCONNECT))

    def _peer_gone(self, cycle: StreamCycle, actions: list[Action]) -> None:
        cycle.disconnect()
        cycle.gone = True
        self._tell(cycle, actions)

    def _forget_if_done(self, cycle: StreamCycle, actions: list[Action]) -> None:
        """Drop a stream whose app returned and whose response is sent; the last one gone
        closes a draining connection or starts the idle timer."""
        if not (cycle.sent_end and (cycle.returned or not cycle.app)):
            return
        if self.streams.pop(cycle.stream_id, None) is None or self.streams:
            return
        if self.phase is Phase.DRAINING:
            self.phase = Phase.CLOSED
            actions.append(CloseTransport())
        elif self.phase is Phase.OPEN:
            actions.append(SetTimer(KEEP_ALIVE, self.keep_alive_timeout))

    def _flush(self, actions: list[Action]) -> list[Action]:
        """Write what h2 has to send, before anything that closes."""
        data = self.h2.data_to_send()
        if data:
            close = [a for a in actions if type(a) is CloseTransport]
            if close:
                actions = [a for a in actions if type(a) is not CloseTransport]
                actions.append(Write(data))
                actions.extend(close)
            else:
                actions.append(Write(data))
        return actions

    def _close_all(self, actions: list[Action]) -> None:
        """The connection ends: every app still running is told, and what h2 buffered of
        the peer's frames is let go now (h2's connection is in a reference cycle: left to
        the cycle collector, a flood's unread CONTINUATION frames would outlive it)."""
        self.phase = Phase.CLOSED
        buffer = self.h2.incoming_buffer
        buffer._data = bytearray()  # h2 has no call to drop them
        buffer._headers_buffer = []
        for ws in list(self.ws.values()):
            self._ws_gone(ws, actions)
        for cycle in list(self.streams.values()):
            cycle.sent_end = True
            cycle.outbox.clear()
            if cycle.app:
                self._peer_gone(cycle, actions)
            if cycle.returned or not cycle.app:
                del self.streams[cycle.stream_id]
        actions.append(CancelTimer(KEEP_ALIVE))

    def _protocol_error(self, exc: h2.exceptions.ProtocolError, actions: list[Action]) -> list[Action]:
        code = exc.error_code
        name = code.name if isinstance(code, ErrorCodes) else str(code)
        reason = str(exc) or type(exc).__name__
        return self._abort(f"HTTP/2 protocol error from {self.client_text}: {reason} (sent GOAWAY {name})", actions)

    def _abort(self, message: str, actions: list[Action]) -> list[Action]:
        """h2 has the GOAWAY ready: write it, log ``message``, tell every app, close."""
        actions.append(Log("warning", message))
        data = self.h2.data_to_send()
        if data:
            actions.append(Write(data))
        self._close_all(actions)
        actions.append(CloseTransport())
        return actions

    def _calm(self, why: str, actions: list[Action]) -> None:
        """A flood: GOAWAY ENHANCE_YOUR_CALM, and nothing h2 queued in answer to it (the
        PING and SETTINGS acknowledgements) is written."""
        conn = self.h2
        conn.data_to_send()
        conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.goaway_stream_id)
        self._abort(f"HTTP/2 flood from {self.client_text}: {why} (sent GOAWAY ENHANCE_YOUR_CALM)", actions)

    def _count(self, kind: str, actions: list[Action]) -> None:
        counts = self.flood_counts
        if not counts:
            actions.append(SetTimer(FLOOD_WINDOW, self.flood_window))
        count = counts[kind] = counts.get(kind, 0) + 1
        limit = self.flood_limits[kind]
        if count > limit and self.phase is not Phase.CLOSED:
            self._calm(f"more than {limit} {kind} frames within {self.flood_window}s", actions)

    def _check_resets(self, actions: list[Action]) -> None:
        resets = self.resets
        if resets > self.max_resets and resets > 2 * self.completed and self.phase is not Phase.CLOSED:
            why = f"{resets} streams reset by the client, {self.completed} responses completed"
            self._calm(why, actions)

    def _frame_too_long(self, data: bytes) -> int | None:
        """Follow the frame boundaries of ``data`` (after the preface): the length a frame
        header declares over ``max_frame_size``, if any, before its body arrives."""
        limit = self.max_frame_size
        i = 0
        n = len(data)
        while i < n:
            skip = self._skip
            if skip:
                take = min(skip, n - i)
                self._skip = skip - take
                i += take
                continue
            head = self._frame_head
            need = 9 - len(head)
            head += data[i : i + need]
            i += need
            if len(head) < 9:
                self._frame_head = head
                return None
            self._frame_head = b""
            length = int.from_bytes(head[:3], "big")
            if length > limit:
                return length
            self._skip = length
        return None
