"""Recycling a worker that serves only WebSockets (issue 15, item 4).

Real servers (``python -m channelserver --workers 2``) running :func:`app` below (the
workers import it from this module), and clients that only ever open WebSockets: no HTTP
request reaches a worker. Each test recycles the workers by one limit, ``--max-requests``
(WebSocket connections count), ``--max-worker-memory`` or ``--max-worker-age``, while

- held clients keep a WebSocket open and echo a message every few milliseconds; a
  recycled worker closes theirs with 1012 (Service Restart) and they reconnect;
- a connector opens fresh WebSockets one after the other, each one greeted and closed.

Zero failures means: every connection attempt is accepted and greeted, every echo comes
back, and the only close a client ever sees before it closes itself is a clean 1012. The
listening socket is the parent's, shared by the workers, so a worker that stops accepting
while its replacement serves refuses nothing.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.servers import ROOT, ServerProcess, channelserver

HERE = Path(__file__).resolve().parent
ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
APP = "test_recycling_ws:app"
READY = re.compile(rb"All (\d+) worker\(s\) ready")
MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(90)


# -- the app the workers run ------------------------------------------------------------------
#: What ``grow:N`` allocated, kept for the worker's life.
_hoard: list[bytes] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """WebSocket only: accept, send the worker's pid, then echo each text message;
    ``grow:N`` first allocates (and touches) N MiB more. Lifespan is answered."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert scope["type"] == "websocket", "the clients of these tests open only WebSockets"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": str(os.getpid())})
    while (message := await receive())["type"] != "websocket.disconnect":
        text = message.get("text") or ""
        if text.startswith("grow:"):
            _hoard.append(b"\x01" * (int(text[5:]) * MiB))
        await send({"type": "websocket.send", "text": text})


# -- clients ------------------------------------------------------------------------------------
class Clients:
    """``held`` threads each holding a WebSocket (reconnecting after a 1012), plus one
    thread opening fresh WebSockets one after the other, until :meth:`stop`."""

    def __init__(self, url: str, held: int, pace: float = 0.02) -> None:
        self.url = url + "/ws"
        self.pace = pace
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[str] = []
        #: Held clients closed by the server with 1012, each then reconnected.
        self.restarts = 0
        #: Fresh connections closed with 1012 right after their handshake.
        self.fresh_restarts = 0
        self.echoes = 0
        self.opened = 0
        #: The worker pid of every connection, held or fresh, that was greeted.
        self.pids: Counter[int] = Counter()
        #: The worker each held client connected to first.
        self.held_first: dict[int, int] = {}
        self.threads = [threading.Thread(target=self._hold, args=(n,), daemon=True) for n in range(held)]
        self.threads.append(threading.Thread(target=self._connect_fresh, daemon=True))

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in self.threads), "a client thread is stuck"

    def _fail(self, what: str, exc: BaseException) -> None:
        with self.lock:
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}")

    def _greeted(self, client: Any) -> int:
        pid = int(client.recv(timeout=10))
        with self.lock:
            self.opened += 1
            self.pids[pid] += 1
        return pid

    def _hold(self, n: int) -> None:
        while not self.stopping.is_set():
            try:
                with connect(self.url, open_timeout=10, close_timeout=5) as client:
                    self.held_first.setdefault(n, self._greeted(client))
                    seq = 0
                    while not self.stopping.wait(self.pace):
                        seq += 1
                        client.send(f"{n}.{seq}")
                        if (echo := client.recv(timeout=10)) != f"{n}.{seq}":
                            raise AssertionError(f"echo {echo!r} for {n}.{seq}")
                        with self.lock:
                            self.echoes += 1
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1012:
                    with self.lock:
                        self.restarts += 1
                    continue  # the server restarts that worker: reconnect
                self._fail(f"held client {n}", exc)
                return
            except Exception as exc:  # refused, reset, timed out, a wrong echo: all failures
                self._fail(f"held client {n}", exc)
                return

    def _connect_fresh(self) -> None:
        while not self.stopping.wait(self.pace):
            try:
                with connect(self.url, open_timeout=10, close_timeout=5) as client:
                    self._greeted(client)
            except ConnectionClosed as exc:
                # Its handshake was in flight when its worker began to drain: answered,
                # then closed with 1012, which a client reconnects on.
                if exc.rcvd is not None and exc.rcvd.code == 1012:
                    with self.lock:
                        self.fresh_restarts += 1
                    continue
                self._fail("fresh connection", exc)
            except Exception as exc:  # a 503 included: a browser cannot tell it from a crash
                self._fail("fresh connection", exc)

    def held_on(self, pids: set[int]) -> int:
        """How many held clients connected first to one of ``pids``."""
        return sum(pid in pids for pid in self.held_first.values())

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.failures, self.failures
            assert time.monotonic() < deadline, f"no {what} within {timeout}s"
            self.stopping.wait(0.05)


