"""Worker processes: supervision, recycling, rolling restart, shutdown (issue 4, items 4-5).

Real servers (``python -m channelserver --workers 2``), real HTTP and WebSocket clients.
The app (``workers_app.py`` next to this file) answers with the pid of the worker that
served it; its ``/block`` route and ``block:S`` message stall one worker's event loop, which
is how a test puts a connection on a chosen worker without guessing how the kernel hands
out connections: while one worker is blocked, the next connection goes to another.

The load generators open a fresh connection per request, so each request is also a
connection attempt: "zero failures" covers refused connections, resets and non-200s.
Servers under load run with ``--no-access-log``: nothing reads their output while the load
runs, and a full pipe would stall every process writing to it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent

from tests.servers import PYTHON, ROOT, ServerProcess, channelserver  # noqa: E402

ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
READY = re.compile(rb"All (\d+) worker\(s\) ready")
ROLLED = re.compile(rb"Rolling restart complete")

pytestmark = pytest.mark.timeout(40)


# -- helpers ---------------------------------------------------------------------------------
def start(*flags: str, app: str = "workers_app:app", workers: int = 2) -> ServerProcess:
    server = channelserver(app, "--workers", str(workers), *flags, env=ENV)
    server.wait_for(READY, 20)
    return server


def ready_pids(server: ServerProcess) -> list[int]:
    return [int(p) for p in re.findall(rb"Worker pid (\d+) ready", server.output)]


def get(port: int, path: str = "/pid", timeout: float = 10.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def clients() -> Iterator[ExitStack]:
    """Closes the test's WebSocket clients at the end."""
    with ExitStack() as stack:
        yield stack


def ws(server: ServerProcess, clients: ExitStack) -> tuple[ClientConnection, int]:
    """A WebSocket client and the pid of the worker serving it."""
    client = clients.enter_context(connect(server.ws_url + "/ws", open_timeout=10, close_timeout=2))
    return client, int(client.recv(timeout=10))


class StreamingRequest:
    """A GET whose response streams: returns once the first chunk (the pid) has come."""

    FIRST_CHUNK = re.compile(rb"\r\n\r\n[0-9a-fA-F]+\r\n(\d+)\n")

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        self.data = b""
        while not (match := self.FIRST_CHUNK.search(self.data)):
            self._recv()
        self.pid = int(match.group(1))

    def _recv(self) -> None:
        chunk = self.sock.recv(4096)
        assert chunk, f"server closed the connection: {self.data!r}"
        self.data += chunk

    def finish(self) -> bytes:
        """The whole response, once its last chunk came."""
        while not self.data.endswith(b"0\r\n\r\n"):
            self._recv()
        return self.data

    def close(self) -> None:
        self.sock.close()


@contextmanager
def blocked_worker(server: ServerProcess, seconds: float) -> Iterator[int]:
    """Stall one worker's loop for ``seconds``; yields its pid once it is stalled."""
    request = StreamingRequest(server.port, f"/block?s={seconds}")
    try:
        yield request.pid
    finally:
        request.close()


def ws_on_other_worker(
    server: ServerProcess, clients: ExitStack, than: ClientConnection, stall: float = 1.5
) -> tuple[ClientConnection, int]:
    """A WebSocket client served by another worker than ``than``'s (stalled ``stall`` s)."""
    than.send(f"block:{stall}")
    assert than.recv(timeout=10) == "blocking"
    return ws(server, clients)


def wait_exited(server: ServerProcess, pids: set[int], timeout: float = 10.0) -> None:
    for pid in pids:
        server.wait_for(re.compile(rb"Worker pid %d exited \(exit code 0\)" % pid), timeout)


