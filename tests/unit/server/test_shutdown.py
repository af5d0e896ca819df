"""The ordered, bounded shutdown of ``server.Server`` (see the docstring of ``server.py``).

A real :class:`~channelserver.server.server.Server` serves on a real listening socket
(127.0.0.1, port 0) on ``FakeClockLoop``; its connections are made the way the listener
makes them (``ConnectionProtocol(server.state)``) on fake transports that note, on the
fake clock, when they were closed. Real h11 and wsproto clients read what the server
wrote. The test moves the clock; nothing sleeps.

The order asserted: stop accepting -> idle keep-alive connections closed, WebSockets
closed with 1012 -> in-flight HTTP finishes with ``connection: close`` ->
``graceful_timeout`` -> the rest dropped -> ``app_close_timeout`` -> cancel ->
``CANCEL_GRACE`` -> abandon -> lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import h11
import pytest
import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Request

from channelserver.config import Config
from channelserver.server.connection import ConnectionProtocol
from channelserver.server.server import Server
from channelserver.server.tasks import CANCEL_GRACE
from channelserver.types import Receive, Scope, Send

from .fakes import FakeClockLoop, MockTransport, turns

LOGGER = "channelserver.error"
GRACEFUL = 10.0
APP_CLOSE = 5.0


class Timeline:
    """What happened, when (on the fake clock), in order."""

    def __init__(self, loop: FakeClockLoop) -> None:
        self.loop = loop
        self.start = loop.time()
        self.events: list[tuple[float, str]] = []

    def __call__(self, what: str) -> None:
        self.events.append((self.loop.time() - self.start, what))

    def names(self) -> list[str]:
        return [what for _, what in self.events]

    def at(self, what: str) -> float:
        [when] = [when for when, name in self.events if name == what]
        return when


class NamedTransport(MockTransport):
    """A fake transport that writes its closing on the timeline."""

    def __init__(self, loop: FakeClockLoop, name: str, timeline: Timeline) -> None:
        super().__init__(loop)
        self.name = name
        self.timeline = timeline

    def close(self) -> None:
        if not self.closed:
            self.timeline(f"{self.name} {'aborted' if self.aborted else 'closed'}")
        super().close()


def open_connection(server: Server, name: str, timeline: Timeline) -> tuple[ConnectionProtocol, NamedTransport]:
    """A connection as the listener makes one."""
    assert server.state is not None
    protocol = ConnectionProtocol(server.state)
    transport = NamedTransport(server.state.loop, name, timeline)  # type: ignore[arg-type]
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


def get(path: str) -> tuple[h11.Connection, bytes]:
    client = h11.Connection(h11.CLIENT)
    data = client.send(h11.Request(method="GET", target=path, headers=[("Host", "example.com")])) or b""
    return client, data + (client.send(h11.EndOfMessage()) or b"")


def responses(client: h11.Connection, data: bytes) -> list[h11.Response]:
    client.receive_data(data)
    found: list[h11.Response] = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
            return found
        if type(event) is h11.Response:
            found.append(event)
        if type(event) is h11.EndOfMessage and client.our_state is h11.DONE:
            client.start_next_cycle()


async def until(condition: Callable[[], bool], what: str, limit: int = 200) -> None:
    """Run loop turns (no time passes) until ``condition`` holds."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not within {limit} loop turns: {what}")


async def advance(loop: FakeClockLoop, seconds: float) -> None:
    loop.advance(seconds)
    await turns(10)


def run_on(loop: FakeClockLoop, coro: Coroutine[Any, Any, None], release: Callable[[], None]) -> None:
    """Run ``coro`` on ``loop``; then ``release`` what the apps wait for (an app deaf to
    cancellation ends only so) and close the loop cleanly."""
    try:
        loop.run_until_complete(coro)
    finally:
        loop.call_soon(release)
        loop.run_until_complete(turns())
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


