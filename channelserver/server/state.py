"""What every connection of one server shares: its settings, the app, the open
connections and app instances, the drain event, the server's own response headers."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, Protocol

from ..config import Config
from ..protocol.http11 import ServerAnswer
from ..protocol.proxy import TrustedProxies
from ..protocol.request import Head
from ..types import ASGIApp
from .app import AppInstance, InstanceSettings
from .drain import DRAIN_EXTENSION, ConnectionDrain
from .log import ACCESS, RateLimit
from .metrics import Metrics
from .timers import TimerHeap

__all__ = ["Connection", "ServerState"]


def _target(path: str | None) -> bytes | None:
    return path.encode("ascii", "replace") if path is not None else None


access_log = logging.getLogger(ACCESS)


class Connection(Protocol):
    """What the server does with each open connection while it shuts down."""

    #: The drain of a WebSocket connection; None for HTTP.
    ws_drain: ConnectionDrain | None
    #: The transport is gone.
    lost: bool

    def drain_begins(self) -> None: ...

    def shutdown(self) -> None: ...

    def force_shutdown(self) -> None: ...

    def abort(self) -> None: ...


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.app = app
        self.app_name = getattr(app, "__qualname__", None) or type(app).__qualname__
        self.loop = loop
        #: What every app instance starts from, a fresh copy each: the context the server
        #: was started in, never an app's (a pipelined request is started from inside the
        #: previous request's Task, whose context variables it must not see).
        self.context = contextvars.copy_context()
        self.connections: set[Connection] = set()
        self.instances: set[AppInstance] = set()
        self.lifespan_state: dict[str, Any] | None = None
        #: Every connection's deadlines, with one loop timer.
        self.timers = TimerHeap(loop)
        self.total_requests = 0
        #: Set when the connection count falls to zero during a shutdown.
        self.all_closed: asyncio.Event | None = None
        self.no_instances: asyncio.Event | None = None
        self.access_log_enabled = config.access_log and access_log.isEnabledFor(logging.INFO)
        #: The worker's counters when ``--metrics`` is set; None leaves the hot paths alone.
        self.metrics = Metrics() if config.metrics is not None else None
        #: What each app instance is given, the same for all.
        self.instance_settings = InstanceSettings(
            app=app,
            app_name=self.app_name,
            context=self.context,
            read_high_water=256 * 1024,
            read_low_water=64 * 1024,
            queue_high_water=config.ws_max_queue,
            app_close_timeout=config.app_close_timeout,
            timed=self.access_log_enabled or self.metrics is not None,
            metrics=self.metrics,
        )
        self.trusted = TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None
        self.warnings = RateLimit(per=10.0, most=20)
        #: Set when a drain begins (the health path answers 503 from then on); the
        #: connections are asked to close ``drain_delay`` later, when shutting_down is set.
        self.draining = False
        self.shutting_down = False
        #: Open WebSockets (HTTP/1.1 upgrades and HTTP/2 streams: ``ws_max_connections``
        #: counts both), the HTTP/2 streams among them, and HTTP requests whose app runs.
        self.ws_open = 0
        self.ws_streams = 0
        self.http_in_flight = 0
        #: Requests refused by each limit, for the log.
        self.refused = {"ws_max_connections": 0, "ws_accept_rate": 0, "limit_concurrency": 0}
        self._tokens = float(config.ws_accept_burst)
        self._tokens_at = 0.0
        self._health = _target(config.health_path)
        self._liveness = _target(config.liveness_path)
        gated = (
            config.health_path,
            config.liveness_path,
            config.ws_max_connections,
            config.ws_accept_rate,
            config.limit_concurrency,
        )
        #: Sees each request head before any app (see HTTPConnection.gate); None when no
        #: setting needs it.
        self.gate = self._gate if any(value is not None for value in gated) else None
        #: Set when the drain begins; handed to apps as ``channelserver.drain``'s "started".
        self.drain_started = asyncio.Event()
        self.http_extensions = {DRAIN_EXTENSION: {"started": self.drain_started}}
        self.on_request: Callable[[], None] | None = None
        self.heads_to_flush: list[AppInstance] = []
        self._date_second = -1
        self._head_bytes = b""
        self._header_pairs: list[tuple[bytes, bytes]] = []

    # -- what the server answers itself ----------------------------------------------------
    def _gate(self, head: Head) -> ServerAnswer | None:
        config = self.config
        if head.websocket:
            limit = config.ws_max_connections
            if limit is not None and self.ws_open >= limit:
                return self._refuse(
                    "ws_max_connections", 5, f"{self.ws_open} WebSocket connections open, the ws_max_connections limit"
                )
            rate = config.ws_accept_rate
            if rate is not None:
                now = self.loop.time()
                tokens = min(float(config.ws_accept_burst), self._tokens + (now - self._tokens_at) * rate)
                self._tokens_at = now
                if tokens < 1.0:
                    self._tokens = tokens
                    wait = math.ceil((1.0 - tokens) / rate) if rate > 0 else 60
                    return self._refuse("ws_accept_rate", wait, f"over ws_accept_rate ({rate:g} handshakes/s)")
                self._tokens = tokens - 1.0
            return None
        if head.method in (b"GET", b"HEAD"):
            path = head.target.partition(b"?")[0]
            if path == self._health:
                if self.draining:
                    return ServerAnswer(503, "draining\n")
                return ServerAnswer(200, "ok\n")
            if path == self._liveness:
                return ServerAnswer(200, "alive\n")
        limit = config.limit_concurrency
        if limit is not None and self.http_in_flight >= limit:
            return self._refuse(
                "limit_concurrency", 1, f"{self.http_in_flight} requests in flight, the limit_concurrency"
            )
        return None

    def _refuse(self, limit: str, retry_after: int, why: str) -> ServerAnswer:
        self.refused[limit] += 1
        return ServerAnswer(
            503,
            "Service Unavailable: the server is at its limit; retry later\n",
            ((b"retry-after", b"%d" % max(1, retry_after)),),
            f"{why}; {self.refused[limit]} refused by {limit} so far",
        )

    def flush_head_soon(self, instance: AppInstance) -> None:
        """Flush ``instance``'s held-back response head on the next loop turn unless a body
        part took it first; one callback per loop turn serves every connection."""
        if not self.heads_to_flush:
            self.loop.call_soon(self._flush_heads)
        self.heads_to_flush.append(instance)

    def _flush_heads(self) -> None:
        instances, self.heads_to_flush = self.heads_to_flush, []
        for instance in instances:
            instance.flush_head()

    def http_extensions_for_request(self) -> dict[str, Any]:
        return dict(self.http_extensions)

    def _refresh_headers(self) -> None:
        """The server's own response headers (server, date), as pairs and serialized; the
        date is computed once per second."""
        now = int(time.time())
        if now == self._date_second:
            return
        self._date_second = now
        pairs = [(b"server", b"channelserver")] if self.config.server_header else []
        if self.config.date_header:
            pairs.append((b"date", formatdate(now, usegmt=True).encode()))
        self._header_pairs = pairs
        self._head_bytes = b"".join(name + b": " + value + b"\r\n" for name, value in pairs)

    def default_headers(self) -> bytes:
        """Serialized, for the HTTP machine to splice into a response head."""
        self._refresh_headers()
        return self._head_bytes

    def default_header_list(self) -> list[tuple[bytes, bytes]]:
        """As pairs, for wsproto's handshake responses."""
        self._refresh_headers()
        return self._header_pairs

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections and self.all_closed is not None:
            self.all_closed.set()

    def instance_finished(self, instance: AppInstance) -> None:
        self.instances.discard(instance)
        if not self.instances and self.no_instances is not None:
            self.no_instances.set()
