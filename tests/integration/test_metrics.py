"""``--metrics`` on a real server process: every count checked against what real clients
did (parsed with prometheus_client's own parser), the report of running app instances
by ``GET /instances`` and by SIGUSR1, with one process and with workers, and the
address forms. tests/integration/test_prometheus.py has a real Prometheus scrape it.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from lifecycle_apps.harness import Events, serve
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.servers import PYTHON, ServerProcess, channelserver

pytestmark = pytest.mark.timeout(90)

METRICS_LINE = re.compile(rb"Metrics on http://127\.0\.0\.1:(\d+)/metrics")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.wait_for(METRICS_LINE)}"


def scrape(url: str) -> Samples:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have))


def eventually(url: str, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrape until ``check`` holds (a worker's numbers reach the parent once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"never held; last scrape: {samples}"
        time.sleep(0.1)


def load(base: str, ws_base: str) -> None:
    """What the counts are checked against (core_app's routes)."""
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(5):
            assert client.get("/hello").status_code == 200
        for _ in range(2):
            assert client.post("/body", content=b"x" * 1000).status_code == 200
        assert client.get("/misuse").status_code == 500
    with connect(f"{ws_base}/ws/echo") as ws:
        for text in ("one", "two", "x" * 5000):
            ws.send(text)
            assert ws.recv(timeout=10) == text
    with connect(f"{ws_base}/ws/echo") as ws:
        ws.send("close:4001:bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    with pytest.raises(InvalidStatus) as rejected:
        connect(f"{ws_base}/ws/reject")
    assert rejected.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as denied:
        connect(f"{ws_base}/ws/deny")
    assert denied.value.response.status_code == 401


def check_load(samples: Samples) -> None:
    requests = "channelserver_http_requests_total"
    assert value(samples, requests, method="GET", status="2xx") == 5
    assert value(samples, requests, method="POST", status="2xx") == 2
    assert value(samples, requests, status="5xx") == 1
    assert value(samples, "channelserver_http_request_duration_seconds_count") == 8
    handshakes = "channelserver_websocket_handshakes_total"
    assert value(samples, handshakes, outcome="accepted") == 2
    assert value(samples, handshakes, outcome="rejected") == 1
    assert value(samples, handshakes, outcome="denied") == 1
    closes = "channelserver_websocket_closes_total"
    assert value(samples, closes, code="1000", side="client") == 1
    assert value(samples, closes, code="4001", side="server") == 1
    assert value(samples, closes) == 2
    # 3 echoed messages and a close request in; 3 echoes out
    assert value(samples, "channelserver_websocket_messages_total", direction="in") == 4
    assert value(samples, "channelserver_websocket_messages_total", direction="out") == 3
    sizes = "channelserver_websocket_message_size_bytes_bucket"
    assert value(samples, sizes, direction="out", le="4096.0") == 2
    assert value(samples, sizes, direction="out", le="16384.0") == 3
    assert value(samples, "channelserver_received_bytes_total") > 2000
    assert value(samples, "channelserver_sent_bytes_total") > 1000  # the echoes go compressed
    assert value(samples, "channelserver_connections_total") >= 5  # httpx keeps its connection


@pytest.fixture
def single() -> Iterator[tuple[ServerProcess, str]]:
    with channelserver("core_app:app", "--metrics", "127.0.0.1:0") as server:
        yield server, metrics_url(server)


def test_every_count_matches_what_the_clients_did(single: tuple[ServerProcess, str]) -> None:
    server, url = single
    before = scrape(url)
    assert value(before, "channelserver_workers") == 1
    assert value(before, "channelserver_http_requests_total") == 0
    load(server.url, server.ws_url)
    samples = eventually(
        url,
        lambda s: (
            value(s, "channelserver_connections_open") == 0
            and value(s, "channelserver_event_loop_lag_seconds_count") >= 1
        ),
    )
    check_load(samples)
    assert value(samples, "channelserver_app_instances", worker="0") == 0
    assert value(samples, "channelserver_worker_rss_bytes", worker="0") > 10_000_000
    # the event loop was sampled (every 0.25 s) and kept up
    lag = value(samples, "channelserver_event_loop_lag_seconds_count", worker="0")
    assert lag >= 1
    assert value(samples, "channelserver_event_loop_lag_seconds_bucket", worker="0", le="0.1") >= lag * 0.9
    # the listener is its own: the app's port has no /metrics, the listener no app
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 404
    assert httpx.get(f"{url}/hello", timeout=10).status_code == 404


def test_open_connections_and_refusals_are_counted_while_they_last(tmp_path: Path) -> None:
    with channelserver("core_app:app", "--metrics", "127.0.0.1:0", "--ws-max-connections", "2") as server:
        url = metrics_url(server)
        with connect(f"{server.ws_url}/ws/echo") as one, connect(f"{server.ws_url}/ws/echo") as two:
            for ws in (one, two):
                ws.send("hi")
                assert ws.recv(timeout=10) == "hi"
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{server.ws_url}/ws/echo")
            assert refused.value.response.status_code == 503
            samples = scrape(url)
            assert value(samples, "channelserver_connections_open", protocol="websocket") == 2
            assert value(samples, "channelserver_app_instances") == 2
            assert value(samples, "channelserver_refused_total", limit="ws_max_connections") == 1
            assert value(samples, "channelserver_websocket_handshakes_total") == 0  # none ended yet
        samples = eventually(url, lambda s: value(s, "channelserver_connections_open") == 0)
        assert value(samples, "channelserver_websocket_handshakes_total", outcome="accepted") == 2


STUCK_APP = "lifecycle_app:application"


def lifecycle(*flags: str, tmp_path: Path) -> ServerProcess:
    return serve(STUCK_APP, *flags, events=Events(tmp_path / "events.log"))


def stuck_client(ws_url: str) -> None:
    """A consumer whose disconnect() never returns: connect, then leave."""
    with connect(f"{ws_url}/ws/stuck/") as ws:
        ws.close()


def stuck_line(text: str) -> re.Match[str] | None:
    return re.search(
        r"websocket /ws/stuck/ StuckConsumer: [\d.]+s old, disconnected ([\d.]+)s ago, "
        r"awaiting \S+lifecycle_app\.py:(\d+) in disconnect",
        text,
    )


def test_a_stuck_consumer_is_named_with_its_awaited_line_by_instances_and_sigusr1_under_workers(
    tmp_path: Path,
) -> None:
    flags = ("--workers", "2", "--metrics", "127.0.0.1:0", "--stuck-after", "0.5")
    with lifecycle(*flags, tmp_path=tmp_path) as server:
        url = metrics_url(server)
        server.wait_for(re.compile(rb"All 2 worker\(s\) ready"))
        stuck_client(server.ws_url)
        server.wait_for(re.compile(rb"event: stuck got disconnect"))
        samples = eventually(url, lambda s: value(s, "channelserver_app_instances_stuck") == 1)
        assert value(samples, "channelserver_app_instances") == 1
        report = httpx.get(f"{url}/instances", timeout=10)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/plain")
        # one block per worker, each headed by its slot and pid
        assert sorted(re.findall(r"App instances of worker (\d) \(pid \d+\): (\d) running", report.text)) in (
            [("0", "0"), ("1", "1")],
            [("0", "1"), ("1", "0")],
        )
        found = stuck_line(report.text)
        assert found is not None, report.text
        source = (Path(__file__).parent / "lifecycle_apps" / "lifecycle_app.py").read_text().splitlines()
        assert "await" in source[int(found[2]) - 1]  # the line it awaits is named exactly

        server.signal(signal.SIGUSR1)
        server.wait_for(re.compile(rb"Received SIGUSR1: asking 2 worker\(s\) to log their app instances"))
        server.wait_for(re.compile(rb"WARNING App instances of worker \d \(pid \d+\): 1 running"))
        server.wait_for(re.compile(rb"websocket /ws/stuck/ StuckConsumer: .*in disconnect"))
        assert server.stop() == 0, server.text


def test_sigusr1_on_one_process_logs_its_app_instances(tmp_path: Path) -> None:
    with lifecycle(tmp_path=tmp_path) as server:
        stuck_client(server.ws_url)
        server.wait_for(re.compile(rb"event: stuck got disconnect"))
        server.signal(signal.SIGUSR1)
        server.wait_for(re.compile(rb"App instances of worker 0 \(pid \d+\): 1 running"))
        server.wait_for(re.compile(rb"websocket /ws/stuck/ StuckConsumer: .*in disconnect"))
        # it serves on: SIGUSR1 neither stops nor disturbs it
        assert httpx.get(f"{server.url}/tasks", timeout=10).status_code == 200
        assert server.stop() == 0, server.text


def test_metrics_on_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    with channelserver("core_app:app", "--metrics", f"unix:{path}") as server:
        server.wait_for(re.compile(rb"Metrics on unix:\S+metrics\.sock"))
        assert httpx.get(f"{server.url}/hello", timeout=10).status_code == 200
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://metrics") as client:
            answer = client.get("/metrics")
        assert answer.status_code == 200
        assert 'channelserver_http_requests_total{method="GET",status="2xx"} 1.0' in answer.text


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("9100", "expected HOST:PORT (e.g. 127.0.0.1:9100) or unix:/path"),
        ("unix:", "give a socket path after unix:"),
    ],
)
def test_a_bad_metrics_address_is_a_clear_startup_error(address: str, says: str) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "channelserver", "core_app:app", "--metrics", address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert says in done.stderr


def test_a_metrics_address_in_use_is_a_clear_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with channelserver("core_app:app", "--metrics", f"127.0.0.1:{port}", wait_for_port=False) as server:
            assert server.wait() != 0
        assert f"--metrics 127.0.0.1:{port}: cannot listen" in server.text
