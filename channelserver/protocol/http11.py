"""One HTTP/1.1 connection: h11 on the wire, one :class:`HTTPCycle` per request.

Requests are parsed by h11, except a read that is one whole plain head (no body, nothing
after it), which :func:`.request.read_plain_head` reads with h11's grammar and rules;
responses are written by :mod:`.response` with h11's rules.

Inputs: :meth:`receive_data` (peer bytes), :meth:`eof` (peer gone), :meth:`app_send`,
:meth:`app_misused`, :meth:`app_failed`, :meth:`app_returned`, :meth:`timer_fired`, :meth:`app_wants_body`
(the app awaits ``receive()``: time to send ``100 Continue``), :meth:`shutdown`.
Outputs: lists of :mod:`.events` actions.

Rules kept here:

- requests are answered one at a time, in order; a pipelined request is parsed only after
  the response before it is complete (h11 pauses), so it is answered in order;
- keep-alive: after a complete response the next cycle starts unless either side asked
  to close; an idle connection is closed after ``keep_alive_timeout``;
- ``Expect: 100-continue`` is answered when the app first asks for the body;
- a WebSocket upgrade request is handed over as :class:`Upgrade` with the bytes after it;
- a request h11 cannot parse gets the status h11 suggests (400, 431, ...) and a close;
- HEAD responses carry no body; a whole response sent in one body message gets a
  ``content-length`` when the app did not set one;
- a message the app's ``send()`` refuses has no effect: a 500 answers only an app that
  sent nothing valid; a head the app committed stands (an app that stops after it gets it
  written, then the connection closed, as its body is incomplete).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import h11

from ..errors import ASGIProtocolError, ClientDisconnected
from .asgi_http import APP_FAILED, HEAD_REFUSED, HTTPCycle, State
from .events import (
    Action,
    CancelTimer,
    CloseTransport,
    Deliver,
    Log,
    SetTimer,
    StartApp,
    Upgrade,
    Write,
)
from .headcheck import HeadCheck, error_class
from .machine import Machine
from .request import Head, UpgradeRequest, read_head, read_plain_head
from .response import PHRASES, REASONS, BodyWriter, ResponseError, plain_response, write_head
from .scope import http_scope, peer
from .table import check_headers

__all__ = ["HTTPConnection", "ServerAnswer"]


class ServerAnswer(NamedTuple):
    """A request the server answers itself, before any app: its health path, or a limit
    (a WebSocket handshake over ``ws_max_connections``, say). The connection closes after
    it."""

    status: int
    text: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: A warning to log (a refusal), or None (a health answer).
    why: str | None = None


KEEP_ALIVE = "keep_alive"
BODY = "body_read"

_DISCONNECT = {"type": "http.disconnect"}


def _h2c_settings(head: Head) -> bytes | None:
    """The ``HTTP2-Settings`` of a request that asks to continue in HTTP/2 and can (no
    body: the upgrade happens before a body would be read), else None."""
    if (
        head.upgrade is None
        or b"h2c" not in [token.strip() for token in head.upgrade.lower().split(b",")]
        or head.chunked
        or head.content_length not in (None, b"0")
        or head.http_version != b"1.1"
    ):
        return None
    settings = [value for name, value in head.headers if name == b"http2-settings"]
    tokens = {
        token.strip() for name, value in head.headers if name == b"connection" for token in value.lower().split(b",")
    }
    if len(settings) != 1 or b"upgrade" not in tokens or b"http2-settings" not in tokens:
        return None
    return settings[0]


#: The ASGI extensions every request's scope names: the server reads and sends the file
#: of a pathsend (as body parts, see server/app.py) and writes the 103 of an early hint
#: (to HTTP/1.1 clients; an HTTP/1.0 client gets none).
_EXTENSIONS: dict[str, Any] = {
    "http.response.pathsend": {},
    "http.response.early_hint": {},
    "http.response.trailers": {},
}
#: A trailer field's name (a token, lowercase as ASGI's) and what its value may not hold.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Phase(enum.Enum):
    """Where the connection is: reading a request, writing its response, both, neither.

    ::

        IDLE --head--> BODY --body read--> HANDLING --head written--> RESPONDING
                        |                                                 |
                        +--head written--> BODY_RESPONDING --body read----+
        RESPONDING/HANDLING --response complete, keep-alive--> IDLE
        any --close, EOF, upgrade (the WebSocket machine takes over)--> CLOSED
    """

    __hash__ = object.__hash__  # identity, as in asgi_http.State

    #: No request in hand: a head may be arriving (the keep-alive timer runs).
    IDLE = "IDLE"
    #: A request's body is arriving; nothing of the response is written yet.
    BODY = "BODY"
    #: The body is still arriving and the response is being written.
    BODY_RESPONDING = "BODY_RESPONDING"
    #: The request was read whole (nothing more is read until its response is complete);
    #: nothing of the response is written yet.
    HANDLING = "HANDLING"
    #: The request was read whole; the response is being written.
    RESPONDING = "RESPONDING"
    #: Closed, or handed to the WebSocket machine: inputs are ignored.
    CLOSED = "CLOSED"


# The phases by name, looked up once (the machine reads them on every request).
P_IDLE, P_BODY, P_BODY_RESPONDING = Phase.IDLE, Phase.BODY, Phase.BODY_RESPONDING
P_HANDLING, P_RESPONDING, P_CLOSED = Phase.HANDLING, Phase.RESPONDING, Phase.CLOSED
_READING = frozenset({P_BODY, P_BODY_RESPONDING})
_RESPONDING = frozenset({P_BODY_RESPONDING, P_RESPONDING})
_READ = frozenset({P_HANDLING, P_RESPONDING})


class HTTPConnection(Machine):
    """The HTTP/1.1 side of one TCP connection."""

    def __init__(
        self,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        scheme: str = "http",
        root_path: str = "",
        state: dict[str, Any] | None = None,
        keep_alive_timeout: float = 5.0,
        max_incomplete_event_size: int = 16384,
        default_headers: Callable[[], bytes] = bytes,
        extensions: Callable[[], dict[str, Any]] | None = None,
        max_headers: int = 100,
        max_body_size: int | None = None,
        body_read_timeout: float | None = None,
        fast_heads: bool = True,
        draining: bool = False,
        gate: Callable[[Head], ServerAnswer | None] | None = None,
        h2c: bool = False,
    ) -> None:
        """``h2c``: a bodiless request asking ``Upgrade: h2c`` (with one ``HTTP2-Settings``)
        turns the connection into HTTP/2 (RFC 9113 section 3.1's cleartext upgrade), the
        request its stream 1; else such a request is served as HTTP/1.1."""
        self.h2c = h2c
        #: The h11 connection reading the current request; made when bytes go to h11 (None
        #: while no bytes did: a plain head may be read without it).
        self.h11: h11.Connection | None = None
        #: read_plain_head reads plain request heads (off only to compare with h11 alone).
        self.fast_heads = fast_heads
        self.max_incomplete_event_size = max_incomplete_event_size
        #: What refuses a head before h11 reads it (see headcheck.py).
        self.head_check = HeadCheck()
        self.client = client
        self.server = server
        self.client_text = peer(client) or "unknown client"
        self.scheme = scheme
        self.root_path = root_path
        self.scope_state = state
        self.keep_alive_timeout = keep_alive_timeout
        self.default_headers = default_headers
        self.extensions = extensions
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.body_read_timeout = body_read_timeout
        #: Body bytes received for the current request.
        self.body_received = 0
        self.requests_started = 0
        #: The cycle whose request h11 is reading (or whose response is being written).
        self.cycle: HTTPCycle | None = None
        #: The current request's method, and whether it lets the connection stay open.
        self.method = b""
        self.http10 = False
        self.keep_alive = True
        #: Frames the current response's body; set once its head is written.
        self.writer: BodyWriter | None = None
        #: The current response announced ``"trailers": True``: its body ends with the
        #: ``http.response.trailers`` (chunked), which are gathered here until the last.
        self.trailers: list[bytes] | None = None
        self.phase = P_IDLE
        #: The server drains (:meth:`shutdown`): requests are answered with
        #: ``connection: close``.
        self.draining = draining
        #: Sees each request head before any app does; what it answers, the server sends.
        self.gate = gate

    @property
    def closed(self) -> bool:
        return self.phase is P_CLOSED

    @property
    def h11_unfed(self) -> bool:
        """No bytes were given to h11 since the last request: a plain head may be read
        without it."""
        return self.h11 is None

    # -- inputs --------------------------------------------------------------------------
    def start(self) -> list[Action]:
        """The connection was made."""
        return [SetTimer(KEEP_ALIVE, self.keep_alive_timeout)]

    def receive_data(self, data: bytes) -> list[Action]:
        if self.phase is P_CLOSED:
            return []
        if self.cycle is None:  # a request head is (or may be) arriving
            if self.h11 is None and self.fast_heads and len(data) <= self.max_incomplete_event_size:
                head = read_plain_head(data)
                if head is not None:
                    actions: list[Action] = []
                    self._request(head, actions)
                    return actions
            error = self.head_check.error(data, self.h11)
            if error is not None:
                return self._bad_request(error, [])
        h11conn = self.h11
        if h11conn is None:
            h11conn = self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_incomplete_event_size)
        h11conn.receive_data(data)
        return self._next_events([])

    def eof(self) -> list[Action]:
        """The peer closed its side or the transport was lost."""
        actions: list[Action] = []
        cycle = self.cycle
        if cycle is not None and cycle.disconnect():
            actions.append(Deliver(cycle, _DISCONNECT))
        if self.phase is not P_CLOSED:
            self.phase = P_CLOSED
            actions.append(CloseTransport())
        return actions

    def app_wants_body(self, cycle: HTTPCycle) -> list[Action]:
        h11conn = self.h11  # a request with a body is read by h11
        if cycle is self.cycle and self.phase is P_BODY and h11conn and h11conn.they_are_waiting_for_100_continue:
            return [Write(h11conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")]
        return []

    def app_send(self, cycle: HTTPCycle, message: Any) -> list[Action]:
        """Raises ``ASGIProtocolError`` on misuse, ``ClientDisconnected`` once the peer left.
        A refused message has no effect: the cycle stays where it was."""
        if type(message) is dict and message.get("type") == "http.response.trailers":
            return self._trailers(cycle, message)
        what, value = cycle.on_app_message(message)
        if what == "start":
            self.trailers = [] if message.get("trailers", False) else None
            return []
        if what == "pathsend":
            return []
        if what == "early_hint":
            if not value or self.http10 or cycle is not self.cycle:  # HTTP/1.0 clients get no 1xx
                return []
            head = b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"link: %s\r\n" % link for link in value) + b"\r\n"
            return [Write(head)]
        body, more, new_state = value
        head = b""
        pending = cycle.pending_start
        keep_alive = self.keep_alive
        trailers = self.trailers
        if pending is not None:
            cycle.pending_start = None
            # With trailers to come the body is chunked: no content-length of its own.
            head = self._send_head(cycle, pending, None if more or trailers is not None else len(body))
        writer = self.writer
        data = b""
        if writer is not None and (body or not more):
            try:
                if more or (trailers is not None and writer.chunked):
                    data = writer.data(body)  # the trailers end the chunked body
                else:
                    data = writer.last(body)
            except ResponseError as exc:
                # Refused: the body part has no effect (the cycle did not move), and a head
                # that was to go with it is held back again (the app may still send a body
                # that fits it).
                if pending is not None:
                    cycle.pending_start = pending
                    self.writer = None
                    self.phase = P_BODY if self.phase is P_BODY_RESPONDING else P_HANDLING
                    self.keep_alive = keep_alive
                short = ""
                if not more and writer.length is not None and len(body) < writer.length:
                    short = ": the body is shorter than the content-length header says"
                raise ASGIProtocolError(f"http.response.body: {exc}{short} ({cycle.where})") from None
        if new_state is not cycle.state:  # the last body part: COMPLETE
            cycle.commit(new_state)
        if not more and trailers is not None:
            return [Write(head + data)] if head or data else []  # the trailers complete it
        if not more:
            actions: list[Action] = [Write(head + data if head else data), Deliver(cycle, _DISCONNECT)]
            self._response_complete(actions)
            return actions
        if head or data:
            return [Write(head + data if head else data)]
        return []

    def _trailers(self, cycle: HTTPCycle, message: dict[str, Any]) -> list[Action]:
        """``http.response.trailers``, after the last body part of a response that
        announced them: written after the last chunk. A body not chunked (the app set a
        content-length, or the response has none) ends as it is: the trailers are dropped,
        as a recipient may drop them (RFC 9110 section 6.5.1)."""
        mtype = "http.response.trailers"
        if cycle.state is State.DISCONNECTED:
            raise ClientDisconnected(f"client disconnected ({cycle.where})")
        trailers = self.trailers
        if cycle.state is not State.COMPLETE or trailers is None or cycle is not self.cycle:
            why = (
                "not announced by 'trailers': True in http.response.start"
                if trailers is None
                else "expected after the last http.response.body"
            )
            raise ASGIProtocolError(f"{mtype} not allowed in state {cycle.state.value}: trailers {why} ({cycle.where})")
        for name, value in check_headers(mtype, message.get("headers", ()), cycle):
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
                raise ASGIProtocolError(f"{mtype}: invalid trailer {name!r:.80}: {value!r:.80} ({cycle.where})")
            trailers.append(b"%s: %s\r\n" % (name, value.strip(b" \t")))
        if message.get("more_trailers", False):
            return []
        self.trailers = None
        writer = self.writer
        end = b"0\r\n" + b"".join(trailers) + b"\r\n" if writer is not None and writer.chunked else b""
        actions: list[Action] = [Write(end), Deliver(cycle, _DISCONNECT)]
        self._response_complete(actions)
        return actions

    def flush_head(self, cycle: HTTPCycle) -> list[Action]:
        """The app started a response and went on to wait for something else: send the
        head now (a streaming response's client must not wait for the first body part)."""
        pending = cycle.pending_start
        if pending is None or cycle.state is not State.RESPONSE or cycle is not self.cycle:
            return []
        cycle.pending_start = None
        return [Write(self._send_head(cycle, pending, None))]

    def app_misused(self, cycle: HTTPCycle) -> list[Action]:
        """The app's ``send()`` raised ``ASGIProtocolError``. The refused message had no
        effect: once a valid head is committed (the cycle is in RESPONSE, its head written
        or held back for the first body part), the response stands and the app may go on
        with its body. Before that, nothing valid was sent: 500."""
        if cycle.state is State.RESPONSE:
            return []
        return self.app_failed(cycle)

    def app_failed(self, cycle: HTTPCycle) -> list[Action]:
        """The app raised or misused ASGI with nothing valid sent, or returned without
        completing its response. No head committed: 500. A committed head stands: if it
        was still held back it is written now, then the connection closes (the response
        is incomplete; a client reading a chunked or sized body sees it cut short)."""
        state = cycle.state
        if not cycle.event(APP_FAILED):
            return []
        if state is State.RESPONSE:
            pending = cycle.pending_start
            if pending is None or cycle is not self.cycle:
                return self._close()
            cycle.pending_start = None
            try:
                head = self._send_head(cycle, pending, None)
            except ASGIProtocolError as exc:  # the head cannot be written: nothing valid was sent
                return [Log("error", f"ASGI protocol error: {exc}"), *self._internal_error(cycle)]
            return [Write(head), *self._close()]
        return self._internal_error(cycle)

    def _internal_error(self, cycle: HTTPCycle) -> list[Action]:
        cycle.pending_start = None
        if cycle is not self.cycle or self.phase in _RESPONDING:
            return []
        actions: list[Action] = [Write(self._error_bytes(500, "Internal Server Error\n"))]
        actions.append(Deliver(cycle, _DISCONNECT))
        self._response_complete(actions)
        return actions

    def app_returned(self, cycle: HTTPCycle, exc: BaseException | None) -> list[Action]:
        """The app instance of ``cycle`` returned (``exc`` None) or raised ``exc``."""
        state = cycle.state
        if state is State.COMPLETE and self.trailers is not None and cycle is self.cycle:
            # It announced trailers and returned (or failed) without them: the chunked body
            # was not ended, so the client must not take it as whole.
            self.trailers = None
            text = "returned without sending the trailers it announced; closed the connection"
            return [Log("error", f"ASGI app {text} ({cycle.where})"), *self._close()]
        if state is not State.REQUEST and state is not State.RESPONSE:
            return []
        if exc is None:
            if state is State.REQUEST:
                text = "returned without starting a response; sent 500"
            else:
                text = "returned without completing the response; closed the connection"
            return [Log("error", f"ASGI app {text} ({cycle.where})"), *self.app_failed(cycle)]
        return self.app_failed(cycle)

    def timer_fired(self, name: str) -> list[Action]:
        phase = self.phase
        if name == KEEP_ALIVE and phase is P_IDLE:
            return self._close()
        if name == BODY and phase in _READING:
            # The body stopped arriving: the slow-body form of slowloris.
            why = f"request body stalled for {self.body_read_timeout}s"
            actions: list[Action] = [Log("warning", f"Closed request from {self.client_text}: {why} (answered 408)")]
            cycle = self.cycle
            if cycle is not None and cycle.disconnect():
                actions.append(Deliver(cycle, _DISCONNECT))
            if phase is P_BODY:
                actions.append(Write(self._error_bytes(408, f"Request Timeout: {why}\n")))
            self.cycle = None
            actions.extend(self._close())
            return actions
        return []

    def drain_begins(self) -> list[Action]:
        self.draining = True
        return []

    def shutdown(self) -> list[Action]:
        """Server shutdown: close an idle keep-alive connection, else finish the current
        response with ``connection: close``.

        A connection that has not yet had a request (just accepted, or with part of a head
        buffered) is not idle: its request may be on the wire. It gets a short timer
        instead, and its request is answered with ``connection: close``."""
        self.draining = True
        if self.phase is P_IDLE:
            buffered = self.h11 is not None and self.h11.trailing_data[0]
            if self.requests_started and not buffered and not self.head_check.tail:
                return self._close()
            return [SetTimer(KEEP_ALIVE, min(self.keep_alive_timeout, 1.0))]
        return []

    # -- internals -----------------------------------------------------------------------
    def _close(self) -> list[Action]:
        if self.phase is P_CLOSED:
            return []
        self.phase = P_CLOSED
        return [CloseTransport()]

    def _send_head(
        self,
        cycle: HTTPCycle,
        pending: tuple[int, list[tuple[bytes, bytes]]],
        whole_length: int | None,
    ) -> bytes:
        status, headers = pending
        try:
            head, self.writer, self.keep_alive = write_head(
                status,
                REASONS.get(status, b""),
                headers,
                method=self.method,
                http10=self.http10,
                keep_alive=self.keep_alive and not self.draining,
                server_headers=self.default_headers(),
                whole_length=whole_length,
            )
        except ResponseError as exc:
            cycle.event(HEAD_REFUSED)
            raise ASGIProtocolError(f"http.response.start: {exc} ({cycle.where})") from None
        self.phase = P_BODY_RESPONDING if self.phase is P_BODY else P_RESPONDING
        return head

    def _response_complete(self, actions: list[Action]) -> None:
        old = self.h11
        self.cycle = None
        self.writer = None
        if self.keep_alive and self.phase in _READ and not self.draining:
            self.phase = P_IDLE
            actions.append(SetTimer(KEEP_ALIVE, self.keep_alive_timeout))
            if old is None:
                return  # read_plain_head read the request; h11 has not been used
            # The next request is read by a fresh h11 connection given the bytes after this
            # one (h11 parses requests here, the responses are written by write_head), made
            # when bytes come.
            trailing, closed = old.trailing_data
            self.h11 = None
            if trailing or closed:
                self.h11 = new = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_incomplete_event_size)
                # a pipelined request's head (the new h11 connection has not been fed)
                error = self.head_check.error(bytes(trailing), None) if trailing else None
                if error is not None:
                    self._bad_request(error, actions)
                    return
                new.receive_data(bytes(trailing))
                if closed:
                    new.receive_data(b"")
                self._next_events(actions)
        else:
            actions.extend(self._close())

    def _error_bytes(self, status: int, text: str) -> bytes:
        """The server's own answer (500, 408, 413, 400, ...): it says ``Connection: close``,
        and the connection closes after it."""
        self.keep_alive = False
        return plain_response(status, text)

    def _bad_request(self, exc: h11.RemoteProtocolError, actions: list[Action]) -> list[Action]:
        status = exc.error_status_hint
        reason = str(exc) or "malformed request"
        # The log line has the detail, request bytes (repr-escaped) included; the answer
        # names the class of error only: it never echoes the request back.
        actions.append(Log("warning", f"Invalid HTTP request from {self.client_text}: {reason} (answered {status})"))
        cycle = self.cycle
        if cycle is not None and cycle.disconnect():
            actions.append(Deliver(cycle, _DISCONNECT))
        if self.phase not in _RESPONDING:  # no response written yet
            text = f"{PHRASES.get(status, 'Error')}: {error_class(reason)}\n"
            actions.append(Write(self._error_bytes(status, text)))
        self.cycle = None
        actions.extend(self._close())
        return actions

    def _next_events(self, actions: list[Action]) -> list[Action]:
        if self.phase in _READ:
            return actions  # bytes after the request wait in h11 until the response is done
        h11conn = self.h11
        assert h11conn is not None  # called once bytes went to h11
        body: list[bytes] = []
        while True:
            try:
                event = h11conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._bad_request(exc, actions)
            etype = type(event)
            if etype is h11.Data:
                chunk = event.data  # type: ignore[union-attr]
                self.body_received += len(chunk)
                if self.max_body_size is not None and self.body_received > self.max_body_size:
                    return self._body_too_large(actions)
                body.append(chunk)
            elif etype is h11.EndOfMessage:
                cycle = self.cycle
                self.phase = P_RESPONDING if self.phase is P_BODY_RESPONDING else P_HANDLING
                if cycle is not None:
                    data = b"".join(body) if len(body) != 1 else bytes(body[0])
                    actions.append(Deliver(cycle, {"type": "http.request", "body": data, "more_body": False}))
                # Nothing more is read until the response is complete (h11 would say
                # PAUSED); _response_complete reads on.
                return actions
            elif etype is h11.Request:
                request: h11.Request = event  # type: ignore[assignment]
                head = read_head(request)
                if not self._request(head, actions, request):
                    return actions
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                break
            elif etype is h11.ConnectionClosed:
                actions.extend(self.eof())
                break
        if self.body_read_timeout is not None and self.phase in _READING:
            # (re)armed while the body is unfinished: the deadline moves with each read
            actions.append(SetTimer(BODY, self.body_read_timeout))
        if body and self.cycle is not None:
            data = b"".join(body) if len(body) != 1 else bytes(body[0])
            actions.append(Deliver(self.cycle, {"type": "http.request", "body": data, "more_body": True}))
        return actions

    def _request(self, head: Head, actions: list[Action], request: h11.Request | None = None) -> bool:
        """A request head was read (by h11, ``request``, or by read_plain_head): start its
        cycle and app. True if its body is to be read next."""
        # A head was read: the head checks start afresh with the next one.
        check = self.head_check
        if check.tail or check.line_read:  # a head that came in pieces was checked
            check.reset()
        refusal = self._refuse_request(head)
        if refusal is not None:
            self._refuse(*refusal, actions)
            return False
        if self.gate is not None:
            answer = self.gate(head)
            if answer is not None:
                self._answer(head, answer, actions)
                return False
        method = head.method
        self.body_received = 0
        self.requests_started += 1
        self.method = method
        self.http10 = http10 = head.http_version == b"1.0"
        self.keep_alive = not http10 and not head.close
        if head.upgrade is not None and self.h2c and request is not None:
            settings = _h2c_settings(head)
            if settings is not None:
                actions.append(CancelTimer(KEEP_ALIVE))
                self._upgrade(request, actions, settings)
                return False
        if head.websocket and method == b"GET":
            actions.append(CancelTimer(KEEP_ALIVE))
            if request is not None:
                self._upgrade(request, actions)
            else:  # read_plain_head read it, and nothing came after it
                self.phase = P_CLOSED  # the WebSocket machine takes over
                actions.append(Upgrade(UpgradeRequest(method, head.target, head.headers, head.http_version), b""))
            return False
        cycle = HTTPCycle(method, head.target, self.client_text)
        self.cycle = cycle
        scope = http_scope(
            method=method,
            target=head.target,
            http_version=head.http_version,
            headers=head.headers,
            scheme=self.scheme,
            server=self.server,
            client=self.client,
            root_path=self.root_path,
            state=self.scope_state,
            extensions={**_EXTENSIONS, **self.extensions()} if self.extensions else dict(_EXTENSIONS),
        )
        actions.append(CancelTimer(KEEP_ALIVE))
        actions.append(StartApp(cycle, scope))
        length = head.content_length
        if not head.chunked and (length is None or not int(length)):
            # No body (RFC 9112 6.3): the request ends with its head. h11's EndOfMessage
            # would consume nothing; the next request is read from the bytes after the
            # head by a fresh h11 connection.
            self.phase = P_HANDLING
            actions.append(Deliver(cycle, {"type": "http.request", "body": b"", "more_body": False}))
            return False
        self.phase = P_BODY
        return True

    def _refuse_request(self, head: Head) -> tuple[int, str] | None:
        """A reason to answer before the app sees the request: (status, why)."""
        if head.http_version not in (b"1.1", b"1.0"):
            return 505, f"HTTP/{head.http_version.decode('ascii', 'replace')} is not served; use HTTP/1.1"
        if len(head.headers) > self.max_headers:
            return 431, f"{len(head.headers)} header fields, more than the {self.max_headers} accepted"
        # h11 bounds a head that arrives in pieces; one that arrives whole is measured here.
        if head.size > self.max_incomplete_event_size:
            return 431, f"request head of {head.size} bytes, more than the {self.max_incomplete_event_size} accepted"
        if head.chunked and head.content_length is not None:
            # RFC 9112 section 6.1: a request smuggling vector; refuse it rather than guess.
            return 400, "both Content-Length and Transfer-Encoding"
        length = head.content_length
        if length is not None and self.max_body_size is not None and int(length) > self.max_body_size:
            return 413, f"content-length {int(length)} is over the {self.max_body_size} bytes accepted"
        return None

    def _refuse(self, status: int, why: str, actions: list[Action]) -> list[Action]:
        actions.append(Log("warning", f"Refused request from {self.client_text}: {why} (answered {status})"))
        actions.append(Write(self._error_bytes(status, f"{PHRASES[status]}: {why}\n")))
        actions.extend(self._close())
        return actions

    def _answer(self, head: Head, answer: ServerAnswer, actions: list[Action]) -> None:
        status = answer.status
        if answer.why is not None:
            actions.append(Log("warning", f"Refused request from {self.client_text}: {answer.why} (answered {status})"))
        body = answer.text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        headers.extend(answer.headers)
        data, writer, _ = write_head(
            status,
            REASONS.get(status, b""),
            headers,
            method=head.method,
            http10=head.http_version == b"1.0",
            keep_alive=False,
            server_headers=self.default_headers(),
        )
        self.keep_alive = False
        actions.append(CancelTimer(KEEP_ALIVE))
        actions.append(Write(data + body if writer is not None else data))
        actions.extend(self._close())

    def refuse_connection(self, status: int, why: str) -> list[Action]:
        """Answer ``status`` to whatever comes and close (too many connections, shutting down)."""
        return self._refuse(status, why, [])

    def _body_too_large(self, actions: list[Action]) -> list[Action]:
        why = f"request body over the {self.max_body_size} bytes accepted"
        actions.append(Log("warning", f"Refused request from {self.client_text}: {why} (answered 413)"))
        cycle = self.cycle
        if cycle is not None:
            if cycle.disconnect():
                actions.append(Deliver(cycle, _DISCONNECT))
            if self.phase is P_BODY:  # nothing of the response written yet
                actions.append(Write(self._error_bytes(413, f"Content Too Large: {why}\n")))
        self.cycle = None
        actions.extend(self._close())
        return actions

    def _upgrade(self, request: h11.Request, actions: list[Action], h2c_settings: bytes | None = None) -> list[Action]:
        h11conn = self.h11
        assert h11conn is not None  # it read the request
        # A GET has no body: the next events are EndOfMessage, then PAUSED while the
        # switch is proposed. Whatever the client sent after the request is ours.
        while True:
            try:
                event = h11conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._bad_request(exc, actions)
            if event is h11.PAUSED or event is h11.NEED_DATA:
                break
        trailing, _closed = h11conn.trailing_data
        self.phase = P_CLOSED  # this machine is done; the WebSocket (or HTTP/2) machine takes over
        actions.append(Upgrade(request, bytes(trailing), h2c_settings))
        return actions
