"""One WebSocket connection: wsproto on the wire, :class:`WebSocketCycle` for the app.

Built from the h11 upgrade request. Inputs: :meth:`start`, :meth:`receive_data`,
:meth:`eof`, :meth:`app_send`, :meth:`app_got_disconnect` (the app's ``receive()`` just
returned ``websocket.disconnect``), :meth:`app_misused`, :meth:`app_failed`, :meth:`app_returned`,
:meth:`timer_fired`, :meth:`shutdown`. Outputs: lists of :mod:`.events` actions.

Rules kept here:

- the handshake is checked by wsproto before the app starts, and here for what wsproto
  leaves (HTTP/1.1, one well-formed Sec-WebSocket-Key); a bad one gets the status wsproto
  suggests (400, or 426 with ``Sec-WebSocket-Version: 13``) and the app never runs;
- frames that arrive before the app accepted are held, then fed in order after accept;
- while no extension is in use, :mod:`.frames` reads and writes the plain frames clients
  send nearly always, and hands every other byte to wsproto at frame boundaries; a proof
  (``fast_frames=False`` turns it off for that) shows it changes nothing wsproto would do;
- ping is answered with pong; pong (solicited or not, empty or not) only proves the peer
  alive: neither reaches the app;
- fragmented messages are joined; a message over ``max_size`` closes with 1009;
- a protocol error from the peer closes with the code wsproto names (1002, 1007, ...);
- EOF without a close frame is ``websocket.disconnect`` with 1006;
- keepalive: a ping is sent only after a ping interval with nothing heard from the peer;
  no pong within the ping timeout closes with 1011 and tells the app;
- after sending a close frame the peer has ``close_timeout`` to answer before the
  socket is dropped.
"""

from __future__ import annotations

import enum
from typing import Any

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import LOCAL_ONLY_CLOSE_REASONS, CloseReason
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from ..errors import ASGIProtocolError
from .asgi_websocket import (
    APP_FAILED,
    APP_RETURNED,
    HANDSHAKE_TIMEOUT,
    PING_TIMEOUT,
    SHUTDOWN,
    TOO_BIG,
    State,
    WebSocketCycle,
)
from .deflate import Deflate
from .events import Action, CancelTimer, CloseTransport, Deliver, Log, SetTimer, StartApp, Write
from .frames import BINARY, TEXT, FrameReader, plain_frame
from .frames import CLOSE as CLOSE_FRAME
from .frames import PING as PING_FRAME
from .frames import PONG as PONG_FRAME
from .handshake import Offer, accept_response, check_key, check_version, read_offer
from .machine import Machine
from .request import UpgradeRequest
from .scope import peer, websocket_scope
from .table import bad_field

__all__ = ["WebSocketConnection"]


class Phase(enum.Enum):
    """Where the connection is, on the wire (the app's side is the cycle's State)::

    HANDSHAKE --accept--> OPEN --close handshake done, EOF, failure, timeout--> CLOSED
    HANDSHAKE --rejection, EOF, timeout--> CLOSED
    """

    __hash__ = object.__hash__  # identity, as in asgi_websocket.State

    #: Waiting for the app's answer; what the peer sends is held.
    HANDSHAKE = "HANDSHAKE"
    #: Accepted: frames go to and from wsproto (or .frames).
    OPEN = "OPEN"
    #: The socket is closed or closing: whatever comes is ignored.
    CLOSED = "CLOSED"


_OPEN = Phase.OPEN
_WS_OPEN = ConnectionState.OPEN

HANDSHAKE = "handshake"
PING = "ping"
DEFLATE = "deflate_idle"
PONG = "pong_deadline"
CLOSE = "close_handshake"

ABNORMAL = 1006
#: The close codes wsproto accepts from a peer below 3000 (its CloseReason members), and
#: those it refuses as local-only.
_KNOWN = frozenset(int(code) for code in CloseReason)
_LOCAL_ONLY = frozenset(int(code) for code in LOCAL_ONLY_CLOSE_REASONS)


class _Events(list):  # type: ignore[type-arg]
    """wsproto's queue of a connection's events, as a list: ``Connection`` only appends,
    tests and pops from the left, and rarely holds more than one event, while an empty
    ``deque`` costs 600 bytes more per socket (``tests/unit/protocol/test_websocket.py``
    checks wsproto still keeps it there)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class WebSocketConnection(Machine):
    # A subscription server holds thousands of these: slots, not a dict per socket.
    __slots__ = (
        "_handshake",
        "_out",
        "_pending_denial",
        "awaiting_pong",
        "client",
        "client_text",
        "close_code",
        "close_reason",
        "close_timeout",
        "cycle",
        "default_headers",
        "deflate",
        "deflate_idle",
        "deflate_mem_level",
        "deflate_timer",
        "deflate_window_bits",
        "disconnect_code",
        "draining",
        "extensions",
        "fast_frames",
        "fast_handshake",
        "handshake_timeout",
        "heard",
        "held",
        "max_size",
        "offer",
        "offered_subprotocols",
        "outcome",
        "parts",
        "parts_size",
        "per_message_deflate",
        "phase",
        "ping_interval",
        "ping_timeout",
        "plain_frames",
        "reader",
        "request",
        "root_path",
        "scheme",
        "scope_state",
        "server",
        "ws",
        "wsproto_refused",
    )

    def __init__(
        self,
        request: h11.Request | UpgradeRequest,
        trailing_data: bytes,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        scheme: str = "http",
        root_path: str = "",
        state: dict[str, Any] | None = None,
        max_size: int = 1024 * 1024,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        per_message_deflate: bool = True,
        deflate_window_bits: int = 12,
        deflate_mem_level: int = 5,
        deflate_idle: float | None = 0.0,
        default_headers: Any = list,
        extensions: dict[str, Any] | None = None,
        handshake_timeout: float | None = 10.0,
        fast_frames: bool = True,
        fast_handshake: bool = True,
    ) -> None:
        self.request = request
        self.client = client
        self.server = server
        client_text = peer(client) or "unknown client"
        target = request.target.decode("ascii", "replace")
        self.cycle = WebSocketCycle(f"GET {target} from {client_text}")
        self.client_text = client_text
        self.scheme = scheme
        self.root_path = root_path
        self.scope_state = state
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.per_message_deflate = per_message_deflate
        self.deflate_window_bits = deflate_window_bits
        self.deflate_mem_level = deflate_mem_level
        #: 0: no compression context outlives a message; None: kept for the connection's
        #: life; else dropped after this long with nothing sent (see deflate.py).
        self.deflate_idle = deflate_idle
        #: The permessage-deflate agreed on, if any; and whether its idle timer is armed.
        self.deflate: Deflate | None = None
        self.deflate_timer = False
        self.default_headers = default_headers
        self.extensions = extensions
        #: wsproto's handshake, made when needed (see the handshake property), and what it
        #: refused the request for.
        self._handshake: H11Handshake | None = None
        self.wsproto_refused: RemoteProtocolError | None = None
        #: The handshake request read by .handshake instead of wsproto (off only for the
        #: proof that this changes nothing: tests/unit/protocol/test_handshake.py).
        self.fast_handshake = fast_handshake
        self.offer: Offer | None = None
        self.ws: Connection | None = None
        #: Bytes that came before the app accepted; fed to wsproto after accept.
        self.held = bytearray(trailing_data)
        self.phase = Phase.HANDSHAKE
        #: Parts of a fragmented message being received, and their size.
        self.parts: list[Any] = []
        self.parts_size = 0
        #: Heard from the peer since the last ping tick.
        self.heard = False
        self.awaiting_pong = False
        #: The close code the app's ``websocket.disconnect`` carries.
        self.close_code: int | None = None
        #: The code the app's websocket.disconnect carried (for the access log).
        self.disconnect_code: int | None = None
        self.close_reason = ""
        self.offered_subprotocols: list[str] = []
        #: Plain frames are read and written by :mod:`.frames` while no extension is in
        #: use. Off (``fast_frames=False``) only for the proof that this changes nothing
        #: wsproto would do: tests/unit/protocol/test_frames.py compares the two.
        self.fast_frames = fast_frames
        #: Whole messages are written as one plain frame by .frames, not by wsproto.
        self.plain_frames = False
        #: The drain began during the handshake: close with 1012 once the app accepts.
        self.draining = False
        #: How the handshake ended when not accepted, for the metrics: "rejected" (403),
        #: "denied" (the app's denial response), "unavailable" (503), "failed" (500).
        self.outcome: str | None = None
        #: Reads the peer's bytes at frame boundaries, after an accept with no extension.
        self.reader: FrameReader | None = None
        #: The actions of the input being handled, for the reader's callbacks.
        self._out: list[Action] = []
        self.handshake_timeout = handshake_timeout
        self._pending_denial: tuple[int, list[tuple[bytes, bytes]]] | None = None

    # -- inputs --------------------------------------------------------------------------
    def start(self) -> list[Action]:
        request = self.request
        self.offer = offer = read_offer(request) if self.fast_handshake else None
        try:
            check_version(request)
            if offer is None:
                handshake = self.handshake
                if self.wsproto_refused is not None:
                    raise self.wsproto_refused
                ws_request = next(e for e in handshake.events() if isinstance(e, Request))
                subprotocols = list(ws_request.subprotocols)
            else:
                subprotocols = list(offer.subprotocols)
            check_key(request)
        except RemoteProtocolError as exc:
            hint = exc.event_hint if isinstance(exc.event_hint, RejectConnection) else RejectConnection()
            text = f"{exc}\n".encode()
            data = self.handshake.send(
                RejectConnection(
                    status_code=hint.status_code,
                    headers=[*hint.headers, (b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
                    has_body=True,
                )
            ) + self.handshake.send(RejectData(data=text, body_finished=True))
            self.phase = Phase.CLOSED
            return [
                Log(
                    "warning",
                    f"Rejected WebSocket handshake from {self.client_text}: {exc} (answered {hint.status_code})",
                ),
                Write(data),
                CloseTransport(),
            ]
        self.offered_subprotocols = subprotocols
        scope = websocket_scope(
            target=request.target,
            http_version=request.http_version,
            headers=list(request.headers),
            scheme=self.scheme,
            server=self.server,
            client=self.client,
            root_path=self.root_path,
            subprotocols=self.offered_subprotocols,
            state=self.scope_state,
            extensions=self.extensions,
        )
        actions: list[Action] = [StartApp(self.cycle, scope), Deliver(self.cycle, {"type": "websocket.connect"})]
        if self.handshake_timeout is not None:
            actions.append(SetTimer(HANDSHAKE, self.handshake_timeout))
        return actions

    def receive_data(self, data: bytes) -> list[Action]:
        phase = self.phase
        if phase is not _OPEN:
            if phase is Phase.HANDSHAKE:
                self.held += data
            return []  # after the close handshake (or a failure) whatever comes is ignored
        self.heard = True
        reader = self.reader
        if reader is not None:
            actions: list[Action] = []
            self._out = actions
            reader.feed(data)
            return actions
        ws = self.ws
        assert ws is not None
        ws.receive_data(data)
        return self._events([])

    def eof(self) -> list[Action]:
        actions: list[Action] = []
        self._peer_gone(actions, ABNORMAL, "")
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            actions.append(CloseTransport())
        return actions

    def app_got_disconnect(self, cycle: WebSocketCycle) -> None:
        self.cycle.disconnect_delivered = True

    def app_send(self, cycle: WebSocketCycle, message: Any) -> list[Action]:
        """Check the message against the table, validate its fields, then move the state
        and act. A refused message leaves the state as it was."""
        if (
            cycle.state is State.CONNECTED
            and type(message) is dict
            and message.get("type") == "websocket.send"
            and not cycle.peer_gone
        ):
            return self._send_message(message)  # the table's (CONNECTED, send) entry, directly
        result = cycle.check(message)
        if result is None:
            return []
        mtype, old, new = result
        if mtype == "websocket.send":
            return self._send_message(message)
        if mtype == "websocket.accept":
            subprotocol, headers = cycle.accept_fields(message, self.offered_subprotocols)
            cycle.commit(new)
            accepted = self._accept(subprotocol, headers)
            if self.draining:  # the drain began during the handshake
                accepted.extend(self.force_shutdown())
            return accepted
        if mtype == "websocket.close":
            if old is State.CONNECTED:
                code, reason = cycle.close_fields(message)
                cycle.commit(new)
                return self._close(code, reason)
            cycle.commit(new)
            if old is State.HANDSHAKE:
                self.outcome = "rejected"
                return self._reject(403, [], b"", more=False)
            return []
        if mtype == "websocket.http.response.start":
            self._pending_denial = cycle.denial_start_fields(message)
            cycle.commit(new)
            self.outcome = "denied"
            return []
        # websocket.http.response.body
        body = cycle.denial_body(message)
        cycle.commit(new)
        more = new is State.RESPONSE
        pending = self._pending_denial
        if pending is not None:
            self._pending_denial = None
            status, headers = pending
            return self._reject(status, headers, body, more=more)
        data = self.handshake.send(RejectData(data=body, body_finished=not more))
        actions: list[Action] = [Write(data)]
        if not more:
            self._finish_denial(actions)
        return actions

    def app_misused(self, cycle: WebSocketCycle) -> list[Action]:
        """The app's ``send()`` raised ``ASGIProtocolError``: as for a failure."""
        return self.app_failed(cycle)

    def app_failed(self, cycle: WebSocketCycle | None = None) -> list[Action]:
        """The app misused ASGI or raised: 500 before accept, close 1011 after."""
        state = self.cycle.state
        if self.cycle.peer_gone or not self.cycle.event(APP_FAILED):
            return []
        if state is State.HANDSHAKE:
            self.outcome = "failed"
            return self._reject(500, [], b"Internal Server Error\n", more=False)
        if state is State.RESPONSE:
            self.outcome = "failed"
            if self._pending_denial is not None:  # nothing written yet: a clean 500
                self._pending_denial = None
                return self._reject(500, [], b"Internal Server Error\n", more=False)
            return self._drop()
        return self._close(1011, "Internal Server Error")  # was CONNECTED

    def app_returned(self, cycle: WebSocketCycle, exc: BaseException | None) -> list[Action]:
        state = self.cycle.state
        actions: list[Action] = []
        if exc is not None:
            actions.extend(self.app_failed())
        elif self.cycle.peer_gone:
            pass
        elif state is State.HANDSHAKE:
            actions.append(
                Log("error", f"ASGI app returned without accepting or closing ({self.cycle.where}); sent 500")
            )
            actions.extend(self.app_failed())
        elif state is State.RESPONSE:
            actions.append(
                Log("error", f"ASGI app returned without completing the denial response ({self.cycle.where})")
            )
            actions.extend(self.app_failed())
        elif self.cycle.event(APP_RETURNED):
            # Returning after the accept is a clean end: close normally, as if the app said so.
            actions.extend(self._close(1000, ""))
        if self.cycle.state is State.CLOSED and self.phase is not Phase.CLOSED:
            actions.extend(self._drop())
        return actions

    def timer_fired(self, name: str) -> list[Action]:
        ws = self.ws
        if name == HANDSHAKE:
            if self.phase is Phase.CLOSED or not self.cycle.event(HANDSHAKE_TIMEOUT):
                return []
            actions: list[Action] = [
                Log(
                    "warning",
                    f"App did not accept or reject within {self.handshake_timeout}s; answered 503 ({self.cycle.where})",
                )
            ]
            self.outcome = "unavailable"
            actions.extend(self._reject(503, [], b"Service Unavailable: the application did not answer\n", more=False))
            return actions
        if self.phase is not Phase.OPEN or ws is None:
            return []
        if name == PING:
            if ws.state is not ConnectionState.OPEN or self.ping_interval is None:
                return []
            actions = [SetTimer(PING, self.ping_interval)]
            if self.heard:
                self.heard = False
            elif not self.awaiting_pong:
                self.awaiting_pong = True
                if self.plain_frames:  # the bytes wsproto writes for Ping(payload)
                    actions.append(Write(plain_frame(PING_FRAME, b"channelserver")))
                else:
                    actions.append(Write(ws.send(Ping(payload=b"channelserver"))))
                if self.ping_timeout is not None:
                    actions.append(SetTimer(PONG, self.ping_timeout))
            return actions
        if name == PONG and self.awaiting_pong:
            actions = [Log("info", f"No pong within {self.ping_timeout}s; closing ({self.cycle.where})")]
            if self.cycle.event(PING_TIMEOUT):
                actions.extend(self._close(1011, "keepalive ping timeout"))
            self._peer_gone(actions, 1011, "keepalive ping timeout")
            # a peer that does not answer may not read either: do not wait to flush to it
            actions.extend(self._drop(abort=True))
            return actions
        if name == DEFLATE:
            self.deflate_timer = False
            deflate = self.deflate
            if deflate is not None and not deflate.drop_idle() and deflate.contexts and self.deflate_idle:
                self.deflate_timer = True  # still in use: look again after another idle period
                return [SetTimer(DEFLATE, self.deflate_idle)]
            return []
        if name == CLOSE:
            actions = []
            self._peer_gone(actions, self.close_code or ABNORMAL, self.close_reason)
            actions.extend(self._drop(abort=True))
            return actions
        return []

    def shutdown(self) -> list[Action]:
        """Close with 1012 and tell the app. A handshake in flight is let finish, as an
        HTTP request in flight is: if the app accepts, the socket is closed with 1012 at
        once (a code clients reconnect on), if it rejects, its answer goes out."""
        if self.cycle.state is State.HANDSHAKE:
            self.draining = True
            return []
        return self.force_shutdown()

    def force_shutdown(self) -> list[Action]:
        """Close with 1012 now; a connection still in its handshake is refused with 503."""
        state = self.cycle.state
        if self.phase is Phase.CLOSED or not self.cycle.event(SHUTDOWN):
            return []
        if state is State.CONNECTED:
            actions = self._close(1012, "server restarting")
            self._peer_gone(actions, 1012, "server restarting")
            return actions
        self.outcome = "unavailable"
        return self._reject(503, [], b"Service Unavailable: server shutting down\n", more=False)

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def handshake(self) -> H11Handshake:
        """wsproto's handshake, given the request on first use: it reads the requests
        :func:`.handshake.read_offer` leaves to it, and writes every refusal and denial
        response. A request it refuses is recorded in ``wsproto_refused`` (it is then
        ready to write the refusal)."""
        handshake = self._handshake
        if handshake is None:
            handshake = self._handshake = H11Handshake(ConnectionType.SERVER)
            request = self.request
            headers = list(request.headers)
            if not any(name == b"host" for name, _ in headers):
                # Only HTTP/1.0 may lack Host (h11 requires it of HTTP/1.1), and such a
                # request is refused (_check_version): wsproto's own h11 needs a Host to
                # read the request it writes the refusal to.
                headers.append((b"host", b""))
            try:
                handshake.initiate_upgrade_connection(headers, request.target)
            except RemoteProtocolError as exc:
                self.wsproto_refused = exc
            except UnicodeError as exc:  # wsproto decodes Host as IDNA, offers as ASCII
                self.wsproto_refused = RemoteProtocolError(
                    f"a handshake header is not ASCII, or Host not IDNA: {exc}", event_hint=RejectConnection()
                )
        return handshake

    @property
    def accepted(self) -> bool:
        return self.ws is not None

    def access_facts(self) -> tuple[bool, int | None]:
        return self.ws is not None, self.disconnect_code or self.close_code

    # -- internals -----------------------------------------------------------------------
    def _accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> list[Action]:
        extensions: list[Extension] = self._extensions()
        extra_headers = [*self.default_headers(), *headers]
        offer = self.offer
        data = accept_response(offer, subprotocol, extensions, extra_headers) if offer is not None else None
        if data is not None:
            ws: Connection | None = Connection(ConnectionType.SERVER, extensions)
            ws._events = _Events()  # type: ignore[union-attr]
        else:  # wsproto writes it (or refuses a header), with extensions not yet agreed on
            extensions = self._extensions()
            handshake = self.handshake
            data = handshake.send(
                AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=extra_headers)
            )
            ws = handshake.connection
        assert ws is not None
        self.ws = ws
        if extensions and extensions[0].enabled():
            self.deflate = extensions[0]  # type: ignore[assignment]
        # With no extension in use a whole message is one plain frame: .frames reads and
        # writes those instead of wsproto's general path.
        if self.fast_frames and not any(ext.enabled() for ext in extensions):
            self.plain_frames = True
            self.reader = FrameReader(self.max_size, self)
        actions: list[Action] = [Write(data), CancelTimer(HANDSHAKE)]
        if self.ping_interval is not None:
            actions.append(SetTimer(PING, self.ping_interval))
        if self.phase is Phase.CLOSED:  # the peer left before the answer
            return actions
        self.phase = Phase.OPEN
        if self.held:
            held = bytes(self.held)
            self.held = bytearray()
            self.heard = True
            if self.reader is not None:
                self._out = actions
                self.reader.feed(held)
            else:
                ws.receive_data(held)
                self._events(actions)
        return actions

    def _extensions(self) -> list[Extension]:
        if not self.per_message_deflate:
            return []
        keep = self.deflate_idle != 0
        return [Deflate(self.deflate_window_bits, self.deflate_mem_level, keep)]

    def _compressed(self, data: bytes) -> list[Action]:
        """A message written through the deflate extension: arm its idle timer."""
        if self.deflate_timer or not self.deflate_idle:
            return [Write(data)]
        self.deflate_timer = True
        return [Write(data), SetTimer(DEFLATE, self.deflate_idle)]

    def _reject(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, more: bool) -> list[Action]:
        if self.phase is Phase.CLOSED:
            return []
        headers = [*self.default_headers(), *headers]
        if not more and not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers):
            headers.append((b"content-length", b"%d" % len(body)))
        data = self.handshake.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        data += self.handshake.send(RejectData(data=body, body_finished=not more))
        actions: list[Action] = [Write(data), CancelTimer(HANDSHAKE)]
        if not more:
            self._finish_denial(actions)
        return actions

    def _finish_denial(self, actions: list[Action]) -> None:
        # The app is told the connection is gone; its later sends raise once it was told.
        self._peer_gone(actions, ABNORMAL, "")
        actions.extend(self._drop())

    def _send_message(self, message: Any) -> list[Action]:
        ws = self.ws
        assert ws is not None
        text = message.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise bad_field("websocket.send", "text", "a str", text, self.cycle.where)
            if self.phase is not _OPEN or ws.state is not _WS_OPEN:
                return []
            if self.plain_frames:
                return [Write(plain_frame(TEXT, text.encode()))]
            return self._compressed(ws.send(TextMessage(data=text)))
        data = message.get("bytes")
        if data is None:
            raise ASGIProtocolError(f"websocket.send needs 'bytes' or 'text', got neither ({self.cycle.where})")
        if not isinstance(data, (bytes, bytearray)):
            raise bad_field("websocket.send", "bytes", "bytes", data, self.cycle.where)
        if self.phase is not _OPEN or ws.state is not _WS_OPEN:
            return []
        if self.plain_frames:
            return [Write(plain_frame(BINARY, bytes(data)))]
        return self._compressed(ws.send(BytesMessage(data=bytes(data))))

    def _close(self, code: int, reason: str) -> list[Action]:
        """Send our close frame; the peer answers or ``close_timeout`` drops the socket."""
        ws = self.ws
        if ws is None or self.phase is Phase.CLOSED or ws.state is not ConnectionState.OPEN:
            return []
        self.close_code, self.close_reason = code, reason
        return [
            Write(ws.send(CloseConnection(code=code, reason=reason))),
            CancelTimer(PING),
            SetTimer(CLOSE, self.close_timeout),
        ]

    def _peer_gone(self, actions: list[Action], code: int, reason: str) -> None:
        cycle = self.cycle
        if not cycle.gone():
            return
        self.disconnect_code = code
        actions.append(Deliver(cycle, {"type": "websocket.disconnect", "code": code, "reason": reason}))

    def _drop(self, abort: bool = False) -> list[Action]:
        if self.phase is Phase.CLOSED:
            return []
        self.phase = Phase.CLOSED
        return [
            CancelTimer(HANDSHAKE),
            CancelTimer(PING),
            CancelTimer(PONG),
            CancelTimer(CLOSE),
            CloseTransport(abort=abort),
        ]

    def frame_message(self, payload: str | bytes) -> bool:
        """A whole frame the reader read: the app gets it as wsproto's would reach it
        (``_events``), or the reader hands it to wsproto while we are closing."""
        cycle = self.cycle
        if cycle.state is not State.CONNECTED:
            return False
        key = "text" if type(payload) is str else "bytes"
        self._out.append(Deliver(cycle, {"type": "websocket.receive", key: payload}))
        return True

    def frame_close(self, payload: bytes) -> bool:
        """A whole close frame the reader read: while open, read its code and reason as
        wsproto's ``_process_close`` does, and act as ``_events`` does on the
        ``CloseConnection`` wsproto would give (echo it, tell the app, close). False (the
        frame goes to wsproto) for what wsproto would fail or read in another state."""
        ws = self.ws
        assert ws is not None
        if ws.state is not ConnectionState.OPEN:
            return False
        if not payload:
            code, reason = 1005, ""
        else:
            if len(payload) == 1:
                return False
            code = (payload[0] << 8) | payload[1]
            if not 1000 <= code <= 4999 or code in _LOCAL_ONLY or (code <= 2999 and code not in _KNOWN):
                return False
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                return False
        # wsproto echoes the code and reason, which are these bytes again (1005: no code).
        actions = self._out
        actions.append(Write(plain_frame(CLOSE_FRAME, payload)))
        self._peer_gone(actions, code, reason)
        actions.extend(self._drop())
        return True

    def frame_control(self, first: int, payload: bytes) -> bool:
        """A whole ping or pong the reader read: act as ``_events`` does on wsproto's
        ``Ping`` (answer with the same payload, while open) or ``Pong`` event."""
        if first == PONG_FRAME:
            self.awaiting_pong = False
            self._out.append(CancelTimer(PONG))
            return True
        ws = self.ws
        assert ws is not None
        if ws.state is not ConnectionState.OPEN:
            return False
        # the bytes wsproto writes for event.response(): a final unmasked pong, same payload
        self._out.append(Write(plain_frame(PONG_FRAME, payload)))
        return True

    def frame_to_wsproto(self, data: bytes) -> bool:
        """The reader hands wsproto bytes: act on its events; True once closed."""
        ws = self.ws
        assert ws is not None
        ws.receive_data(data)
        self._events(self._out)
        return self.phase is Phase.CLOSED

    def _events(self, actions: list[Action]) -> list[Action]:
        ws = self.ws
        assert ws is not None
        cycle = self.cycle
        for event in ws.events():
            etype = type(event)
            if etype is TextMessage or etype is BytesMessage:
                if cycle.state is not State.CONNECTED:
                    continue  # we are closing: RFC 6455 lets us discard what still comes
                data = event.data  # type: ignore[attr-defined]
                if event.message_finished and not self.parts:  # type: ignore[attr-defined]
                    if len(data) > self.max_size:
                        self._too_big(actions)
                        continue
                    key = "text" if etype is TextMessage else "bytes"
                    actions.append(Deliver(cycle, {"type": "websocket.receive", key: data}))
                    continue
                self.parts.append(data)
                self.parts_size += len(data)
                if self.parts_size > self.max_size:
                    self._too_big(actions)
                    continue
                if event.message_finished:  # type: ignore[attr-defined]
                    joined = ("" if etype is TextMessage else b"").join(self.parts)
                    self.parts = []
                    self.parts_size = 0
                    key = "text" if etype is TextMessage else "bytes"
                    actions.append(Deliver(cycle, {"type": "websocket.receive", key: joined}))
            elif etype is Ping:
                if ws.state is ConnectionState.OPEN:
                    actions.append(Write(ws.send(event.response())))  # type: ignore[attr-defined]
            elif etype is Pong:
                self.awaiting_pong = False
                actions.append(CancelTimer(PONG))
            elif etype is CloseConnection:
                code: int = int(event.code)  # type: ignore[attr-defined]  # an IntEnum from wsproto; apps get an int
                reason: str = event.reason or ""  # type: ignore[attr-defined]
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    # The peer started the close: echo it, then drop the socket.
                    actions.append(Write(ws.send(event.response())))  # type: ignore[attr-defined]
                elif ws.state is ConnectionState.OPEN:
                    # wsproto found a protocol error (bad opcode, RSV bit, UTF-8, ...) and
                    # names the close code: fail the connection with it.
                    actions.append(Write(ws.send(CloseConnection(code=code, reason=reason))))
                    actions.append(
                        Log("info", f"WebSocket protocol error from peer, closed {code}: {reason} ({cycle.where})")
                    )
                self._peer_gone(actions, code, reason)
                actions.extend(self._drop())
                break
        return actions

    def _too_big(self, actions: list[Action]) -> None:
        self.parts = []
        self.parts_size = 0
        reason = f"message larger than {self.max_size} bytes"
        if self.cycle.event(TOO_BIG):
            actions.extend(self._close(1009, reason))
        self._peer_gone(actions, 1009, reason)
