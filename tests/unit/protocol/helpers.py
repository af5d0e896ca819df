"""A fake link between a real client library and our sans-IO machines.

Shaped like h11's ``tests/helpers.py`` ``ConnectionPair``: the client side is the real
thing (``h11.Connection(h11.CLIENT)``, ``wsproto.WSConnection(ConnectionType.CLIENT)``),
the server side is :class:`~channelserver.protocol.http11.HTTPConnection` (and the
:class:`~channelserver.protocol.websocket.WebSocketConnection` it upgrades to). Between
them, :class:`Link` does what ``server/connection.py`` does with the actions, minus
asyncio: ``Write`` bytes are kept for the client to parse, ``Deliver`` messages are kept
per cycle (the app's inbox), ``StartApp``/``SetTimer``/``CancelTimer``/``CloseTransport``/
``Log``/``Upgrade`` are recorded. No sockets, no event loop, no clock: a timer fires when
the test calls :meth:`Link.fire`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h11
import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import Event as WSEvent
from wsproto.events import RejectConnection, RejectData
from wsproto.events import Request as WSRequest

from channelserver.protocol.events import (
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
from channelserver.protocol.http11 import HTTPConnection
from channelserver.protocol.websocket import WebSocketConnection

CLIENT = ("127.0.0.1", 53122)
SERVER = ("127.0.0.1", 8000)
HOST = "example.com"


@dataclass
class Response:
    """One HTTP response as the real h11 client parsed it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    informational: list[int] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lowercase), or None; several are joined by ', '."""
        values = [v for n, v in self.headers if n == name]
        return b", ".join(values) if values else None


class Link:
    """Executes a machine's actions and records them, like the asyncio layer would.

    ``machine`` is the HTTP machine until an ``Upgrade`` action swaps in the WebSocket
    machine, built with ``ws_options`` (as ``ConnectionProtocol._upgrade`` does).
    """

    def __init__(self, *, ws_options: dict[str, Any] | None = None, **http_options: Any) -> None:
        self.machine: Any = HTTPConnection(client=CLIENT, server=SERVER, **http_options)
        self.ws_options = {"ping_interval": None, **(ws_options or {})}
        #: Every action, in the order the machines returned them.
        self.actions: list[Action] = []
        #: Everything written to the peer.
        self.wire = bytearray()
        self.started: list[StartApp] = []
        self.inboxes: dict[int, list[dict[str, Any]]] = {}
        #: All messages ever delivered, per cycle (the inbox pops, this does not).
        self.delivered_log: dict[int, list[dict[str, Any]]] = {}
        #: Timers currently armed: name -> delay.
        self.timers: dict[str, float] = {}
        self.closes = 0
        self.logs: list[Log] = []
        self.upgrades: list[Upgrade] = []
        self.run(self.machine.start())

    # -- executing actions -------------------------------------------------------------
    def run(self, actions: Iterable[Action]) -> list[Action]:
        actions = list(actions)
        for action in actions:
            self.actions.append(action)
            if isinstance(action, Write):
                assert not self.closes, f"write after CloseTransport: {action.data!r:.200}"
                self.wire += action.data
            elif isinstance(action, Deliver):
                key = id(action.cycle)
                self.inboxes.setdefault(key, []).append(action.message)
                self.delivered_log.setdefault(key, []).append(action.message)
            elif isinstance(action, StartApp):
                self.started.append(action)
            elif isinstance(action, SetTimer):
                self.timers[action.name] = action.delay
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.name, None)
            elif isinstance(action, CloseTransport):
                self.closes += 1
            elif isinstance(action, Log):
                self.logs.append(action)
            elif isinstance(action, Upgrade):
                self.upgrades.append(action)
                http = self.machine
                options = {
                    "scheme": http.scheme,
                    "root_path": http.root_path,
                    "state": http.scope_state,
                    **self.ws_options,
                }
                self.machine = WebSocketConnection(
                    action.request, action.trailing_data, client=CLIENT, server=SERVER, **options
                )
                self.run(self.machine.start())
            else:  # pragma: no cover - a new action kind must be added here
                raise AssertionError(f"unknown action {action!r}")
        return actions

    # -- inputs, as the asyncio layer would give them --------------------------------------
    def feed(self, data: bytes) -> list[Action]:
        return self.run(self.machine.receive_data(data))

    def feed_bytewise(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        for i in range(len(data)):
            actions += self.feed(data[i : i + 1])
        return actions

    def eof(self) -> list[Action]:
        return self.run(self.machine.eof())

    def app_send(self, cycle: Any, message: dict[str, Any]) -> list[Action]:
        return self.run(self.machine.app_send(cycle, message))

    def app_returned(self, cycle: Any, exc: BaseException | None = None) -> list[Action]:
        return self.run(self.machine.app_returned(cycle, exc))

    def app_failed(self, cycle: Any) -> list[Action]:
        return self.run(self.machine.app_failed(cycle))

    def app_wants_body(self, cycle: Any) -> list[Action]:
        return self.run(self.machine.app_wants_body(cycle))

    def fire(self, name: str) -> list[Action]:
        """Timer ``name`` is due (the test is the clock)."""
        self.timers.pop(name, None)
        return self.run(self.machine.timer_fired(name))

    def shutdown(self) -> list[Action]:
        return self.run(self.machine.shutdown())

    def force_shutdown(self) -> list[Action]:
        return self.run(self.machine.force_shutdown())

    # -- the app's view ------------------------------------------------------------------
    @property
    def cycle(self) -> Any:
        """The cycle of the most recent app instance."""
        assert self.started, "no app was started"
        return self.started[-1].cycle

    @property
    def scope(self) -> dict[str, Any]:
        assert self.started, "no app was started"
        return self.started[-1].scope

    def inbox(self, cycle: Any = None) -> list[dict[str, Any]]:
        """Messages queued for ``cycle`` and not yet received (a live list)."""
        return self.inboxes.setdefault(id(cycle if cycle is not None else self.cycle), [])

    def delivered(self, cycle: Any = None) -> list[dict[str, Any]]:
        """Every message ever delivered to ``cycle``."""
        return list(self.delivered_log.get(id(cycle if cycle is not None else self.cycle), []))

    def receive(self, cycle: Any = None) -> dict[str, Any] | None:
        """What the app's ``receive()`` returns now, or None if it would wait. Like
        ``AppInstance.receive``: an empty inbox asks for the body (100-continue) and a
        disconnect is reported back to the machine."""
        cycle = cycle if cycle is not None else self.cycle
        inbox = self.inbox(cycle)
        if not inbox:
            self.app_wants_body(cycle)
            if not inbox:
                return None
        message = inbox.pop(0)
        if message["type"] in ("http.disconnect", "websocket.disconnect"):
            self.machine.app_got_disconnect(cycle)
        return message

    def warnings(self) -> list[str]:
        return [log.message for log in self.logs if log.level == "warning"]

    def errors(self) -> list[str]:
        return [log.message for log in self.logs if log.level in ("error", "critical")]

    def kinds(self, actions: Iterable[Action]) -> list[str]:
        return [type(a).__name__ for a in actions]


class HTTPPair(Link):
    """A real h11 client talking to our HTTP machine."""

    def __init__(self, **http_options: Any) -> None:
        super().__init__(**http_options)
        self.client = h11.Connection(h11.CLIENT)
        self._read = 0
        self._client_eof = False

    def send(self, *events: Any) -> list[Action]:
        """The client sends these h11 events; the bytes go to the machine in one feed."""
        data = b"".join(self.client.send(e) or b"" for e in events)
        return self.feed(data)

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> list[Action]:
        """A whole request. With a body and no framing header, a content-length is added."""
        hdrs = [("Host", HOST), *headers]
        names = {n.lower() for n, _ in hdrs}
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            hdrs.append(("Content-Length", str(len(body))))
        events: list[Any] = [h11.Request(method=method, target=target, headers=hdrs)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        return self.send(*events)

    def client_events(self) -> list[Any]:
        """Feed the bytes written since last time to the client; return its events. Once
        the machine closed the transport, the client sees EOF after the bytes."""
        new = bytes(self.wire[self._read :])
        self._read = len(self.wire)
        if new:
            self.client.receive_data(new)
        if self.closes and not self._client_eof:
            self._client_eof = True
            self.client.receive_data(b"")
        events = []
        while True:
            event = self.client.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            events.append(event)
            if type(event) is h11.ConnectionClosed:
                break
        return events

    def response(self) -> Response:
        """The next whole response the client parsed (it must be complete)."""
        return collect(self.client_events())[0]


def collect(events: Iterable[Any], *, partial: bool = False) -> list[Response]:
    """Group h11 client events into responses. An incomplete last one is an error,
    or left out with ``partial``."""
    responses: list[Response] = []
    informational: list[int] = []
    current: Response | None = None
    for event in events:
        if type(event) is h11.InformationalResponse:
            informational.append(event.status_code)
        elif type(event) is h11.Response:
            current = Response(event.status_code, list(event.headers), b"", informational)
            informational = []
        elif type(event) is h11.Data:
            assert current is not None
            current.body += event.data
        elif type(event) is h11.EndOfMessage:
            assert current is not None
            responses.append(current)
            current = None
    assert partial or current is None, f"incomplete response: {current}"
    return responses


def read_responses(data: bytes, methods: Iterable[bytes] = (b"GET",), *, eof: bool = True) -> list[Response]:
    """Parse server bytes answering requests the test wrote by hand, with a real h11
    client that is told only the methods (HEAD has no body): one response per method,
    in order, answered only as far as ``data`` goes."""
    client = h11.Connection(h11.CLIENT)
    responses: list[Response] = []
    client.receive_data(data)
    if eof:
        client.receive_data(b"")
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", HOST)]))
        client.send(h11.EndOfMessage())
        events = []
        while True:
            try:
                event = client.next_event()
            except h11.RemoteProtocolError:
                break  # the server closed before (or in the middle of) this response
            if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
                break
            events.append(event)
            if type(event) is h11.EndOfMessage:
                break
        got = collect(events, partial=True)
        if not got:
            break
        responses.extend(got)
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
        else:
            break
    return responses


def request_bytes(
    method: str = "GET", target: str = "/", headers: Iterable[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    """A well-formed request as h11 writes it (content-length framing)."""
    client = h11.Connection(h11.CLIENT)
    hdrs = [("Host", HOST), *headers]
    if body:
        hdrs.append(("Content-Length", str(len(body))))
    data = client.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
    if body:
        data += client.send(h11.Data(data=body)) or b""
    return data + (client.send(h11.EndOfMessage()) or b"")


class WSPair(Link):
    """A real wsproto client: it upgrades through our HTTP machine, then talks WebSocket."""

    def __init__(self, *, ws_options: dict[str, Any] | None = None, **http_options: Any) -> None:
        super().__init__(ws_options=ws_options, **http_options)
        self.client = wsproto.WSConnection(ConnectionType.CLIENT)
        self._read = 0
        self._client_eof = False

    def connect(
        self,
        target: str = "/ws/",
        *,
        subprotocols: list[str] | None = None,
        extensions: list[Any] | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        then: bytes = b"",
    ) -> list[Action]:
        """The client's opening handshake, followed by ``then`` (frames sent early)."""
        data = self.client.send(
            WSRequest(
                host=HOST,
                target=target,
                subprotocols=subprotocols or [],
                extensions=extensions or [],
                extra_headers=extra_headers or [],
            )
        )
        return self.feed(data + then)

    def send(self, event: WSEvent) -> list[Action]:
        """The client sends one wsproto event."""
        return self.feed(self.client.send(event))

    def client_events(self, *, eof: bool = False) -> list[WSEvent]:
        """Feed the bytes written since last time to the client; return its events.
        ``eof`` also tells it the transport closed (when the machine closed it)."""
        new = bytes(self.wire[self._read :])
        self._read = len(self.wire)
        if new:
            self.client.receive_data(new)
        if eof and self.closes and not self._client_eof:
            self._client_eof = True
            self.client.receive_data(None)
        return list(self.client.events())

    def accept(self, **fields: Any) -> list[Action]:
        """Connect and have the app accept; the client's events are consumed."""
        self.connect()
        assert self.receive() == {"type": "websocket.connect"}
        actions = self.app_send(self.cycle, {"type": "websocket.accept", **fields})
        events = self.client_events()
        assert [type(e).__name__ for e in events] == ["AcceptConnection"], events
        return actions


@dataclass
class Rejection:
    """A refused WebSocket handshake as the real wsproto client parsed it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    finished: bool

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n.lower() == name]
        return b", ".join(values) if values else None


def rejection(events: list[WSEvent]) -> Rejection:
    """Join the client's ``RejectConnection`` and ``RejectData`` events into one."""
    assert events and isinstance(events[0], RejectConnection), events
    assert all(isinstance(e, RejectData) for e in events[1:]), events
    head = events[0]
    body = b"".join(e.data for e in events[1:])  # type: ignore[attr-defined]
    finished = bool(events[1:]) and events[-1].body_finished  # type: ignore[attr-defined]
    return Rejection(head.status_code, list(head.headers), body, finished)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """One WebSocket frame built by hand (RFC 6455 section 5.2), for frames no client
    library will send: unmasked, reserved opcodes, RSV bits, fragmented control frames."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        head = bytes([first, (0x80 if mask else 0) | length])
    elif length < 65536:
        head = bytes([first, (0x80 if mask else 0) | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, (0x80 if mask else 0) | 127]) + length.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason
