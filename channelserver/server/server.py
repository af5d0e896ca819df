"""Bind, serve, and shut down in order.

Shutdown (:meth:`Server.shutdown`), each step waiting on events, each bounded:

0. the drain begins: the health path answers 503; everything else is served as before
   for ``drain_delay``, while the load balancer takes the instance out;
1. stop accepting: the listening sockets are closed, so new connections are refused;
2. idle keep-alive connections are closed; in-flight HTTP responses finish with
   ``connection: close``; WebSockets are closed with 1012 and told ``websocket.disconnect``,
   at once or, with ``drain_spread``, each at a random moment of that window (see drain.py);
3. wait for the connections to close, up to ``drain_spread + graceful_timeout``;
4. the connections still open are dropped: their apps get ``http.disconnect`` /
   ``websocket.disconnect`` and ``send()`` raises;
5. wait for app instances to return, up to ``app_close_timeout``; the rest are cancelled,
   each with a log line naming it and where it was waiting; one that is still running
   ``CANCEL_GRACE`` (1 s) later, having caught its ``CancelledError``, is abandoned with a
   WARNING line;
6. lifespan shutdown, bounded the same way;
7. what is left on the loop is cancelled and given ``CANCEL_GRACE``, then abandoned.

Signal handlers only record: the first SIGINT/SIGTERM starts the shutdown, a second SIGINT
skips the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import logging
import os
import random
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import StartupError
from ..types import ASGIApp
from .connection import ConnectionProtocol
from .lifespan import Lifespan
from .metrics import instances_report
from .state import Connection, ServerState
from .tasks import CANCEL_GRACE, close_loop
from .tls import ssl_context

if TYPE_CHECKING:
    from ..monitor.snapshot import Snapshot

__all__ = ["Server", "bind_socket", "new_event_loop", "run"]

log = logging.getLogger("channelserver.error")

_BIND_ERRORS = {
    errno.EADDRINUSE: "That port is already in use.",
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}


def bind_error_text(exc: OSError, where: str) -> str:
    sentence = _BIND_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
    return f"Error binding {where}: {sentence}"


def bind_socket(config: Config) -> socket.socket:
    """The listening socket the config names. Raises StartupError with one clear line."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
        sock.setblocking(False)
        return sock
    if config.uds:
        path = config.uds
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(path) and not os.path.isdir(path):
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise StartupError(bind_error_text(exc, f"unix:{path}")) from None
        os.chmod(path, 0o666)
    else:
        host = config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, config.port))
        except OSError as exc:
            sock.close()
            raise StartupError(bind_error_text(exc, f"{host}:{config.port}")) from None
        except (socket.gaierror, UnicodeError) as exc:
            sock.close()
            raise StartupError(f"Error binding {host}:{config.port}: {exc}") from None
    sock.listen(config.backlog)
    sock.setblocking(False)
    return sock


