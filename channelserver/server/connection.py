"""The asyncio side of one TCP connection.

:class:`ConnectionProtocol` owns one pure machine (HTTP first, WebSocket after an
upgrade), feeds it socket events and executes the actions it returns: writes, closes,
app instances, deliveries, timers and log lines. It holds no protocol rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..protocol.asgi_http import State as HTTPState
from ..protocol.events import (
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
from ..protocol.http2 import HTTP2Connection, is_preface
from ..protocol.http11 import HTTPConnection
from ..protocol.machine import Machine
from ..protocol.proxy import apply_proxy_headers
from ..protocol.websocket import WebSocketConnection
from .app import AppInstance
from .drain import DRAIN_EXTENSION, ConnectionDrain
from .log import ERROR, access_line
from .metrics import Metrics
from .state import ServerState
from .timers import Entry

__all__ = ["ConnectionProtocol", "StreamHost"]

#: Bytes a WebSocket's HTTP/2 stream may keep unsent before its app's send() waits.
STREAM_BACKLOG = 65536
#: HTTP/2 frames handed to h2 per event-loop turn (a few milliseconds of its work at most;
#: a read holds more only when its frames are small: a browser's first flight, a flood).
H2_FRAMES_PER_TURN = 100

error_log = logging.getLogger(ERROR)

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _nothing() -> None:
    pass


class ConnectionProtocol(asyncio.Protocol):
    """One connection: the asyncio callbacks in, the machine's actions out. It is the
    :class:`~.app.Host` of the connection's app instances."""

    # One per socket: slots, not a dict per connection.
    __slots__ = (
        "client",
        "deadlines",
        "depth",
        "drain_waiters",
        "h2",
        "h2_unread",
        "heard_waiters",
        "instances",
        "loop",
        "lost",
        "machine",
        "reading_paused",
        "scheduled",
        "scheme",
        "server",
        "sniffed",
        "state",
        "stream_drains",
        "stream_sockets",
        "timers",
        "to_start",
        "transport",
        "write_paused",
        "ws_drain",
    )

    def __init__(self, state: ServerState, scheme: str = "http") -> None:
        self.state = state
        self.loop = state.loop
        self.timers = state.timers
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        #: Set by connection_made: HTTP first, WebSocket after an upgrade.
        self.machine: Machine
        #: The app instance of each cycle the machine handed out in ``StartApp``.
        self.instances: dict[Any, AppInstance] = {}
        #: timer name -> deadline; the worker's TimerHeap holds the entries.
        self.deadlines: dict[str, float] = {}
        #: timer name -> its live TimerHeap entry (see timers.py).
        self.scheduled: dict[str, Entry] = {}
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.reading_paused = False
        self.lost = False
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.ws_drain: ConnectionDrain | None = None
        #: Nesting of run(): app instances start after the actions of the outermost run,
        #: eagerly (see tasks.py), but not from a run() nested inside an eager first step,
        #: so first steps never nest more than one deep.
        self.depth = 0
        self.to_start: list[AppInstance] = []
        #: HTTP/2 (ALPN h2, or the connection preface in cleartext).
        self.h2 = False
        #: Cleartext with HTTP/2 allowed: the first bytes, until they tell whether they
        #: are the HTTP/2 preface (None once decided).
        self.sniffed: bytes | None = None
        #: HTTP/2 apps whose ``send()`` waits for the client's window to open.
        self.heard_waiters: list[asyncio.Future[None]] = []
        #: The drain of each WebSocket carried by an HTTP/2 stream, by stream id.
        self.stream_drains: dict[int, ConnectionDrain] = {}
        #: The WebSocket machine of each HTTP/2 stream that carries one, until it is counted
        #: (its app returned; or, for a handshake refused before any app, the connection
        #: ended): open WebSockets and, with ``--metrics``, how each ended.
        self.stream_sockets: dict[int, WebSocketConnection] = {}
        #: HTTP/2 bytes read but not yet given to the machine (reading is paused until
        #: they are): it takes ``H2_FRAMES_PER_TURN`` frames per event-loop turn.
        self.h2_unread = b""

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        if isinstance(sock, tuple) and len(sock) >= 2:
            self.server = (str(sock[0]), int(sock[1]))
        elif isinstance(sock, str) and sock:
            self.server = (sock, None)  # type: ignore[assignment]  # ASGI: [path, None] on a unix socket
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        config = self.state.config
        self.machine = http = HTTPConnection(
            client=self.client,
            server=self.server,
            scheme=self.scheme,
            root_path=config.root_path,
            state=self.state.lifespan_state,
            keep_alive_timeout=config.keep_alive_timeout,
            max_incomplete_event_size=config.h11_max_incomplete_event_size,
            default_headers=self.state.default_headers,
            extensions=self.state.http_extensions_for_request,
            max_headers=config.max_headers,
            max_body_size=config.max_body_size,
            body_read_timeout=config.body_read_timeout,
            draining=self.state.draining,
            gate=self.state.gate,
            h2c=config.http != "1" and self.scheme == "http",
        )
        metrics = self.state.metrics
        if metrics is not None:
            metrics.connections += 1
        limit = config.max_connections
        if limit is not None and len(self.state.connections) > limit:
            if metrics is not None:
                metrics.max_connections_refused += 1
            self.run(http.refuse_connection(503, f"more than {limit} open connections"))
            return
        if self.scheme == "https":
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._start_h2()
                return
            if config.http == "2":
                self.run(http.refuse_connection(505, "HTTP/1.1 (the server speaks HTTP/2 only)"))
                return
        elif config.http != "1":
            self.sniffed = b""
        self.run(http.start())

    def data_received(self, data: bytes) -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.bytes_in += len(data)
        if self.sniffed is not None:
            data = self.sniffed + data
            preface = is_preface(data)
            if preface is None:  # a prefix of the preface so far
                self.sniffed = data
                return
            self.sniffed = None
            if preface:
                self._start_h2()
            elif self.state.config.http == "2":
                self.run(self.machine.refuse_connection(505, "HTTP/1.1 (the server speaks HTTP/2 only)"))  # type: ignore[attr-defined]
        if self.h2:
            if self.h2_unread:  # read while paused (a TLS record already decrypted): in order
                self.h2_unread += data
                return
            self._read_h2(data)
        else:
            self.run(self.machine.receive_data(data))
        if self.heard_waiters:
            self._release(self.heard_waiters)

    def _read_h2(self, data: bytes) -> None:
        """Give the HTTP/2 machine at most ``H2_FRAMES_PER_TURN`` frames of ``data``; the
        rest waits for the next event-loop turn, with reading paused."""
        machine: HTTP2Connection = self.machine  # type: ignore[assignment]
        end = machine.frames_end(data, H2_FRAMES_PER_TURN)
        if end < len(data):
            if not self.h2_unread and self.transport is not None and not self.lost:
                self.transport.pause_reading()
                self.loop.call_soon(self._read_h2_more)
            self.h2_unread = data[end:]
            data = data[:end]
        self.run(machine.receive_data(data))

    def _read_h2_more(self) -> None:
        data, self.h2_unread = self.h2_unread, b""
        if self.lost or not data:
            return
        self._read_h2(data)
        if self.heard_waiters:
            self._release(self.heard_waiters)
        if not self.h2_unread and not self.lost and self.transport is not None:
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        if self.h2_unread:  # the frames before the end come first
            data, self.h2_unread = self.h2_unread, b""
            self.run(self.machine.receive_data(data))
        self.run(self.machine.eof())
        if self.heard_waiters:
            self._release(self.heard_waiters)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.run(self.machine.eof())
        self.timers.forget(self)
        self.deadlines.clear()
        for instance in list(self.instances.values()):
            instance.connection_gone()
        self._release_drain_waiters()
        self._release(self.heard_waiters)
        if self.ws_drain is not None:
            self.ws_drain.on_idle = _nothing  # the drain no longer refers back to us
            self._websocket_gone(self.machine)  # type: ignore[arg-type]
        if self.stream_sockets:  # HTTP/2 streams' handshakes no app ever answered
            running = {id(instance.machine) for instance in self.instances.values()}
            for sid, machine in list(self.stream_sockets.items()):
                if id(machine) not in running:
                    del self.stream_sockets[sid]
                    self._websocket_gone(machine, stream=True)
        self.state.connection_closed(self)

    def _websocket_gone(self, machine: WebSocketConnection, stream: bool = False) -> None:
        """One WebSocket (this connection's, or an HTTP/2 stream's) is no longer open."""
        self.state.ws_open -= 1
        self.state.ws_streams -= stream
        if self.state.metrics is not None:
            self._count_websocket(self.state.metrics, machine)

    def _count_websocket(self, metrics: Metrics, machine: WebSocketConnection) -> None:
        accepted, code = machine.access_facts()
        if not accepted:
            metrics.websocket_gone(machine.outcome or "failed", None, None)
            return
        side = "server" if machine.close_code is not None else "client"
        metrics.websocket_gone("accepted", code, side)
        if code == 1012 and side == "server" and self.state.shutting_down:
            metrics.drain_closed += 1

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_drain_waiters()

    # -- flow control ----------------------------------------------------------------------
    async def drain(self) -> None:
        if not self.write_paused or self.lost:
            return
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        await waiter

    def _release_drain_waiters(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def peer_spoke(self) -> None:
        if self.lost:
            return
        waiter = self.loop.create_future()
        self.heard_waiters.append(waiter)
        await waiter

    @staticmethod
    def _release(waiters: list[asyncio.Future[None]]) -> None:
        while waiters:
            waiter = waiters.pop()
            if not waiter.done():
                waiter.set_result(None)

    def pause_input(self) -> None:
        # HTTP/2: each stream's window bounds what its app holds unread; pausing the socket
        # would stall every stream, and the WINDOW_UPDATEs and PINGs with them.
        if not self.reading_paused and not self.lost and self.transport is not None and not self.h2:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_input(self) -> None:
        if self.reading_paused and not self.lost and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- executing the machine's actions ---------------------------------------------------
    def flush_head_soon(self, instance: AppInstance) -> None:
        self.state.flush_head_soon(instance)

    def run(self, actions: list[Action]) -> None:
        self.depth += 1
        try:
            self._run(actions)
        finally:
            self.depth -= 1
        if self.to_start and self.depth == 0:
            starting, self.to_start = self.to_start, []
            self.depth = 1  # what the apps' first steps run() is nested
            try:
                for instance in starting:
                    instance.start(eager=True)
            finally:
                self.depth = 0

    def _run(self, actions: list[Any]) -> None:
        # Dispatched on the exact type (cheaper than isinstance; mypy does not narrow on it).
        metrics = self.state.metrics
        for action in actions:
            kind = type(action)
            if kind is Write:
                if not self.lost and action.data:
                    self.transport.write(action.data)  # type: ignore[union-attr]
                    if metrics is not None:
                        metrics.bytes_out += len(action.data)
            elif kind is Deliver:
                try:
                    instance = self.instances[action.cycle]
                except KeyError:  # its app instance has finished
                    continue
                if metrics is not None and action.message["type"] == "websocket.receive":
                    metrics.message_in(action.message)
                instance.deliver(action.message)
            elif kind is StartApp:
                self._start_app(action.cycle, action.scope, action.machine, action.stream)
            elif kind is SetTimer:
                self._set_timer(action.name, action.delay)
            elif kind is CancelTimer:
                self.deadlines.pop(action.name, None)
            elif kind is CloseTransport:
                if self.transport is not None:
                    if action.abort:
                        self.transport.abort()
                    elif not self.transport.is_closing():
                        self.transport.close()
            elif kind is Log:
                self._log(action)
            elif kind is Upgrade:
                self._upgrade(action)

    def _start_app(self, cycle: Any, scope: dict[str, Any], machine: Any = None, stream: int | None = None) -> None:
        state = self.state
        state.total_requests += 1
        if scope["type"] == "http":
            state.http_in_flight += 1
        if state.trusted is not None:
            apply_proxy_headers(scope, state.trusted)
        if machine is None:
            instance = AppInstance(self, self.machine, cycle, scope, state.instance_settings)
        else:  # a WebSocket on an HTTP/2 stream: its own machine, its stream as host
            assert stream is not None
            instance = AppInstance(StreamHost(self, stream), machine, cycle, scope, state.instance_settings)
        self.instances[cycle] = instance
        state.instances.add(instance)
        if self.depth > 1:
            instance.start(eager=False)  # started from inside an app's send(): no nesting
        else:
            self.to_start.append(instance)
        if state.on_request is not None:
            state.on_request()

    def app_finished(self, instance: AppInstance, exc: BaseException | None, stream: int | None = None) -> None:
        actions = instance.machine.app_returned(instance.cycle, exc)
        if stream is not None:
            actions = self.machine.from_websocket(stream, actions)  # type: ignore[attr-defined]
            self.stream_drains.pop(stream, None)
        if actions:
            self.run(actions)
        if stream is not None and self.stream_sockets.pop(stream, None) is not None:
            self._websocket_gone(instance.machine, stream=True)  # type: ignore[arg-type]
        self.instances.pop(instance.cycle, None)
        if instance.scope["type"] == "http":
            self.state.http_in_flight -= 1
            if self.state.metrics is not None:
                status = instance.status
                if status is None and getattr(instance.cycle, "state", None) is HTTPState.FAILED:
                    status = 500  # the server answered for the app
                self.state.metrics.request_done(instance.scope["method"], status, time.monotonic() - instance.started)
        self.state.instance_finished(instance)
        if self.state.access_log_enabled:
            access_line(instance, self.state.config.access_log_format == "json")

    def _start_h2(self, upgrade: Upgrade | None = None) -> None:
        """The connection speaks HTTP/2 from here: its machine is an HTTP2Connection. With
        ``upgrade``, an HTTP/1.1 request asked for it (h2c) and becomes stream 1."""
        config, state = self.state.config, self.state
        self.h2 = True
        self.deadlines.clear()  # the HTTP/1.1 machine's idle timer
        self.machine = HTTP2Connection(
            client=self.client,
            server=self.server,
            scheme=self.scheme,
            root_path=config.root_path,
            state=state.lifespan_state,
            keep_alive_timeout=config.keep_alive_timeout,
            default_headers=state.default_header_list,
            extensions=state.http_extensions_for_request,
            max_body_size=config.max_body_size,
            gate=state.gate,
            max_concurrent_streams=config.h2_max_concurrent_streams,
            max_header_list_size=config.h2_max_header_list_size,
            initial_window_size=config.h2_initial_window_size,
            ping_interval=config.h2_ping_interval,
            ping_timeout=config.h2_ping_timeout,
            websocket=self._stream_websocket,
            stall_timeout=config.h2_stall_timeout,
        )
        if upgrade is None:
            self.run(self.machine.start())
        else:
            request = upgrade.request
            assert upgrade.h2c_settings is not None
            self.run(
                self.machine.start_upgraded(upgrade.h2c_settings, request.method, request.target, list(request.headers))
            )
            if upgrade.trailing_data:
                self.run(self.machine.receive_data(upgrade.trailing_data))
        if state.shutting_down:
            self.run(self.machine.shutdown())

    def _upgrade(self, action: Upgrade) -> None:
        if action.h2c_settings is not None:
            self._start_h2(action)
            return
        config = self.state.config
        self.ws_drain = drain = ConnectionDrain(self.state.drain_started, config.graceful_timeout, self._drained)
        self.state.ws_open += 1
        self.machine = self._websocket(action.request, action.trailing_data, {DRAIN_EXTENSION: drain.extension()})
        self.run(self.machine.start())
        if self.state.shutting_down:
            self.run(self.machine.shutdown())

    def _websocket(self, request: Any, trailing_data: bytes, extensions: dict[str, Any]) -> WebSocketConnection:
        """The WebSocket machine of a handshake: this connection's after an HTTP/1.1
        upgrade, or one HTTP/2 stream's (see :meth:`_stream_websocket`)."""
        config = self.state.config
        return WebSocketConnection(
            request,
            trailing_data,
            client=self.client,
            server=self.server,
            scheme=self.scheme,
            root_path=config.root_path,
            state=self.state.lifespan_state,
            max_size=config.ws_max_size,
            ping_interval=config.ws_ping_interval,
            ping_timeout=config.ws_ping_timeout,
            close_timeout=config.ws_close_timeout,
            per_message_deflate=config.ws_per_message_deflate,
            deflate_window_bits=config.ws_deflate_window_bits,
            deflate_mem_level=config.ws_deflate_mem_level,
            deflate_idle=config.ws_deflate_idle,
            default_headers=self.state.default_header_list,
            extensions=extensions,
            handshake_timeout=config.ws_handshake_timeout,
        )

    def _stream_websocket(self, request: Any, sid: int) -> WebSocketConnection:
        """For the HTTP/2 machine: the WebSocket machine of an extended CONNECT (RFC 8441)
        on stream ``sid``, with a ``channelserver.drain`` of its own: a drain closes it with
        1012 at the GOAWAY, or when its app's last hold ends (up to graceful_timeout)."""
        drain = ConnectionDrain(self.state.drain_started, self.state.config.graceful_timeout, lambda: None)
        drain.on_idle = lambda: self._stream_drained(sid)
        self.stream_drains[sid] = drain
        self.stream_sockets[sid] = machine = self._websocket(request, b"", {DRAIN_EXTENSION: drain.extension()})
        self.state.ws_open += 1
        self.state.ws_streams += 1
        return machine

    def _stream_drained(self, sid: int) -> None:
        self.stream_drains.pop(sid, None)
        if not self.lost:
            self.run(self.machine.close_websocket(sid))  # type: ignore[attr-defined]

    # -- timers: entries in the worker's TimerHeap, re-armed lazily ------------------------
    def _set_timer(self, name: str, delay: float) -> None:
        deadline = self.loop.time() + delay
        self.deadlines[name] = deadline
        entry = self.scheduled.get(name)
        if entry is not None and entry[0] <= deadline:
            return  # it comes due first and re-arms itself for the rest: most re-arms cost nothing
        self.timers.schedule(self, name, deadline)

    def timer_due(self, name: str, now: float) -> None:
        """Called by the TimerHeap when ``name``'s entry comes due."""
        deadline = self.deadlines.get(name)
        if deadline is None or self.lost:
            return
        if deadline > now:
            self.timers.schedule(self, name, deadline)
            return
        del self.deadlines[name]
        self.run(self.machine.timer_fired(name))
        if self.heard_waiters:  # an HTTP/2 stream reset by its stall timer: its app goes on
            self._release(self.heard_waiters)

    # -- logging ---------------------------------------------------------------------------
    def _log(self, action: Log) -> None:
        level = _LEVELS.get(action.level, 30)
        if level == 30:
            # warnings from the machines are about what peers sent: rate-limited
            allowed, held = self.state.warnings.allow()
            if not allowed:
                return
            if held:
                error_log.warning("(%d similar warnings were not logged)", held)
        error_log.log(level, "%s", action.message, exc_info=action.exc)

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """The drain begins: HTTP finishes what is in flight; a WebSocket closes with 1012
        now, or when its app's last ``channelserver.drain`` hold ends."""
        drain = self.ws_drain
        if drain is not None and not drain.begin():
            return
        if self.stream_drains:  # HTTP/2: the WebSockets its apps hold wait for their hold
            held: set[int] = self.machine.held  # type: ignore[attr-defined]
            held.update(sid for sid, stream_drain in self.stream_drains.items() if not stream_drain.begin())
        self.run(self.machine.shutdown())

    def drain_begins(self) -> None:
        """The drain began; the closing comes ``drain_delay`` later."""
        self.run(self.machine.drain_begins())

    def force_shutdown(self) -> None:
        """``graceful_timeout`` passed: close a WebSocket even if its app still holds it,
        or refuse a handshake its app has not answered."""
        self.run(self.machine.force_shutdown())

    def _drained(self) -> None:
        if not self.lost:
            self.run(self.machine.shutdown())

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()


class StreamHost:
    """The :class:`~.app.Host` of an app instance whose WebSocket is carried by one HTTP/2
    stream (RFC 8441): what its machine returns goes through the connection's HTTP/2
    machine, which puts it on the stream; its ``send()`` waits while the stream's window
    keeps it backlogged; a full queue holds the stream's window back, not the socket."""

    __slots__ = ("conn", "loop", "stream", "timers")

    #: The instance's machine is a WebSocket machine: no HTTP/2 ``blocked()`` to ask.
    h2 = False

    def __init__(self, conn: ConnectionProtocol, stream: int) -> None:
        self.conn = conn
        self.stream = stream
        self.loop = conn.loop
        self.timers = conn.timers

    @property
    def lost(self) -> bool:
        return self.conn.lost

    @property
    def reading_paused(self) -> bool:
        """The stream's window is held back (``pause_input``): the app's ``receive()``
        calls ``resume_input`` once its queue is short again."""
        machine: Any = self.conn.machine
        return bool(machine.websocket_paused(self.stream))

    @property
    def write_paused(self) -> bool:
        machine: Any = self.conn.machine
        return self.conn.write_paused or machine.stream_backlog(self.stream) > STREAM_BACKLOG

    def run(self, actions: list[Action]) -> None:
        machine: Any = self.conn.machine
        self.conn.run(machine.from_websocket(self.stream, actions))

    def pause_input(self) -> None:
        machine: Any = self.conn.machine
        self.conn.run(machine.pause_websocket(self.stream, True))

    def resume_input(self) -> None:
        machine: Any = self.conn.machine
        self.conn.run(machine.pause_websocket(self.stream, False))

    async def drain(self) -> None:
        while self.write_paused and not self.conn.lost:
            if self.conn.write_paused:
                await self.conn.drain()
            else:
                await self.conn.peer_spoke()

    async def peer_spoke(self) -> None:
        await self.conn.peer_spoke()

    def flush_head_soon(self, instance: AppInstance) -> None:
        self.conn.flush_head_soon(instance)

    def app_finished(self, instance: AppInstance, exc: BaseException | None) -> None:
        self.conn.app_finished(instance, exc, self.stream)
