"""A worker's own counters for ``--metrics``: plain integers and lists, counted on the
hot paths only when ``--metrics`` is set (``ServerState.metrics`` is None otherwise), and
copied into a :data:`~channelserver.monitor.snapshot.Snapshot` about once a second.

The counters never reset: the parent (or, with one process, the server's own listener)
serves the latest snapshot, and keeps an exited worker's last one, so totals never go
backwards. Gauges (open connections, app instances, memory) are read when the snapshot
is taken.
"""

from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..monitor.catalog import DURATION_BUCKETS, HANDSHAKE_OUTCOMES, LAG_BUCKETS, SIZE_BUCKETS
from ..monitor.snapshot import Snapshot
from .tasks import awaiting

if TYPE_CHECKING:
    from ..config import Config


class ServerState(Protocol):
    """What the snapshot and the report read of the worker's ``ServerState``."""

    loop: asyncio.AbstractEventLoop
    config: Config
    app_name: str
    #: AppInstance and Connection objects (not imported here: they import this module)
    instances: set[Any]
    connections: set[Any]
    refused: dict[str, int]
    ws_open: int
    ws_streams: int
    draining: bool


__all__ = ["LAG_INTERVAL", "Histogram", "Metrics", "instances_report", "rss_bytes"]

#: How often the event-loop lag is sampled.
LAG_INTERVAL = 0.25

_METHODS = ("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")
#: A request's count goes to its method's list at ``status // 100`` (0: no status; the
#: table lets 100-999 through): each index's class label, 6xx-9xx and none counted as none.
_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx", "none", "none", "none", "none")
_SIZE_BOUNDS = tuple(int(bound) for bound in SIZE_BUCKETS)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of ``pid`` from ``/proc`` (None where there is none)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class Histogram:
    """Counts per bucket (not cumulative; the last is +Inf) and the sum.

    :attr:`observe` only keeps the value (a list's ``append``: a message or a request
    pays for nothing more); :meth:`fold` counts what was kept, sorted once and each bound
    found by bisection, all of it in C. It runs when the numbers are read and, in the
    server, with the event-loop lag probe (every :data:`LAG_INTERVAL`), which bounds what
    is kept. (Counted one by one, a WebSocket message's two sizes were an eighth of its
    instructions in-process.)"""

    __slots__ = ("bounds", "counts", "observe", "pending", "total")

    def __init__(self, bounds: tuple[float, ...], total: float = 0.0) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = total
        self.pending: list[float] = []
        self.observe: Callable[[float], None] = self.pending.append

    def fold(self) -> None:
        """Count the values kept since the last fold."""
        pending = self.pending
        if not pending:
            return
        values = sorted(pending)
        pending.clear()  # the same list: ``observe`` is its append
        counts = self.counts
        below = 0
        for index, bound in enumerate(self.bounds):
            upto = bisect_right(values, bound, below)  # values <= bound: the bucket's "le"
            counts[index] += upto - below
            below = upto
        counts[-1] += len(values) - below
        self.total += sum(values)

    def copy(self) -> tuple[list[int], float]:
        self.fold()
        return list(self.counts), self.total


