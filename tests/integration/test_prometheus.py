"""The ``--metrics`` listener scraped by a real Prometheus (issue 16).

A real ``prometheus`` (Debian's package; ``scripts/system-deps.sh`` installs it) runs as a
subprocess with a configuration written into ``tmp_path``, scraping every second a real
``channelserver --workers 2 --metrics 127.0.0.1:0`` serving ``core_app`` (tests/apps).
The test drives a known load (HTTP requests with known statuses, WebSockets closed by the
client with 1000 and by the app with 4001), then asks Prometheus's query API, in PromQL,
until the numbers it scraped are the ones sent, or a deadline passes: every wait polls a
condition, none sleeps a fixed time. Then it SIGKILLs one worker and checks, again through
Prometheus, that the parent replaced it, counted the restart as ``died``, and that no
whole-server counter went backwards (``resets()`` over every scrape, and the totals after).

Prometheus missing under ``CI=true`` is a failure, elsewhere a skip
(:func:`~tests.demo.conftest.require_executable`, as tests/deploy does for nginx).
``/instances`` is checked without Prometheus.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.demo.conftest import require_executable
from tests.servers import ServerProcess, channelserver

pytestmark = pytest.mark.timeout(120)

APP = "core_app:app"
WORKERS = 2
METRICS_ON = re.compile(rb"Metrics on http://127\.0\.0\.1:(\d+)/metrics")
ALL_READY = re.compile(rb"All (\d+) worker\(s\) ready")
PROMETHEUS_READY = re.compile(rb"Server is ready to receive web requests")
#: Seconds between scrapes (and rule evaluations): the numbers show up within a few of them.
SCRAPE_INTERVAL = "1s"
#: Seconds a wait on Prometheus may take: a worker's snapshot (about 1 s), a scrape (1 s),
#: and room for a slow machine.
SETTLE = 30.0

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: channelserver
    metrics_path: /metrics
    static_configs:
      - targets: ['{target}']
"""

# The load, and what it must add up to.
HTTP_LOAD = [("GET", "/hello", 200)] * 24 + [("POST", "/body", 200)] * 6 + [("GET", "/missing", 404)] * 10
WEBSOCKETS = 10
CLOSED_BY_APP = 4  #: of WEBSOCKETS: each asks the app to close with 4001; the others close with 1000
MESSAGES_EACH = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- Prometheus ------------------------------------------------------------------------------
Key = str | tuple[str, ...]


class Prometheus:
    """A running Prometheus and its HTTP API (``/api/v1/query``)."""

    def __init__(self, process: ServerProcess, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=5.0)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now."""
        response = self.http.get("/api/v1/query", params={"query": promql})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{promql!r}: {response.text}"
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def vector(self, promql: str, *labels: str) -> dict[Key, float]:
        """``promql``'s series keyed by the values of ``labels`` (one label: its value, several:
        a tuple), series whose value is 0 left out: a counter a collector reports at 0 for
        every label value compares equal to one that reports only what happened."""
        out: dict[Key, float] = {}
        for series in self.query(promql):
            values = tuple(series["metric"].get(label, "") for label in labels)
            value = float(series["value"][1])
            if value:
                out[values[0] if len(values) == 1 else values] = value
        return out

    def scalar(self, promql: str) -> float | None:
        """The value of a one-series ``promql`` (``sum(...)``, say); None when it has no series."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql!r} gave several series: {result}"
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> str:
        """The scrape target's health and last error: what a failed wait reports."""
        try:
            active = self.http.get("/api/v1/targets").json()["data"]["activeTargets"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return f"(targets unreadable: {exc!r})"
        return "; ".join(f"{t['scrapeUrl']} {t['health']} {t['lastError']!r}" for t in active) or "(no target)"

    def wait_for(self, what: str, read: Any, expected: Any, timeout: float = SETTLE) -> Any:
        """Poll ``read()`` until it equals ``expected``; fail with the last value it gave."""
        deadline = time.monotonic() + timeout
        while True:
            got = read()
            if got == expected:
                return got
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{what}: Prometheus returned {got!r}, expected {expected!r} (waited {timeout}s; "
                    f"target: {self.targets()})"
                )
            time.sleep(0.25)

    def close(self) -> None:
        self.http.close()


@contextmanager
def prometheus(directory: Path, target: str) -> Iterator[Prometheus]:
    """Prometheus scraping ``target`` every ``SCRAPE_INTERVAL``, its configuration and its
    storage in ``directory``, on a free port of 127.0.0.1; stopped with SIGTERM at the end."""
    binary = require_executable("prometheus", "/usr/bin/prometheus")
    config = directory / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(interval=SCRAPE_INTERVAL, target=target))
    for attempt in range(3):  # the free port can be taken between free_port() and the bind
        port = free_port()
        process = ServerProcess(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / f'tsdb-{attempt}'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            cwd=directory,
            wait_for_port=False,
        )
        try:
            process.wait_for(PROMETHEUS_READY, 30)
            break
        except RuntimeError:  # it exited
            process.close()
            if "address already in use" not in process.text or attempt == 2:
                raise
        except BaseException:
            process.stop(signal.SIGKILL)
            raise
    server = Prometheus(process, port)
    try:
        ready = server.http.get("/-/ready")
        assert ready.status_code == 200, f"/-/ready answered {ready.status_code}: {ready.text}\n{process.text}"
        yield server
    finally:
        server.close()
        process.stop(signal.SIGTERM, timeout=15)