class Load:
    """HTTP clients in threads, one fresh connection per request, until stopped or ``limit``."""

    def __init__(self, port: int, threads: int = 2, limit: int | None = None, pace: float = 0.004) -> None:
        self.port = port
        self.limit = limit
        self.pace = pace
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.taken = 0
        self.ok = 0
        self.pids: Counter[int] = Counter()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _take(self) -> bool:
        with self.lock:
            if self.stop.is_set() or (self.limit is not None and self.taken >= self.limit):
                return False
            self.taken += 1
            return True

    def _run(self) -> None:
        while self._take():
            try:
                status, body = get(self.port, timeout=10)
            except OSError as exc:
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                with self.lock:
                    if status == 200:
                        self.ok += 1
                        self.pids[int(body)] += 1
                    else:
                        self.failures.append(f"status {status}: {body!r}")
            self.stop.wait(self.pace)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def wait_for_requests(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ok + len(self.failures) < count:
            assert time.monotonic() < deadline, f"only {self.ok} requests served"
            self.stop.wait(0.05)

    def join(self, timeout: float = 30.0) -> None:
        for thread in self.threads:
            thread.join(timeout)


# -- tests ---------------------------------------------------------------------------------------
def test_two_workers_serve_from_two_pids() -> None:
    with start() as server:
        workers = ready_pids(server)
        assert len(workers) == 2
        with blocked_worker(server, 1.5) as first:
            status, body = get(server.port)
        assert status == 200
        assert {first, int(body)} == set(workers)
        assert server.stop() == 0


def test_killed_worker_is_replaced_and_other_workers_connections_are_unaffected(clients: ExitStack) -> None:
    with start() as server:
        victim_ws, victim = ws(server, clients)
        survivors = [ws_on_other_worker(server, clients, victim_ws, stall=3)]
        survivors += [ws(server, clients) for _ in range(4)]  # the victim's loop is still stalled
        survivor_pid = survivors[0][1]
        assert survivor_pid != victim
        assert {pid for _, pid in survivors} == {survivor_pid}

        os.kill(victim, signal.SIGKILL)
        replacement = server.wait_for(
            re.compile(
                rb"(?s)Worker pid %d died \(killed by SIGKILL\); starting a replacement.*?Worker pid (\d+) ready"
                % victim
            )
        )
        with pytest.raises(ConnectionClosed):
            victim_ws.recv(timeout=5)

        for n, (client, _) in enumerate(survivors):
            client.send(f"still there {n}")
            assert client.recv(timeout=5) == f"still there {n}"
        assert replacement not in (victim, survivor_pid)
        with blocked_worker(server, 1.5) as stalled:
            assert stalled in (survivor_pid, replacement)
            status, body = get(server.port)
        assert status == 200
        assert {stalled, int(body)} == {survivor_pid, replacement}
        for client, _ in survivors:
            client.close()
        assert server.stop() == 0
        assert server.text.count("starting a replacement") == 1


@pytest.mark.parametrize(
    ("app", "flags", "error"),
    [
        (
            "workers_app:broken_in_worker",
            (),
            "failed to start: Could not import 'workers_app:broken_in_worker': ImportError: "
            "workers_app.broken_in_worker cannot be imported in a worker",
        ),
        ("workers_app:failing_lifespan", ("--lifespan", "on"), "failed to start: lifespan startup failed: database"),
    ],
    ids=["import-error", "lifespan-failure"],
)
def test_worker_failing_at_startup_stops_the_parent_without_respawning(
    app: str, flags: tuple[str, ...], error: str
) -> None:
    began = time.monotonic()
    with channelserver(app, "--workers", "2", *flags, env=ENV) as server:
        code = server.wait(15)
        took = time.monotonic() - began
    assert code == 3, server.text
    assert error in server.text
    assert "A worker failed to start: stopping" in server.text
    assert len(re.findall(r"Worker pid \d+ starting", server.text)) == 2, server.text
    assert "replacement" not in server.text
    assert took < 10


def test_sighup_under_load_refuses_nothing_and_closes_old_websockets_with_1012(clients: ExitStack) -> None:
    with start("--no-access-log") as server:
        old = set(ready_pids(server))
        first, first_pid = ws(server, clients)
        conns = [(first, first_pid), ws_on_other_worker(server, clients, first)]
        assert {pid for _, pid in conns} == old
        with Load(server.port) as load:
            load.wait_for_requests(50)
            server.signal(signal.SIGHUP)
            server.wait_for(ROLLED, 20)
            for client, _ in conns:
                with pytest.raises(ConnectionClosed) as closed:
                    client.recv(timeout=10)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1012
            wait_exited(server, old)
            new = set(ready_pids(server)) - old
            assert len(new) == 2
            load.wait_for_requests(load.ok + len(load.failures) + 50)
        assert load.failures == []
        assert set(load.pids) & new, load.pids
        again, pid = ws(server, clients)
        assert pid in new
        again.send("hello")
        assert again.recv(timeout=5) == "hello"
        again.close()
        assert server.stop() == 0
        for pid in old:
            assert re.search(rb"Worker pid %d replaced by pid \d+; draining it" % pid, server.output)
            assert re.search(rb"Worker pid %d exited \(exit code 0\)" % pid, server.output)


def test_connection_made_before_its_worker_is_replaced_is_still_served() -> None:
    """The race behind rare failures under load: a client connected, the worker accepted
    it, the request is not complete yet, and the worker is told to stop. The client did
    nothing wrong and must get its response (with ``connection: close``)."""
    with start("--max-requests", "1000000", workers=1) as server:
        (old,) = ready_pids(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as early:
            early.sendall(b"GET /pid HTTP/1.1\r\n")
            assert get(server.port)[1] == str(old)  # the worker has read the early bytes by now
            server.signal(signal.SIGHUP)
            server.wait_for(re.compile(rb"\[%d\] INFO Shutting down" % old))
            response = b""
            with contextlib.suppress(OSError):
                early.sendall(b"host: x\r\n\r\n")
                while chunk := early.recv(4096):
                    response += chunk
        assert response.startswith(b"HTTP/1.1 200 "), response
        assert response.endswith(b"\r\n\r\n%d" % old)
        assert b"\r\nconnection: close\r\n" in response.lower()
        assert server.stop() == 0


def test_max_requests_recycles_workers_under_load_without_failures() -> None:
    with start("--max-requests", "200", "--max-requests-jitter", "20", "--no-access-log") as server:
        first = set(ready_pids(server))
        with Load(server.port, limit=1000) as load:
            load.join()
        assert load.failures == []
        assert load.ok == 1000
        # Each of the first two workers reached its 200-220 requests well before 1000 and
        # was replaced, then drained and exited cleanly.
        for pid in first:
            server.wait_for(re.compile(rb"Worker pid %d served \d+ requests \(max_requests\); replacing it" % pid))
            server.wait_for(re.compile(rb"Worker pid %d replaced by pid \d+; draining it" % pid))
            server.wait_for(re.compile(rb"Worker pid %d exited \(exit code 0\)" % pid))
        assert len(load.pids) >= 3, load.pids
        assert server.stop() == 0
        assert "died" not in server.text


def test_sigterm_drains_all_workers_in_parallel_and_exits_0(clients: ExitStack) -> None:
    with start("--graceful-timeout", "5") as server:
        workers = ready_pids(server)
        first, first_pid = ws(server, clients)
        conns = [(first, first_pid), ws_on_other_worker(server, clients, first)]
        in_flight = [StreamingRequest(server.port, "/stream?s=1") for _ in range(2)]
        for request in in_flight:
            clients.callback(request.close)
        began = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(15)
        took = time.monotonic() - began
        assert code == 0, server.text
        assert took < 5, took
        for request in in_flight:
            response = request.finish()
            assert response.startswith(b"HTTP/1.1 200 ")
            assert b"done\n" in response
        for client, _ in conns:
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        for pid in workers:
            assert not psutil.pid_exists(pid)
        assert "All workers stopped" in server.text


def test_workers_shut_down_gracefully_when_the_parent_is_killed(clients: ExitStack) -> None:
    with start() as server:
        workers = ready_pids(server)
        first, first_pid = ws(server, clients)
        conns = [(first, first_pid), ws_on_other_worker(server, clients, first)]
        exits = [clients.enter_context(os.fdopen(os.pidfd_open(pid), "rb", buffering=0)) for pid in workers]
        server.signal(signal.SIGKILL)
        server.wait(5)
        began = time.monotonic()
        for pidfd in exits:  # readable once the process has exited
            assert select.select([pidfd], [], [], 10)[0], "a worker outlived its parent"
        assert time.monotonic() - began < 5
        for client, _ in conns:
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert server.text.count("The supervising process is gone; shutting down") == 2


# -- supervision timings, through the Supervisor's own arguments ---------------------------------
SCRIPT = """
import json, sys
from channelserver.config import Config
from channelserver.server.log import configure_logging
from channelserver.supervisor.multiprocess import Supervisor

options = json.loads(sys.argv[1])
configure_logging("info")
config = Config(port=0, **options["config"])
supervisor = Supervisor(config, "workers_app:app", worker_logging=configure_logging, **options["supervisor"])
sys.exit(supervisor.run())
"""


def supervisor(config: dict[str, object], **timings: float) -> ServerProcess:
    options = json.dumps({"config": config, "supervisor": timings})
    server = ServerProcess([PYTHON, "-c", SCRIPT, options], env=ENV)
    server.wait_for(READY, 20)
    return server


def test_worker_that_stops_answering_health_checks_is_killed_and_replaced(clients: ExitStack) -> None:
    with supervisor({"workers": 2}, health_check_interval=0.2, health_check_timeout=1.0) as server:
        client, stuck = ws(server, clients)
        client.send("block:30")
        assert client.recv(timeout=5) == "blocking"
        server.wait_for(re.compile(rb"Worker pid %d did not answer a health check within 1s; killing it" % stuck), 10)
        server.wait_for(re.compile(rb"Worker pid %d died \(killed by SIGKILL\); starting a replacement" % stuck), 5)
        server.wait_for(re.compile(rb"(?s)starting a replacement.*Worker pid \d+ ready"), 10)
        status, _ = get(server.port)
        assert status == 200
        client.close()
        assert server.stop() == 0


def test_worker_that_does_not_drain_in_time_is_killed_and_the_exit_code_says_so(clients: ExitStack) -> None:
    config = {"workers": 2, "graceful_timeout": 0.5, "app_close_timeout": 0.5}
    with supervisor(config, stop_margin=0.5) as server:
        client, stuck = ws(server, clients)
        client.send("block:30")
        assert client.recv(timeout=5) == "blocking"
        began = time.monotonic()
        code = server.stop(signal.SIGTERM)
        took = time.monotonic() - began
        client.close()
    assert code == 1, server.text
    # graceful 0.5 + 2 x app_close 0.5 + 1 (close handshakes) + 4 x CANCEL_GRACE 1 (the
    # cancellations of apps, lifespan and leftovers, and the exit watchdog) + stop_margin 0.5
    assert f"Worker pid {stuck} did not exit within 7s; killing it" in server.text
    assert 6.9 < took < 11, took