# -- the server and its log ---------------------------------------------------------------------
def start(*flags: str, workers: int = 2) -> ServerProcess:
    server = channelserver(APP, "--workers", str(workers), "--no-access-log", *flags, env=ENV)
    server.wait_for(READY, 30)
    return server


def ready_pids(server: ServerProcess) -> list[int]:
    return [int(p) for p in re.findall(rb"Worker pid (\d+) ready", server.output)]


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \[\d+\] (\w+) (.*)$", re.M)


def log_lines(server: ServerProcess) -> list[tuple[float, str]]:
    """(time, message) of each line the server logged."""
    return [
        (datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp(), message)
        for stamp, _level, message in LINE.findall(server.text)
    ]


def recycled(server: ServerProcess, old: int, timeout: float = 30.0) -> int:
    """Wait until ``old`` has been replaced and has exited cleanly; return its replacement."""
    new = server.wait_for(re.compile(rb"Worker pid (\d+) starting, to replace pid %d\n" % old), timeout)
    server.wait_for(re.compile(rb"Worker pid %d ready" % new), timeout)
    server.wait_for(re.compile(rb"Worker pid %d replaced by pid %d; draining it" % (old, new)), timeout)
    server.wait_for(re.compile(rb"Worker pid %d exited \(exit code 0\)" % old), timeout)
    return new


def assert_one_replacement_at_a_time(server: ServerProcess) -> list[tuple[float, float]]:
    """No replacement starts before the previous one is ready and its old worker is told
    to drain. Returns, for each recycle that ended, how long it took from the line saying
    why to the replacement's ready line, and from there to the old worker's exit."""
    starting: int | None = None
    why: dict[int, float] = {}
    ready: dict[int, float] = {}
    took = []
    for at, message in log_lines(server):
        if match := re.match(r"Worker pid (\d+) starting, to replace pid (\d+)", message):
            assert starting is None, f"pid {match[1]} started while pid {starting} was still starting"
            starting = int(match[1])
        elif match := re.match(r"Worker pid (\d+) replaced by pid (\d+); draining it", message):
            assert starting == int(match[2])
            starting = None
            if int(match[1]) in why:
                ready[int(match[1])] = at
        elif match := re.match(r"Worker pid (\d+) .*; replacing it$", message):
            why[int(match[1])] = at
        elif (match := re.match(r"Worker pid (\d+) exited", message)) and int(match[1]) in ready:
            old = int(match[1])
            took.append((ready[old] - why[old], at - ready.pop(old)))
    return took


def report(name: str, took: list[tuple[float, float]], clients: Clients) -> None:
    """The figures of one run, shown with ``pytest -s``."""
    figures = ", ".join(f"{start:.2f}s + {drain:.2f}s" for start, drain in took)
    print(
        f"\n{name}: recycles (replacement ready + old worker drained) {figures}; "
        f"{clients.opened} connections greeted, {clients.echoes} echoes, "
        f"{clients.restarts} held clients closed with 1012 and reconnected"
    )


def stop(server: ServerProcess) -> None:
    assert server.stop() == 0, server.text
    assert "died" not in server.text
    assert "killing it" not in server.text