# -- channelserver ---------------------------------------------------------------------------
@contextmanager
def metrics_server(*flags: str) -> Iterator[tuple[ServerProcess, int]]:
    """``channelserver --workers 2 --metrics 127.0.0.1:0`` serving ``core_app``, all its
    workers ready; yields it and the port of its metrics listener (from its log)."""
    server = channelserver(APP, "--workers", str(WORKERS), "--metrics", "127.0.0.1:0", *flags)
    try:
        metrics_port = server.wait_for(METRICS_ON, 20)
        assert server.wait_for(ALL_READY, 30) == WORKERS
        yield server, metrics_port
    finally:
        server.stop()


def request(port: int, method: str, path: str) -> int:
    """One request on a fresh connection (so the load spreads over the workers): its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"some body" if method == "POST" else None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def busiest_worker(server: ServerProcess, pids: list[int]) -> int:
    """Of ``pids``, the worker that served the most (its access-log lines carry its pid):
    killing it loses what only its counters held, unless the parent kept them."""
    served = Counter(int(pid) for pid in re.findall(rb"\[(\d+)\][^\n]* 127\.0\.0\.1:\d+ - \"", server.output))
    busiest = max(pids, key=lambda pid: served[pid])
    assert served[busiest] > 0, f"no access-log line of a worker in {pids}:\n{server.text}"
    return busiest


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids of the server's worker processes alive now: children of the parent that the
    log named ready (a child that is not a worker, multiprocessing's own, is left out)."""
    ready = {int(pid) for pid in re.findall(rb"Worker pid (\d+) ready", server.output)}
    return sorted(child.pid for child in psutil.Process(server.proc.pid).children() if child.pid in ready)