class Apps:
    """One ASGI app for every scenario, by path; it writes what it sees on the timeline.

    ``/idle`` answers at once; ``/slow`` answers when the test sets ``slow``; ``/stuck``
    never answers and ignores its disconnect (it honours a cancellation, or, with
    ``deaf``, swallows it too); ``/ws`` accepts and waits for its disconnect, holding the
    drain with ``hold`` until the test sets ``hold_released``.
    """

    def __init__(self, timeline: Timeline, *, deaf: bool = False, hold: bool = False) -> None:
        self.timeline = timeline
        self.deaf = deaf
        self.hold = hold
        self.slow = asyncio.Event()
        self.hold_released = asyncio.Event()
        self.let_go = asyncio.Event()
        self.disconnects: dict[str, dict[str, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        else:
            await self.http(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        self.timeline("lifespan shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        await receive()
        if path == "/slow":
            await self.slow.wait()
        elif path == "/stuck":
            await self.stuck()
            return
        self.timeline(f"{path} responds")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def stuck(self) -> None:
        try:
            await self.let_go.wait()
        except asyncio.CancelledError:
            self.timeline("/stuck cancelled")
            if not self.deaf:
                raise
        while not self.let_go.is_set():  # deaf: cancelled again and again, it goes on
            try:
                await self.let_go.wait()
            except asyncio.CancelledError:
                self.timeline("/stuck cancelled")

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        drain = scope["extensions"]["channelserver.drain"]
        if self.hold:
            async with drain["hold"]():
                await self.hold_released.wait()
            self.timeline("ws hold released")
        message = await receive()
        self.disconnects["ws"] = message
        self.timeline(f"ws got {message['type']} {message.get('code')}")


class Scenario:
    """A served Server with the connections of one test."""

    def __init__(self, loop: FakeClockLoop, *, deaf: bool = False, hold: bool = False, **config: Any) -> None:
        self.loop = loop
        self.timeline = Timeline(loop)
        self.apps = Apps(self.timeline, deaf=deaf, hold=hold)
        settings: dict[str, Any] = {
            "port": 0,
            "lifespan": "on",
            "graceful_timeout": GRACEFUL,
            "app_close_timeout": APP_CLOSE,
            "keep_alive_timeout": 60.0,
            "ws_ping_interval": None,
            "ws_close_timeout": 3.0,
            "access_log": False,
            **config,
        }
        self.server = Server(Config(**settings), self.apps)
        self.serving: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self.serving = asyncio.ensure_future(self.server.serve())
        await until(self.server.started.is_set, "the server listens")
        for listener in self.server.listeners:  # its closing goes on the timeline too
            close = listener.close

            def closing(close: Callable[[], None] = close) -> None:
                self.timeline("listener closed")
                close()

            listener.close = closing  # type: ignore[method-assign]

    async def begin_shutdown(self, sig: int = signal.SIGTERM) -> None:
        """The signal, and the loop turns the shutdown needs to begin (no time passes):
        the timeline starts here."""
        self.timeline.events.clear()
        self.timeline.start = self.loop.time()
        self.timeline("shutdown")
        self.server.handle_exit(sig)
        await turns(10)

    def release(self) -> None:
        """Let every app that waits for the test end (for a clean loop close)."""
        self.apps.let_go.set()
        self.apps.slow.set()
        self.apps.hold_released.set()

    async def idle_http(self) -> tuple[h11.Connection, NamedTransport]:
        """A keep-alive connection that had one request and waits for the next."""
        protocol, transport = open_connection(self.server, "idle", self.timeline)
        client, data = get("/idle")
        protocol.data_received(data)
        await until(lambda: b"ok" in transport.buffer, "/idle answered")
        [response] = responses(client, transport.take())
        assert response.status_code == 200
        assert (b"connection", b"close") not in response.headers, "kept alive before the shutdown"
        return client, transport

    async def http(self, path: str, name: str) -> tuple[h11.Connection, NamedTransport]:
        """A request in flight: its app has it and has not answered."""
        protocol, transport = open_connection(self.server, name, self.timeline)
        client, data = get(path)
        protocol.data_received(data)
        await turns()
        assert transport.buffer == b"" and not transport.closed
        return client, transport

    async def websocket(self) -> tuple[ConnectionProtocol, wsproto.WSConnection, NamedTransport]:
        protocol, transport = open_connection(self.server, "ws", self.timeline)
        client = wsproto.WSConnection(ConnectionType.CLIENT)
        protocol.data_received(client.send(Request(host="example.com", target="/ws/")))
        await until(lambda: bool(transport.buffer), "the WebSocket accepted")
        assert [type(e) for e in ws_events(client, transport)] == [AcceptConnection]
        return protocol, client, transport

    @property
    def done(self) -> bool:
        return self.serving is not None and self.serving.done()

    async def finish(self) -> None:
        assert self.serving is not None
        await until(lambda: self.done, "serve() returned")
        self.serving.result()


def ws_events(client: wsproto.WSConnection, transport: MockTransport) -> list[Any]:
    data = transport.take()
    if data:
        client.receive_data(data)
    return list(client.events())


# -- the whole order ------------------------------------------------------------------------


def test_shutdown_runs_in_order_and_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeClockLoop()
    s = Scenario(loop)

    async def scenario() -> None:
        await s.start()
        port = s.server.ports[0]
        _, idle = await s.idle_http()
        slow_client, slow = await s.http("/slow", "slow")
        ws_protocol, ws_client, ws = await s.websocket()
        _, stuck = await s.http("/stuck", "stuck")

        await s.begin_shutdown()
        # 1. no new connections
        assert not s.server.listeners[0].is_serving()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        # 2. the idle keep-alive connection is closed at once, without a word
        assert idle.closed and idle.buffer == b""
        # the WebSocket is closed with 1012 and its app told so
        [close] = ws_events(ws_client, ws)
        assert isinstance(close, CloseConnection) and close.code == 1012
        assert s.apps.disconnects["ws"] == {"type": "websocket.disconnect", "code": 1012, "reason": "server restarting"}
        ws_protocol.data_received(ws_client.send(close.response()))  # the client answers the close
        await turns()
        assert ws.closed
        # the in-flight requests go on
        assert not slow.closed and not stuck.closed

        # 3. the in-flight response finishes, with connection: close, and its connection closes
        await advance(loop, 1.0)
        s.apps.slow.set()
        await until(lambda: slow.closed, "the in-flight connection closed after its response")
        [response] = responses(slow_client, slow.take())
        assert response.status_code == 200
        assert (b"connection", b"close") in response.headers

        # 4. graceful_timeout: the connection still open is dropped
        await advance(loop, GRACEFUL - 1.0 - 0.01)
        assert not stuck.closed
        await advance(loop, 0.01)
        assert stuck.aborted
        # 5. its app, deaf to http.disconnect, has app_close_timeout, then is cancelled
        await advance(loop, APP_CLOSE - 0.01)
        assert "/stuck cancelled" not in s.timeline.names()
        assert "lifespan shutdown" not in s.timeline.names()
        await advance(loop, 0.01)
        # 6. lifespan shutdown, last; and serve() returns
        await s.finish()

        assert s.timeline.events[:2] == [(0.0, "shutdown"), (0.0, "listener closed")]
        # asked together (in no particular order): the idle connection and the WebSocket
        assert sorted(s.timeline.events[2:4]) == [(0.0, "idle closed"), (0.0, "ws got websocket.disconnect 1012")]
        assert s.timeline.events[4:] == [
            (0.0, "ws closed"),
            (1.0, "/slow responds"),
            (1.0, "slow closed"),
            (GRACEFUL, "stuck aborted"),
            (GRACEFUL + APP_CLOSE, "/stuck cancelled"),
            (GRACEFUL + APP_CLOSE, "lifespan shutdown"),
        ]
        assert loop.time() - s.timeline.start == GRACEFUL + APP_CLOSE, "bounded: graceful_timeout + app_close_timeout"
        assert s.server.state is not None and not s.server.state.connections and not s.server.state.instances

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run_on(loop, scenario(), s.release)
    lines = warnings(caplog)
    assert len(lines) == 2, lines
    assert lines[0] == f"1 connection(s) still open after graceful_timeout ({GRACEFUL}s); dropping them"
    assert lines[1].startswith("Cancelled app instance Apps for GET /stuck from 127.0.0.1:53122: still running ")
    assert "(awaiting " in lines[1] and lines[1].endswith(" in stuck)")
    infos = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert "Shutting down: no new connections; 4 open" in infos


def test_an_app_that_swallows_its_cancellation_is_abandoned_and_lifespan_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = FakeClockLoop()
    s = Scenario(loop, deaf=True)

    async def scenario() -> None:
        await s.start()
        _, stuck = await s.http("/stuck", "stuck")
        await s.begin_shutdown()
        await advance(loop, GRACEFUL)
        assert stuck.aborted
        await advance(loop, APP_CLOSE)
        assert s.timeline.names()[-1] == "/stuck cancelled"
        assert not s.done
        await advance(loop, CANCEL_GRACE - 0.01)
        assert "lifespan shutdown" not in s.timeline.names()
        await advance(loop, 0.01)
        await s.finish()
        assert s.timeline.events == [
            (0.0, "shutdown"),
            (0.0, "listener closed"),
            (GRACEFUL, "stuck aborted"),
            (GRACEFUL + APP_CLOSE, "/stuck cancelled"),
            (GRACEFUL + APP_CLOSE + CANCEL_GRACE, "lifespan shutdown"),
        ]

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run_on(loop, scenario(), s.release)
    lines = warnings(caplog)
    assert [line.split(":")[0] for line in lines] == [
        "1 connection(s) still open after graceful_timeout (10.0s); dropping them",
        "Cancelled app instance Apps for GET /stuck from 127.0.0.1",
        "Abandoned app instance Apps for GET /stuck from 127.0.0.1",
    ]
    assert lines[2].endswith(" in stuck); exiting without it")


# -- WebSockets holding the drain -------------------------------------------------------------


def test_a_websocket_holding_the_drain_is_closed_1012_when_its_hold_ends() -> None:
    loop = FakeClockLoop()
    s = Scenario(loop, hold=True)

    async def scenario() -> None:
        await s.start()
        _, idle = await s.idle_http()
        ws_protocol, ws_client, ws = await s.websocket()
        await s.begin_shutdown()
        assert idle.closed, "idle connections do not wait for busy WebSockets"
        assert ws_events(ws_client, ws) == [], "held: no close frame yet"
        await advance(loop, 3.0)
        assert ws_events(ws_client, ws) == []
        s.apps.hold_released.set()
        await turns(10)
        [close] = ws_events(ws_client, ws)
        assert isinstance(close, CloseConnection) and close.code == 1012
        ws_protocol.data_received(ws_client.send(close.response()))
        await s.finish()
        assert s.timeline.events == [
            (0.0, "shutdown"),
            (0.0, "listener closed"),
            (0.0, "idle closed"),
            (3.0, "ws hold released"),
            (3.0, "ws got websocket.disconnect 1012"),
            (3.0, "ws closed"),
            (3.0, "lifespan shutdown"),
        ]

    run_on(loop, scenario(), s.release)


def test_a_websocket_held_past_graceful_timeout_is_closed_1012_then() -> None:
    loop = FakeClockLoop()
    s = Scenario(loop, hold=True)

    async def scenario() -> None:
        await s.start()
        ws_protocol, ws_client, ws = await s.websocket()
        await s.begin_shutdown()
        await advance(loop, GRACEFUL - 0.01)
        assert ws_events(ws_client, ws) == []
        await advance(loop, 0.01)
        [close] = ws_events(ws_client, ws)
        assert isinstance(close, CloseConnection) and close.code == 1012
        assert s.apps.disconnects == {}, "the app is still inside its hold, not receiving"
        ws_protocol.data_received(ws_client.send(close.response()))
        await turns(10)
        assert ws.closed and not ws.aborted
        s.apps.hold_released.set()  # the app's subscription ends; it then receives its disconnect
        await s.finish()
        assert s.timeline.names() == [
            "shutdown",
            "listener closed",
            "ws closed",
            "ws hold released",
            "ws got websocket.disconnect 1012",
            "lifespan shutdown",
        ]
        assert s.timeline.at("ws closed") == GRACEFUL
        assert s.timeline.at("lifespan shutdown") == GRACEFUL

    run_on(loop, scenario(), s.release)


# -- edges -----------------------------------------------------------------------------------


def test_with_nothing_open_shutdown_goes_straight_to_lifespan() -> None:
    loop = FakeClockLoop()
    s = Scenario(loop)

    async def scenario() -> None:
        await s.start()
        await s.begin_shutdown()
        await s.finish()
        assert s.timeline.events == [(0.0, "shutdown"), (0.0, "listener closed"), (0.0, "lifespan shutdown")]

    run_on(loop, scenario(), s.release)


def test_a_connection_that_has_not_sent_its_request_yet_gets_a_moment_then_connection_close() -> None:
    """Just accepted (its request may be on the wire) it is not idle: a request that comes
    within a second is answered with ``connection: close``; one that sends nothing is
    closed after that second."""
    loop = FakeClockLoop()
    s = Scenario(loop)

    async def scenario() -> None:
        await s.start()
        late_protocol, late = open_connection(s.server, "late", s.timeline)
        _, silent = open_connection(s.server, "silent", s.timeline)
        await s.begin_shutdown()
        assert not late.closed and not silent.closed
        await advance(loop, 0.5)
        client, data = get("/idle")
        late_protocol.data_received(data)
        await until(lambda: late.closed, "the late request answered and closed")
        [response] = responses(client, late.take())
        assert (b"connection", b"close") in response.headers
        await advance(loop, 0.5)
        assert silent.closed and silent.buffer == b""
        await s.finish()
        assert s.timeline.events == [
            (0.0, "shutdown"),
            (0.0, "listener closed"),
            (0.5, "/idle responds"),
            (0.5, "late closed"),
            (1.0, "silent closed"),
            (1.0, "lifespan shutdown"),
        ]

    run_on(loop, scenario(), s.release)


def test_a_second_sigint_skips_the_waiting_and_the_lifespan_shutdown() -> None:
    loop = FakeClockLoop()
    s = Scenario(loop)

    async def scenario() -> None:
        await s.start()
        _, slow = await s.http("/slow", "slow")
        await s.begin_shutdown(signal.SIGINT)
        assert not slow.closed
        s.server.handle_exit(signal.SIGINT)
        await s.finish()
        assert s.timeline.names() == ["shutdown", "listener closed", "slow aborted"]
        assert loop.time() == s.timeline.start, "no time waited"
        assert slow.aborted

    run_on(loop, scenario(), s.release)
