"""Every metric ``--metrics`` serves: its name, kind, labels and meaning.

This is the one list: the exposition is built from it, and docs/observability.md's table
is checked against it by the tests.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "DURATION_BUCKETS",
    "HANDSHAKE_OUTCOMES",
    "LAG_BUCKETS",
    "METRICS",
    "REFUSAL_LIMITS",
    "RESTART_REASONS",
    "SIZE_BUCKETS",
    "Metric",
    "by_name",
]

#: Upper bounds (``le``) of each histogram's buckets; +Inf is implied.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: The values of the labels that have a known set: each is served from 0, so that the
#: first event is an increase a rule can see (a series born at 1 has none).
HANDSHAKE_OUTCOMES = ("accepted", "rejected", "denied", "unavailable", "failed")
REFUSAL_LIMITS = ("max_connections", "limit_concurrency", "ws_max_connections", "ws_accept_rate")
RESTART_REASONS = ("max_requests", "max_worker_memory", "max_worker_age", "reload", "died", "unresponsive")


class Metric(NamedTuple):
    name: str
    kind: str  # "counter", "gauge" or "histogram"
    labels: tuple[str, ...]
    help: str


METRICS: tuple[Metric, ...] = (
    # -- counters: whole-server totals that never go backwards --------------------------
    Metric("channelserver_connections_total", "counter", (), "TCP connections accepted."),
    Metric(
        "channelserver_http_requests_total",
        "counter",
        ("method", "status"),
        "HTTP requests that reached the app, by method and status class (none: the client left first).",
    ),
    Metric(
        "channelserver_http_request_duration_seconds",
        "histogram",
        (),
        "Time from an HTTP request's app start to its end.",
    ),
    Metric("channelserver_received_bytes_total", "counter", (), "Bytes read from clients."),
    Metric("channelserver_sent_bytes_total", "counter", (), "Bytes written to clients."),
    Metric(
        "channelserver_websocket_handshakes_total",
        "counter",
        ("outcome",),
        "WebSocket handshakes that reached the app: accepted, rejected, denied, unavailable or failed.",
    ),
    Metric(
        "channelserver_refused_total",
        "counter",
        ("limit",),
        "Requests and handshakes the server answered 503 itself, before any app, by limit.",
    ),
    Metric(
        "channelserver_websocket_closes_total",
        "counter",
        ("code", "side"),
        "Closed WebSockets by close code (1006: no close frame) and by the side that closed first.",
    ),
    Metric("channelserver_websocket_messages_total", "counter", ("direction",), "WebSocket messages, in and out."),
    Metric(
        "channelserver_websocket_message_size_bytes",
        "histogram",
        ("direction",),
        "WebSocket message sizes (a text message's length in characters).",
    ),
    Metric(
        "channelserver_app_instances_cancelled_total",
        "counter",
        (),
        "App instances the server cancelled: still running app_close_timeout after their disconnect (or at shutdown).",
    ),
    Metric("channelserver_drain_closed_total", "counter", (), "WebSockets a drain closed with 1012."),
    Metric(
        "channelserver_worker_restarts_total",
        "counter",
        ("reason",),
        "Worker processes replaced, by reason.",
    ),
    # -- gauges and per-worker series ----------------------------------------------------
    Metric("channelserver_workers", "gauge", (), "Worker processes serving."),
    Metric(
        "channelserver_connections_open",
        "gauge",
        ("worker", "protocol"),
        "Open connections by protocol: websocket, the open WebSockets (HTTP/1.1 upgrades and HTTP/2 streams); http, the other connections.",
    ),
    Metric("channelserver_app_instances", "gauge", ("worker",), "App instances running."),
    Metric(
        "channelserver_app_instances_stuck",
        "gauge",
        ("worker",),
        "App instances still running more than stuck_after seconds after their disconnect.",
    ),
    Metric("channelserver_draining", "gauge", ("worker",), "1 from the moment the worker's drain begins."),
    Metric(
        "channelserver_drain_held",
        "gauge",
        ("worker",),
        "WebSockets kept open by a channelserver.drain hold.",
    ),
    Metric("channelserver_worker_rss_bytes", "gauge", ("worker",), "Resident memory of the worker process."),
    Metric(
        "channelserver_event_loop_lag_seconds",
        "histogram",
        ("worker",),
        "How late a timer due every 0.25 s fires on the worker's event loop.",
    ),
)

_BY_NAME = {metric.name: metric for metric in METRICS}


def by_name(name: str) -> Metric:
    return _BY_NAME[name]