class Metrics:
    """One worker's counters."""

    def __init__(self) -> None:
        self.connections = 0
        self.bytes_in = 0
        self.bytes_out = 0
        #: method (or "other") -> requests by ``status // 100``: one dict lookup and one
        #: list increment a request (a (method, class) dict cost 1 us of 21 in-process)
        self._requests: dict[str, list[int]] = {method: [0] * len(_CLASSES) for method in (*_METHODS, "other")}
        self._other = self._requests["other"]
        self.duration = Histogram(DURATION_BUCKETS)
        self.handshakes: dict[str, int] = dict.fromkeys(HANDSHAKE_OUTCOMES, 0)
        #: (code, side) -> closes
        self.closes: dict[tuple[str, str], int] = {}
        # Sizes are ints: compared with int bounds, an int total (int against float takes
        # Python's slow comparison path, in bisect and in the sum).
        self.size_in = Histogram(_SIZE_BOUNDS, 0)
        self.size_out = Histogram(_SIZE_BOUNDS, 0)
        self.cancelled = 0
        self.drain_closed = 0
        self.max_connections_refused = 0
        self.lag = Histogram(LAG_BUCKETS)
        self._lag_handle: asyncio.TimerHandle | None = None

    # -- counting ----------------------------------------------------------------------
    def request_done(self, method: str, status: int | None, seconds: float) -> None:
        counts = self._requests.get(method) or self._other
        counts[status // 100 if status else 0] += 1
        self.duration.observe(seconds)

    @property
    def requests(self) -> dict[tuple[str, str], int]:
        """(method, status class) -> requests, for those seen."""
        out: dict[tuple[str, str], int] = {}
        for method, counts in self._requests.items():
            for index, n in enumerate(counts):
                if n:
                    key = (method, _CLASSES[index])
                    out[key] = out.get(key, 0) + n
        return out

    def websocket_gone(self, outcome: str, code: int | None, side: str | None) -> None:
        """A WebSocket connection ended: its handshake's outcome and, once accepted, its
        close code (1006 when no close frame was seen) and the side that closed first."""
        handshakes = self.handshakes
        handshakes[outcome] = handshakes.get(outcome, 0) + 1
        if side is not None:
            key = (str(code or 1006), side)
            self.closes[key] = self.closes.get(key, 0) + 1

    def message_in(self, message: dict[str, Any]) -> None:
        """A WebSocket message delivered to an app (counted from its size histogram)."""
        data = message.get("text") or message.get("bytes")
        self.size_in.observe(len(data) if data else 0)

    def message_out(self, message: dict[str, Any]) -> None:
        """A WebSocket message an app sent."""
        data = message.get("text") or message.get("bytes")
        self.size_out.observe(len(data) if data else 0)

    def fold(self) -> None:
        """Count every histogram's kept values (see :class:`Histogram`)."""
        for histogram in (self.duration, self.size_in, self.size_out, self.lag):
            histogram.fold()

    # -- event-loop lag ----------------------------------------------------------------
    def start_lag_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        due = loop.time() + LAG_INTERVAL

        def tick() -> None:
            nonlocal due
            now = loop.time()
            self.lag.observe(max(0.0, now - due))
            self.fold()
            due = now + LAG_INTERVAL
            self._lag_handle = loop.call_at(due, tick)

        self._lag_handle = loop.call_at(due, tick)

    def stop_lag_probe(self) -> None:
        if self._lag_handle is not None:
            self._lag_handle.cancel()
            self._lag_handle = None

    # -- the snapshot --------------------------------------------------------------------
    def snapshot(self, state: ServerState) -> Snapshot:
        now = state.loop.time()
        stuck_after = state.config.stuck_after
        stuck = sum(
            1
            for instance in state.instances
            if instance.disconnected_at is not None and now - instance.disconnected_at > stuck_after
        )
        held = sum(1 for conn in state.connections if conn.ws_drain is not None and conn.ws_drain.waiting)
        refused = {(limit,): n for limit, n in state.refused.items()}
        refused[("max_connections",)] = self.max_connections_refused
        rss = rss_bytes()
        size_in, size_out = self.size_in.copy(), self.size_out.copy()
        return Snapshot(
            counters={
                "channelserver_connections_total": {(): self.connections},
                "channelserver_http_requests_total": self.requests,
                "channelserver_received_bytes_total": {(): self.bytes_in},
                "channelserver_sent_bytes_total": {(): self.bytes_out},
                "channelserver_websocket_handshakes_total": {(k,): n for k, n in self.handshakes.items()},
                "channelserver_refused_total": refused,
                "channelserver_websocket_closes_total": dict(self.closes),
                "channelserver_websocket_messages_total": {
                    ("in",): sum(size_in[0]),
                    ("out",): sum(size_out[0]),
                },
                "channelserver_app_instances_cancelled_total": {(): self.cancelled},
                "channelserver_drain_closed_total": {(): self.drain_closed},
            },
            histograms={
                "channelserver_http_request_duration_seconds": {(): self.duration.copy()},
                "channelserver_websocket_message_size_bytes": {("in",): size_in, ("out",): size_out},
                "channelserver_event_loop_lag_seconds": {(): self.lag.copy()},
            },
            gauges={
                "channelserver_connections_open": {
                    ("http",): len(state.connections) - (state.ws_open - state.ws_streams),
                    ("websocket",): state.ws_open,
                },
                "channelserver_app_instances": {(): len(state.instances)},
                "channelserver_app_instances_stuck": {(): stuck},
                "channelserver_draining": {(): int(state.draining)},
                "channelserver_drain_held": {(): held},
                "channelserver_worker_rss_bytes": {(): rss} if rss is not None else {},
            },
        )


def instances_report(state: ServerState, worker: str) -> str:
    """One line per running app instance, worst first (longest since its disconnect, then
    oldest): what it serves, its consumer, its age, the time since its disconnect and the
    line it is awaiting. What SIGUSR1 logs and ``GET /instances`` shows."""
    loop_now, wall_now = state.loop.time(), time.monotonic()
    rows = []
    for instance in state.instances:
        scope = instance.scope
        what = f"http {scope['method']} {scope['path']}" if scope["type"] == "http" else f"websocket {scope['path']}"
        where, owner = awaiting(instance.coro)
        since = loop_now - instance.disconnected_at if instance.disconnected_at is not None else None
        age = wall_now - instance.started if instance.started else None
        facts = [f"{age:.1f}s old" if age is not None else "age unknown (no timing: access log and metrics off)"]
        if since is not None:
            facts.append(f"disconnected {since:.1f}s ago")
        if instance.cancelled_at is not None:
            facts.append("cancelled")
        facts.append(f"awaiting {where}")
        consumer = owner or state.app_name
        rows.append((-(since or -1.0), -(age or 0.0), f"  {what} {consumer}: {', '.join(facts)}"))
    rows.sort()
    lines = [f"App instances of worker {worker} (pid {os.getpid()}): {len(rows)} running"]
    lines.extend(row[2] for row in rows)
    return "\n".join(lines)