# -- tests -------------------------------------------------------------------------------------------
def test_max_requests_counts_websocket_connections_and_recycles_without_a_failed_connection() -> None:
    with start("--max-requests", "25") as server:
        first = ready_pids(server)
        with Clients(server.ws_url, held=4) as clients:
            clients.wait("held clients", lambda: len(clients.held_first) == 4)
            for pid in first:
                recycled(server, pid)
            # Each held client on a recycled worker was closed with 1012 and reconnected.
            clients.wait("reconnections", lambda: clients.restarts >= clients.held_on(set(first)))
            clients.wait("connections after the recycles", lambda: clients.opened >= 60)
        took = assert_one_replacement_at_a_time(server)
        assert clients.failures == []
        for pid in first:
            assert f"Worker pid {pid} served 25 requests (max_requests); replacing it" in server.text
            # It counted nothing but WebSockets; it serves on until its replacement is ready.
            assert clients.pids[pid] >= 25
        assert set(clients.pids) - set(first), "no connection reached a replacement"
        report("max_requests 25", took, clients)
        stop(server)


def test_max_worker_memory_recycles_the_worker_that_grew_and_no_other() -> None:
    with start() as probe:  # the idle size of a worker of this app, on this machine
        idle = max(psutil.Process(pid).memory_info().rss for pid in ready_pids(probe))
        stop(probe)
    limit = math.ceil(idle / MiB) + 24
    with start("--max-worker-memory", str(limit)) as server:
        first = ready_pids(server)
        with Clients(server.ws_url, held=4) as clients:
            clients.wait("held clients", lambda: len(clients.held_first) == 4)
            with connect(server.ws_url + "/ws", open_timeout=10) as grower:
                large = int(grower.recv(timeout=10))
                grower.send("grow:48")
                assert grower.recv(timeout=10) == "grow:48"
                new = recycled(server, large)
                with pytest.raises(ConnectionClosed) as closed:
                    grower.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            clients.wait("reconnections", lambda: clients.restarts >= clients.held_on({large}))
            clients.wait("connections to the replacement", lambda: clients.pids[new] >= 10)
        took = assert_one_replacement_at_a_time(server)
        assert clients.failures == []
        assert re.search(rf"Worker pid {large} used \d+ MiB \(max_worker_memory {limit}\); replacing it", server.text)
        assert server.text.count("replacing it") == 1, server.text
        (other,) = set(first) - {large}
        assert f"Worker pid {other} exited" not in server.text
        report(f"max_worker_memory {limit} (idle {idle / MiB:.0f} MiB)", took, clients)
        stop(server)


def test_max_worker_age_recycles_every_worker_one_at_a_time_without_a_failed_connection() -> None:
    with start("--max-worker-age", "2", "--max-worker-age-jitter", "1") as server:
        first = ready_pids(server)
        began = time.monotonic()
        with Clients(server.ws_url, held=4) as clients:
            replacements = [recycled(server, pid) for pid in first]
            for pid in replacements:  # their turn comes too: the age counts from their own start
                recycled(server, pid)
            gone = {*first, *replacements}
            clients.wait("reconnections", lambda: clients.restarts >= clients.held_on(gone))
        took = assert_one_replacement_at_a_time(server)
        assert clients.failures == []
        for pid in first:
            match = re.search(
                rf"Worker pid {pid} is ([\d.]+)s old \(max_worker_age 2s \+ 1s jitter\); replacing it", server.text
            )
            assert match and 2 <= float(match[1]) < 5, server.text
        assert time.monotonic() - began < 60
        report("max_worker_age 2 + 1", took, clients)
        stop(server)


def test_one_worker_with_max_worker_age_runs_under_the_supervisor_and_is_recycled() -> None:
    """With one worker, a recycling setting still takes effect: it brings the supervisor."""
    with start("--max-worker-age", "1", workers=1) as server:
        (first,) = ready_pids(server)
        with Clients(server.ws_url, held=2) as clients:
            recycled(server, first)
            clients.wait("reconnections", lambda: clients.restarts >= clients.held_on({first}))
        assert clients.failures == []
        stop(server)
