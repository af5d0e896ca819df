"""The parent's sum of its workers' metrics: totals that never go backwards when a worker
is replaced, gauges only of the living, and the text format prometheus_client makes of
them (parsed back with its own parser)."""

from __future__ import annotations

import bisect
import random

from prometheus_client.parser import text_string_to_metric_families

from channelserver.monitor.catalog import DURATION_BUCKETS, LAG_BUCKETS, METRICS, SIZE_BUCKETS
from channelserver.monitor.exposition import Exposition
from channelserver.monitor.snapshot import Gathered, Snapshot
from channelserver.server.metrics import Histogram, Metrics

SIZE_BOUNDS_INT = tuple(int(bound) for bound in SIZE_BUCKETS)


def worker_snapshot(requests: int, open_ws: int, lag: list[float]) -> Snapshot:
    histogram = Histogram(LAG_BUCKETS)
    for seconds in lag:
        histogram.observe(seconds)
    return Snapshot(
        counters={"channelserver_http_requests_total": {("GET", "2xx"): requests}},
        histograms={"channelserver_event_loop_lag_seconds": {(): histogram.copy()}},
        gauges={"channelserver_connections_open": {("websocket",): open_ws}},
    )


def test_an_exited_workers_counters_stay_in_the_totals_and_its_gauges_go() -> None:
    gathered = Gathered()
    gathered.update("a", 0, worker_snapshot(10, 3, [0.0005]))
    gathered.update("b", 1, worker_snapshot(5, 2, [0.2]))
    view = gathered.view()
    assert view.counters["channelserver_http_requests_total"] == {("GET", "2xx"): 15}
    assert view.gauges["channelserver_connections_open"] == {("0", "websocket"): 3, ("1", "websocket"): 2}

    gathered.retire("a")  # worker a exits; its replacement "c" takes slot 0
    gathered.update("c", 0, worker_snapshot(1, 1, [0.0005]))
    view = gathered.view()
    assert view.counters["channelserver_http_requests_total"] == {("GET", "2xx"): 16}
    assert view.gauges["channelserver_connections_open"] == {("0", "websocket"): 1, ("1", "websocket"): 2}
    # the per-worker histogram of slot 0 counts a's samples and c's: it does not reset
    counts, _ = view.histograms["channelserver_event_loop_lag_seconds"][("0",)]
    assert sum(counts) == 2


def test_a_worker_and_its_replacement_draining_side_by_side_add_up_in_their_slot() -> None:
    gathered = Gathered()
    gathered.update("old", 0, worker_snapshot(3, 4, []))
    gathered.update("new", 0, worker_snapshot(1, 1, []))
    assert gathered.view().gauges["channelserver_connections_open"] == {("0", "websocket"): 5}


def test_restarts_and_workers_are_the_parents_own() -> None:
    gathered = Gathered()
    gathered.workers = 2
    gathered.restarted("died")
    gathered.restarted("max_worker_age")
    gathered.restarted("died")
    view = gathered.view()
    restarts = view.counters["channelserver_worker_restarts_total"]
    assert restarts[("died",)] == 2
    assert restarts[("max_worker_age",)] == 1
    # every reason is served from 0, so that the first restart is an increase a rule sees
    assert {reason for (reason,), n in restarts.items() if n == 0} == {
        "max_requests",
        "max_worker_memory",
        "reload",
        "unresponsive",
    }
    assert view.gauges["channelserver_workers"] == {(): 2}


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    histogram = Histogram(DURATION_BUCKETS)
    for seconds in (0.001, 0.0011, 31.0):
        histogram.observe(seconds)
    counts, total = histogram.copy()
    assert counts[0] == 1  # le="0.001" holds 0.001 itself
    assert counts[1] == 1
    assert counts[-1] == 1  # +Inf
    assert total == 0.001 + 0.0011 + 31.0


def test_the_text_format_parses_back_with_cumulative_buckets_and_every_metric_described() -> None:
    metrics = Metrics()
    metrics.request_done("GET", 200, 0.003)
    metrics.request_done("BREW", None, 0.02)
    metrics.websocket_gone("accepted", 1012, "server")
    metrics.websocket_gone("accepted", None, "client")
    metrics.websocket_gone("rejected", None, None)
    snapshot = Snapshot(
        counters={
            "channelserver_http_requests_total": dict(metrics.requests),
            "channelserver_websocket_closes_total": dict(metrics.closes),
            "channelserver_websocket_handshakes_total": {(k,): n for k, n in metrics.handshakes.items()},
        },
        histograms={"channelserver_http_request_duration_seconds": {(): metrics.duration.copy()}},
    )
    gathered = Gathered()
    gathered.update("w", 0, snapshot)
    text = Exposition(gathered.view).render().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    # every metric of the catalog is described, even with no sample yet
    assert {metric.name.removesuffix("_total") for metric in METRICS} <= set(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in families.values() for s in family.samples
    }
    assert samples[("channelserver_http_requests_total", (("method", "GET"), ("status", "2xx")))] == 1
    assert samples[("channelserver_http_requests_total", (("method", "other"), ("status", "none")))] == 1
    assert samples[("channelserver_websocket_closes_total", (("code", "1012"), ("side", "server")))] == 1
    assert samples[("channelserver_websocket_closes_total", (("code", "1006"), ("side", "client")))] == 1
    assert samples[("channelserver_websocket_handshakes_total", (("outcome", "rejected"),))] == 1
    bucket = "channelserver_http_request_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.0025"),))] == 0
    assert samples[(bucket, (("le", "0.005"),))] == 1
    assert samples[(bucket, (("le", "0.025"),))] == 2  # cumulative
    assert samples[(bucket, (("le", "+Inf"),))] == 2
    assert samples[("channelserver_http_request_duration_seconds_count", ())] == 2


def test_requests_are_counted_by_method_and_status_class() -> None:
    metrics = Metrics()
    for method, status in [
        ("GET", 200),
        ("GET", 204),
        ("POST", 503),
        ("BREW", 404),  # a method outside the known seven: "other"
        ("other", None),  # the client left before a response
        ("GET", 700),  # the table lets 100-999 through: no class above 5xx
        ("DELETE", 101),
    ]:
        metrics.request_done(method, status, 0.01)
    assert metrics.requests == {
        ("GET", "2xx"): 2,
        ("POST", "5xx"): 1,
        ("other", "4xx"): 1,
        ("other", "none"): 1,
        ("GET", "none"): 1,
        ("DELETE", "1xx"): 1,
    }
    assert metrics.duration.copy()[0][3] == 7  # 0.01 s: the le="0.01" bucket


def test_a_histogram_folded_in_any_batches_counts_as_one_value_at_a_time() -> None:
    """``observe`` keeps, ``fold`` counts (sorted, bisected): the same buckets and sum as
    counting each value as it comes, whatever the batches, bounds included."""
    rng = random.Random(7)
    values = [rng.choice([0, 1, 63, 64, 65, 256, 1024, 5000, 1 << 20, (1 << 20) + 1, 1 << 24]) for _ in range(3000)]
    histogram = Histogram(SIZE_BOUNDS_INT, 0)
    expected = [0] * (len(SIZE_BOUNDS_INT) + 1)
    for value in values:
        histogram.observe(value)
        expected[bisect.bisect_left(SIZE_BOUNDS_INT, value)] += 1
        if rng.random() < 0.01:
            histogram.fold()
    assert histogram.copy() == (expected, sum(values))
    assert histogram.pending == []