# -- the tests -------------------------------------------------------------------------------
def test_prometheus_scrapes_whole_server_totals_that_survive_a_killed_worker(tmp_path: Path) -> None:
    with metrics_server() as (server, metrics_port), ExitStack() as stack:
        assert server.port is not None
        prom = stack.enter_context(prometheus(tmp_path, f"127.0.0.1:{metrics_port}"))
        prom.wait_for("the channelserver target is up", lambda: prom.scalar('up{job="channelserver"}'), 1)
        prom.wait_for("channelserver_workers", lambda: prom.scalar("channelserver_workers"), WORKERS)

        # HTTP: each request on a connection of its own
        statuses = [request(server.port, method, path) for method, path, _ in HTTP_LOAD]
        assert statuses == [status for _, _, status in HTTP_LOAD]

        # WebSockets: open together, a few echoes each, then closed by either side
        clients: list[ClientConnection] = [
            stack.enter_context(connect(f"{server.ws_url}/ws/echo?token=metrics{i}", open_timeout=10, close_timeout=5))
            for i in range(WEBSOCKETS)
        ]
        for client in clients:
            for n in range(MESSAGES_EACH):
                client.send(f"message {n}")
                assert client.recv(timeout=10) == f"message {n}"
        prom.wait_for(
            "open WebSocket connections while all are open",
            lambda: prom.scalar('sum(channelserver_connections_open{protocol="websocket"})'),
            WEBSOCKETS,
        )
        for client in clients[CLOSED_BY_APP:]:
            client.close(code=1000)
        for client in clients[:CLOSED_BY_APP]:
            client.send("close:4001:bye")
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
            assert closed.value.rcvd_then_sent  # the app's close frame came first

        # What Prometheus must have scraped
        by_status = 'sum by (status) (channelserver_http_requests_total{job="channelserver"})'
        by_method = 'sum by (method) (channelserver_http_requests_total{job="channelserver"})'
        closes = 'sum by (code, side) (channelserver_websocket_closes_total{job="channelserver"})'
        expected_status = {"2xx": 30, "4xx": 10}
        expected_closes = {("1000", "client"): WEBSOCKETS - CLOSED_BY_APP, ("4001", "server"): CLOSED_BY_APP}
        prom.wait_for(f"{by_status}", lambda: prom.vector(by_status, "status"), expected_status)
        prom.wait_for(f"{closes}", lambda: prom.vector(closes, "code", "side"), expected_closes)
        prom.wait_for(f"{by_method}", lambda: prom.vector(by_method, "method"), {"GET": 34, "POST": 6})
        messages = "sum by (direction) (channelserver_websocket_messages_total)"
        sent_in = WEBSOCKETS * MESSAGES_EACH + CLOSED_BY_APP  # the close requests are messages too
        prom.wait_for(
            messages, lambda: prom.vector(messages, "direction"), {"in": sent_in, "out": WEBSOCKETS * MESSAGES_EACH}
        )
        handshakes = "sum by (outcome) (channelserver_websocket_handshakes_total)"
        prom.wait_for(handshakes, lambda: prom.vector(handshakes, "outcome"), {"accepted": WEBSOCKETS})
        connections = "sum(channelserver_connections_total)"
        prom.wait_for(connections, lambda: prom.scalar(connections), len(HTTP_LOAD) + WEBSOCKETS)
        prom.wait_for(
            "sum(channelserver_connections_open) after the load",
            lambda: prom.scalar("sum(channelserver_connections_open)"),
            0,
        )
        assert prom.scalar("channelserver_workers") == WORKERS
        slots = "count by (worker) (channelserver_worker_rss_bytes)"
        assert set(prom.vector(slots, "worker")) == {"0", "1"}

        # SIGKILL one worker: the parent replaces it, and the totals stay where they were
        before = {
            by_status: prom.vector(by_status, "status"),
            closes: prom.vector(closes, "code", "side"),
            connections: prom.scalar(connections),
        }
        pids = worker_pids(server)
        assert len(pids) == WORKERS, (pids, server.text)
        victim = busiest_worker(server, pids)
        os.kill(victim, signal.SIGKILL)
        heir = server.wait_for(
            re.compile(rb"Worker pid %d died [^\n]*\n(?:[^\n]*\n)*?[^\n]*Worker pid (\d+) ready" % victim), 30
        )
        assert heir not in pids
        restarts = 'sum by (reason) (channelserver_worker_restarts_total{job="channelserver"})'
        seen: list[dict[str, Any]] = []

        def restarts_and_totals() -> tuple[dict[Key, float], float | None]:
            seen.append(
                {
                    by_status: prom.vector(by_status, "status"),
                    closes: prom.vector(closes, "code", "side"),
                    connections: prom.scalar(connections),
                }
            )
            return prom.vector(restarts, "reason"), prom.scalar("channelserver_workers")

        prom.wait_for("worker restarts by reason, and workers serving", restarts_and_totals, ({"died": 1}, WORKERS))
        for reading in seen:  # every reading while the worker was replaced
            assert reading == before, f"totals changed after the SIGKILL: {reading} != before it: {before}"
        assert set(prom.vector(slots, "worker")) == {"0", "1"}, "the replacement takes its predecessor's slot"
        for counter in (
            "channelserver_http_requests_total",
            "channelserver_websocket_closes_total",
            "channelserver_connections_total",
        ):
            # resets() sees every scrape in the window, not only the instants queried above
            went_back = prom.vector(f"resets({counter}[5m])", "method", "status", "code", "side")
            assert went_back == {}, f"{counter} went backwards: {went_back}"


def test_instances_on_the_metrics_listener_lists_every_worker() -> None:
    with metrics_server() as (server, metrics_port), connect(f"{server.ws_url}/ws/echo?token=instances") as client:
        client.send("hello")
        assert client.recv(timeout=10) == "hello"
        base = f"http://127.0.0.1:{metrics_port}"
        response = httpx.get(f"{base}/instances", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain"), response.headers
        for slot in range(WORKERS):
            assert re.search(rf"App instances of worker {slot} \(pid \d+\): \d+ running", response.text), response.text
        assert "websocket /ws/echo" in response.text, response.text
        metrics = httpx.get(f"{base}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain"), metrics.headers
        assert httpx.get(f"{base}/elsewhere", timeout=10).status_code == 404