def describe_socket(sock: socket.socket, tls: bool = False) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise StartupError(
                    "--loop uvloop: uvloop is not installed (pip install 'channelserver[uvloop]')"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


#: How long a TLS connection being closed waits for the client's close_notify before it is
#: dropped. asyncio and uvloop wait 30 s by default: a client that keeps an idle
#: keep-alive connection and does not read (a connection pool) would hold a drain that long.
TLS_SHUTDOWN_TIMEOUT = 2.0


async def _create_server(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.Protocol],
    sock: socket.socket,
    backlog: int,
    context: ssl.SSLContext | None,
) -> asyncio.AbstractServer:
    if context is None:
        return await loop.create_server(factory, sock=sock, backlog=backlog)
    shutdown: dict[str, Any] = {"ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT}
    try:
        return await loop.create_server(factory, sock=sock, backlog=backlog, ssl=context, **shutdown)
    except TypeError:  # Python 3.10's asyncio has no ssl_shutdown_timeout
        return await loop.create_server(factory, sock=sock, backlog=backlog, ssl=context)


class Server:
    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        *,
        on_request: Callable[[], None] | None = None,
        on_ready: Callable[[Server], None] | None = None,
    ) -> None:
        self.config = config
        self.app = app
        #: Called once per request and per WebSocket connection (the supervisor counts them).
        self.on_request = on_request
        #: Called on the loop once every socket listens (``bound``, ``ports`` are known).
        self.on_ready = on_ready
        self.should_exit: asyncio.Event | None = None
        self.force_exit = False
        self.state: ServerState | None = None
        self.listeners: list[asyncio.AbstractServer] = []
        self.bound: list[str] = []
        #: The TCP ports listened on (with port 0 in the config: the ones the system picked).
        self.ports: list[int] = []
        self.sockets: list[socket.socket] = []
        #: Set once every socket is listening.
        self.started = asyncio.Event()
        self.lifespan: Lifespan | None = None
        #: Set by a second SIGINT: every wait of the shutdown ends at once.
        self._force_event: asyncio.Event | None = None
        #: This server's worker slot, in the metrics and the app-instance report.
        self.worker = "0"
        #: The ``--metrics`` listener, served by this process when it has no supervisor.
        self.metrics_listener: Any = None

    # -- running -----------------------------------------------------------------------
    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.should_exit = asyncio.Event()
        self.state = state = ServerState(self.config, self.app, loop)
        state.on_request = self.on_request
        if self.config.metrics is not None and not self.config.supervised:
            self._serve_metrics(loop)  # bound now: a bad address stops the start, before the app's
        self.lifespan = Lifespan(self.app, self.config.lifespan, loop)
        context = ssl_context(self.config)
        state.lifespan_state = await self.lifespan.startup()
        if sockets is None:
            sockets = [bind_socket(self.config)]
        self.sockets = sockets
        for sock in sockets:
            listener = await _create_server(loop, lambda: ConnectionProtocol(state), sock, self.config.backlog, context)
            self.listeners.append(listener)
            self.bound.append(describe_socket(sock, tls=context is not None))
            if sock.family != socket.AF_UNIX:
                self.ports.append(sock.getsockname()[1])
        for where in self.bound:
            log.info("Listening on %s (pid %d)", where, os.getpid())
        if state.metrics is not None:
            state.metrics.start_lag_probe(loop)
        if self.metrics_listener is not None:
            self.metrics_listener.start()
        self.started.set()
        if self.on_ready is not None:
            self.on_ready(self)
        try:
            await self.should_exit.wait()
            await self.shutdown()
        finally:
            if state.metrics is not None:
                state.metrics.stop_lag_probe()

    # -- metrics and the app-instance report ---------------------------------------------
    def snapshot(self) -> Snapshot:
        """This server's metrics now (on the loop)."""
        assert self.state is not None and self.state.metrics is not None
        return self.state.metrics.snapshot(self.state)

    def instances_report(self) -> str:
        """One line per running app instance (on the loop)."""
        assert self.state is not None
        return instances_report(self.state, self.worker)

    def log_instances(self) -> None:
        """SIGUSR1: log what every app instance is doing."""
        if self.state is not None:
            log.warning("%s", self.instances_report())

    def _serve_metrics(self, loop: asyncio.AbstractEventLoop) -> None:
        from ..monitor.listener import MetricsListener
        from ..monitor.snapshot import Gathered

        gathered = Gathered()
        gathered.workers = 1

        def on_loop(fn: Callable[[], Any]) -> Any:
            async def call() -> Any:
                return fn()

            return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

        def source() -> Snapshot:
            gathered.update(0, 0, on_loop(self.snapshot))
            return gathered.view()

        assert self.config.metrics is not None
        self.metrics_listener = MetricsListener(
            self.config.metrics, source, lambda: on_loop(self.instances_report) + "\n"
        )

    def handle_exit(self, sig: int | None = None) -> None:
        """Signal handler: record only."""
        if self.should_exit is None:
            return
        if self.should_exit.is_set() and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit.set()
        if self.force_exit and self._force_event is not None:
            self._force_event.set()

    # -- shutdown ----------------------------------------------------------------------
    async def _bounded(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` up to ``timeout``, or until a forced exit. True if it fired."""
        if event.is_set():
            return True
        force = self._force_event
        assert force is not None
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(force.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return event.is_set()

    async def _spread(self, sockets: list[Connection], spread: float, graceful: float) -> None:
        """Close each WebSocket with 1012 at a moment drawn at random over ``spread``
        seconds, so that their clients reconnect elsewhere as a slope, not a wall.

        One a ``channelserver.drain`` hold keeps busy closes when the hold ends, or
        ``graceful`` seconds after its own moment: held sockets (a GraphQL subscription
        that never ends) are still closed as a slope. A forced exit closes the rest at once.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        force = self._force_event
        assert force is not None
        # (when, seq, kind, connection): kind 0 is its 1012, kind 1 the end of its hold's time
        events = [(start + random.uniform(0, spread), seq, 0, conn) for seq, conn in enumerate(sockets)]
        heapq.heapify(events)
        seq = len(events)
        to_tell = len(events)
        told = held = overdue = 0
        while events:
            when, _, kind, conn = heapq.heappop(events)
            wait = when - loop.time()
            if wait > 0.001 and not force.is_set() and not conn.lost:
                await self._bounded(force, wait)
            if kind == 0:
                to_tell -= 1
                if not conn.lost:
                    conn.shutdown()
                    told += 1
                    if conn.ws_drain is not None and conn.ws_drain.waiting:
                        held += 1
                        seq += 1
                        heapq.heappush(events, (when + graceful, seq, 1, conn))
                if to_tell == 0:
                    log.info(
                        "Drain: %d WebSocket(s) told to close with 1012 over %.1fs (drain_spread %gs); "
                        "%d held open by their app, each for up to graceful_timeout (%gs)",
                        told,
                        loop.time() - start,
                        spread,
                        held,
                        graceful,
                    )
            elif not conn.lost and conn.ws_drain is not None and conn.ws_drain.waiting:
                conn.force_shutdown()
                overdue += 1
        if overdue:
            log.info("Drain: %d held WebSocket(s) closed at their graceful_timeout", overdue)

    async def shutdown(self) -> None:
        state = self.state
        assert state is not None
        self._force_event = asyncio.Event()
        if self.force_exit:
            self._force_event.set()
        config = self.config
        # 0. the drain begins: the health path answers 503 while the rest is served as before
        state.draining = True
        for conn in list(state.connections):
            conn.drain_begins()
        if config.drain_delay > 0:
            log.info(
                "Draining: the health path answers 503; serving %d connection(s) for another %gs (drain_delay)",
                len(state.connections),
                config.drain_delay,
            )
            await self._bounded(self._force_event, config.drain_delay)
        state.shutting_down = True
        # 1. stop accepting: with the listening sockets closed, connection attempts are
        #    refused at once (in a worker this closes its copy; the parent keeps its own)
        for listener in self.listeners:
            listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        log.info("Shutting down: no new connections; %d open", len(state.connections))
        state.drain_started.set()
        # 2. ask every connection to finish
        state.all_closed = asyncio.Event()
        if not state.connections:
            state.all_closed.set()
        sockets = []
        for conn in list(state.connections):
            if conn.ws_drain is None or config.drain_spread <= 0:
                conn.shutdown()
            else:
                sockets.append(conn)
        spreading = None
        if sockets:
            spreading = asyncio.ensure_future(self._spread(sockets, config.drain_spread, config.graceful_timeout))
        # 3. wait for them
        # With a spread, the last held socket is told at drain_spread + graceful_timeout
        # (from the spread's own start): then it has a moment for its close handshake.
        bound = config.drain_spread + config.graceful_timeout
        if sockets:
            bound += min(1.0, config.ws_close_timeout)
        if not await self._bounded(state.all_closed, bound):
            log.warning(
                "%d connection(s) still open after graceful_timeout (%ss); dropping them",
                len(state.connections),
                config.graceful_timeout,
            )
        if spreading is not None:
            spreading.cancel()
        # 4. HTTP still in flight is dropped: its apps get http.disconnect and send() raises.
        #    WebSockets still held get their 1012 now and a moment for the close handshake,
        #    then they are dropped too. From here every app has app_close_timeout.
        held = [conn for conn in state.connections if conn.ws_drain is not None]
        for conn in list(state.connections):
            if conn.ws_drain is None:
                conn.abort()
        if held:
            state.all_closed.clear()
            for conn in held:
                conn.force_shutdown()
            if state.connections:
                await self._bounded(state.all_closed, min(1.0, config.ws_close_timeout))
        for conn in list(state.connections):
            conn.abort()
        # 5. wait for app instances
        state.no_instances = asyncio.Event()
        if not state.instances:
            state.no_instances.set()
        for instance in list(state.instances):
            instance.connection_gone()
        if not await self._bounded(state.no_instances, config.app_close_timeout):
            for instance in list(state.instances):
                instance.cancel_overdue()
            # A second SIGINT skips the waiting, not this: a cancelled app that honours the
            # cancellation ends in a loop turn or two.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.no_instances.wait(), CANCEL_GRACE)
            for instance in list(state.instances):
                instance.abandon()
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 0.1)
        # 6. lifespan
        if self.lifespan is not None and not self.force_exit:
            await self.lifespan.shutdown(config.app_close_timeout)


@contextlib.contextmanager
def capture_signals(server: Server, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``server.handle_exit`` and SIGUSR1 to
    ``server.log_instances``; restore the old handlers after."""
    sigs = [signal.SIGINT, signal.SIGTERM]
    installed: list[signal.Signals] = []
    try:
        for sig in sigs:
            try:
                loop.add_signal_handler(sig, server.handle_exit, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        usr1 = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if usr1 is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGUSR1, server.log_instances)
                installed.append(signal.SIGUSR1)
        yield
    finally:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if signal.SIGUSR1 in installed:  # asyncio leaves SIG_DFL, which would end the process
            with contextlib.suppress(Exception):
                signal.signal(signal.SIGUSR1, usr1)


class ThreadStop:
    """Stops a :func:`run` going on in another thread (``runchannelserver`` under Django's
    reloader): at once when the server listens, else as soon as it does, so a stop asked
    for during a slow lifespan startup is kept, not lost. Pass :meth:`ready` as (or call it
    from) ``on_ready``, and call :meth:`finished` when ``run()`` returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = False
        self.done = threading.Event()

    def starting(self) -> None:
        self.done.clear()

    def ready(self, server: Server) -> None:
        with self._lock:
            self._server, self._loop = server, asyncio.get_running_loop()
            pending = self._pending
        if pending:
            server.handle_exit(signal.SIGTERM)

    def finished(self) -> None:
        with self._lock:
            self._server = self._loop = None
        self.done.set()

    def stop(self, timeout: float) -> None:
        """Ask the server to shut down (now, or once it listens); wait up to ``timeout``."""
        if self.done.is_set():
            return
        with self._lock:
            server, loop = self._server, self._loop
            if server is None or loop is None:
                self._pending = True
        if server is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(server.handle_exit, signal.SIGTERM)
            except RuntimeError:  # the loop has just closed
                return
        self.done.wait(timeout)


def run(
    config: Config,
    app: ASGIApp,
    sockets: list[socket.socket] | None = None,
    *,
    on_ready: Callable[[Server], None] | None = None,
    on_request: Callable[[], None] | None = None,
    signals: bool = True,
) -> None:
    """Serve ``app`` on a fresh event loop until SIGINT/SIGTERM (or ``server.handle_exit()``),
    shut down in order, and close the loop (bounded, see ``tasks.close_loop``).

    The one runner: ``python -m channelserver``, each worker, ``runchannelserver`` and
    ``ChannelServerProcess`` all serve through it. ``on_ready(server)`` is called on the
    loop once every socket listens; ``signals`` False leaves the signal handlers alone (a
    server in a thread other than the main one). Raises :class:`StartupError` when the
    server cannot start."""
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    server = Server(config, app, on_request=on_request, on_ready=on_ready)
    try:
        with capture_signals(server, loop) if signals else contextlib.nullcontext():
            loop.run_until_complete(server.serve(sockets))
    finally:
        if server.metrics_listener is not None:
            server.metrics_listener.close()
        close_loop(loop)
        sys.stdout.flush()
